"""Validate a raw dataset and decide what each column is.

Every check raises one typed error naming the column and what is wrong, before anything
is trained or stored. What each column is (numeric, categorical, date, identifier, or
dropped for being missing) is decided in :mod:`automl.data.columns`; this module applies
those verdicts to the table, handles the target (rows whose target is missing are
dropped, with a note) and infers the task. Every change made to the table is written as
one plain-words note in :attr:`CheckedDataset.warnings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from automl.configs import Task
from automl.data.columns import (
    ColumnVerdict,
    classify_column,
    clean_text,
    kept_identifier,
    numeric_values,
    value_kind,
)
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
MAX_TARGET_MISSING_SHARE = 0.5
MAX_NAMES_IN_NOTE = 30


@dataclass
class CheckedDataset:
    """A dataset that passed every check, with each column's kind decided.

    ``features`` holds the columns the model uses (numeric as float64 with NaN where
    missing, categorical as stripped text with None where missing, dates as UTC
    timestamps), and only the rows whose target is known."""

    features: pd.DataFrame
    target: pd.Series
    task: Task
    numeric_columns: list[str]
    categorical_columns: list[str]
    date_columns: list[str] = field(default_factory=list)
    classes: list[object] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return len(self.features)


def check_dataset(raw: RawDataset, task: str | None, limits: DataLimits, *,
                  keep_identifiers: bool = False) -> CheckedDataset:
    """Run every check on ``raw`` and infer (or verify) the task.

    ``keep_identifiers`` keeps columns that look like row identifiers (a distinct whole
    number or text in every row) as features instead of dropping them."""
    features, target = raw.features, raw.target
    _check_shape(features, limits)
    target_kind, target = _check_target(target)
    features, target, notes = _drop_missing_target(features, target)
    verdicts = {str(name): classify_column(features[name], str(name))
                for name in features.columns}
    kept, column_notes = _apply_verdicts(verdicts, keep_identifiers)
    features = pd.DataFrame({name: v.values for name, v in kept.items()}, index=features.index)
    kinds = {name: v.kind for name, v in kept.items()}
    warnings = notes + column_notes + _check_constant(features)
    resolved = _resolve_task(target, target_kind, task)
    checked = CheckedDataset(
        features.reset_index(drop=True), target.reset_index(drop=True), resolved,
        [n for n, k in kinds.items() if k == "numeric"],
        [n for n, k in kinds.items() if k == "categorical"],
        [n for n, k in kinds.items() if k == "date"], warnings=warnings)
    if resolved == "regression":
        checked.target = checked.target.astype(np.float64)
    else:
        checked.target, checked.classes = _class_labels(checked.target)
    return checked


def _drop_missing_target(features: pd.DataFrame, target: pd.Series
                         ) -> tuple[pd.DataFrame, pd.Series, list[str]]:
    missing = target.isna().to_numpy()
    n_missing = int(missing.sum())
    if not n_missing:
        return features, target, []
    name = str(target.name)
    if n_missing > MAX_TARGET_MISSING_SHARE * len(target):
        raise NonFiniteError(
            f"target '{name}' is missing in {n_missing:,} of {len(target):,} rows: too few "
            "labelled rows to learn from", field=name)
    keep = ~missing
    if keep.sum() < MIN_ROWS:
        raise ShapeError(f"only {int(keep.sum())} rows have a value for target '{name}'; at "
                         f"least {MIN_ROWS} are needed", field=name)
    note = (f"note: dropped {n_missing:,} row(s) whose target '{name}' is missing "
            f"({n_missing / len(target):.1%} of the rows)")
    kept = target[keep]
    if kept.dtype.kind == "f" and np.all(np.mod(kept.to_numpy(), 1) == 0):
        kept = kept.astype(np.int64)  # whole-number labels were floats only for the NaNs
    return features[keep], kept, [note]


def _apply_verdicts(verdicts: dict[str, ColumnVerdict], keep_identifiers: bool
                    ) -> tuple[dict[str, ColumnVerdict], list[str]]:
    """The columns the model uses, and a note per kind of change made to the others."""
    dropped = {n: v.reason for n, v in verdicts.items() if v.kind == "dropped"}
    identifiers = {n: v.reason for n, v in verdicts.items() if v.kind == "identifier"}
    kept = {n: kept_identifier(v, n) if v.kind == "identifier" else v
            for n, v in verdicts.items()
            if v.kind != "dropped" and (keep_identifiers or v.kind != "identifier")}
    if not kept:
        raise DegenerateError("no column is left to learn from: "
                              + named_columns(dropped | identifiers), field="data")
    identifiers_done = ("kept column(s) that look like row identifiers, as asked: "
                        if keep_identifiers else "dropped column(s) that look like row "
                        "identifiers (keep them with keep_identifiers / --keep-identifiers): ")
    stripped = {n: v.reason for n, v in kept.items() if v.kind == "categorical" and v.reason}
    dates = {n: "" for n, v in kept.items() if v.kind == "date"}
    notes = [("dropped column(s) that are (nearly) all missing: ", dropped),
             (identifiers_done, identifiers),
             ("surrounding spaces stripped from text, so that 'a ' and 'a' are one category: ",
              stripped),
             ("date column(s) become year, month, day of week, day of year and a timestamp: ",
              dates)]
    return kept, ["note: " + text + named_columns(columns) for text, columns in notes if columns]


def named_columns(columns: dict[str, str]) -> str:
    """Column names for a note: ``'a' (why), 'b' (why)``, at most MAX_NAMES_IN_NOTE of
    them, then how many more."""
    shown = [f"'{n}' ({why})" if why else f"'{n}'"
             for n, why in list(columns.items())[:MAX_NAMES_IN_NOTE]]
    more = len(columns) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _check_shape(features: pd.DataFrame, limits: DataLimits) -> None:
    n_rows, n_cols = features.shape
    if n_cols == 0:
        raise ShapeError("the data has no feature columns besides the target", field="data")
    if n_rows == 0:
        raise ShapeError("the data has no rows", field="data")
    if n_rows < MIN_ROWS:
        raise ShapeError(f"the data has {n_rows} rows; at least {MIN_ROWS} are needed for a "
                         "train/validation/test split", field="data")
    if n_rows > limits.max_rows:
        raise TooLargeError(f"{n_rows:,} rows is over the limit of {limits.max_rows:,}",
                            field="data")
    if n_cols > limits.max_columns:
        raise TooLargeError(f"{n_cols:,} columns is over the limit of {limits.max_columns:,}",
                            field="data")
    if n_rows * n_cols > limits.max_cells:
        raise TooLargeError(f"{n_rows * n_cols:,} cells is over the limit of "
                            f"{limits.max_cells:,}", field="data")


def _check_constant(features: pd.DataFrame) -> list[str]:
    constant = [name for name in features.columns if features[name].nunique(dropna=False) <= 1]
    if len(constant) == features.shape[1]:
        raise DegenerateError("every feature column is constant: there is nothing to learn "
                              "from", field="data")
    if not constant:
        return []
    shown = ", ".join(constant[:5]) + (", ..." if len(constant) > 5 else "")
    return [f"note: {len(constant)} constant column(s) carry no information: {shown}"]


def _check_target(target: pd.Series) -> tuple[str, pd.Series]:
    """The target's kind (``numeric``, ``bool`` or ``text``) and its values, text stripped
    of surrounding whitespace. Missing values are allowed here (their rows are dropped);
    infinite values, dates, bytes, nested values and mixtures are refused by name."""
    name = str(target.name)
    dtype = target.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool", target
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return "numeric", _numeric_target(target, name)
    if not (isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype)):
        raise DtypeError(f"target '{name}' has type {dtype}, which cannot be a target; use "
                         "class labels or numbers", field=name)
    kinds = {value_kind(v) for v in target.dropna()}
    bad = sorted(kinds - {"number", "text"})
    if bad:
        raise DtypeError(f"target '{name}' holds {bad[0]} values; use class labels or "
                         "numbers", field=name)
    if kinds == {"number"}:
        return "numeric", _numeric_target(target, name)
    text = clean_text(target)
    numbers = pd.to_numeric(text.dropna(), errors="coerce")
    n_text = int(numbers.isna().sum())
    if kinds == {"number", "text"} or 0 < n_text < len(numbers):
        example = text.dropna()[numbers.isna()].iloc[0] if n_text else "text"
        raise DtypeError(f"target '{name}' mixes numbers and text (such as {example!r}): "
                         "make it all class labels or all numbers", field=name)
    return "text", text


def _numeric_target(target: pd.Series, name: str) -> pd.Series:
    try:
        values = numeric_values(target, name)
    except (NonFiniteError, DtypeError) as exc:
        raise type(exc)(exc.message.replace("column", "target", 1), field=name) from exc
    return target if target.dtype.kind in "iu" else values


def _resolve_task(target: pd.Series, target_kind: str, task: str | None) -> Task:
    name = str(target.name)
    if task is not None and task not in ("binary", "multiclass", "regression", "classification"):
        raise ConfigError(f"unknown task '{task}': use binary, multiclass, classification or "
                          "regression", field="task")
    if task == "regression":
        if target_kind != "numeric":
            raise DtypeError(f"target '{name}' is {target_kind}, which cannot be a regression "
                             "target", field=name)
        return _non_constant(target)
    if task is None and target_kind == "numeric" and _looks_continuous(target):
        return _non_constant(target)
    n_classes = target.nunique()
    if task == "binary" and n_classes > 2:
        raise ConfigError(f"task 'binary' needs 2 classes but target '{name}' has {n_classes}; "
                          "use --task multiclass", field="task")
    return "binary" if n_classes == 2 else "multiclass"  # task "multiclass" too


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
        raise DegenerateError(f"target '{name}' has a single class ({counts.index[0]!r}): "
                              "nothing to classify", field=name)
    if len(counts) > MAX_CLASSES:
        raise DegenerateError(f"target '{name}' has {len(counts)} classes (over {MAX_CLASSES}); "
                              "for a numeric target use --task regression", field=name)
    rare = counts[counts < MIN_PER_CLASS]
    if len(rare):
        raise DegenerateError(f"class {rare.index[0]!r} of target '{name}' has "
                              f"{int(rare.iloc[0])} rows; each class needs at least "
                              f"{MIN_PER_CLASS} for a stratified train/validation/test split",
                              field=name)
    classes = sorted(counts.index, key=lambda v: (str(type(v)), v))
    codes = target.map({label: i for i, label in enumerate(classes)}).astype(np.int64)
    # the labels as plain JSON values: numpy ints and floats become Python ones
    return codes, [c.item() if isinstance(c, np.generic) else c for c in classes]
