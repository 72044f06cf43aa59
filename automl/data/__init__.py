"""Dataset ingestion: read safely, validate, split and encode.

``load_dataset`` is the one entry point: it raises a typed :mod:`automl.errors` error
naming the column for any bad input, before anything is trained or stored.
"""

from __future__ import annotations

from typing import Any

from automl.data.checks import CheckedDataset, check_dataset
from automl.data.preprocess import PreparedData, Preprocessor, prepare
from automl.data.sources import DataLimits, RawDataset, read_dataset
from automl.errors import ConfigError

__all__ = [
    "CheckedDataset",
    "DataLimits",
    "PreparedData",
    "Preprocessor",
    "RawDataset",
    "load_dataset",
]


def load_dataset(
    data: Any,
    target: Any = None,
    *,
    task: str | None = None,
    seed: int = 0,
    limits: DataLimits | None = None,
    keep_identifiers: bool = False,
) -> PreparedData:
    """Read, validate, split and encode a dataset.

    Args:
        data: a DataFrame, a path (CSV/TSV, gzipped or not, Parquet, ``.npz``), or a 2-D
            numpy array of features.
        target: the target column's name, or an array of targets when ``data`` is an array.
        task: ``binary``, ``multiclass``, ``classification`` or ``regression``; inferred
            from the target when omitted.
        seed: seeds the train/validation/test split.
        limits: size limits; :class:`DataLimits` defaults when omitted.
        keep_identifiers: keep columns that look like row identifiers (a distinct whole
            number or text in every row) instead of dropping them with a note.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a whole number >= 0, not {seed!r}", field="seed")
    limits = limits or DataLimits()
    raw = read_dataset(data, target, limits)
    return prepare(check_dataset(raw, task, limits, keep_identifiers=keep_identifiers), seed)
