"""Split a checked dataset and turn it into float32 arrays for training.

The :class:`Preprocessor` is fitted on the training split only (medians, means, standard
deviations, category levels, target scale) and is plain JSON, so it can be stored next to
a model and applied to raw rows later without pickling anything. It checks rows at
prediction time as training checked them: a missing column or an infinite value is one
typed error naming the column, and a missing value is imputed the way training did.

The encoded matrix is, in order: every numeric column (date columns expanded into their
parts first) with missing cells set to the training median, clipped to the range the
training split spans, then standardised; a 0/1 "was missing" column for each numeric
column that had missing values in the training split; then one 0/1 column per
categorical level (missing is a level of its own).

The clipping is for rows the model has not seen: an MLP extrapolates linearly, so one
value far outside the training range (diamonds has a width of 31.8 mm, 23 standard
deviations out, where the rest lie under 11) can make its prediction absurd, where a
tree model, and this clipping, hold it at the edge (BENCHMARKS.md, issue 19).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from automl.configs import Task
from automl.data.checks import MAX_NAMES_IN_NOTE, CheckedDataset, named_columns
from automl.data.columns import (
    FLOAT32_MAX,
    category_codes,
    date_part_names,
    date_parts,
    numeric_values,
)
from automl.errors import ConfigError, NonFiniteError, ShapeError

VAL_FRACTION = 0.2
TEST_FRACTION = 0.2


@dataclass
class Preprocessor:
    """Imputation, standardisation, date parts, one-hot encoding and target scaling, as
    JSON-able state. ``numeric_columns`` includes the parts of each of ``date_columns``
    (``signup.year``...); ``medians``, ``means`` and ``stds`` follow its order."""

    numeric_columns: list[str]
    categorical_levels: dict[str, list[str]]
    means: list[float]
    stds: list[float]
    task: Task
    classes: list[object] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0
    medians: list[float] = field(default_factory=list)
    missing_indicators: list[str] = field(default_factory=list)
    date_columns: list[str] = field(default_factory=list)
    # The training split's range per numeric column (after imputation); empty in bundles
    # from before clipping, which then do not clip.
    lows: list[float] = field(default_factory=list)
    highs: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.medians) != len(self.numeric_columns):  # bundles from before imputation
            self.medians = list(self.means)

    @classmethod
    def fit(cls, data: CheckedDataset, rows: np.ndarray) -> Preprocessor:
        train = data.features.iloc[rows]
        numeric_columns = [*data.numeric_columns,
                           *(p for d in data.date_columns for p in date_part_names(d))]
        numeric = _numeric_matrix(train, data.numeric_columns, data.date_columns)
        missing = np.isnan(numeric)
        medians = np.nan_to_num(_nan_stat(np.nanmedian, numeric))
        filled = np.where(missing, medians, numeric)
        stds = filled.std(axis=0)
        target = data.target.iloc[rows].to_numpy(dtype=np.float64)
        regression = data.task == "regression"
        return cls(
            numeric_columns=numeric_columns,
            categorical_levels={c: sorted(set(category_codes(train[c])))
                                for c in data.categorical_columns},
            means=filled.mean(axis=0).tolist(),
            stds=np.where(stds > 0, stds, 1.0).tolist(),
            task=data.task,
            classes=list(data.classes),
            target_mean=float(target.mean()) if regression else 0.0,
            target_std=float(target.std() or 1.0) if regression else 1.0,
            medians=medians.tolist(),
            missing_indicators=[c for c, m in zip(numeric_columns, missing.any(axis=0), strict=True)
                                if m],
            date_columns=list(data.date_columns),
            lows=filled.min(axis=0, initial=np.inf).tolist(),
            highs=filled.max(axis=0, initial=-np.inf).tolist(),
        )

    @property
    def input_columns(self) -> list[str]:
        """The columns rows must have: raw numeric, date and categorical columns."""
        parts = {p for d in self.date_columns for p in date_part_names(d)}
        return [*(c for c in self.numeric_columns if c not in parts), *self.date_columns,
                *self.categorical_levels]

    @property
    def n_features(self) -> int:
        return (len(self.numeric_columns) + len(self.missing_indicators)
                + sum(len(v) for v in self.categorical_levels.values()))

    @property
    def n_outputs(self) -> int:
        return 1 if self.task in ("regression", "binary") else len(self.classes)

    def check_rows(self, rows: Any) -> pd.DataFrame:
        """``rows`` (a DataFrame, a list of dicts or one dict) as a frame holding every
        input column; a missing column is one :class:`ShapeError` naming them all."""
        frame = as_frame(rows)
        missing = [c for c in self.input_columns if c not in frame.columns]
        if missing:
            shown = ", ".join(f"'{c}'" for c in missing[:MAX_NAMES_IN_NOTE])
            raise ShapeError(f"the rows lack {len(missing)} column(s) the model was trained "
                             f"on: {shown}", field=missing[0])
        return frame

    def raw_numeric(self, rows: pd.DataFrame) -> np.ndarray:
        """The numeric columns (dates as their parts) as float64, NaN where missing;
        values that are not numbers, or are infinite, are refused by column name."""
        parts = {p for d in self.date_columns for p in date_part_names(d)}
        return _numeric_matrix(rows, [c for c in self.numeric_columns if c not in parts],
                               self.date_columns)

    def one_hot(self, rows: pd.DataFrame) -> list[np.ndarray]:
        """One 0/1 block per categorical column (all 0 for a level not seen in training)."""
        return [(category_codes(rows[column])[:, None] == np.asarray(levels)[None, :])
                .astype(np.float64) for column, levels in self.categorical_levels.items()]

    def transform(self, rows: Any) -> np.ndarray:
        """Encode raw rows (a DataFrame, a list of dicts or one dict) into float32."""
        frame = self.check_rows(rows)
        scaled = self.raw_numeric(frame)  # a fresh array: imputed and scaled in place
        missing = np.isnan(scaled)
        indicators = missing[:, [self.numeric_columns.index(c) for c in self.missing_indicators]]
        np.copyto(scaled, np.asarray(self.medians)[None, :], where=missing)
        if self.lows:
            np.clip(scaled, self.lows, self.highs, out=scaled)
        scaled -= np.asarray(self.means)
        scaled /= np.asarray(self.stds)
        _check_float32(scaled, self.numeric_columns)
        blocks = [scaled, indicators, *self.one_hot(frame)]
        return np.concatenate(blocks, axis=1, dtype=np.float32)

    def transform_target(self, target: pd.Series) -> np.ndarray:
        values = target.to_numpy(dtype=np.float64)
        if self.task == "regression":
            return ((values - self.target_mean) / self.target_std).astype(np.float32)
        return values.astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_frame(rows: Any) -> pd.DataFrame:
    """Rows to predict on as a DataFrame: a DataFrame, a list of dicts, or one dict."""
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, Mapping):
        return pd.DataFrame([dict(rows)])
    if isinstance(rows, Sequence) and not isinstance(rows, (str, bytes)) and all(
            isinstance(row, Mapping) for row in rows):
        return pd.DataFrame([dict(row) for row in rows])
    raise ConfigError(f"rows must be a DataFrame, a list of dicts or one dict, not "
                      f"{type(rows).__name__}", field="rows")


def _numeric_matrix(rows: pd.DataFrame, numeric: list[str], dates: list[str]) -> np.ndarray:
    plain = all(isinstance(t, np.dtype) and t.kind in "biuf" for t in rows[numeric].dtypes)
    if plain and not np.isinf(matrix := rows[numeric].to_numpy(dtype=np.float64)).any() \
            and np.nanmax(np.abs(matrix), initial=0.0) <= FLOAT32_MAX:
        blocks = [matrix]  # the common case in one pass; otherwise each column names itself
    else:
        blocks = [np.stack([numeric_values(rows[c], c).to_numpy() for c in numeric], axis=1)
                  if numeric else np.zeros((len(rows), 0))]
    blocks += [date_parts(rows[d], d) for d in dates]
    return np.concatenate(blocks, axis=1)


def _nan_stat(stat: Any, matrix: np.ndarray) -> np.ndarray:
    """``stat`` of each column ignoring NaN; NaN for a column with no value at all."""
    out = np.full(matrix.shape[1], np.nan)
    present = ~np.isnan(matrix).all(axis=0)
    if present.any():
        out[present] = stat(matrix[:, present], axis=0)
    return out


def _check_float32(scaled: np.ndarray, columns: list[str]) -> None:
    too_large = np.abs(scaled) > FLOAT32_MAX / 16
    if too_large.any():
        name = columns[int(np.argwhere(too_large)[0, 1])]
        raise NonFiniteError(f"column '{name}' has a value too far from anything seen in "
                             "training to be used", field=name)


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
                        warnings=[*data.warnings, *missing_notes(data, pre)])


def missing_notes(data: CheckedDataset, pre: Preprocessor) -> list[str]:
    """One note for the numeric columns imputed, one for the categorical ones."""
    notes = []
    counts = data.features.isna().sum()
    numeric = {c: f"{int(counts[c]):,} missing, median {pre.medians[i]:.4g}"
               for i, c in enumerate(pre.numeric_columns) if counts.get(c)}
    numeric |= {f"{d} (a date)": f"{int(counts[d]):,} missing"
                for d in pre.date_columns if counts[d]}
    if numeric:
        notes.append("note: missing numbers are filled with the training split's median, "
                     "and a 0/1 'was missing' input is added where the training split had "
                     "any: " + named_columns(numeric))
    categorical = {c: f"{int(counts[c]):,} missing" for c in pre.categorical_levels if counts[c]}
    if categorical:
        notes.append("note: a missing category is a level of its own: "
                     + named_columns(categorical))
    return notes


def content_hash(data: CheckedDataset) -> str:
    """SHA-256 of the column names, the task and every value: equal data, equal hash."""
    digest = hashlib.sha256()
    digest.update(repr((list(data.features.columns), str(data.target.name), data.task)).encode())
    digest.update(pd.util.hash_pandas_object(data.features, index=False).to_numpy().tobytes())
    digest.update(pd.util.hash_pandas_object(data.target, index=False).to_numpy().tobytes())
    return digest.hexdigest()
