"""Shared fixtures: small real datasets, prepared once per session."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_digits

from automl.data import PreparedData, load_dataset


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
