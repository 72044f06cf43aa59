"""The head start: a fork of the driver serving a run's tickets while Ray starts (no Ray
here: the fork is an ordinary in-process worker on a SQLite file)."""

from __future__ import annotations

import gc
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from sqlalchemy import func, select

from automl.options import TuneOptions
from automl.queue import leases, queries
from automl.queue.engine import make_engine
from automl.queue.models import Ticket
from automl.queue.schema import ensure_schema
from automl.run.submit import Submission, validate_submission, write_submission
from workers.faults import install
from workers.head_start import HeadStart, can_fork, start_frozen
from workers.service_worker import ServiceWorker

pytestmark = pytest.mark.skipif(not can_fork(), reason="the head start forks (Linux only)")

TINY = {"max_epochs": 4, "patience": 4, "n_layers": 1, "units": [4, 8], "batch_size": 64,
        "lr_schedule": "constant"}


def submit(tmp_path: Path, frame: pd.DataFrame, n_trials: int) -> tuple[str, str, Submission]:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    options = TuneOptions(storage=url, n_trials=n_trials, n_seeds=1, progress=False)
    submission = validate_submission(frame, "target", TINY, options)
    ensure_schema(url)
    engine = make_engine(url)
    run_id = write_submission(engine, submission)
    engine.dispose()  # the fork opens its own connections
    return url, run_id, submission


def wait_for(condition: Callable[[], bool], timeout: float = 120) -> None:
    stop_at = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < stop_at, "timed out"
        time.sleep(0.05)


def state(url: str, run_id: str) -> queries.RunState:
    engine = make_engine(url)
    try:
        found = queries.run_state(engine, run_id)
        assert found is not None
        return found
    finally:
        engine.dispose()


def served_by(url: str, worker_id: str) -> int:
    """Tickets this worker ran to their end (a done ticket keeps its worker's id)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).where(
                Ticket.worker_id == worker_id, Ticket.status == "done")) or 0)
    finally:
        engine.dispose()


def test_the_fork_serves_the_whole_run_when_ray_never_comes(
        tmp_path: Path, digits_frame: pd.DataFrame) -> None:
    url, run_id, submission = submit(tmp_path, digits_frame.head(300), n_trials=3)
    head = HeadStart(url, run_id, submission.prepared, lease_s=30)
    wait_for(lambda: state(url, run_id).run.status == "succeeded")
    assert head.close()  # a clean exit
    tickets = state(url, run_id).tickets
    assert served_by(url, head.worker_id) == sum(tickets.values()) == tickets[("trial", "done")] + \
        tickets[("baseline", "done")] + tickets[("best", "done")]


def test_after_stop_the_fork_finishes_its_ticket_and_claims_no_more(
        tmp_path: Path, digits_frame: pd.DataFrame) -> None:
    url, run_id, submission = submit(tmp_path, digits_frame.head(300), n_trials=20)
    head = HeadStart(url, run_id, submission.prepared, lease_s=30)
    wait_for(lambda: state(url, run_id).tickets[("trial", "running")] == 1)
    head.stop()
    assert head.close()
    tickets = state(url, run_id).tickets
    assert tickets[("trial", "running")] == 0  # the ticket in hand was finished
    done = served_by(url, head.worker_id)
    assert 1 <= tickets[("trial", "done")] == done < 20
    assert tickets[("trial", "queued")] == 20 - done  # left for Ray's workers


def test_a_killed_fork_loses_its_ticket_not_the_run(tmp_path: Path,
                                                    digits_frame: pd.DataFrame) -> None:
    url, run_id, submission = submit(tmp_path, digits_frame.head(300), n_trials=3)
    install("sigkill@trial:0:epoch:1")  # the fork inherits this process's faults
    try:
        head = HeadStart(url, run_id, submission.prepared, lease_s=30)
        wait_for(lambda: not head.running)
        assert not head.close()  # killed in its first trial
    finally:
        install(None)
    # What the driver does then (workers.local_run): its leases end now, a sweep settles them.
    sweeper = ServiceWorker(url, lease_s=30)
    assert leases.end_leases_of(sweeper.engine, head.worker_id) == 1
    sweeper.sweep()
    sweeper.close()
    study = optuna.load_study(study_name=state(url, run_id).run.study_name, storage=url)
    (trial,) = study.get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs["stop_reason"] == "lost_worker"
    tickets = state(url, run_id).tickets
    assert tickets[("trial", "queued")] == 3 and tickets[("trial", "running")] == 0


def _frozen_in_the_copy(results: Any) -> None:
    results.put(gc.get_freeze_count())


def test_the_fork_never_collects_what_it_inherits() -> None:
    """The copy's collector leaves the parent's objects alone (freeing an inherited
    onnxruntime session once hung a copy); the parent is thawed after the fork."""
    context = multiprocessing.get_context("fork")
    results = context.SimpleQueue()
    process = context.Process(target=_frozen_in_the_copy, args=(results,))
    start_frozen(process)
    process.join()
    assert process.exitcode == 0
    assert results.get() > 1000  # everything the parent held at the fork
    assert gc.get_freeze_count() == 0
