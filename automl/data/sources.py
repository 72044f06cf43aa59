"""Read a user's dataset into a feature frame and a target series, safely.

Accepted: a pandas DataFrame with a target column name, numpy arrays ``X`` with a target
array, or a file: CSV/TSV (optionally gzipped), Parquet, or an ``.npz`` holding ``X`` and
``y``. Nothing is ever unpickled: ``.npz`` is read with ``allow_pickle=False`` and
pickle-based formats are refused by name. Size limits are checked before the bytes are
parsed (file size, the uncompressed size inside an ``.npz``, Parquet's row, cell and
byte counts from its metadata) and while parsing: CSV is read in chunks of about a
million cells, counting bytes inflated, rows, cells and bytes held, so a compression
bomb is refused within seconds with memory near the limit, never several times it.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl.errors import ConfigError, ParseError, ShapeError, TooLargeError, UnsafeFormatError

PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".joblib", ".npy", ".ckpt", ".bin")
TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None}
PARQUET_SUFFIXES = (".parquet", ".pq")
MAX_HEADER_BYTES = 1 << 20
CHUNK_CELLS = 1_000_000


@dataclass(frozen=True)
class DataLimits:
    """Upper bounds on what one submission may contain. ``max_bytes`` bounds the file,
    the bytes it inflates to, and the parsed table's size in memory."""

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


SKLEARN_DATASETS = ("digits", "breast_cancer", "wine", "iris", "diabetes")


def read_dataset(data: Any, target: Any, limits: DataLimits) -> RawDataset:
    """Read ``data`` and split off the target.

    ``target`` is a column name when ``data`` is a frame or a file, and an array when
    ``data`` is an array of features. ``"sklearn:digits"`` (or breast_cancer, wine, iris,
    diabetes) names a dataset bundled with scikit-learn, whose target column is "target".
    """
    if isinstance(data, str) and data.startswith("sklearn:"):
        return _split_target(bundled_dataset(data.removeprefix("sklearn:")), target, data)
    if isinstance(data, (str, os.PathLike)):
        return _split_target(read_file(Path(data), limits), target, source=str(data))
    if isinstance(data, pd.DataFrame):
        return _split_target(data, target, source="DataFrame")
    if isinstance(data, tuple) and len(data) == 2 and target is None:
        data, target = data
    if isinstance(data, (np.ndarray, list)):
        return _from_arrays(data, target)
    raise ConfigError(f"unsupported data of type {type(data).__name__}: give a DataFrame, a "
                      "numpy array with target=<array>, or a path to a CSV, TSV, Parquet or "
                      ".npz file", field="data")


def bundled_dataset(name: str) -> pd.DataFrame:
    """A scikit-learn bundled dataset as a frame (no download needed)."""
    if name not in SKLEARN_DATASETS:
        raise ConfigError(f"unknown bundled dataset '{name}': use sklearn:"
                          + ", sklearn:".join(SKLEARN_DATASETS), field="data")
    import sklearn.datasets

    return getattr(sklearn.datasets, f"load_{name}")(as_frame=True).frame


def read_file(path: Path, limits: DataLimits) -> pd.DataFrame:
    """Read a file by its suffix, checking its size first."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] == ".gz"
    kind = suffixes[-2] if compressed and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if kind in PICKLE_SUFFIXES:
        raise UnsafeFormatError(f"{path.name}: {kind} files can run code when loaded and are "
                                "never opened; save the data as CSV, Parquet or .npz instead",
                                field="data")
    if not path.is_file():
        raise ConfigError(f"data file not found: {path}", field="data")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise TooLargeError(f"{path.name} is {size:,} bytes, over the limit of "
                            f"{limits.max_bytes:,} bytes", field="data")
    if size == 0:
        raise ShapeError(f"{path.name} is empty", field="data")
    if kind in TEXT_SUFFIXES:
        return _read_text(path, TEXT_SUFFIXES[kind], compressed, limits)
    if kind in PARQUET_SUFFIXES and not compressed:
        return _read_parquet(path, limits)
    if kind == ".npz" and not compressed:
        return _read_npz(path, limits)
    raise ParseError(f"{path.name}: unsupported file type; use .csv, .tsv (optionally .gz), "
                     ".parquet or .npz", field="data")


class _LimitedReader(io.RawIOBase):
    """A binary stream that raises TooLargeError once more than ``limit`` bytes are read,
    so a small gzip file cannot inflate past the byte limit while it is parsed."""

    def __init__(self, inner: Any, limit: int, name: str):
        self.inner, self.limit, self.name, self.count = inner, limit, name, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.count > self.limit:
            raise TooLargeError(f"{self.name} inflates to more than {self.limit:,} bytes, the "
                                "configured limit", field="data")
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def _open_binary(path: Path, compressed: bool, limit: int) -> io.BufferedReader:
    raw = gzip.open(path, "rb") if compressed else open(path, "rb")  # noqa: SIM115
    return io.BufferedReader(_LimitedReader(raw, limit, path.name))


def _read_header(path: Path, sep: str | None, compressed: bool,
                 limits: DataLimits) -> tuple[list[str], str]:
    try:
        with _open_binary(path, compressed, limits.max_bytes) as handle:
            line = handle.readline(MAX_HEADER_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise ParseError(f"{path.name}: cannot be read ({exc})", field="data") from exc
    if len(line) > MAX_HEADER_BYTES:
        raise TooLargeError(f"{path.name}: the header row is longer than "
                            f"{MAX_HEADER_BYTES:,} bytes", field="data")
    try:
        first = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{path.name}: the header is not UTF-8 text ({exc.reason})",
                         field="data") from exc
    if not first.strip():
        raise ShapeError(f"{path.name} has no header row", field="data")
    if sep is None:
        sep = "\t" if first.count("\t") > first.count(",") else ","
    try:
        header = next(csv.reader([first], delimiter=sep))
    except csv.Error as exc:
        raise ParseError(f"{path.name}: the header row cannot be parsed ({exc})",
                         field="data") from exc
    return [h.strip() for h in header], sep


def _read_text(path: Path, sep: str | None, compressed: bool, limits: DataLimits) -> pd.DataFrame:
    header, sep = _read_header(path, sep, compressed, limits)
    _check_columns(header, limits, source=path.name)
    try:
        with _open_binary(path, compressed, limits.max_bytes) as stream, \
                warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            chunks = pd.read_csv(stream, sep=sep, encoding="utf-8-sig", index_col=False,
                                 skipinitialspace=True, chunksize=_chunk_rows(len(header), limits))
            frame = _gather_chunks(chunks, limits, path.name)
    except pd.errors.ParserWarning as exc:
        raise ParseError(f"{path.name}: some rows have more fields than the header",
                         field="data") from exc
    except UnicodeDecodeError as exc:
        raise ParseError(f"{path.name}: not UTF-8 text ({exc.reason})", field="data") from exc
    except pd.errors.EmptyDataError as exc:
        raise ShapeError(f"{path.name} has no data", field="data") from exc
    except pd.errors.ParserError as exc:
        raise ParseError(f"{path.name}: malformed rows ({exc})".strip(), field="data") from exc
    except (OSError, EOFError, ValueError, csv.Error) as exc:
        raise ParseError(f"{path.name}: cannot be parsed ({exc})", field="data") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _chunk_rows(n_columns: int, limits: DataLimits) -> int:
    """Rows per parsed chunk: about CHUNK_CELLS cells, so a chunk stays a few MB, and no
    more than one past the row limit, so rows beyond it are never parsed."""
    return min(max(1_000, CHUNK_CELLS // max(1, n_columns)), limits.max_rows + 1)


def _gather_chunks(chunks: Any, limits: DataLimits, source: str) -> pd.DataFrame:
    """Concatenate parsed chunks, counting rows, cells and bytes held as they come, so an
    input over a limit is refused with memory near that limit, never several times it."""
    parts: list[pd.DataFrame] = []
    n_rows = n_bytes = 0
    for chunk in chunks:
        n_rows += len(chunk)
        _check_rows(n_rows, limits, source)
        if n_rows * chunk.shape[1] > limits.max_cells:
            raise TooLargeError(f"{source} has more than {limits.max_cells:,} cells (the "
                                "configured limit)", field="data")
        n_bytes += int(chunk.memory_usage(deep=True, index=False).sum())
        if n_bytes > limits.max_bytes:
            raise TooLargeError(f"{source} takes more than {limits.max_bytes:,} bytes in "
                                "memory once parsed (the configured limit)", field="data")
        parts.append(chunk)
    if not parts:
        raise ShapeError(f"{source} has no rows", field="data")
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _read_parquet(path: Path, limits: DataLimits) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:
        raise ParseError(f"{path.name}: not a readable Parquet file ({exc})",
                         field="data") from exc
    meta = parquet.metadata
    _check_rows(meta.num_rows, limits, source=path.name)
    _check_columns([str(n) for n in parquet.schema_arrow.names], limits, path.name)
    if meta.num_rows * meta.num_columns > limits.max_cells:
        raise TooLargeError(f"{path.name} has {meta.num_rows * meta.num_columns:,} cells, over "
                            f"the limit of {limits.max_cells:,}", field="data")
    inflated = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if inflated > limits.max_bytes:
        raise TooLargeError(f"{path.name} inflates to {inflated:,} bytes, over the limit of "
                            f"{limits.max_bytes:,} bytes", field="data")
    return pd.read_parquet(path)


def _read_npz(path: Path, limits: DataLimits) -> pd.DataFrame:
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            if "X.npy" not in members or "y.npy" not in members:
                raise ShapeError(f"{path.name} must hold arrays named 'X' and 'y'", field="data")
            declared = sum(_npy_bytes(archive, members[m], path.name) for m in ("X.npy", "y.npy"))
    except zipfile.BadZipFile as exc:
        raise ParseError(f"{path.name}: not a valid .npz archive", field="data") from exc
    if declared > limits.max_bytes:
        raise TooLargeError(f"{path.name} inflates to {declared:,} bytes of arrays, over the limit "
                            f"of {limits.max_bytes:,} bytes", field="data")
    try:
        with np.load(path, allow_pickle=False) as archive:
            x, y = archive["X"], archive["y"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ParseError(f"{path.name}: an array cannot be read ({exc})", field="data") from exc
    raw = _from_arrays(x, y)
    return raw.features.assign(y=raw.target.to_numpy())


def _npy_bytes(archive: zipfile.ZipFile, member: zipfile.ZipInfo, name: str) -> int:
    """Size an ``.npy`` member from its header alone; refuse object (pickled) arrays."""
    try:
        with archive.open(member) as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(handle)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise ParseError(f"{name}: {member.filename} is not .npy data ({exc})",
                         field="data") from exc
    if dtype.hasobject:
        raise UnsafeFormatError(f"{name}: {member.filename} holds Python objects, which would "
                                "need unpickling: store plain numeric or string arrays",
                                field="data")
    return int(np.prod(shape, dtype=np.float64) * dtype.itemsize)


def _from_arrays(x: Any, y: Any) -> RawDataset:
    if y is None:
        raise ConfigError("numpy features need target=<array of labels or values>", field="target")
    try:
        x_arr, y_arr = np.asarray(x), np.asarray(y)
    except ValueError as exc:
        raise ShapeError(f"X is ragged: every row must have the same length ({exc})",
                         field="X") from exc
    if x_arr.dtype == object and x_arr.ndim == 1:
        raise ShapeError("X is ragged: every row must have the same length", field="X")
    if x_arr.ndim != 2:
        raise ShapeError(f"X must be 2-D (rows, features); got shape {x_arr.shape}", field="X")
    if y_arr.ndim == 2 and y_arr.shape[1] == 1:
        y_arr = y_arr.reshape(-1)
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
        raise TooLargeError(f"{source} has {len(header):,} columns, over the limit of "
                            f"{limits.max_columns:,}", field="data")
    blank = [i for i, name in enumerate(header) if not name]
    if blank:
        raise ShapeError(f"{source}: column {blank[0] + 1} has an empty name", field="data")
    duplicated = sorted({n for n in header if header.count(n) > 1})
    if duplicated:
        raise ShapeError(f"{source}: duplicate column names: {', '.join(duplicated)}",
                         field=duplicated[0])


def _check_rows(n_rows: int, limits: DataLimits, source: str) -> None:
    if n_rows > limits.max_rows:
        raise TooLargeError(f"{source} has more than {limits.max_rows:,} rows (the configured "
                            "limit)", field="data")
