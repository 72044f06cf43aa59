"""Each node fetches a dataset from the database once and keeps it on local disk.

Datasets are stored once per content hash (Parquet bytes in ``automl_datasets``). Every
worker process used to read the blob from the database when it first met a run; with many
processes per node that is the same bytes over the network again and again. Here the
first process on a node writes them to ``$AUTOML_CACHE_DIR`` (default
``~/.cache/automl/datasets``) under their content hash, atomically (a temporary file,
then a rename), readable by the owner only; every later process on the node reads the
file. The rows are the ones the run was submitted with: the file name is the hash the
service computed from them, and the database row is never changed.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

CACHE_ENV = "AUTOML_CACHE_DIR"


def cache_dir() -> Path:
    """Where this node keeps datasets (created 0700 on first use)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "automl"
    root = Path(os.environ.get(CACHE_ENV, default)) / "datasets"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def cached_frame(content_hash: str, fetch: Callable[[], bytes]) -> pd.DataFrame:
    """The dataset with this hash: from the node's cache, or ``fetch()``-ed and cached."""
    if not content_hash.isalnum():  # it names a file
        raise ValueError(f"not a content hash: {content_hash!r}")
    path = cache_dir() / f"{content_hash}.parquet"
    if path.exists():
        try:
            return pd.read_parquet(path)
        except Exception:  # a damaged file (disk full, manual edit): fetch it again
            path.unlink(missing_ok=True)
    data = fetch()
    _write_atomically(path, data)
    return pd.read_parquet(io.BytesIO(data))


def _write_atomically(path: Path, data: bytes) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
    try:
        with os.fdopen(handle, "wb") as file:  # mkstemp creates it 0600
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
