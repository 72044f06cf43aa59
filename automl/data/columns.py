"""What each column of a table is, and how dates and text become model inputs.

A column is one of:

* ``numeric``: numbers or booleans; missing cells are allowed (imputed later), infinite
  ones are refused by name;
* ``categorical``: text with a bounded number of distinct levels, stripped of surrounding
  whitespace; a missing cell is a level of its own (:data:`MISSING_LEVEL`);
* ``date``: a datetime dtype, Python dates, or ISO 8601 text (``2024-03-01``,
  ``2024-03-01T12:30:00Z``); it becomes the numeric parts in :data:`DATE_PARTS`;
* ``identifier``: whole numbers or one-word text with a distinct value in every row (a
  row id, a counter): dropped unless the user keeps identifiers (text with a distinct
  value in nearly every row that is not one word is free text, and refused);
* ``dropped``: missing in all or nearly all rows.

Anything else (bytes, nested values, text mixed with numbers, free text) is refused with
one typed error naming the column. The same date and text functions serve training and
prediction, so a model sees its inputs the same way in both.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from automl.errors import DtypeError, NonFiniteError

MAX_CATEGORIES = 200
MAX_MISSING_SHARE = 0.95  # a column missing in more of its rows than this is dropped
NEAR_UNIQUE_SHARE = 0.9  # text distinct in more of its rows than this is free text
MIN_ROWS_FOR_UNIQUE = 20  # below this, "unique per row" says nothing
MISSING_LEVEL = "(missing)"
DATE_PARTS = ("year", "month", "day_of_week", "day_of_year", "timestamp")
FLOAT32_MAX = float(np.finfo(np.float32).max)
_ISO_DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}"
                       r"([T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$")
_EPOCH = pd.Timestamp(0, tz="UTC")


@dataclass
class ColumnVerdict:
    """What a column is (``kind``), the column converted for that kind, and a reason
    (for a dropped column or an identifier)."""

    kind: str
    values: pd.Series
    reason: str = ""


def classify_column(column: pd.Series, name: str) -> ColumnVerdict:
    """Decide what ``column`` is; raise a typed error naming it if it cannot be used."""
    n_missing = int(column.isna().sum())
    if n_missing == len(column):
        return ColumnVerdict("dropped", column, "entirely missing")
    if n_missing > MAX_MISSING_SHARE * len(column):
        return ColumnVerdict("dropped", column,
                             f"missing in {n_missing:,} of {len(column):,} rows")
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return ColumnVerdict("numeric", numeric_values(column, name))
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return ColumnVerdict("date", as_dates(column, name))
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return _numeric_or_identifier(numeric_values(column, name))
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        return _classify_objects(column, name)
    raise DtypeError(f"column '{name}' has type {dtype}, which cannot be used as a feature; "
                     "convert it to numbers, text categories or dates", field=name)


def _classify_objects(column: pd.Series, name: str) -> ColumnVerdict:
    values = column.dropna()
    kinds = Counter(value_kind(v) for v in values)
    bad = [kind for kind in kinds if kind not in ("number", "text", "date")]
    if bad:
        raise DtypeError(f"column '{name}' holds {bad[0]} values; use numbers, text or dates",
                         field=name)
    if set(kinds) == {"number"}:
        return _numeric_or_identifier(numeric_values(column, name))
    if set(kinds) == {"date"}:
        return ColumnVerdict("date", as_dates(column, name))
    if len(kinds) > 1:
        raise DtypeError(f"column '{name}' mixes {_kinds_text(kinds)}; make it all one kind",
                         field=name)
    text = clean_text(column)
    if _looks_like_iso_dates(text.dropna()):
        return ColumnVerdict("date", as_dates(text, name))
    _reject_numbers_as_text(text.dropna(), name)
    verdict = _categorical_or_identifier(text, name)
    n_stripped = int((text.fillna("") != column.astype(object).where(column.notna(), "")).sum())
    if verdict.kind == "categorical" and n_stripped:
        verdict.reason = f"{n_stripped:,} cells"
    return verdict


def _kinds_text(kinds: Counter[str]) -> str:
    """``text and numbers (3 text, 5 numeric values)``."""
    words = {"text": ("text", "text"), "number": ("numbers", "numeric"),
             "date": ("dates", "date")}
    order = [kind for kind in words if kind in kinds]
    counts = ", ".join(f"{kinds[kind]} {words[kind][1]}" for kind in order)
    return f"{' and '.join(words[kind][0] for kind in order)} ({counts} values)"


def value_kind(value: object) -> str:
    """``number``, ``text``, ``date``, ``bytes``, ``nested`` or the value's type name."""
    if isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (dt.date, np.datetime64)):  # datetime and pd.Timestamp too
        return "date"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if isinstance(value, (list, tuple, dict, set, np.ndarray)):
        return "nested"
    return type(value).__name__


def numeric_values(column: pd.Series, name: str) -> pd.Series:
    """``column`` as float64 with missing cells as NaN; infinite or float32-overflowing
    values are refused by name."""
    dtype = column.dtype
    try:
        if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
            array = column.to_numpy(dtype=np.float64)
        elif pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            array = column.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            objects = column.astype(object).where(column.notna(), None)
            array = pd.to_numeric(objects, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise DtypeError(f"column '{name}' must hold numbers ({exc})", field=name) from exc
    n_inf = int(np.isinf(array).sum())
    if n_inf:
        raise NonFiniteError(f"column '{name}' has {n_inf} infinite values; replace them "
                             "with numbers or leave the cells empty", field=name)
    if np.nanmax(np.abs(array), initial=0.0) > FLOAT32_MAX:
        raise NonFiniteError(f"column '{name}' has values too large for float32", field=name)
    return pd.Series(array, index=column.index, name=column.name)


def _numeric_or_identifier(values: pd.Series) -> ColumnVerdict:
    array = values.to_numpy()
    head = array[:1000]
    if (len(array) >= MIN_ROWS_FOR_UNIQUE and len(np.unique(head)) == len(head)
            and not np.isnan(array).any() and np.all(np.mod(array, 1) == 0)
            and len(np.unique(array)) == len(array)):
        return ColumnVerdict("identifier", values, "whole numbers, a different one in every row")
    return ColumnVerdict("numeric", values)


def kept_identifier(verdict: ColumnVerdict, name: str) -> ColumnVerdict:
    """An identifier the user keeps: numbers stay numeric; text becomes categorical if it
    has few enough levels to one-hot encode, and is refused by name otherwise."""
    if pd.api.types.is_float_dtype(verdict.values.dtype):
        return ColumnVerdict("numeric", verdict.values)
    n_levels = verdict.values.nunique()
    if n_levels > MAX_CATEGORIES:
        raise DtypeError(f"column '{name}' is kept as asked, but as text with {n_levels} "
                         f"distinct values (over {MAX_CATEGORIES}) it cannot be one-hot "
                         "encoded; drop it or turn it into numbers yourself", field=name)
    return ColumnVerdict("categorical", verdict.values)


def _categorical_or_identifier(text: pd.Series, name: str) -> ColumnVerdict:
    present = text.dropna()
    n_levels = present.nunique()
    if len(present) >= MIN_ROWS_FOR_UNIQUE:
        words = present.map(lambda v: len(v.split()) > 1)
        if n_levels == len(text) and words.mean() < 1 - NEAR_UNIQUE_SHARE:
            return ColumnVerdict("identifier", text, "one word, a different one in every row")
        if n_levels > NEAR_UNIQUE_SHARE * len(present):
            raise DtypeError(
                f"column '{name}' is text with a distinct value in {n_levels:,} of its "
                f"{len(present):,} rows: free text, which one-hot encoding cannot learn "
                "from; drop it or turn it into numbers yourself", field=name)
    if n_levels > MAX_CATEGORIES:
        raise DtypeError(f"column '{name}' is text with {n_levels} distinct values (over "
                         f"{MAX_CATEGORIES}): it looks like free text or an identifier; drop it "
                         "or encode it yourself", field=name)
    return ColumnVerdict("categorical", text)


def _reject_numbers_as_text(values: pd.Series, name: str) -> None:
    """A text column that is mostly numbers is a numeric column with stray text cells."""
    numbers = pd.to_numeric(values, errors="coerce")
    n_text = int(numbers.isna().sum())
    if 0 < n_text <= 0.1 * len(values):
        example = values[numbers.isna()].iloc[0]
        raise DtypeError(f"column '{name}' mixes numbers with {n_text} text value(s) such as "
                         f"{example!r}; fix or drop those cells", field=name)


def clean_text(column: pd.Series) -> pd.Series:
    """Text cells stripped of surrounding whitespace, missing cells kept missing (an
    all-blank cell counts as missing)."""
    text = column.astype(object).where(column.notna(), None)
    stripped = text.map(lambda v: v.strip() if isinstance(v, str) else v)
    return stripped.where(stripped != "", None)


def category_codes(column: pd.Series) -> np.ndarray:
    """A categorical column as the strings its levels are named by, missing cells as
    :data:`MISSING_LEVEL`, for one-hot encoding."""
    text = clean_text(column).map(lambda v: v if isinstance(v, str) or v is None else str(v))
    return text.fillna(MISSING_LEVEL).to_numpy(dtype=object)


def _looks_like_iso_dates(values: pd.Series) -> bool:
    if values.empty:
        return False
    sample = values.iloc[:200]
    return bool(sample.map(lambda v: bool(_ISO_DATE.match(v))).all()
                and values.map(lambda v: bool(_ISO_DATE.match(v))).all())


def as_dates(column: pd.Series, name: str) -> pd.Series:
    """``column`` as UTC timestamps (naive times are taken as UTC); missing stays NaT."""
    try:
        if pd.api.types.is_datetime64_any_dtype(column.dtype):
            dates = pd.to_datetime(column, utc=True)
        else:
            objects = column.astype(object).where(column.notna(), None)
            text = objects.map(lambda v: v.strip() if isinstance(v, str) else v)
            if text.map(lambda v: isinstance(v, str)).any():
                dates = pd.to_datetime(text, format="ISO8601", utc=True)
            else:
                dates = pd.to_datetime(text, utc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DtypeError(f"column '{name}' holds dates that cannot be read ({exc}); use "
                         "ISO 8601 text such as 2024-03-01 or 2024-03-01T12:30:00",
                         field=name) from exc
    return pd.Series(dates.to_numpy(), index=column.index, name=column.name,
                     dtype="datetime64[ns, UTC]")


def date_part_names(column: str) -> list[str]:
    """The numeric columns a date column becomes, e.g. ``signup.year``."""
    return [f"{column}.{part}" for part in DATE_PARTS]


def date_parts(column: pd.Series, name: str) -> np.ndarray:
    """A date column as a float64 matrix of :data:`DATE_PARTS` (NaN where missing)."""
    dates = as_dates(column, name)
    parts = [dates.dt.year, dates.dt.month, dates.dt.dayofweek, dates.dt.dayofyear,
             (dates - _EPOCH).dt.total_seconds()]
    return np.stack([p.to_numpy(dtype=np.float64, na_value=np.nan) for p in parts], axis=1)
