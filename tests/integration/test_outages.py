"""PostgreSQL stopped for longer than the lease, at each step of a ticket's life.

Workers run with a 3 s lease and give up retrying a lost connection after 2 s
(``--db-retry``), and the database is stopped for 8 s: the order of the production
defaults (30 s lease, 30 s retry) against a 45 s outage, at a tenth of the wait. The
steps: workers waiting to claim, a trial training, the final evaluation writing the
model. Each run must end succeeded with every trial accounted for: no trial left
RUNNING, every trial of the budget finished, a trial lost with the database failed as
``lost_worker`` and re-run with its own parameters, and the run's status agreeing with
its result. The machine is kept busy meanwhile (``busy_machine``).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState
from pgserver import PostgresServer
from test_faults import started, training_trial, wait_for
from test_service_e2e import FAST, study_trials, worker

from automl.client import Client, RunHandle

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("busy_machine")]

LEASE = ("--lease", "3", "--db-retry", "2")
OUTAGE_S = 8.0
SLOW = {**FAST, "max_epochs": 60, "patience": 60, "units": 128}


def outage(pg_server: PostgresServer) -> None:
    """The database goes away for longer than the lease and the retry budget together."""
    pg_server.stop("fast")
    time.sleep(OUTAGE_S)
    pg_server.start_again()


def best_is_running(url: str, run_id: str) -> bool:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return bool(connection.execute(sa.text(
                "SELECT count(*) FROM automl_tickets WHERE run_id = :id AND kind = 'best' "
                "AND status = 'running'"), {"id": run_id}).scalar())
    finally:
        engine.dispose()


def nothing_lost(url: str, run: RunHandle, result: dict[str, Any], n_trials: int) -> None:
    trials = study_trials(url, run.id)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(finished) == n_trials, [(t.number, t.state) for t in trials]
    for lost in failed:
        assert lost.user_attrs.get("stop_reason") == "lost_worker", lost.user_attrs
        # Re-run with its parameters: all of them, or (lost while still suggesting them,
        # the outage cutting its next write) every one it had recorded.
        assert any(lost.params.items() <= t.params.items() for t in finished), lost.params
    status = run.status()
    assert status.status == "succeeded" and status.trials_left == 0
    assert (status.trials_done, status.trials_complete, status.trials_failed) == \
        (result["n_trials"], result["n_complete"], result["n_failed"])


def drain(process: subprocess.Popen) -> tuple[threading.Thread, list[str]]:
    """Read the worker's output as it comes, on a thread: during an outage a worker logs
    for as long as the database is away, and one whose pipe fills blocks on its next log
    line (its heartbeat and its trial with it)."""
    lines: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
    reader.start()
    return reader, lines


def stop_workers(processes: list[subprocess.Popen],
                 readers: list[tuple[threading.Thread, list[str]]]) -> None:
    alive = [process.poll() is None for process in processes]
    for process in processes:
        process.terminate()
    for process, (reader, _) in zip(processes, readers, strict=True):
        process.wait(timeout=60)
        reader.join(timeout=60)
    outputs = ["".join(lines)[-6000:] for _, lines in readers]
    assert all(alive), outputs  # every worker survived the outage


@contextlib.contextmanager
def two_workers(url: str) -> Iterator[list[subprocess.Popen]]:
    """Two ``automl worker`` processes on the short lease, started (imports done) and
    their output drained; each checked alive at the end."""
    workers = [worker(url, *LEASE) for _ in range(2)]
    for process in workers:
        started(process)
    readers = [drain(process) for process in workers]
    try:
        yield workers
    finally:
        stop_workers(workers, readers)


def run_through_outage(pg_server: PostgresServer, url: str, frame: pd.DataFrame,
                       when: Callable[[RunHandle], bool], n_seeds: int = 1) -> None:
    client = Client(url)
    run = client.submit(frame, "target", space=SLOW, n_trials=3, n_seeds=n_seeds,
                        pruner="none")
    with two_workers(url):
        wait_for(lambda: when(run), 240, "the step the outage is aimed at")
        outage(pg_server)
        result = run.wait(progress=False, timeout=600)
    nothing_lost(url, run, result, 3)


def test_an_outage_while_workers_wait_to_claim(pg_server: PostgresServer, pg_url: str,
                                               digits_frame: pd.DataFrame) -> None:
    with two_workers(pg_url):
        outage(pg_server)  # every claim fails for longer than the lease and the retries
        run = Client(pg_url).submit(digits_frame, "target", space=FAST, n_trials=3,
                                    n_seeds=1, pruner="none")
        result = run.wait(progress=False, timeout=600)
    nothing_lost(pg_url, run, result, 3)


def test_an_outage_while_a_trial_trains(pg_server: PostgresServer, pg_url: str,
                                        digits_frame: pd.DataFrame) -> None:
    run_through_outage(pg_server, pg_url, digits_frame,
                       lambda run: training_trial(pg_url, run.id) is not None)


def test_an_outage_while_the_final_model_is_trained_and_written(
        pg_server: PostgresServer, pg_url: str, digits_frame: pd.DataFrame) -> None:
    run_through_outage(pg_server, pg_url, digits_frame,
                       lambda run: best_is_running(pg_url, run.id), n_seeds=3)
