"""Trials per minute with 1, 2, 4, 8 ``automl worker`` processes on fixed-length trials.

For each worker count: a fresh database on one throwaway PostgreSQL 15 server
(``tests/pgserver.py``), migrated with ``automl.queue.schema.upgrade``; one run submitted through
``automl.client.Client.submit`` on scikit-learn's digits (``load_digits(as_frame=True).frame``,
target ``target``) with ``pruner="none"``, ``n_seeds=1`` and a space fixed to 10 epochs of a
one-layer, 32-unit MLP with batch size 32 (``max_epochs=10, patience=10``: every trial
trains exactly 10 epochs of 34 steps; activation, batch norm, dropout, optimiser, learning
rate, schedule and weight decay are still sampled by TPE). The run's
baseline and best-model tickets are marked ``skipped`` in the database right after the
submission, so the workers run the trial tickets only. Then N subprocesses
``python -m automl worker --storage URL --idle-exit 3`` start together.

Timed: from just before the first worker process is started to the moment every trial ticket
of the run is terminal (polled every 0.2 s). That includes each worker's interpreter start,
imports and connection set-up. The table also gives the span from the first claim to the
last trial release (ticket timestamps, database clock), i.e. without the start-up, and the
mean training seconds per trial (trial attribute ``seconds``), which grows once workers
outnumber the cores.

    python bench/throughput.py [--trials 40] [--workers 1 2 4 8] [--json OUT]
                               [--timeout SECONDS] [--settle SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

# Every trial trains exactly 10 epochs of the same number of steps (batch size fixed too).
SPACE = {"max_epochs": 10, "patience": 10, "n_layers": 1, "units": 32, "batch_size": 32}
IDLE_EXIT_S = 3
POLL_S = 0.2
TERMINAL = ("done", "failed", "skipped", "cancelled")


def measure(server: Any, n_workers: int, n_trials: int, timeout: float,
            log_dir: Path) -> dict[str, Any]:
    import optuna
    from sklearn.datasets import load_digits
    from sqlalchemy import func, select, update
    from sqlalchemy.orm import Session

    from automl.client import Client
    from automl.queue.models import Ticket
    from automl.queue.queries import utcnow
    from automl.queue.schema import upgrade

    name = f"bench_tp_{n_workers}_{uuid.uuid4().hex[:8]}"
    server.create_database(name, template="template0")
    url = server.url(name)
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        upgrade(url)
        client = Client(url)
        run = client.submit(load_digits(as_frame=True).frame, target="target", space=SPACE,
                            n_trials=n_trials, n_seeds=1, pruner="none", seed=0)
        with client.engine.begin() as connection:  # trials only: no baselines, no best
            connection.execute(update(Ticket).where(Ticket.run_id == run.id,
                                                    Ticket.kind != "trial")
                               .values(status="skipped", updated_at=utcnow()))

        def trials_terminal() -> int:
            with Session(client.engine) as session:
                return int(session.scalar(
                    select(func.count()).where(Ticket.run_id == run.id, Ticket.kind == "trial",
                                               Ticket.status.in_(TERMINAL))) or 0)

        command = [sys.executable, "-m", "automl", "worker", "--storage", url,
                   "--idle-exit", str(IDLE_EXIT_S)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        started = time.perf_counter()
        for i in range(n_workers):
            log = open(log_dir / f"w{n_workers}_{i}.log", "wb")  # noqa: SIM115
            logs.append(log)
            procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True))
        while True:
            done = trials_terminal()
            elapsed = time.perf_counter() - started
            if done >= n_trials:
                break
            if elapsed > timeout:
                raise TimeoutError(f"{n_workers} workers: {done}/{n_trials} trials after "
                                   f"{timeout:.0f} s")
            if all(p.poll() is not None for p in procs):
                raise RuntimeError(f"every worker exited with {done}/{n_trials} trials done; "
                                   f"see {log_dir}")
            time.sleep(POLL_S)
        with Session(client.engine) as session:
            first_claim, last_release = session.execute(
                select(func.min(Ticket.heartbeat_at), func.max(Ticket.updated_at))
                .where(Ticket.run_id == run.id, Ticket.kind == "trial")).one()
            statuses = dict(session.execute(
                select(Ticket.status, func.count()).where(Ticket.run_id == run.id,
                                                          Ticket.kind == "trial")
                .group_by(Ticket.status)).all())
        exit_codes = stop(procs, grace=IDLE_EXIT_S + 30)
        study = optuna.load_study(study_name=f"automl-{run.id}", storage=url)
        trials = study.get_trials(deepcopy=False)
        train = [float(t.user_attrs["seconds"]) for t in trials if "seconds" in t.user_attrs]
        states: dict[str, int] = {}
        for t in trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        claim_span = (last_release - first_claim).total_seconds()
        client.close()
        return {
            "workers": n_workers, "trials": n_trials, "seconds": elapsed,
            "trials_per_min": 60 * n_trials / elapsed,
            "claim_span_s": claim_span, "trials_per_min_after_start": 60 * n_trials / claim_span,
            "mean_train_s": sum(train) / len(train) if train else float("nan"),
            "ticket_statuses": statuses, "trial_states": states, "exit_codes": exit_codes,
        }
    finally:
        stop(procs, grace=5)
        for log in logs:
            log.close()
        server.drop_database(name)


PRODUCT_FILES = ("automl/study/studies.py", "automl/study/settings.py",
                 "automl/study/storage/retry.py", "automl/queue/queries.py",
                 "automl/queue/leases.py", "automl/study/storage/write_behind.py",
                 "workers/service_worker.py", "workers/tickets.py", "workers/objective.py",
                 "workers/callbacks.py", "workers/train.py")


def product_fingerprint() -> dict[str, str]:
    """sha256 (first 12 hex digits) of the product files measured, to tell versions apart."""
    import hashlib

    return {name: hashlib.sha256((ROOT / name).read_bytes()).hexdigest()[:12]
            for name in PRODUCT_FILES if (ROOT / name).exists()}


def stop(procs: list[subprocess.Popen[bytes]], grace: float) -> list[int | None]:
    """Wait up to ``grace`` seconds for the workers to exit on their own (idle exit), then
    SIGTERM, then SIGKILL each one we started (by its own process group)."""
    deadline = time.monotonic() + grace
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.poll() is None]
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, sig)
        for p in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
    return [p.poll() for p in procs]


def settle(limit_s: float) -> float:
    """Wait (at most ``limit_s``) for the 1-minute load average to fall below 1, so that
    the previous measurement's processes are not still counted; return the load."""
    deadline = time.monotonic() + limit_s
    while os.getloadavg()[0] >= 1.0 and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    base = next((r["trials_per_min"] for r in rows if r["workers"] == 1), None)
    base_after = next((r["trials_per_min_after_start"] for r in rows if r["workers"] == 1), None)
    lines = ["| workers | trials | seconds | trials/min | speed-up vs 1 worker | "
             "first claim to last trial s | trials/min after start-up | speed-up | "
             "mean training s/trial |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        speed = f"{r['trials_per_min'] / base:.2f}" if base else "n/a"
        speed_after = (f"{r['trials_per_min_after_start'] / base_after:.2f}"
                       if base_after else "n/a")
        lines.append(f"| {r['workers']} | {r['trials']} | {r['seconds']:.1f} | "
                     f"{r['trials_per_min']:.1f} | {speed} | {r['claim_span_s']:.1f} | "
                     f"{r['trials_per_min_after_start']:.1f} | {speed_after} | "
                     f"{r['mean_train_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40, help="trials per measurement (40)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8],
                        help="worker counts to measure (1 2 4 8)")
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds one measurement may take before it is stopped (600)")
    parser.add_argument("--settle", type=float, default=90,
                        help="before each measurement, wait up to this many seconds for the "
                             "1-min load average to drop below 1 (90)")
    args = parser.parse_args(argv)
    if args.trials < 1 or any(w < 1 for w in args.workers):
        parser.error("--trials and --workers must be at least 1")

    from pgserver import PostgresServer

    server = PostgresServer()
    rows = []
    log_dir = Path(tempfile.mkdtemp(prefix="automl-throughput-"))
    try:
        server.start()
        for n_workers in args.workers:
            print(f"{n_workers} worker(s), {args.trials} trials ...", file=sys.stderr,
                  flush=True)
            load_before = settle(args.settle)
            row = measure(server, n_workers, args.trials, args.timeout, log_dir)
            row["load_1min_before"] = load_before
            print(f"  {row['seconds']:.1f} s, {row['trials_per_min']:.1f} trials/min, "
                  f"states {row['trial_states']}", file=sys.stderr, flush=True)
            rows.append(row)
    except BaseException:
        print(f"worker logs kept in {log_dir}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
    finally:
        server.cleanup()
    print(markdown_table(rows))
    print(f"\nnproc = {os.cpu_count()}: more than {os.cpu_count()} workers share the cores, "
          "so they cannot scale linearly. 1-min load average before each measurement "
          f"(after settling): {[round(r['load_1min_before'], 2) for r in rows]} (above ~1: "
          "something else was still running).")
    if args.json:
        import optuna
        import torch

        meta = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "nproc": os.cpu_count(), "python": platform.python_version(),
                "optuna": optuna.__version__, "torch": torch.__version__,
                "space": SPACE, "idle_exit_s": IDLE_EXIT_S,
                "product_files": product_fingerprint()}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2,
                                              default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
