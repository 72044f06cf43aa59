"""A compression bomb: time to refusal and peak memory of reading it.

    python bench/compression_bomb.py --inflated-gb 1.6 --columns 100

Writes a ``.csv.gz`` of gzip members that each inflate one block of numeric rows (so
a few MB on disk inflate to ``--inflated-gb`` GB), then reads it with
``automl.data.load_dataset`` under the default limits (``DataLimits()``: 1 GiB, 5 million
rows, 500 million cells) in a fresh child process, and reports what the child said, its
wall time and its peak resident memory (``ru_maxrss``) next to its resident memory
before reading.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

BLOCK_BYTES = 1 << 20


def write_bomb(path: Path, inflated_bytes: int, columns: int, text: bool = False) -> int:
    """Write the bomb (numbers, or one-letter text cells); return its size on disk."""
    header = ",".join(f"f{i}" for i in range(columns)) + ",y\n"
    cells = [chr(97 + i % 26) if text else f"{(i % 9) + 0.5}" for i in range(columns)]
    row = ",".join(cells) + ",1\n"
    block = row * max(1, BLOCK_BYTES // len(row))
    member = gzip.compress(block.encode(), compresslevel=9)
    with open(path, "wb") as handle:
        handle.write(gzip.compress(header.encode()))
        for _ in range(inflated_bytes // len(block)):
            handle.write(member)
    return path.stat().st_size


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def read_in_child(path: str, out: Any, max_bytes: int | None) -> None:
    from automl.data import DataLimits, load_dataset
    from automl.errors import AutoMLError

    limits = DataLimits() if max_bytes is None else DataLimits(max_bytes=max_bytes)
    before = _rss_mib()
    started = time.perf_counter()
    try:
        load_dataset(path, "y", limits=limits)
        said = "accepted"
    except AutoMLError as exc:
        said = exc.one_line()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.send({"said": said, "seconds": seconds, "rss_before_mib": before,
              "peak_rss_mib": peak})


def measure(path: Path, max_bytes: int | None = None) -> dict[str, Any]:
    """Read ``path`` in a fresh ``spawn`` child; what it said, its time and memory."""
    context = mp.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=read_in_child, args=(str(path), send, max_bytes))
    child.start()
    result: dict[str, Any] = receive.recv()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inflated-gb", type=float, default=1.6)
    parser.add_argument("--columns", type=int, default=100)
    parser.add_argument("--text", action="store_true", help="one-letter text cells")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bomb.csv.gz"
        on_disk = write_bomb(path, int(args.inflated_gb * 1e9), args.columns, args.text)
        result = measure(path)
    print(json.dumps({"on_disk_mb": on_disk / 1e6, "inflates_to_gb": args.inflated_gb,
                      "columns": args.columns, "text": args.text, **result}, indent=2))


if __name__ == "__main__":
    main()
