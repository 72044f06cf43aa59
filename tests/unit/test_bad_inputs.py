"""Bad-input battery (B1-B7 of RELIABILITY.md §4.3), run against the real validation code.

Every case builds one malformed submission (a DataFrame, numpy arrays, a file written
into ``tmp_path``, a search space or run options), calls the real entry point
(:func:`automl.data.load_dataset`, :class:`automl.space.SearchSpace`,
:class:`automl.run.plan.TuneOptions`) and asserts:

* the exact typed error class and its stable ``code``;
* ``.field`` names the offending column or parameter (``"data"`` for whole-file
  problems) and, where there is a name, the message names it too;
* the error comes back within 2 s;
* no pickle payload ran (a canary file a malicious ``__reduce__`` would create is absent).

Cases that expose a bug in the code under test are marked ``xfail(strict=True)`` with the
reason starting ``BUG:``; they must start passing once the code is fixed. A few "accept"
cases check that valid-but-unusual inputs are not refused.

Nothing here trains a model or starts Ray.
"""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import io
import json
import pickle
import struct
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tables import gzip_bomb

from automl.data import DataLimits, load_dataset
from automl.errors import (
    AutoMLError,
    ConfigError,
    DegenerateError,
    DtypeError,
    NonFiniteError,
    ParseError,
    ShapeError,
    SpaceError,
    TooLargeError,
    UnsafeFormatError,
)
from automl.options import TuneOptions
from automl.space import SearchSpace

MAX_SECONDS = 2.0
NPZ_TARGET = "y"  # sources._read_npz names the column of the y array "y"
CANARY = "CANARY-pickle-payload-ran"

Call = Callable[[], Any]
Build = Callable[[Path], Call]


# --------------------------------------------------------------------------------------
# Case machinery
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """The typed error a case must raise."""

    error: type[AutoMLError]
    field: str | Callable[[str | None], bool] | None
    says: tuple[str, ...] = ()
    named: bool = True  # the message must contain the field name too
    alternatives: tuple[tuple[type[AutoMLError], str], ...] = ()


def case(case_id: str, build: Build, error: type[AutoMLError], field: Any, *says: str,
         bug: str | None = None, named: bool = True,
         alternatives: tuple[tuple[type[AutoMLError], str], ...] = ()) -> Any:
    marks = [pytest.mark.xfail(reason=f"BUG: {bug}", strict=True)] if bug else []
    return pytest.param(build, Expect(error, field, says, named, alternatives), id=case_id,
                        marks=marks)


def check(call: Call, expect: Expect, tmp_path: Path) -> AutoMLError:
    start = time.monotonic()
    with pytest.raises(AutoMLError) as info:
        call()
    elapsed = time.monotonic() - start
    err = info.value
    assert not (tmp_path / CANARY).exists(), "a pickle payload was executed"
    shown = f"{type(err).__name__} {err.code} field={err.field!r}: {err.message[:300]}"
    if expect.alternatives:
        allowed = [(expect.error, expect.field), *expect.alternatives]
        assert (type(err), err.field) in allowed, shown
        assert err.code == type(err).code, shown
    else:
        assert type(err) is expect.error, shown
        assert err.code == expect.error.code, shown
        if callable(expect.field):
            assert expect.field(err.field), shown
        else:
            assert err.field == expect.field, shown
            if expect.named and expect.field not in (None, "data"):
                assert str(expect.field) in err.message, shown
    for text in expect.says:
        assert text in err.message, shown
    assert err.one_line().startswith(f"error {err.code}: ")
    assert elapsed < MAX_SECONDS, f"took {elapsed:.2f}s"
    return err


# --------------------------------------------------------------------------------------
# Data builders
# --------------------------------------------------------------------------------------

N = 40


def frame(n: int = N, target: Any = None, **columns: Any) -> pd.DataFrame:
    """Two normal features ``a``, ``b`` plus extra columns and a balanced binary ``y``."""
    rng = np.random.default_rng(n)
    data = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    for name, values in columns.items():
        data[name] = values
    data["y"] = np.arange(n) % 2 if target is None else target
    return data


def regression_target(n: int = N) -> np.ndarray:
    return np.random.default_rng(7).normal(size=n) * 3.0 + 0.5


def with_values(data: pd.DataFrame, column: str, rows: list[int], value: Any) -> pd.DataFrame:
    data = data.copy()
    if not isinstance(value, float):
        data[column] = data[column].astype(object)
    for row in rows:
        data.loc[row, column] = value
    return data


def arrays(n: int = N, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.normal(size=(n, k)), np.arange(n) % 2


def obj(values: list[Any]) -> pd.Series:
    return pd.Series(values, dtype=object)


def cycle(values: list[Any], n: int = N) -> list[Any]:
    return [values[i % len(values)] for i in range(n)]


def df_call(data: pd.DataFrame, target: Any = "y", **kwargs: Any) -> Build:
    return lambda _tmp: lambda: load_dataset(data, target, **kwargs)


def arrays_call(x: Any, y: Any, **kwargs: Any) -> Build:
    return lambda _tmp: lambda: load_dataset(x, y, **kwargs)


def write_text(tmp: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp / name
    raw = text.encode(encoding)
    if name.lower().endswith(".gz"):
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def write_bytes(tmp: Path, name: str, raw: bytes) -> Path:
    path = tmp / name
    path.write_bytes(raw)
    return path


def csv_text(data: pd.DataFrame, sep: str = ",") -> str:
    return data.to_csv(index=False, sep=sep)


def rows_text(n: int = N, fields: int = 3) -> list[str]:
    """``n`` well-formed rows of ``fields`` numbers, the last a balanced binary label."""
    return [",".join([*(f"{(i * 7 + j) % 11}.5" for j in range(fields - 1)), str(i % 2)])
            for i in range(n)]


def file_call(name: str, text: str, target: str = "y", encoding: str = "utf-8",
              **kwargs: Any) -> Build:
    def build(tmp: Path) -> Call:
        path = write_text(tmp, name, text, encoding)
        return lambda: load_dataset(path, target, **kwargs)
    return build


def bytes_call(name: str, raw: bytes | Callable[[Path], bytes], target: str = "y",
               **kwargs: Any) -> Build:
    def build(tmp: Path) -> Call:
        path = write_bytes(tmp, name, raw(tmp) if callable(raw) else raw)
        return lambda: load_dataset(path, target, **kwargs)
    return build


def frame_file_call(name: str, data: pd.DataFrame, target: str = "y", **kwargs: Any) -> Build:
    """Write ``data`` as CSV/TSV (optionally gzipped) or Parquet, by the suffix of ``name``."""
    def build(tmp: Path) -> Call:
        path = tmp / name
        if ".parquet" in name:
            data.to_parquet(path, index=False)
        else:
            write_text(tmp, name, csv_text(data, "\t" if ".tsv" in name else ","))
        return lambda: load_dataset(path, target, **kwargs)
    return build


def npz_call(name: str = "data.npz", target: str = NPZ_TARGET, compressed: bool = False,
             limits: DataLimits | None = None, **members: Any) -> Build:
    def build(tmp: Path) -> Call:
        path = tmp / name
        resolved = {k: (v(tmp) if callable(v) else v) for k, v in members.items()}
        (np.savez_compressed if compressed else np.savez)(path, **resolved)
        return lambda: load_dataset(path, target, limits=limits)
    return build


def npy_member(shape: tuple[int, ...], payload: bytes = b"\0" * 64, descr: str = "<f8") -> bytes:
    """A ``.npy`` member whose header declares ``shape`` but which holds only ``payload``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + payload


def zip_of(**members: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, raw in members.items():
            archive.writestr(name, raw)
    return buffer.getvalue()


def lying_zip_npz(tmp: Path) -> bytes:
    """A real compressed .npz whose zip headers understate every member's inflated size."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, X=np.zeros((20_000, 5)), y=np.zeros(20_000))
    raw = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        at = raw.find(signature)
        while at >= 0:
            struct.pack_into("<I", raw, at + offset, 200)
            at = raw.find(signature, at + 4)
    return bytes(raw)


class Canary:
    """Unpickling this object creates ``CANARY`` (``open(path, "w")``): proof a payload ran."""

    def __init__(self, tmp: Path):
        self.path = str(tmp / CANARY)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def canary_objects(tmp: Path, shape: tuple[int, ...]) -> np.ndarray:
    items = np.empty(int(np.prod(shape)), dtype=object)
    for i in range(items.size):
        items[i] = Canary(tmp)
    return items.reshape(shape)


def pickled_canary(tmp: Path) -> bytes:
    return pickle.dumps({"X": Canary(tmp), "y": [0, 1]})


def npy_with_canary(tmp: Path) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, canary_objects(tmp, (N, 2)), allow_pickle=True)
    return buffer.getvalue()


def npz_with_canary(tmp: Path, which: str = "X") -> bytes:
    buffer = io.BytesIO()
    x = canary_objects(tmp, (N, 2)) if which == "X" else np.zeros((N, 2))
    y = canary_objects(tmp, (N,)) if which == "y" else np.arange(N) % 2
    np.savez(buffer, X=x, y=y)  # allow_pickle defaults to True when saving
    return buffer.getvalue()


def nested_object_matrix() -> np.ndarray:
    """A 2-D object array whose cells are lists."""
    cells = np.empty((N, 2), dtype=object)
    for i in range(N):
        cells[i, 0], cells[i, 1] = [i, i + 1], [i]
    return cells


def torch_like_checkpoint(tmp: Path) -> bytes:
    """The layout torch.save writes (a zip holding data.pkl) with a malicious pickle."""
    return zip_of(**{"archive/data.pkl": pickled_canary(tmp), "archive/version": b"3\n"})


# --------------------------------------------------------------------------------------
# B1: data values -> E_NONFINITE (column, count)
# --------------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")

B1 = [
    case("pos-inf-in-feature", df_call(with_values(frame(), "b", [2], INF)),
         NonFiniteError, "b", "1 infinite"),
    case("neg-inf-in-feature", df_call(with_values(frame(), "b", [2, 4], -INF)),
         NonFiniteError, "b", "2 infinite"),
    case("nan-and-inf-in-feature",
         df_call(with_values(with_values(frame(), "a", [1], NAN), "a", [2], INF)),
         NonFiniteError, "a", "1 infinite"),
    case("inf-in-regression-target",
         df_call(with_values(frame(target=regression_target()), "y", [7], INF)),
         NonFiniteError, "y", "infinite"),
    case("neg-inf-in-target", df_call(with_values(frame(target=regression_target()), "y", [0],
                                                  -INF), task="regression"),
         NonFiniteError, "y", "infinite"),
    case("beyond-float32", df_call(with_values(frame(), "a", [0], 1e39)),
         NonFiniteError, "a", "float32"),
    case("all-nan-target", df_call(frame(target=np.full(N, NAN))),
         NonFiniteError, "y", "target", "missing in 40 of 40"),
    case("target-missing-in-most-rows",
         df_call(with_values(frame(target=regression_target()), "y", list(range(21)), NAN)),
         NonFiniteError, "y", "missing in 21 of 40"),
    case("target-missing-leaves-too-few-rows",
         df_call(with_values(frame(n=30), "y", list(range(12)), NAN)),
         ShapeError, "y", "18 rows"),
    case("csv-inf-token",
         file_call("data.csv", "a,b,y\n" + "\n".join(["inf,1,0", *rows_text(N - 1)]) + "\n"),
         NonFiniteError, "a", "infinite"),
    case("csv-neg-inf-in-target",
         file_call("data.csv", "a,b,y\n" + "\n".join(
             ["1,1,-inf", *(f"{i},{i % 3},{i * 0.37:.2f}" for i in range(N - 1))]) + "\n"),
         NonFiniteError, "y", "infinite"),
    case("numpy-inf-in-X", arrays_call(np.where(np.eye(N, 3, k=2) > 0, INF, arrays()[0]),
                                       arrays()[1]),
         NonFiniteError, "x2", "infinite"),
    case("npz-inf-in-X", npz_call(X=np.where(np.eye(N, 3, k=1) > 0, INF, arrays()[0]),
                                  y=arrays()[1]),
         NonFiniteError, "x1", "infinite"),
    case("parquet-inf", frame_file_call("data.parquet", with_values(frame(), "b", [6], -INF)),
         NonFiniteError, "b", "1 infinite"),
]


@pytest.mark.parametrize(("build", "expect"), B1)
def test_b1_data_values(tmp_path: Path, build: Build, expect: Expect) -> None:
    check(build(tmp_path), expect, tmp_path)


# Missing values are handled, not refused: each case is accepted with a note naming the
# column and what was done.
NOTED = [
    pytest.param(df_call(with_values(frame(), "a", [3], NAN)), "'a' (1 missing",
                 id="nan-in-feature"),
    pytest.param(df_call(with_values(frame(), "a", [0, 5, 9], NAN)), "'a' (3 missing",
                 id="three-nans-in-feature"),
    pytest.param(df_call(with_values(frame(target=regression_target()), "y", [7], NAN)),
                 "dropped 1 row(s) whose target 'y' is missing", id="nan-in-regression-target"),
    pytest.param(df_call(with_values(frame(), "y", [3], NAN)),
                 "dropped 1 row(s) whose target 'y'", id="nan-in-class-target"),
    pytest.param(df_call(frame(target=obj([None, *cycle(["p", "q"], N - 1)]))),
                 "dropped 1 row(s) whose target 'y'", id="none-in-string-target"),
    pytest.param(df_call(frame(c=np.full(N, NAN))), "'c' (entirely missing)",
                 id="all-nan-float-column"),
    pytest.param(df_call(frame(c=obj([None] * N))), "'c' (entirely missing)",
                 id="all-none-object-column"),
    pytest.param(df_call(frame(c=np.r_[1.5, np.full(N - 1, NAN)])), "'c' (missing in 39 of 40",
                 id="nearly-all-missing-column"),
    pytest.param(df_call(frame(c=obj([None, *cycle(["x", "z"], N - 1)]))),
                 "a missing category is a level of its own: 'c' (1 missing)",
                 id="none-in-text-column"),
    pytest.param(df_call(frame(c=obj([None, *(i % 7 for i in range(N - 1))]))),
                 "'c' (1 missing", id="none-in-object-numbers"),
    pytest.param(df_call(frame(c=pd.array([pd.NA, *(i % 5 for i in range(N - 1))],
                                          dtype="Int64"))), "'c' (1 missing", id="pd-NA-in-Int64"),
    pytest.param(df_call(frame(c=pd.array([pd.NA, *np.linspace(0, 1, N - 1)], dtype="Float64"))),
                 "'c' (1 missing", id="pd-NA-in-Float64"),
    pytest.param(df_call(frame(c=pd.array([pd.NA, *cycle(["u", "v"], N - 1)], dtype="string"))),
                 "level of its own: 'c'", id="pd-NA-in-string-dtype"),
    pytest.param(df_call(frame(c=pd.Categorical([None, *cycle(["u", "v"], N - 1)]))),
                 "level of its own: 'c'", id="nan-in-categorical-dtype"),
    pytest.param(df_call(frame(c=pd.array([pd.NA, *cycle([True, False], N - 1)],
                                          dtype="boolean"))), "'c' (1 missing",
                 id="pd-NA-in-nullable-boolean"),
    pytest.param(file_call("data.csv", "a,b,y\n" + "\n".join(["1,,0", *rows_text(N - 1)])
                           + "\n"), "'b' (1 missing", id="csv-empty-cell"),
    pytest.param(file_call("data.csv", "a,b,y\n" + "\n".join(["NA,1,0", *rows_text(N - 1)])
                           + "\n"), "'a' (1 missing", id="csv-NA-token"),
    # A short row reads as missing trailing values (CSV cannot tell the two apart).
    pytest.param(file_call("data.csv", "a,b,y\n" + "\n".join(
        [*rows_text(10), "1,2", *rows_text(N - 10)]) + "\n"),
                 "dropped 1 row(s) whose target 'y'", id="ragged-csv-row-too-short"),
    pytest.param(arrays_call(np.where(np.eye(N, 3, k=0) > 0, NAN, arrays()[0]), arrays()[1]),
                 "'x0' (1 missing", id="numpy-nan-in-X"),
    pytest.param(arrays_call(arrays()[0], np.r_[NAN, regression_target(N - 1)]),
                 "dropped 1 row(s) whose target 'y'", id="numpy-nan-in-y"),
    pytest.param(frame_file_call("data.parquet", with_values(frame(), "b", [6], NAN)),
                 "'b' (1 missing", id="parquet-nan"),
    pytest.param(df_call(frame(id=np.arange(100, 100 + N))),
                 "row identifiers (keep them", id="integer-identifier"),
    pytest.param(df_call(frame(id=[f"A-{i:04d}" for i in range(N)])),
                 "'id' (one word, a different one in every row)", id="text-identifier"),
    pytest.param(df_call(frame(id=np.arange(100, 100 + N)), keep_identifiers=True),
                 "kept column(s) that look like row identifiers", id="identifier-kept"),
    pytest.param(df_call(frame(when=pd.date_range("2024-01-01", periods=N))),
                 "date column(s) become year", id="datetime64-column"),
    pytest.param(df_call(frame(when=pd.date_range("2024-01-01", periods=N, tz="UTC"))),
                 "'when'", id="tz-datetime-column"),
    pytest.param(df_call(frame(day=obj(cycle([dt.date(2024, 1, d) for d in range(1, 29)])))),
                 "date column(s) become year", id="python-date-objects"),
    pytest.param(df_call(frame(day=cycle(["2024-01-05", "2023-12-31T10:30:00", None]))),
                 "'day (a date)' (13 missing)", id="iso-date-text-with-missing"),
    pytest.param(arrays_call(np.arange(N * 2).reshape(N, 2).astype("datetime64[D]"),
                             arrays()[1]), "'x0', 'x1'", id="numpy-datetime-X"),
    pytest.param(frame_file_call("data.parquet",
                                 frame(when=pd.date_range("2024-01-01", periods=N))),
                 "'when'", id="parquet-datetime-column"),
    pytest.param(df_call(frame(c=cycle(["red", "red ", " blue"]))),
                 "spaces stripped from text", id="category-whitespace"),
]


@pytest.mark.parametrize(("build", "says"), NOTED)
def test_missing_and_misleading_columns_are_handled_with_a_note(
        tmp_path: Path, build: Build, says: str) -> None:
    prepared = build(tmp_path)()
    for split in (prepared.x_train, prepared.x_val, prepared.x_test):
        assert np.isfinite(split).all()
    assert any(says in note for note in prepared.warnings), prepared.warnings
    assert len(set(prepared.warnings)) == len(prepared.warnings)


# --------------------------------------------------------------------------------------
# B2: data types -> E_DTYPE
# --------------------------------------------------------------------------------------

B2 = [
    case("free-text-column", df_call(frame(n=300, text=[f"note {i}" for i in range(300)])),
         DtypeError, "text", "300 of its 300 rows"),
    case("nearly-unique-text-column",
         df_call(frame(n=300, code=[f"k{i}" for i in range(290)] + ["k0"] * 10)),
         DtypeError, "code", "free text"),
    case("text-target-numbers-and-words", df_call(frame(target=cycle(["1", "2", "yes"]))),
         DtypeError, "y", "mixes numbers and text"),
    case("unreadable-iso-date", df_call(frame(day=cycle(["2024-01-05", "2024-13-45"]))),
         DtypeError, "day", "dates"),
    case("mixed-int-str", df_call(frame(m=obj(cycle([1, "one", 2, "two"])))),
         DtypeError, "m", "mixes text and numbers"),
    case("mixed-float-str", df_call(frame(m=obj(cycle([1.5, "x"])))),
         DtypeError, "m", "mixes"),
    case("mixed-bool-str", df_call(frame(m=obj(cycle([True, "yes", False])))),
         DtypeError, "m", "mixes"),
    case("timedelta-column", df_call(frame(dur=pd.to_timedelta(np.arange(N), unit="s"))),
         DtypeError, "dur"),
    case("period-column", df_call(frame(month=pd.period_range("2024-01", periods=N, freq="M"))),
         DtypeError, "month"),
    case("interval-column", df_call(frame(bin=pd.interval_range(0, N))),
         DtypeError, "bin"),
    case("bytes-column", df_call(frame(raw=obj(cycle([b"\x00\x01", b"\xff"])))),
         DtypeError, "raw", "bytes"),
    case("nested-lists", df_call(frame(tags=obj(cycle([[1, 2], [3]])))),
         DtypeError, "tags", "nested"),
    case("nested-dicts", df_call(frame(meta=obj(cycle([{"k": 1}, {"k": 2}])))),
         DtypeError, "meta", "nested"),
    case("nested-tuples", df_call(frame(pair=obj(cycle([(1, 2), (3, 4)])))),
         DtypeError, "pair", "nested"),
    case("nested-arrays", df_call(frame(vec=obj(cycle([np.zeros(2), np.ones(2)])))),
         DtypeError, "vec", "nested"),
    case("complex-column", df_call(frame(z=np.full(N, 1 + 2j))),
         DtypeError, "z", "complex"),
    case("decimal-objects", df_call(frame(price=obj(cycle([decimal.Decimal("1.10"),
                                                            decimal.Decimal("2.5")])))),
         DtypeError, "price", "Decimal"),
    case("bool-target-for-regression",
         df_call(frame(target=np.arange(N) % 2 == 0), task="regression"),
         DtypeError, "y", "bool"),
    case("text-target-for-regression",
         df_call(frame(target=cycle(["low", "high"])), task="regression"),
         DtypeError, "y", "regression"),
    case("datetime-target", df_call(frame(target=pd.date_range("2024-01-01", periods=N))),
         DtypeError, "y", "target"),
    case("mixed-target", df_call(frame(target=obj(cycle([0, "one"])))),
         DtypeError, "y", "target"),
    case("nested-target", df_call(frame(target=obj(cycle([[0], [1]])))),
         DtypeError, "y", "nested"),
    case("bytes-target", df_call(frame(target=obj(cycle([b"0", b"1"])))),
         DtypeError, "y", "bytes"),
    case("numpy-complex-X", arrays_call(arrays()[0] + 1j, arrays()[1]),
         DtypeError, "x0", "complex"),
    case("numpy-bytes-X", arrays_call(arrays()[0].astype("S8"), arrays()[1]),
         DtypeError, "x0", "bytes"),
    case("numpy-object-X-with-lists", arrays_call(nested_object_matrix(), arrays()[1]),
         DtypeError, "x0", "nested"),
    case("parquet-binary-column",
         frame_file_call("data.parquet", frame(raw=obj(cycle([b"\x00", b"\x01"])))),
         DtypeError, "raw", "bytes"),
    case("parquet-list-column",
         frame_file_call("data.parquet", frame(tags=obj(cycle([[1, 2], [3]])))),
         DtypeError, "tags", "nested"),
    case("parquet-two-list-columns",
         frame_file_call("data.parquet", frame(tags=obj(cycle([[1, 2], [3]])),
                                               more=obj(cycle([[4], [5, 6]])))),
         DtypeError, "tags", "nested"),
    case("csv-number-column-with-stray-text",
         file_call("data.csv", "a,b,y\n" + "\n".join(
             [*rows_text(N - 1), "oops,1.5,1"]) + "\n"),
         DtypeError, "a", "mixes"),
]


@pytest.mark.parametrize(("build", "expect"), B2)
def test_b2_data_types(tmp_path: Path, build: Build, expect: Expect) -> None:
    check(build(tmp_path), expect, tmp_path)


# --------------------------------------------------------------------------------------
# B3: data shape -> E_SHAPE / E_PARSE (and E_CONFIG for a missing target or file)
# --------------------------------------------------------------------------------------

GOOD_ROWS = "\n".join(rows_text()) + "\n"
MISSING_FIELD = ("a whole-file error has field=None, while every other file-level error "
                 "names field='data'")

B3 = [
    case("empty-file", file_call("data.csv", ""), ShapeError, "data", "empty"),
    case("whitespace-only-file", file_call("data.csv", "  \n\n"), ShapeError, "data", "header"),
    case("blank-first-line", file_call("data.csv", "\na,b,y\n" + GOOD_ROWS),
         ShapeError, "data", "header"),
    case("header-only-csv", file_call("data.csv", "a,b,y\n"), ShapeError, "data", "no rows"),
    case("zero-feature-columns", df_call(pd.DataFrame({"y": np.arange(N) % 2})),
         ShapeError, "data", "no feature columns"),
    case("zero-rows", df_call(frame().iloc[:0]), ShapeError, "data", "no rows"),
    case("one-row", df_call(frame().iloc[:1]), ShapeError, "data", "1 rows"),
    case("nineteen-rows", df_call(frame().iloc[:19]), ShapeError, "data", "19 rows"),
    case("numpy-zero-columns", arrays_call(np.zeros((N, 0)), np.arange(N) % 2),
         ShapeError, "data", "no feature columns"),
    case("numpy-zero-rows", arrays_call(np.zeros((0, 3)), np.zeros(0)),
         ShapeError, "data", "no rows"),
    case("len-X-ne-len-y", arrays_call(arrays()[0], arrays(N - 1)[1]),
         ShapeError, "y", f"{N} rows", named=False),
    case("numpy-1d-X", arrays_call(np.arange(N, dtype=float), np.arange(N) % 2),
         ShapeError, "X", "2-D"),
    case("numpy-3d-X", arrays_call(np.zeros((N, 2, 2)), np.arange(N) % 2),
         ShapeError, "X", "2-D"),
    case("numpy-2d-y", arrays_call(arrays()[0], np.zeros((N, 2))), ShapeError, "y", "1-D"),
    case("ragged-nested-lists", arrays_call([[1.0, 2.0], [3.0]] * (N // 2), [0, 1] * (N // 2)),
         ShapeError, "X", "ragged"),
    case("ragged-object-rows", arrays_call(np.array([[1.0, 2.0], [3.0]] * (N // 2),
                                                    dtype=object), [0, 1] * (N // 2)),
         ShapeError, "X", "ragged"),
    case("ragged-csv-row-too-long",
         file_call("data.csv", "a,b,y\n" + "\n".join([*rows_text(10), "1,2,3,4",
                                                       *rows_text(N - 10)]) + "\n"),
         ParseError, "data", "malformed"),
    case("csv-every-row-one-extra-field",
         file_call("data.csv", "a,b,y\n" + "\n".join(
             f"{row},{i % 2}" for i, row in enumerate(rows_text())) + "\n"),
         ParseError, "data",
         alternatives=((ShapeError, "data"),)),
    case("duplicate-columns-dataframe",
         df_call(pd.concat([frame()[["a"]], frame()[["a", "b", "y"]]], axis=1)),
         ShapeError, "a", "duplicate"),
    case("duplicate-columns-after-str",
         df_call(pd.DataFrame({1: np.arange(N) * 1.0, "1": np.arange(N) * 2.0,
                               "y": np.arange(N) % 2})),
         ShapeError, "1", "duplicate"),
    case("duplicate-columns-csv", file_call("data.csv", "a,b,a\n" + GOOD_ROWS, target="b"),
         ShapeError, "a", "duplicate"),
    case("duplicate-columns-after-strip", file_call("data.csv", "a, a ,y\n" + GOOD_ROWS),
         ShapeError, "a", "duplicate"),
    case("duplicate-target-column", file_call("data.tsv", "a\ty\ty\n" + GOOD_ROWS.replace(
        ",", "\t")), ShapeError, "y", "duplicate"),
    case("header-name-over-csv-field-limit",
         file_call("data.csv", "a," + "h" * 200_000 + ",y\n" + GOOD_ROWS),
         ParseError, "data"),
    case("blank-column-name", file_call("data.csv", "a,,y\n" + GOOD_ROWS),
         ShapeError, "data", "column 2 has an empty name"),
    case("non-utf8-header", file_call("data.csv", "caf\xe9,b,y\n" + GOOD_ROWS,
                                      encoding="latin-1"),
         ParseError, "data", "UTF-8"),
    case("utf16-file", file_call("data.csv", "a,b,y\n" + GOOD_ROWS, encoding="utf-16"),
         ParseError, "data", "UTF-8"),
    case("non-utf8-body", file_call("data.csv", "a,b,y\n" + GOOD_ROWS * 30 + "\xe9,1,0\n",
                                    encoding="latin-1"),
         ParseError, "data", "UTF-8"),
    case("non-utf8-early-body", file_call("data.csv", "a,b,y\n" + GOOD_ROWS + "\xe9,1,0\n",
                                          encoding="latin-1"),
         ParseError, "data", "UTF-8"),
    case("gz-suffix-but-plain-text", bytes_call("data.csv.gz", b"a,b,y\n" + GOOD_ROWS.encode()),
         ParseError, "data"),
    case("truncated-gzip", bytes_call("data.csv.gz", gzip.compress(
        ("a,b,y\n" + GOOD_ROWS * 50).encode())[:-60]), ParseError, "data"),
    case("parquet-garbage", bytes_call("data.parquet", b"PAR1" + b"\x00garbage" * 20),
         ParseError, "data", "Parquet"),
    case("npz-not-a-zip", bytes_call("data.npz", b"X,y\n1,2\n" * 10), ParseError, "data"),
    case("npz-missing-y", npz_call(X=arrays()[0], labels=arrays()[1]),
         ShapeError, "data", "'X' and 'y'"),
    case("npz-missing-X", npz_call(features=arrays()[0], y=arrays()[1]),
         ShapeError, "data", "'X' and 'y'"),
    case("npz-1d-X", npz_call(X=np.arange(N, dtype=float), y=arrays()[1]),
         ShapeError, "X", "2-D"),
    case("npz-len-mismatch", npz_call(X=arrays()[0], y=arrays(N + 5)[1]), ShapeError, "y",
         named=False),
    case("npz-raw-bytes-member", bytes_call("data.npz", zip_of(**{
        "X.npy": b"not an npy payload at all", "y.npy": npy_member((N,))})),
         ParseError, "data"),
    case("npz-truncated-member", bytes_call("data.npz", zip_of(**{
        "X.npy": npy_member((1000, 4)), "y.npy": npy_member((1000,))})),
         ParseError, "data"),
    case("unsupported-suffix-xlsx", bytes_call("data.xlsx", b"PK\x03\x04 not really"),
         ParseError, "data", "unsupported"),
    case("no-suffix", file_call("data", "a,b,y\n" + GOOD_ROWS), ParseError, "data",
         "unsupported"),
    case("bz2-suffix", bytes_call("data.csv.bz2", b"BZh9 not really"),
         ParseError, "data", "unsupported"),
    case("gzipped-parquet", bytes_call("data.parquet.gz", gzip.compress(b"PAR1")),
         ParseError, "data", "unsupported"),
    case("target-column-missing", df_call(frame(), target="label"),
         ConfigError, "label", "not found"),
    case("target-column-missing-csv", file_call("data.csv", "a,b,y\n" + GOOD_ROWS,
                                                target="Y"),
         ConfigError, "Y", "not found"),
    case("target-none-for-frame", df_call(frame(), target=None), ConfigError, "target"),
    case("target-not-a-string", df_call(frame(), target=2), ConfigError, "target"),
    case("numpy-without-target", arrays_call(arrays()[0], None), ConfigError, "target"),
    case("unsupported-data-type", arrays_call({"X": [1, 2]}, "y"), ConfigError, "data", "dict"),
    case("file-not-found", lambda tmp: lambda: load_dataset(tmp / "nope.csv", "y"),
         ConfigError, "data", "not found"),
    case("directory-as-file", lambda tmp: lambda: load_dataset(tmp, "y"),
         ConfigError, "data"),
]


@pytest.mark.parametrize(("build", "expect"), B3)
def test_b3_data_shape(tmp_path: Path, build: Build, expect: Expect) -> None:
    check(build(tmp_path), expect, tmp_path)


# --------------------------------------------------------------------------------------
# B4: data semantics -> E_DEGENERATE (or a warning)
# --------------------------------------------------------------------------------------

B4 = [
    case("every-feature-constant", df_call(frame(a=np.ones(N), b=np.zeros(N))),
         DegenerateError, "data", "constant"),
    case("only-feature-constant", df_call(pd.DataFrame({"a": np.full(N, 3.0),
                                                        "y": np.arange(N) % 2})),
         DegenerateError, "data", "constant"),
    case("constant-numeric-and-text",
         df_call(frame(a=np.ones(N), b=np.ones(N), c=["same"] * N)),
         DegenerateError, "data", "constant"),
    case("constant-numpy-features", arrays_call(np.ones((N, 4)), np.arange(N) % 2),
         DegenerateError, "data", "constant"),
    case("single-class-int", df_call(frame(target=np.ones(N, dtype=int))),
         DegenerateError, "y", "single class"),
    case("single-class-text", df_call(frame(target=["spam"] * N)),
         DegenerateError, "y", "single class"),
    case("single-class-binary-task", df_call(frame(target=np.zeros(N, dtype=int)),
                                             task="binary"),
         DegenerateError, "y", "single class"),
    case("single-class-bool", df_call(frame(target=np.ones(N, dtype=bool))),
         DegenerateError, "y", "single class"),
    case("minority-class-2-rows",
         df_call(frame(target=np.r_[np.zeros(N - 2, dtype=int), np.ones(2, dtype=int)])),
         DegenerateError, "y", "has 2 rows"),
    case("minority-class-4-of-3",
         df_call(frame(target=np.r_[np.zeros(18), np.ones(18), np.full(4, 2)].astype(int)),
                 task="multiclass"),
         DegenerateError, "y", "has 4 rows"),
    case("minority-text-class-1-row", df_call(frame(target=["a"] * (N - 1) + ["b"])),
         DegenerateError, "y", "has 1 rows"),
    case("over-1000-int-classes",
         df_call(frame(n=1001 * 5, target=np.arange(1001 * 5) % 1001), task="multiclass"),
         DegenerateError, "y", "1001 classes"),
    case("over-1000-int-classes-classification",
         df_call(frame(n=1001 * 5, target=np.arange(1001 * 5) % 1001), task="classification"),
         DegenerateError, "y", "1001 classes"),
    case("over-1000-text-classes",
         df_call(frame(n=1001 * 5, target=[f"c{i % 1001}" for i in range(1001 * 5)])),
         DegenerateError, "y", "1001 classes"),
    case("binary-task-with-3-classes",
         df_call(frame(n=60, target=np.arange(60) % 3), task="binary"),
         ConfigError, "task", alternatives=((DegenerateError, "y"),)),
    case("constant-regression-target",
         df_call(frame(target=np.full(N, 1.5)), task="regression"),
         DegenerateError, "y", "constant"),
    case("unknown-task", df_call(frame(), task="clustering"), ConfigError, "task",
         "clustering", named=False),
]


@pytest.mark.parametrize(("build", "expect"), B4)
def test_b4_data_semantics(tmp_path: Path, build: Build, expect: Expect) -> None:
    check(build(tmp_path), expect, tmp_path)


# --------------------------------------------------------------------------------------
# B5: size -> E_TOO_LARGE, checked before or while reading
# --------------------------------------------------------------------------------------

SMALL = DataLimits(max_bytes=4_000, max_rows=30, max_columns=8, max_cells=10_000)
WIDE_HEADER = ",".join(f"f{i}" for i in range(50)) + ",y\n"


def sparse_file(name: str, size: int, limits: DataLimits) -> Build:
    def build(tmp: Path) -> Call:
        path = tmp / name
        with open(path, "wb") as handle:
            handle.truncate(size)
        return lambda: load_dataset(path, "y", limits=limits)
    return build


def gzip_header_bomb(tmp: Path) -> bytes:
    return gzip.compress(b"a" * 5_000_000 + b",y\n1,0\n", compresslevel=9)


B5 = [
    case("csv-bytes-over-limit", file_call("data.csv", "a,b,y\n" + GOOD_ROWS * 10,
                                           limits=DataLimits(max_bytes=1_000)),
         TooLargeError, "data", "bytes"),
    case("2GB-sparse-file-vs-256MB", sparse_file("big.csv", 2 << 30,
                                                 DataLimits(max_bytes=256 << 20)),
         TooLargeError, "data", "bytes"),
    case("csv-rows-over-limit", file_call("data.csv", "a,b,y\n" + GOOD_ROWS, limits=SMALL),
         TooLargeError, "data", "rows"),
    case("csv-rows-over-limit-bad-rows-after", file_call(
        "data.csv", "a,b,y\n" + "\n".join([*rows_text(35), "1,2,3,4,5", "\xff"]) + "\n",
        limits=DataLimits(max_rows=30)), TooLargeError, "data", "rows"),
    case("csv-columns-over-limit", file_call("data.csv", WIDE_HEADER + "0," * 50 + "1\n",
                                             limits=SMALL),
         TooLargeError, "data", "51 columns"),
    case("csv-width-checked-before-body", file_call(
        "data.csv", WIDE_HEADER + ("0," * 50 + "1\n") * 200 + "\xe9" * 100 + "\n",
        encoding="latin-1", limits=DataLimits(max_columns=8)),
         TooLargeError, "data", "columns"),
    case("tsv-columns-over-limit", file_call("data.tsv", WIDE_HEADER.replace(",", "\t"),
                                             limits=SMALL),
         TooLargeError, "data", "columns"),
    case("gz-csv-rows-over-limit", file_call("data.csv.gz", "a,b,y\n" + GOOD_ROWS,
                                             limits=SMALL),
         TooLargeError, "data", "rows"),
    case("gz-csv-inflates-over-max-bytes",
         file_call("data.csv.gz", "a,b,y\n" + "1,0,0\n0,1,1\n" * 20_000,
                   limits=DataLimits(max_bytes=20_000)),
         TooLargeError, "data"),
    case("gz-header-bomb", bytes_call("data.csv.gz", gzip_header_bomb,
                                      limits=DataLimits(max_bytes=100_000)),
         TooLargeError, "data"),
    case("parquet-rows-over-limit", frame_file_call("data.parquet", frame(), limits=SMALL),
         TooLargeError, "data", "rows"),
    case("parquet-columns-over-limit",
         frame_file_call("data.parquet", frame(n=20, **{f"c{i}": np.arange(20.0)
                                                        for i in range(10)}),
                         limits=DataLimits(max_columns=8)),
         TooLargeError, "data", "columns"),
    case("parquet-bytes-over-limit", frame_file_call("data.parquet", frame(),
                                                     limits=DataLimits(max_bytes=500)),
         TooLargeError, "data", "bytes"),
    case("npz-zip-bomb", npz_call(compressed=True, X=np.zeros((20_000, 50)),
                                  y=np.zeros(20_000), limits=DataLimits(max_bytes=100_000)),
         TooLargeError, "data", "inflates"),
    case("npz-zip-bomb-lying-sizes", bytes_call("data.npz", lying_zip_npz,
                                                limits=DataLimits(max_bytes=100_000)),
         ParseError, "data", alternatives=((TooLargeError, "data"),)),
    case("npz-npy-header-declares-petabytes", bytes_call(
        "data.npz", zip_of(**{"X.npy": npy_member((10**8, 10**7)),
                              "y.npy": npy_member((10**8,))}),
        limits=DataLimits(max_bytes=1_000_000)),
         TooLargeError, "data"),
    case("frame-rows-over-limit", df_call(frame(), limits=DataLimits(max_rows=30)),
         TooLargeError, "data", "rows"),
    case("frame-columns-over-limit",
         df_call(frame(**{f"c{i}": np.arange(N) * 1.0 for i in range(10)}),
                 limits=DataLimits(max_columns=8)),
         TooLargeError, "data", "columns"),
    case("frame-cells-over-limit", df_call(frame(), limits=DataLimits(max_cells=50)),
         TooLargeError, "data", "cells"),
    case("parquet-cells-over-limit", frame_file_call("data.parquet", frame(),
                                                     limits=DataLimits(max_cells=50)),
         TooLargeError, "data", "cells"),
    case("gz-compression-bomb", bytes_call("data.csv.gz", lambda _t: gzip_bomb(1 << 30),
                                           limits=DataLimits(max_bytes=8 << 20)),
         TooLargeError, "data", "bytes"),
    case("gz-bomb-of-short-rows", bytes_call("data.csv.gz", lambda _t: gzip_bomb(1 << 30, 2),
                                             limits=DataLimits(max_rows=100_000)),
         TooLargeError, "data", "rows"),
]


@pytest.mark.parametrize(("build", "expect"), B5)
def test_b5_size(tmp_path: Path, build: Build, expect: Expect) -> None:
    check(build(tmp_path), expect, tmp_path)


# --------------------------------------------------------------------------------------
# Unsafe formats: pickle-bearing files are refused and their payload never runs (F16)
# --------------------------------------------------------------------------------------

UNSAFE = [
    case("npz-object-X-pickled", bytes_call("data.npz", npz_with_canary),
         UnsafeFormatError, "data", "Python objects"),
    case("npz-object-y-pickled", bytes_call("data.npz", lambda t: npz_with_canary(t, "y")),
         UnsafeFormatError, "data", "Python objects"),
    case("npy-object-pickled", bytes_call("data.npy", npy_with_canary),
         UnsafeFormatError, "data", ".npy"),
    case("pkl", bytes_call("data.pkl", pickled_canary), UnsafeFormatError, "data", ".pkl"),
    case("pickle", bytes_call("data.pickle", pickled_canary), UnsafeFormatError, "data"),
    case("pt-torch-layout", bytes_call("model.pt", torch_like_checkpoint),
         UnsafeFormatError, "data", ".pt"),
    case("pth", bytes_call("model.pth", pickled_canary), UnsafeFormatError, "data"),
    case("joblib", bytes_call("data.joblib", pickled_canary), UnsafeFormatError, "data"),
    case("ckpt", bytes_call("model.ckpt", torch_like_checkpoint), UnsafeFormatError, "data"),
    case("bin", bytes_call("weights.bin", pickled_canary), UnsafeFormatError, "data"),
    case("pkl-gz", bytes_call("data.pkl.gz", lambda t: gzip.compress(pickled_canary(t))),
         UnsafeFormatError, "data"),
    case("upper-case-PKL", bytes_call("DATA.PKL", pickled_canary), UnsafeFormatError, "data"),
    case("npy-refused-before-existence-check",
         lambda tmp: lambda: load_dataset(tmp / "missing.npy", "y"),
         UnsafeFormatError, "data"),
    case("pickle-disguised-as-csv", bytes_call("data.csv", pickled_canary), ParseError, "data"),
    case("pickle-disguised-as-parquet", bytes_call("data.parquet", pickled_canary),
         ParseError, "data"),
    case("pickle-disguised-as-npz", bytes_call("data.npz", pickled_canary), ParseError, "data"),
    case("torch-zip-disguised-as-npz", bytes_call("data.npz", torch_like_checkpoint),
         ShapeError, "data", "'X' and 'y'"),
]


@pytest.mark.parametrize(("build", "expect"), UNSAFE)
def test_unsafe_formats(tmp_path: Path, build: Build, expect: Expect) -> None:
    check(build(tmp_path), expect, tmp_path)


PAYLOADS = [
    pytest.param(name, make, id=name.replace(".", "")) for name, make in [
        ("data.npz", npz_with_canary),
        ("data.npy", npy_with_canary),
        ("data.pkl", pickled_canary),
        ("model.pt", torch_like_checkpoint),
        ("data.csv", pickled_canary),
        ("data.parquet", pickled_canary),
        ("disguised.npz", pickled_canary),
        ("torch.npz", torch_like_checkpoint),
    ]
]


@pytest.mark.parametrize(("name", "make"), PAYLOADS)
def test_pickle_payload_never_runs(tmp_path: Path, name: str,
                                   make: Callable[[Path], bytes]) -> None:
    """Whatever the error, it is typed and the malicious ``__reduce__`` never ran."""
    path = write_bytes(tmp_path, name, make(tmp_path))
    with pytest.raises(AutoMLError) as info:
        load_dataset(path, "y")
    assert info.value.code in ("E_UNSAFE_FORMAT", "E_PARSE", "E_SHAPE")
    assert not (tmp_path / CANARY).exists()


def test_canary_payload_is_live(tmp_path: Path) -> None:
    """Control: the payloads above really do create the canary when unpickled."""
    pickle.loads(pickled_canary(tmp_path))["X"].close()
    assert (tmp_path / CANARY).exists()
    (tmp_path / CANARY).unlink()
    path = write_bytes(tmp_path, "data.npz", npz_with_canary(tmp_path))
    with np.load(path, allow_pickle=True) as archive:
        for handle in archive["X"].ravel():
            handle.close()
    assert (tmp_path / CANARY).exists()


# --------------------------------------------------------------------------------------
# B6: search space -> E_SPACE naming the parameter
# --------------------------------------------------------------------------------------


def space(data: Any) -> Build:
    return lambda _tmp: lambda: SearchSpace.from_dict(data)


def resolved(data: Any, task: str = "binary", n_train_rows: int = 1000) -> Build:
    return lambda _tmp: lambda: SearchSpace.from_dict(data).resolve(task, n_train_rows)


def space_file(name: str, text: str | bytes) -> Build:
    def build(tmp: Path) -> Call:
        path = tmp / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return lambda: SearchSpace.from_file(path)
    return build


def frange(low: Any, high: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "float", "low": low, "high": high, **extra}


def irange(low: Any, high: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "int", "low": low, "high": high, **extra}


LONG_NAME = "p" * 600

B6 = [
    case("float-low-gt-high", space({"lr": frange(0.1, 0.001)}), SpaceError, "lr", "greater"),
    case("int-low-gt-high", space({"units": irange(64, 16)}), SpaceError, "units", "greater"),
    case("log-low-zero", space({"weight_decay": frange(0.0, 0.01, log=True)}),
         SpaceError, "weight_decay", "log"),
    case("log-low-negative", space({"dropout": frange(-0.1, 0.5, log=True)}),
         SpaceError, "dropout"),
    case("nan-low", space({"dropout": frange(NAN, 0.5)}), SpaceError, "dropout", "finite"),
    case("nan-high", space({"lr": frange(1e-4, NAN, log=True)}), SpaceError, "lr", "finite"),
    case("inf-high", space({"grad_clip_norm": frange(0.0, INF)}), SpaceError, "grad_clip_norm",
         "finite"),
    case("neg-inf-low", space({"momentum": frange(-INF, 0.9)}), SpaceError, "momentum"),
    case("nan-choice", space({"dropout": [0.1, NAN]}), SpaceError, "dropout", "finite"),
    case("inf-fixed", space({"weight_decay": INF}), SpaceError, "weight_decay"),
    case("step-zero", space({"dropout": frange(0.0, 0.5, step=0.0)}), SpaceError, "dropout",
         "step"),
    case("step-negative-int", space({"units": irange(16, 64, step=-8)}), SpaceError, "units",
         "step"),
    case("step-wider-than-range", space({"dropout": frange(0.0, 0.2, step=0.5)}),
         SpaceError, "dropout", "larger than the range"),
    case("int-step-wider-than-range", space({"n_layers": irange(1, 3, step=4)}),
         SpaceError, "n_layers", "larger"),
    case("step-with-log", space({"lr": frange(1e-4, 1e-1, log=True, step=1e-3)}),
         SpaceError, "lr", "log"),
    case("step-nan", space({"dropout": frange(0.0, 0.5, step=NAN)}), SpaceError, "dropout"),
    case("step-float-for-int", space({"units": irange(16, 64, step=2.5)}), SpaceError, "units",
         "whole number"),
    case("step-null-for-int", space({"units": irange(16, 64, step=None)}),
         SpaceError, "units", "step"),
    case("step-string", space({"dropout": frange(0.0, 0.5, step="0.1")}), SpaceError,
         "dropout", "number"),
    case("empty-choice-list", space({"activation": []}), SpaceError, "activation", "empty"),
    case("empty-categorical-mapping",
         space({"optimizer": {"type": "categorical", "choices": []}}),
         SpaceError, "optimizer", "empty"),
    case("categorical-choices-not-list",
         space({"optimizer": {"type": "categorical", "choices": "adam"}}),
         SpaceError, "optimizer", "must be a list"),
    case("categorical-choices-missing", space({"optimizer": {"type": "categorical"}}),
         SpaceError, "optimizer"),
    case("nested-list-choice", space({"activation": [["relu"], "tanh"]}),
         SpaceError, "activation"),
    case("dict-choice", space({"units": [{"n": 16}, 32]}), SpaceError, "units"),
    case("list-choice-for-number", space({"dropout": [[0.1, 0.2]]}), SpaceError, "dropout"),
    case("duplicate-choices", space({"batch_size": [32, 64, 32]}), SpaceError, "batch_size",
         "repeat"),
    case("int-bounds-as-floats", space({"units": irange(16.0, 64.0)}), SpaceError, "units",
         "whole number"),
    case("int-fixed-as-float", space({"max_epochs": 10.5}), SpaceError, "max_epochs",
         "whole number"),
    case("int-choice-as-float", space({"batch_size": [32, 64.0]}), SpaceError, "batch_size"),
    case("bool-as-int-bound", space({"units": irange(True, 64)}), SpaceError, "units"),
    case("float-range-for-int-param", space({"units": frange(16, 64)}), SpaceError, "units",
         "type int"),
    case("range-for-option-param", space({"activation": irange(0, 3)}), SpaceError,
         "activation", "choices"),
    case("range-for-bool-param", space({"batch_norm": irange(0, 1)}), SpaceError,
         "batch_norm"),
    case("string-for-bool-param", space({"nesterov": "true"}), SpaceError, "nesterov",
         "true/false"),
    case("int-for-bool-param", space({"batch_norm": [0, 1]}), SpaceError, "batch_norm"),
    case("name-longer-than-512", space({LONG_NAME: 1}), SpaceError,
         lambda field: bool(field) and field.startswith("p" * 64) and len(field) < 100,
         "unknown parameter"),
    case("unknown-parameter", space({"learning_rate": 0.01}), SpaceError, "learning_rate",
         "unknown parameter"),
    case("empty-parameter-name", space({"": 1}), SpaceError, "", "unknown parameter"),
    case("invisible-char-in-name", space({"lr\u200b": 0.01}), SpaceError, "lr\u200b"),
    case("non-string-name", space({3: 1}), SpaceError, "3", named=False),
    case("unknown-range-key", space({"lr": {"type": "float", "lo": 1e-4, "high": 0.1}}),
         SpaceError, "lr", "'lo'"),
    case("unknown-categorical-key",
         space({"activation": {"type": "categorical", "values": ["relu"]}}),
         SpaceError, "activation", "'values'"),
    case("unknown-fixed-key", space({"dropout": {"type": "fixed", "val": 0.1}}),
         SpaceError, "dropout", "'val'"),
    case("unknown-type", space({"lr": {"type": "uniform", "low": 1e-4, "high": 0.1}}),
         SpaceError, "lr", "'uniform'"),
    case("missing-type", space({"lr": {"low": 1e-4, "high": 0.1}}), SpaceError, "lr", "type"),
    case("missing-high", space({"lr": {"type": "float", "low": 1e-4}}), SpaceError, "lr",
         "'high'"),
    case("low-as-string", space({"lr": frange("1e-4", 0.1)}), SpaceError, "lr", "number"),
    case("high-as-null", space({"dropout": frange(0.0, None)}), SpaceError, "dropout"),
    case("log-as-string", space({"lr": frange(1e-4, 0.1, log="yes")}), SpaceError, "lr",
         "'log'"),
    case("value-null", space({"dropout": None}), SpaceError, "dropout", "NoneType"),
    case("value-bytes", space({"activation": b"relu"}), SpaceError, "activation", "bytes"),
    case("fixed-with-list-value", space({"dropout": {"type": "fixed", "value": [0.1, 0.2]}}),
         SpaceError, "dropout"),
    case("range-1e308", space({"lr": frange(1e-4, 1e308, log=True)}), SpaceError, "lr",
         "outside"),
    case("range-neg-1e308", space({"weight_decay": frange(-1e308, 0.1)}), SpaceError,
         "weight_decay", "outside"),
    case("int-range-10e400", space({"units": irange(16, 10**400)}), SpaceError, "units",
         "outside"),
    case("dropout-out-of-domain", space({"dropout": 0.95}), SpaceError, "dropout", "outside"),
    case("momentum-one", space({"momentum": frange(0.5, 1.0)}), SpaceError, "momentum",
         "outside"),
    case("huber-delta-zero", space({"huber_delta": 0.0}), SpaceError, "huber_delta",
         "outside"),
    case("space-is-a-list", space([{"lr": 0.1}]), SpaceError, "space", "mapping",
         named=False),
    case("space-is-a-string", space("lr: 0.1"), SpaceError, "space", "mapping", named=False),
    case("loss-mse-for-classification", resolved({"loss": "mse"}, "binary"), SpaceError,
         "loss", "binary"),
    case("loss-ce-for-regression", resolved({"loss": ["cross_entropy", "mse"]}, "regression"),
         SpaceError, "loss", "regression"),
    case("yaml-syntax-error", space_file("space.yaml", "lr: {type: float, low: [\n"),
         SpaceError, "space", "not valid", named=False),
    case("json-syntax-error", space_file("space.json", '{"lr": {"type": "float",}}'),
         SpaceError, "space", "not valid", named=False),
    case("space-file-missing", lambda tmp: lambda: SearchSpace.from_file(tmp / "none.yaml"),
         SpaceError, "space", "cannot read", named=False),
    case("space-file-is-directory", lambda tmp: lambda: SearchSpace.from_file(tmp),
         SpaceError, "space", named=False),
    case("space-file-not-utf8", space_file("space.yaml", "lr: 0.1 # caf\xe9\n".encode(
        "latin-1")), SpaceError, "space", named=False),
    case("yaml-python-object-tag",
         space_file("space.yaml", "lr: !!python/object/apply:os.system ['touch x']\n"),
         SpaceError, "space", named=False),
    case("yaml-top-level-list", space_file("space.yaml", "- lr\n- units\n"), SpaceError,
         "space", "mapping", named=False),
    case("yaml-nan-bound", space_file("space.yaml", "lr: {type: float, low: .nan, high: 0.1}\n"),
         SpaceError, "lr", "finite"),
    case("yaml-inf-bound", space_file("space.yml", "dropout: {type: float, low: 0, high: .inf}\n"),
         SpaceError, "dropout"),
    case("json-nan-bound", space_file("space.json", json.dumps({"lr": frange(NAN, 0.1)})),
         SpaceError, "lr", "finite"),
    case("json-huge-number", space_file("space.json", '{"lr": {"type": "float", "low": 1e-4, '
                                                      '"high": 1e999}}'),
         SpaceError, "lr"),
    case("json-unknown-param", space_file("space.json", '{"epochs": 10}'), SpaceError,
         "epochs", "unknown"),
]


@pytest.mark.parametrize(("build", "expect"), B6)
def test_b6_search_space(tmp_path: Path, build: Build, expect: Expect) -> None:
    check(build(tmp_path), expect, tmp_path)


# --------------------------------------------------------------------------------------
# B7: model and run configuration -> E_CONFIG (or E_SPACE for a tuned parameter)
# --------------------------------------------------------------------------------------


def options(**kwargs: Any) -> Build:
    return lambda _tmp: lambda: TuneOptions(**kwargs)


B7 = [
    case("unknown-activation", space({"activation": "swish"}), SpaceError, "activation",
         "swish"),
    case("unknown-activation-in-list", space({"activation": ["relu", "Relu"]}), SpaceError,
         "activation", "Relu"),
    case("unknown-optimizer", space({"optimizer": "adagrad"}), SpaceError, "optimizer",
         "adagrad"),
    case("unknown-loss", space({"loss": "hinge"}), SpaceError, "loss", "hinge"),
    case("unknown-lr-schedule", space({"lr_schedule": "cyclic"}), SpaceError, "lr_schedule"),
    case("hidden-units-zero", space({"units": 0}), SpaceError, "units", "outside"),
    case("hidden-units-negative-range", space({"units": irange(-16, 32)}), SpaceError, "units"),
    case("hidden-units-over-max", space({"units": 100_000}), SpaceError, "units", "outside"),
    case("layers-over-max", space({"n_layers": 9}), SpaceError, "n_layers", "outside"),
    case("layers-range-over-max", space({"n_layers": irange(1, 20)}), SpaceError, "n_layers"),
    case("layers-negative", space({"n_layers": -1}), SpaceError, "n_layers"),
    case("epochs-zero", space({"max_epochs": 0}), SpaceError, "max_epochs", "outside"),
    case("epochs-negative", space({"max_epochs": -5}), SpaceError, "max_epochs"),
    case("patience-zero", space({"patience": 0}), SpaceError, "patience"),
    case("lr-zero", space({"lr": 0.0}), SpaceError, "lr", "outside"),
    case("lr-negative-range", space({"lr": frange(-0.1, 0.1)}), SpaceError, "lr"),
    case("batch-size-zero", space({"batch_size": 0}), SpaceError, "batch_size"),
    case("batch-size-over-rows", resolved({"batch_size": [32, 512]}, n_train_rows=100),
         ConfigError, "batch_size", "100 training rows"),
    case("batch-size-fixed-over-rows", resolved({"batch_size": 64}, n_train_rows=24),
         ConfigError, "batch_size", "24 training rows"),
    case("batch-size-range-over-rows",
         resolved({"batch_size": irange(8, 4096)}, n_train_rows=1000),
         ConfigError, "batch_size"),
    case("n-trials-zero", options(n_trials=0), ConfigError, "n_trials"),
    case("n-trials-negative", options(n_trials=-3), ConfigError, "n_trials"),
    case("n-trials-float", options(n_trials=2.5), ConfigError, "n_trials"),
    case("n-trials-bool", options(n_trials=True), ConfigError, "n_trials"),
    case("n-trials-string", options(n_trials="10"), ConfigError, "n_trials"),
    case("n-seeds-zero", options(n_seeds=0), ConfigError, "n_seeds"),
    case("max-failures-zero", options(max_consecutive_failures=0), ConfigError,
         "max_consecutive_failures"),
    case("n-workers-zero", options(n_workers=0), ConfigError, "n_workers"),
    case("cohort-trials-zero", options(cohort_trials=0), ConfigError, "cohort_trials"),
    case("cohort-trials-fraction", options(cohort_trials=2.5), ConfigError, "cohort_trials"),
    case("timeout-zero", options(timeout=0), ConfigError, "timeout"),
    case("timeout-negative", options(timeout=-1.0), ConfigError, "timeout"),
    case("timeout-nan", options(timeout=NAN), ConfigError, "timeout"),
    case("timeout-string", options(timeout="60"), ConfigError, "timeout"),
    case("unknown-pruner", options(pruner="asha"), ConfigError, "pruner", "asha"),
    case("pruner-none", options(pruner=None), ConfigError, "pruner"),
    case("pruner-startup-negative", options(pruner_startup_trials=-1), ConfigError,
         "pruner_startup_trials"),
    case("pruning-audit-above-one", options(pruning_audit=1.5), ConfigError,
         "pruning_audit"),
    case("pruning-audit-string", options(pruning_audit="10%"), ConfigError, "pruning_audit"),
    case("pruner-percentile-hundred", options(pruner="percentile", pruner_percentile=100),
         ConfigError, "pruner_percentile"),
    case("pruner-percentile-string", options(pruner_percentile="40%"), ConfigError,
         "pruner_percentile"),
    case("warm-start-string", options(warm_start="no"), ConfigError, "warm_start"),
    case("head-start-string", options(head_start="no"), ConfigError, "head_start"),
    case("gpus-negative", options(gpus_per_trial=-0.5), ConfigError, "gpus_per_trial"),
    case("gpus-fractional-over-one", options(gpus_per_trial=1.5), ConfigError,
         "gpus_per_trial"),
    case("gpus-string", options(gpus_per_trial="all"), ConfigError, "gpus_per_trial"),
    case("seed-negative", options(seed=-1), ConfigError, "seed"),
    case("seed-string", options(seed="abc"), ConfigError, "seed"),
    case("load-dataset-seed-negative", df_call(frame(), seed=-1), ConfigError, "seed"),
    case("storage-url-garbage", options(storage="not a url"), ConfigError, "storage"),
]


@pytest.mark.parametrize(("build", "expect"), B7)
def test_b7_model_config(tmp_path: Path, build: Build, expect: Expect) -> None:
    check(build(tmp_path), expect, tmp_path)


# --------------------------------------------------------------------------------------
# Accept: valid but unusual submissions must load
# --------------------------------------------------------------------------------------

CUTS = ["Fair", "Good", "Very Good", "Premium", "Ideal"]


def diamonds_like(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    return pd.DataFrame({
        "carat": rng.uniform(0.2, 3.0, size=n),
        "cut": cycle(CUTS, n),
        "color": cycle(list("DEFGHIJ"), n),
        "price": rng.uniform(300, 18_000, size=n),
    })


def accept_file(name: str, data: pd.DataFrame, target: str = "y", sep: str = ",",
                encoding: str = "utf-8", newline: str = "\n") -> Build:
    def build(tmp: Path) -> Call:
        text = data.to_csv(index=False, sep=sep, lineterminator=newline)
        path = write_text(tmp, name, text, encoding)
        return lambda: load_dataset(path, target)
    return build


def npz_accept(tmp: Path) -> Call:
    x, y = arrays()
    path = tmp / "data.npz"
    np.savez_compressed(path, X=x, y=y)
    return lambda: load_dataset(path, NPZ_TARGET)


def parquet_accept(tmp: Path) -> Call:
    path = tmp / "data.parquet"
    frame(c=cycle(["x", "z"]), flag=np.arange(N) % 3 == 0).to_parquet(path)
    return lambda: load_dataset(path, "y")


ACCEPT = [
    pytest.param(df_call(frame(const=np.full(N, 4.2))), "const", id="one-constant-column"),
    pytest.param(df_call(frame(const=["same"] * N)), "const", id="one-constant-text-column"),
    pytest.param(df_call(diamonds_like(), target="price"), None, id="string-categoricals"),
    pytest.param(df_call(frame(flag=np.arange(N) % 3 == 0, other=np.arange(N) % 2 == 1)), None,
                 id="bool-features"),
    pytest.param(df_call(frame(), task="classification"), None, id="task-classification"),
    pytest.param(df_call(frame(c=pd.Categorical(cycle(["lo", "mid", "hi"])))), None,
                 id="categorical-dtype"),
    pytest.param(df_call(frame(c=pd.array([i % 9 for i in range(N)], dtype="Int64"))), None,
                 id="nullable-int-without-NA"),
    pytest.param(df_call(frame(target=np.r_[np.zeros(35), np.ones(5)].astype(int))), None,
                 id="minority-class-exactly-5"),
    pytest.param(df_call(frame(target=cycle(["yes", "no"]))), None, id="text-binary-target"),
    pytest.param(df_call(frame(target=np.arange(N) % 2 == 0)), None, id="bool-target"),
    pytest.param(accept_file("data.tsv.gz", frame(c=cycle(["x", "z"])), sep="\t"), None,
                 id="gzipped-tsv"),
    pytest.param(accept_file("data.csv.gz", frame()), None, id="gzipped-csv"),
    pytest.param(accept_file("DATA.CSV", frame()), None, id="upper-case-suffix"),
    pytest.param(accept_file("data.txt", frame(), sep="\t"), None, id="txt-sniffs-tabs"),
    pytest.param(accept_file("data.csv", frame(), newline="\r\n"), None, id="crlf-lines"),
    pytest.param(accept_file("data.csv", frame()[["y", "a", "b"]], encoding="utf-8-sig"), None,
                 id="utf8-bom"),
    pytest.param(accept_file("data.csv", frame(**{"café": np.arange(N) * 0.5})), None,
                 id="utf8-non-ascii-header"),
    pytest.param(lambda tmp: npz_accept(tmp), None, id="npz"),
    pytest.param(lambda tmp: parquet_accept(tmp), None, id="parquet"),
    pytest.param(arrays_call(*arrays()), None, id="numpy-arrays"),
    pytest.param(lambda _tmp: lambda: load_dataset(arrays(), None), None, id="xy-tuple"),
    pytest.param(df_call(frame(n=250 * 5, target=[f"c{i % 250}" for i in range(250 * 5)])),
                 None, id="text-target-250-classes"),
]


@pytest.mark.parametrize(("build", "warned"), ACCEPT)
def test_accepted(tmp_path: Path, build: Build, warned: str | None) -> None:
    start = time.monotonic()
    prepared = build(tmp_path)()
    assert time.monotonic() - start < MAX_SECONDS
    for split in (prepared.x_train, prepared.x_val, prepared.x_test):
        assert split.dtype == np.float32
        assert np.isfinite(split).all()
    assert len(prepared.x_train) + len(prepared.x_val) + len(prepared.x_test) >= 20
    if warned is None:
        assert prepared.warnings == []
    else:
        assert len(prepared.warnings) == 1
        assert "constant" in prepared.warnings[0] and warned in prepared.warnings[0]


def test_categorical_levels_are_one_hot_encoded() -> None:
    prepared = load_dataset(diamonds_like(), "price")
    assert prepared.task == "regression"
    levels = prepared.preprocessor.categorical_levels
    assert set(levels["cut"]) <= set(CUTS) and len(levels["cut"]) >= 4
    assert prepared.n_features == 1 + sum(len(v) for v in levels.values())


def test_default_space_shrinks_batch_sizes_for_small_data() -> None:
    """The default space is not a user error: its batch sizes are fitted to the data."""
    space_ = SearchSpace({}).resolve("binary", 40)
    assert all(size <= 40 for size in space_["batch_size"].choices)  # type: ignore[union-attr]


def test_battery_has_at_least_100_cases() -> None:
    groups = [B1, B2, B3, B4, B5, B6, B7, UNSAFE]
    assert sum(len(group) for group in groups) >= 100
    assert all(len(group) >= 10 for group in groups if group is not B4) and len(B4) >= 5


def _read_bomb_in_child(path: str, limit: int, out: Any) -> None:
    import resource

    from automl.errors import AutoMLError

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load_dataset(path, "y", limits=DataLimits(max_bytes=limit))
        said = "accepted"
    except AutoMLError as exc:
        said = exc.code
    out.send((said, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024))


def test_a_compression_bomb_is_refused_with_memory_near_the_limit(tmp_path: Path) -> None:
    """A few MB that inflate to 1.6 GB: refused once the table parsed so far holds the
    byte limit, so the reader's peak memory grows by about the limit, not the bomb."""
    import multiprocessing as mp

    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip_bomb(1_600_000_000))
    assert path.stat().st_size < 10_000_000
    limit = 64 << 20
    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_read_bomb_in_child, args=(str(path), limit, send))
    child.start()
    said, grown = receive.recv()
    child.join()
    assert said == "E_TOO_LARGE"
    assert grown < 2 * limit + (64 << 20), f"peak memory grew by {grown / 2**20:.0f} MiB"
