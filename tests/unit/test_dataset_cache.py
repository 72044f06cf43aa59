"""A node fetches each dataset once and then reads it from its local cache."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pandas as pd
import pytest

from workers.dataset_cache import cached_frame


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def test_the_database_is_asked_once_per_node(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOML_CACHE_DIR", str(tmp_path))
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]})
    fetches: list[int] = []

    def fetch() -> bytes:
        fetches.append(1)
        return _parquet(frame)

    for _ in range(3):
        pd.testing.assert_frame_equal(cached_frame("abc123", fetch), frame)
    assert len(fetches) == 1
    path = tmp_path / "datasets" / "abc123.parquet"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the owner's only
    assert [p.name for p in path.parent.iterdir()] == ["abc123.parquet"]  # no leftovers


def test_a_damaged_file_is_fetched_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOML_CACHE_DIR", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "abc.parquet").write_bytes(b"not parquet")
    frame = pd.DataFrame({"x": [3.0]})
    pd.testing.assert_frame_equal(cached_frame("abc", lambda: _parquet(frame)), frame)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "datasets" / "abc.parquet"), frame)


def test_a_failed_fetch_leaves_nothing_behind(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOML_CACHE_DIR", str(tmp_path))

    def fetch() -> bytes:
        raise ConnectionError("database away")

    with pytest.raises(ConnectionError):
        cached_frame("abc", fetch)
    assert list((tmp_path / "datasets").iterdir()) == []
    with pytest.raises(ValueError, match="not a content hash"):
        cached_frame("../../etc/passwd", fetch)
