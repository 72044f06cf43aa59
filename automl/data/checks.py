"""Validate a raw dataset and decide what each column is.

Every check raises one typed error naming the column and what is wrong, before anything
is trained or stored. Columns are numeric (ints, floats, bools) or categorical (text with
a bounded number of distinct values); anything else (dates, bytes, nested values, text
mixed with numbers, free text) is refused with ``E_DTYPE``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from automl.configs import Task
from automl.data.sources import DataLimits, RawDataset
from automl.errors import (
    ConfigError,
    DegenerateError,
    DtypeError,
    NonFiniteError,
    ShapeError,
    TooLargeError,
)

MIN_ROWS = 20
MIN_PER_CLASS = 5
MAX_CLASSES = 1000
MAX_CATEGORIES = 200
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class CheckedDataset:
    """A dataset that passed every check, with each column's kind decided."""

    features: pd.DataFrame
    target: pd.Series
    task: Task
    numeric_columns: list[str]
    categorical_columns: list[str]
    classes: list[object] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return len(self.features)


def check_dataset(raw: RawDataset, task: str | None, limits: DataLimits) -> CheckedDataset:
    """Run every check on ``raw`` and infer (or verify) the task."""
    features, target = raw.features, raw.target
    _check_shape(features, limits)
    numeric: list[str] = []
    categorical: list[str] = []
    warnings: list[str] = []
    for name in features.columns:
        kind, converted = _column_kind(features[name], name)
        features[name] = converted
        (numeric if kind == "numeric" else categorical).append(name)
    warnings += _check_constant(features)
    target_kind = _check_target(target, raw)
    resolved = _resolve_task(target, target_kind, task)
    checked = CheckedDataset(features, target, resolved, numeric, categorical, warnings=warnings)
    if resolved == "regression":
        checked.target = target.astype(np.float64)
    else:
        checked.target, checked.classes = _class_labels(target)
    return checked


def _check_shape(features: pd.DataFrame, limits: DataLimits) -> None:
    n_rows, n_cols = features.shape
    if n_cols == 0:
        raise ShapeError("the data has no feature columns besides the target", field="data")
    if n_rows == 0:
        raise ShapeError("the data has no rows", field="data")
    if n_rows < MIN_ROWS:
        raise ShapeError(
            f"the data has {n_rows} rows; at least {MIN_ROWS} are needed for a "
            "train/validation/test split",
            field="data",
        )
    if n_rows > limits.max_rows:
        raise TooLargeError(f"{n_rows:,} rows is over the limit of {limits.max_rows:,}",
                            field="data")
    if n_cols > limits.max_columns:
        raise TooLargeError(f"{n_cols:,} columns is over the limit of {limits.max_columns:,}",
                            field="data")
    if n_rows * n_cols > limits.max_cells:
        raise TooLargeError(f"{n_rows * n_cols:,} cells is over the limit of "
                            f"{limits.max_cells:,}", field="data")


def _column_kind(column: pd.Series, name: str) -> tuple[str, pd.Series]:
    """Return ("numeric" | "categorical", the column converted) or raise."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "numeric", _finite_numeric(column.astype("float64"), name)
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return "numeric", _finite_numeric(column.astype(np.float64), name)
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        return _object_kind(column, name)
    raise DtypeError(
        f"column '{name}' has type {dtype}, which cannot be used as a feature; "
        "convert it to numbers or text categories",
        field=name,
    )


def _object_kind(column: pd.Series, name: str,
                 max_levels: int | None = MAX_CATEGORIES) -> tuple[str, pd.Series]:
    values = column.dropna()
    types = Counter(_value_kind(v) for v in values)
    if not types:
        raise NonFiniteError(f"column '{name}' is entirely missing", field=name)
    bad = [kind for kind in types if kind not in ("number", "text")]
    if bad:
        raise DtypeError(f"column '{name}' holds {bad[0]} values; use numbers or text", field=name)
    if set(types) == {"number"}:
        return "numeric", _finite_numeric(column.astype(np.float64), name)
    if "number" in types:
        raise DtypeError(
            f"column '{name}' mixes text and numbers ({types['text']} text, "
            f"{types['number']} numeric values); make it all one kind",
            field=name,
        )
    missing = int(column.isna().sum())
    if missing:
        raise NonFiniteError(
            f"column '{name}' has {missing} missing values; fill or drop them first", field=name
        )
    _reject_numbers_as_text(values, name)
    n_levels = values.nunique()
    if max_levels is not None and n_levels > max_levels:
        raise DtypeError(
            f"column '{name}' is text with {n_levels} distinct values (over {max_levels}): "
            "it looks like free text or an identifier; drop it or encode it yourself",
            field=name,
        )
    return "categorical", column.astype(str)


def _reject_numbers_as_text(values: pd.Series, name: str) -> None:
    """A text column that is mostly numbers is a numeric column with stray text cells."""
    numbers = pd.to_numeric(values.astype(str), errors="coerce")
    n_text = int(numbers.isna().sum())
    if 0 < n_text <= 0.1 * len(values):
        example = values[numbers.isna()].iloc[0]
        raise DtypeError(
            f"column '{name}' mixes numbers with {n_text} text value(s) such as "
            f"{example!r}; fix or drop those cells",
            field=name,
        )


def _value_kind(value: object) -> str:
    if isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if isinstance(value, (list, tuple, dict, set, np.ndarray)):
        return "nested"
    return type(value).__name__


def _finite_numeric(column: pd.Series, name: str) -> pd.Series:
    values = column.to_numpy()
    n_nan = int(np.isnan(values).sum())
    n_inf = int(np.isinf(values).sum())
    if n_nan or n_inf:
        parts = [f"{n_nan} NaN/missing" if n_nan else "", f"{n_inf} infinite" if n_inf else ""]
        what = " and ".join(p for p in parts if p)
        raise NonFiniteError(
            f"column '{name}' has {what} values; fill or drop them first", field=name
        )
    if np.abs(values).max(initial=0.0) > FLOAT32_MAX:
        raise NonFiniteError(f"column '{name}' has values too large for float32", field=name)
    return column


def _check_constant(features: pd.DataFrame) -> list[str]:
    constant = [name for name in features.columns if features[name].nunique() <= 1]
    if len(constant) == features.shape[1]:
        raise DegenerateError(
            "every feature column is constant: there is nothing to learn from", field="data"
        )
    if not constant:
        return []
    shown = ", ".join(constant[:5]) + (", ..." if len(constant) > 5 else "")
    return [f"note: {len(constant)} constant column(s) carry no information: {shown}"]


def _check_target(target: pd.Series, raw: RawDataset) -> str:
    name = str(target.name)
    try:
        if pd.api.types.is_object_dtype(target.dtype) or pd.api.types.is_string_dtype(
                target.dtype):
            kind, _ = _object_kind(target.copy(), name, max_levels=None)
        else:
            kind, _ = _column_kind(target.copy(), name)
    except NonFiniteError as exc:
        raise NonFiniteError(str(exc).replace("column", "target", 1), field=name) from exc
    except DtypeError as exc:
        raise DtypeError(str(exc).replace("column", "target", 1), field=name) from exc
    return "bool" if pd.api.types.is_bool_dtype(target.dtype) else kind


def _resolve_task(target: pd.Series, target_kind: str, task: str | None) -> Task:
    name = str(target.name)
    if task is not None and task not in ("binary", "multiclass", "regression", "classification"):
        raise ConfigError(
            f"unknown task '{task}': use binary, multiclass, classification or regression",
            field="task",
        )
    if task == "regression":
        if target_kind != "numeric":
            raise DtypeError(
                f"target '{name}' is {target_kind}, which cannot be a regression target",
                field=name,
            )
        return _non_constant(target)
    if task is None and target_kind == "numeric" and _looks_continuous(target):
        return _non_constant(target)
    n_classes = target.nunique()
    if task == "binary" and n_classes > 2:
        raise ConfigError(f"task 'binary' needs 2 classes but target '{name}' has {n_classes}; "
                          "use --task multiclass", field="task")
    if task == "multiclass" and n_classes == 2:
        return "binary"
    return "binary" if n_classes == 2 else "multiclass"


def _non_constant(target: pd.Series) -> Task:
    if target.nunique() <= 1:
        raise DegenerateError(f"target '{target.name}' is constant: nothing to learn",
                              field=str(target.name))
    return "regression"


def _looks_continuous(target: pd.Series) -> bool:
    values = target.to_numpy(dtype=np.float64)
    if not np.all(np.equal(np.mod(values, 1), 0)):
        return True
    return target.nunique() > max(2, min(100, len(target) // 20))


def _class_labels(target: pd.Series) -> tuple[pd.Series, list[object]]:
    name = str(target.name)
    counts = target.value_counts()
    if len(counts) < 2:
        raise DegenerateError(
            f"target '{name}' has a single class ({counts.index[0]!r}): nothing to classify",
            field=name,
        )
    if len(counts) > MAX_CLASSES:
        raise DegenerateError(
            f"target '{name}' has {len(counts)} classes (over {MAX_CLASSES}); "
            "for a numeric target use --task regression",
            field=name,
        )
    rare = counts[counts < MIN_PER_CLASS]
    if len(rare):
        raise DegenerateError(
            f"class {rare.index[0]!r} of target '{name}' has {int(rare.iloc[0])} rows; each "
            f"class needs at least {MIN_PER_CLASS} for a stratified train/validation/test split",
            field=name,
        )
    classes = sorted(counts.index, key=lambda v: (str(type(v)), v))
    codes = target.map({label: i for i, label in enumerate(classes)}).astype(np.int64)
    return codes, [_json_scalar(c) for c in classes]


def _json_scalar(value: object) -> object:
    """A class label as a plain JSON value (numpy ints and floats become Python ones)."""
    return value.item() if isinstance(value, np.generic) else value
