"""What a large trial budget costs the queue: queuing its tickets, then claiming one.

    python bench/queue_scale.py --tickets 1000 100000 [--claims 20] [--storage sqlite]

For each budget, in a fresh SQLite file (or, with ``--storage postgresql``, a fresh
database on the throwaway PostgreSQL 15 of ``tests/pgserver.py``): a 200-row table is
submitted with ``n_trials`` = that budget (``automl.run.submit.write_submission``: dataset,
run and every ticket in one transaction; timed), then ``--claims`` tickets are claimed one
after another by one worker (``automl.queue.leases.claim_ticket``; mean time per claim).
``--analyze`` refreshes PostgreSQL's statistics between the two (autovacuum does so soon
after a large insert; until then the planner may choose a scan).
Nothing trains. Put another version of ``automl`` first on ``PYTHONPATH`` to compare.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from automl.options import TuneOptions
from automl.queue.engine import make_engine
from automl.queue.schema import ensure_schema
from automl.run.submit import validate_submission, write_submission

try:
    from automl.queue.leases import claim_ticket
except ImportError:  # versions before the queue's leases had their own module
    from automl.queue.queries import claim_ticket  # type: ignore[attr-defined,no-redef]


def measure(url: str, n_tickets: int, n_claims: int,
            analyze: bool = False) -> tuple[float, float]:
    """(seconds to submit, milliseconds per claim); ``analyze``: PostgreSQL's statistics
    refreshed between the two, as autovacuum does soon after a large insert."""
    ensure_schema(url)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 4)), columns=list("abcd"))
    frame["y"] = (frame["a"] > 0).astype(int)
    submission = validate_submission(frame, "y", {"max_epochs": 2},
                                     TuneOptions(storage=url, n_trials=n_tickets))
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        write_submission(engine, submission)
        submit_s = time.perf_counter() - started
        if analyze:
            with engine.begin() as connection:
                connection.exec_driver_sql("ANALYZE")
        started = time.perf_counter()
        for _ in range(n_claims):
            assert claim_ticket(engine, "bench", 60) is not None
        return submit_s, (time.perf_counter() - started) / n_claims * 1000
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--claims", type=int, default=20)
    parser.add_argument("--storage", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--analyze", action="store_true",
                        help="PostgreSQL: ANALYZE after submitting, before the claims")
    args = parser.parse_args()
    print("| storage | trial tickets | submit s | claim ms |\n| --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        if args.storage == "postgresql":
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from pgserver import PostgresServer

            server = PostgresServer()
            server.start()
        try:
            for i, n in enumerate(args.tickets):
                if server is None:
                    url = f"sqlite:///{Path(tmp) / f'queue{i}.db'}"
                else:
                    server.create_database(f"queue{i}", template="template0")
                    url = server.url(f"queue{i}")
                submit_s, claim_ms = measure(url, n, args.claims,
                                             args.analyze and server is not None)
                print(f"| {args.storage} | {n:,} | {submit_s:.2f} | {claim_ms:.2f} |",
                      flush=True)
        finally:
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
