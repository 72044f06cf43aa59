"""Shared fixtures: small real datasets, prepared once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_digits

from automl.data import PreparedData, load_dataset


@pytest.fixture(scope="session", autouse=True)
def dataset_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Workers' per-node dataset cache in a temporary folder, not the user's home."""
    saved = os.environ.get("AUTOML_CACHE_DIR")
    os.environ["AUTOML_CACHE_DIR"] = str(tmp_path_factory.mktemp("automl-cache"))
    yield
    if saved is None:
        os.environ.pop("AUTOML_CACHE_DIR", None)
    else:
        os.environ["AUTOML_CACHE_DIR"] = saved


@pytest.fixture(scope="session")
def digits_frame() -> pd.DataFrame:
    return load_digits(as_frame=True).frame


@pytest.fixture(scope="session")
def digits(digits_frame: pd.DataFrame) -> PreparedData:
    return load_dataset(digits_frame, "target", seed=0)


@pytest.fixture(scope="session")
def diabetes() -> PreparedData:
    return load_dataset(load_diabetes(as_frame=True).frame, "target", seed=0)


@pytest.fixture(scope="session")
def blobs() -> PreparedData:
    """256 rows x 8 features, 2 well-separated classes: trains in a fraction of a second."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 256)
    x = rng.normal(size=(256, 8)) + y[:, None] * 1.5
    return load_dataset(x, y, seed=0)
