"""Split a checked dataset and turn it into float32 arrays for training.

The :class:`Preprocessor` is fitted on the training split only (means, standard
deviations, category levels, target scale) and is plain JSON, so it can be stored next to
a model and applied to raw rows later without pickling anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from automl.configs import Task
from automl.data.checks import CheckedDataset

VAL_FRACTION = 0.2
TEST_FRACTION = 0.2


@dataclass
class Preprocessor:
    """Feature standardisation, one-hot encoding and target scaling, as JSON-able state."""

    numeric_columns: list[str]
    categorical_levels: dict[str, list[str]]
    means: list[float]
    stds: list[float]
    task: Task
    classes: list[object] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0

    @classmethod
    def fit(cls, data: CheckedDataset, rows: np.ndarray) -> Preprocessor:
        train = data.features.iloc[rows]
        numeric = train[data.numeric_columns].to_numpy(dtype=np.float64)
        stds = numeric.std(axis=0) if len(data.numeric_columns) else np.zeros(0)
        levels = {c: sorted(train[c].unique().tolist()) for c in data.categorical_columns}
        target = data.target.iloc[rows].to_numpy(dtype=np.float64)
        regression = data.task == "regression"
        return cls(
            numeric_columns=list(data.numeric_columns),
            categorical_levels=levels,
            means=numeric.mean(axis=0).tolist() if len(data.numeric_columns) else [],
            stds=np.where(stds > 0, stds, 1.0).tolist(),
            task=data.task,
            classes=list(data.classes),
            target_mean=float(target.mean()) if regression else 0.0,
            target_std=float(target.std() or 1.0) if regression else 1.0,
        )

    @property
    def n_features(self) -> int:
        return len(self.numeric_columns) + sum(len(v) for v in self.categorical_levels.values())

    @property
    def n_outputs(self) -> int:
        return 1 if self.task in ("regression", "binary") else len(self.classes)

    def transform(self, features: pd.DataFrame) -> np.ndarray:
        """Encode raw feature rows (same columns as training) into a float32 matrix."""
        numeric = features[self.numeric_columns].to_numpy(dtype=np.float64)
        blocks = [(numeric - np.asarray(self.means)) / np.asarray(self.stds)]
        for column, levels in self.categorical_levels.items():
            values = features[column].astype(str).to_numpy()
            blocks.append((values[:, None] == np.asarray(levels)[None, :]).astype(np.float64))
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def transform_target(self, target: pd.Series) -> np.ndarray:
        values = target.to_numpy(dtype=np.float64)
        if self.task == "regression":
            return ((values - self.target_mean) / self.target_std).astype(np.float32)
        return values.astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreparedData:
    """Train/validation/test arrays plus everything needed to describe them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessor: Preprocessor
    content_hash: str
    warnings: list[str] = field(default_factory=list)

    @property
    def task(self) -> Task:
        return self.preprocessor.task

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_outputs(self) -> int:
        return self.preprocessor.n_outputs

    def describe(self) -> str:
        sizes = f"{len(self.x_train)}/{len(self.x_val)}/{len(self.x_test)}"
        return f"{self.task}, {self.n_features} features, train/val/test rows {sizes}"


def split_rows(data: CheckedDataset, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train/validation/test row indices, stratified by class for classification."""
    # Imported here: scikit-learn costs ~1 s to import, and every Ray worker imports this
    # module (to unpickle PreparedData) without ever splitting.
    from sklearn.model_selection import train_test_split

    rows = np.arange(data.n_rows)
    labels = None if data.task == "regression" else data.target.to_numpy()
    rest, test = train_test_split(rows, test_size=TEST_FRACTION, random_state=seed,
                                  stratify=labels)
    rest_labels = None if labels is None else labels[rest]
    val_share = VAL_FRACTION / (1 - TEST_FRACTION)
    train, val = train_test_split(rest, test_size=val_share, random_state=seed + 1,
                                  stratify=rest_labels)
    return np.sort(train), np.sort(val), np.sort(test)


def prepare(data: CheckedDataset, seed: int) -> PreparedData:
    """Split ``data``, fit the preprocessor on the training rows and encode all splits."""
    train, val, test = split_rows(data, seed)
    pre = Preprocessor.fit(data, train)

    def encode(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (pre.transform(data.features.iloc[rows]),
                pre.transform_target(data.target.iloc[rows]))

    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = encode(train), encode(val), encode(test)
    return PreparedData(x_tr, y_tr, x_va, y_va, x_te, y_te, pre, content_hash(data),
                        warnings=list(data.warnings))


def content_hash(data: CheckedDataset) -> str:
    """SHA-256 of the column names, the task and every value: equal data, equal hash."""
    digest = hashlib.sha256()
    digest.update(repr((list(data.features.columns), str(data.target.name), data.task)).encode())
    digest.update(pd.util.hash_pandas_object(data.features, index=False).to_numpy().tobytes())
    digest.update(pd.util.hash_pandas_object(data.target, index=False).to_numpy().tobytes())
    return digest.hexdigest()
