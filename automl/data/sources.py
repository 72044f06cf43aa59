"""Read a user's dataset into a feature frame and a target series, safely.

Accepted: a pandas DataFrame with a target column name, numpy arrays ``X`` with a target
array, or a file: CSV/TSV (optionally gzipped), Parquet, or an ``.npz`` holding ``X`` and
``y``. Nothing is ever unpickled: ``.npz`` is read with ``allow_pickle=False`` and
pickle-based formats are refused by name. Size limits are checked before the bytes are
parsed (file size, the uncompressed size inside an ``.npz``, Parquet row counts) and
while parsing (CSV rows are read up to the limit plus one).
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl.errors import (
    ConfigError,
    ParseError,
    ShapeError,
    TooLargeError,
    UnsafeFormatError,
)

PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".joblib", ".npy", ".ckpt", ".bin")
TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None}
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class DataLimits:
    """Upper bounds on what one submission may contain."""

    max_bytes: int = 1 << 30
    max_rows: int = 5_000_000
    max_columns: int = 10_000
    max_cells: int = 500_000_000


@dataclass
class RawDataset:
    """Features and target as read, before any validation."""

    features: pd.DataFrame
    target: pd.Series
    source: str


def read_dataset(data: Any, target: Any, limits: DataLimits) -> RawDataset:
    """Read ``data`` and split off the target.

    ``target`` is a column name when ``data`` is a frame or a file, and an array when
    ``data`` is an array of features.
    """
    if isinstance(data, (str, os.PathLike)):
        frame = read_file(Path(data), limits)
        return _split_target(frame, target, source=str(data))
    if isinstance(data, pd.DataFrame):
        return _split_target(data, target, source="DataFrame")
    if isinstance(data, tuple) and len(data) == 2 and target is None:
        data, target = data
    if isinstance(data, (np.ndarray, list)):
        return _from_arrays(data, target)
    raise ConfigError(
        f"unsupported data of type {type(data).__name__}: give a DataFrame, a numpy array "
        "with target=<array>, or a path to a CSV, TSV, Parquet or .npz file",
        field="data",
    )


def read_file(path: Path, limits: DataLimits) -> pd.DataFrame:
    """Read a file by its suffix, checking its size first."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    kind = suffixes[-2] if compressed and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if kind in PICKLE_SUFFIXES:
        raise UnsafeFormatError(
            f"{path.name}: {kind} files can run code when loaded and are never opened; "
            "save the data as CSV, Parquet or .npz instead",
            field="data",
        )
    if not path.is_file():
        raise ConfigError(f"data file not found: {path}", field="data")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise TooLargeError(
            f"{path.name} is {size:,} bytes, over the limit of {limits.max_bytes:,} bytes",
            field="data",
        )
    if size == 0:
        raise ShapeError(f"{path.name} is empty", field="data")
    if kind in TEXT_SUFFIXES:
        return _read_text(path, TEXT_SUFFIXES[kind], compressed, limits)
    if kind in PARQUET_SUFFIXES and not compressed:
        return _read_parquet(path, limits)
    if kind == ".npz" and not compressed:
        return _read_npz(path, limits)
    raise ParseError(
        f"{path.name}: unsupported file type; use .csv, .tsv (optionally .gz), .parquet or .npz",
        field="data",
    )


def _open_text(path: Path, compressed: bool) -> io.TextIOBase:
    raw = gzip.open(path, "rb") if compressed else open(path, "rb")  # noqa: SIM115
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def _read_header(path: Path, sep: str | None, compressed: bool) -> tuple[list[str], str]:
    try:
        with _open_text(path, compressed) as handle:
            first = handle.readline()
    except UnicodeDecodeError as exc:
        raise ParseError(f"{path.name}: the header is not UTF-8 text ({exc.reason})") from exc
    except (OSError, EOFError) as exc:
        raise ParseError(f"{path.name}: cannot be read ({exc})") from exc
    if not first.strip():
        raise ShapeError(f"{path.name} has no header row", field="data")
    if sep is None:
        sep = "\t" if first.count("\t") > first.count(",") else ","
    header = next(csv.reader([first], delimiter=sep))
    return [h.strip() for h in header], sep


def _read_text(path: Path, sep: str | None, compressed: bool, limits: DataLimits) -> pd.DataFrame:
    header, sep = _read_header(path, sep, compressed)
    _check_columns(header, limits, source=path.name)
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            nrows=limits.max_rows + 1,
            encoding="utf-8",
            compression="gzip" if compressed else None,
            skipinitialspace=True,
        )
    except UnicodeDecodeError as exc:
        raise ParseError(f"{path.name}: not UTF-8 text ({exc.reason})", field="data") from exc
    except pd.errors.EmptyDataError as exc:
        raise ShapeError(f"{path.name} has no data", field="data") from exc
    except pd.errors.ParserError as exc:
        raise ParseError(f"{path.name}: malformed rows ({exc})".strip(), field="data") from exc
    except (OSError, EOFError, ValueError) as exc:
        raise ParseError(f"{path.name}: cannot be parsed ({exc})", field="data") from exc
    _check_rows(len(frame), limits, source=path.name)
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _read_parquet(path: Path, limits: DataLimits) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:
        raise ParseError(f"{path.name}: not a readable Parquet file ({exc})") from exc
    _check_rows(meta.num_rows, limits, source=path.name)
    _check_columns([meta.schema.column(i).name for i in range(meta.num_columns)], limits, path.name)
    return pd.read_parquet(path)


def _read_npz(path: Path, limits: DataLimits) -> pd.DataFrame:
    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise ParseError(f"{path.name}: not a valid .npz archive") from exc
    if inflated > limits.max_bytes:
        raise TooLargeError(
            f"{path.name} inflates to {inflated:,} bytes, over the limit of "
            f"{limits.max_bytes:,} bytes",
            field="data",
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "X" not in archive or "y" not in archive:
                raise ShapeError(f"{path.name} must hold arrays named 'X' and 'y'", field="data")
            x, y = archive["X"], archive["y"]
    except ValueError as exc:
        raise UnsafeFormatError(
            f"{path.name} holds Python objects, which would need unpickling: store plain "
            "numeric or string arrays",
            field="data",
        ) from exc
    raw = _from_arrays(x, y)
    return raw.features.assign(target=raw.target.to_numpy())


def _from_arrays(x: Any, y: Any) -> RawDataset:
    if y is None:
        raise ConfigError("numpy features need target=<array of labels or values>", field="target")
    x_arr, y_arr = np.asarray(x), np.asarray(y)
    if x_arr.dtype == object and x_arr.ndim == 1:
        raise ShapeError("X is ragged: every row must have the same length", field="X")
    if x_arr.ndim != 2:
        raise ShapeError(f"X must be 2-D (rows, features); got shape {x_arr.shape}", field="X")
    if y_arr.ndim != 1:
        y_arr = y_arr.reshape(-1) if y_arr.ndim == 2 and y_arr.shape[1] == 1 else y_arr
    if y_arr.ndim != 1:
        raise ShapeError(f"y must be 1-D; got shape {y_arr.shape}", field="y")
    if len(x_arr) != len(y_arr):
        raise ShapeError(f"X has {len(x_arr)} rows but y has {len(y_arr)}", field="y")
    columns = [f"x{i}" for i in range(x_arr.shape[1])]
    return RawDataset(pd.DataFrame(x_arr, columns=columns), pd.Series(y_arr, name="y"), "arrays")


def _split_target(frame: pd.DataFrame, target: Any, source: str) -> RawDataset:
    if not isinstance(target, str) or not target:
        raise ConfigError("give the target column by name (--target COLUMN)", field="target")
    names = [str(c) for c in frame.columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ShapeError(f"duplicate column names: {', '.join(duplicated)}", field=duplicated[0])
    if target not in names:
        shown = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
        raise ConfigError(f"target column '{target}' not found; columns are: {shown}", field=target)
    frame = frame.copy()
    frame.columns = names
    return RawDataset(frame.drop(columns=[target]), frame[target], source)


def _check_columns(header: list[str], limits: DataLimits, source: str) -> None:
    if len(header) > limits.max_columns:
        raise TooLargeError(
            f"{source} has {len(header):,} columns, over the limit of {limits.max_columns:,}",
            field="data",
        )
    blank = [i for i, name in enumerate(header) if not name]
    if blank:
        raise ShapeError(f"{source}: column {blank[0] + 1} has an empty name", field="data")
    duplicated = sorted({n for n in header if header.count(n) > 1})
    if duplicated:
        raise ShapeError(f"{source}: duplicate column names: {', '.join(duplicated)}",
                         field=duplicated[0])


def _check_rows(n_rows: int, limits: DataLimits, source: str) -> None:
    if n_rows > limits.max_rows:
        raise TooLargeError(
            f"{source} has more than {limits.max_rows:,} rows (the configured limit)",
            field="data",
        )
