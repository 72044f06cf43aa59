"""What if numeric columns were quantile-normalised? ``compare_quality.py`` with that one change.

    python bench/quantile_probe.py --datasets adult diamonds california diabetes letter \
        --trials 40 --timeout 0 --n-seeds 3 --max-rows 10000

A probe, not a feature: before ``automl.data.prepare`` standardises the columns, every
numeric column is mapped through its training rows' empirical quantiles (1000 knots, ties
to their middle, as scikit-learn's ``QuantileTransformer`` does) onto a standard normal.
The knots come from the training split only; every model (the tuned MLP, the rules of
thumb, scikit-learn's defaults) sees the same transformed rows. Arguments and output are
``compare_quality.py``'s. Exported models would not carry the transform.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtri

sys.path.insert(0, str(Path(__file__).resolve().parent))
import automl.data as data_pkg
from automl.data.preprocess import split_rows

original = data_pkg.prepare


def gaussianise(column: np.ndarray, train: np.ndarray) -> np.ndarray:
    refs = np.linspace(0, 1, min(1000, len(train)))
    knots = np.quantile(train, refs)
    up = np.interp(column, knots, refs)
    down = -np.interp(-column, -knots[::-1], -refs[::-1])
    return ndtri(np.clip(0.5 * (up + down), 1e-7, 1 - 1e-7))


def prepare(data: Any, seed: int) -> Any:
    train, _, _ = split_rows(data, seed)
    features = data.features.copy()
    for name in data.numeric_columns:
        values = features[name].to_numpy(dtype=np.float64)
        features[name] = gaussianise(values, values[train])
    return original(dataclasses.replace(data, features=features), seed)


data_pkg.prepare = prepare
import compare_quality  # noqa: E402

if __name__ == "__main__":  # scikit-learn's fits run in spawn children that import this
    compare_quality.main()
