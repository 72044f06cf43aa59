"""Fault battery for the service worker (RELIABILITY.md F2, F7, F9), on a real PostgreSQL,
with the machine kept busy (the ``busy_machine`` fixture)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_service_e2e import FAST, study_trials, worker

from automl.client import Client
from automl.queue.models import Ticket

T = TypeVar("T")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("busy_machine")]


def started(process: subprocess.Popen) -> float:
    """When the worker said it started (its imports done), on this clock."""
    assert process.stdout is not None
    for line in process.stdout:
        if "started" in line:
            return time.monotonic()
    raise AssertionError("the worker exited before it started")


def wait_for(condition, timeout: float, what: str,  # type: ignore[no-untyped-def]
             explain: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{explain()}"
        time.sleep(0.1)


def first_value(read: Callable[[], T | None], timeout: float, what: str) -> T:
    """The first value ``read`` gives that is not None (read once: it may be gone by a
    second read, e.g. a trial that finished meanwhile)."""
    deadline = time.monotonic() + timeout
    while (value := read()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def running_trials(url: str, run_id: str) -> list[optuna.trial.FrozenTrial]:
    try:
        trials = study_trials(url, run_id)
    except KeyError:  # the study is created by the first worker
        return []
    return [t for t in trials if t.state == TrialState.RUNNING]


def training_trial(url: str, run_id: str) -> optuna.trial.FrozenTrial | None:
    """A running trial with all its parameters recorded: it has started to train. (A
    worker lost earlier, while Optuna still suggested them, leaves only those it had
    stored, and its retry draws the rest afresh.) Any such trial, not the first running
    one: an enqueued trial's ``config`` is written behind, up to a flush later (seconds)."""
    return next((t for t in running_trials(url, run_id) if "config" in t.user_attrs), None)


def run_state(url: str, run_id: str) -> str:
    """The run's trials and tickets, for a failure message."""
    trials = [(t.number, t.state.name, t.user_attrs.get("stop_reason"))
              for t in study_trials(url, run_id)]
    with Session(Client(url).engine) as session:
        tickets = session.execute(
            select(Ticket.id, Ticket.kind, Ticket.status, Ticket.worker_id,
                   Ticket.trial_number, Ticket.attempts, Ticket.leased_until, Ticket.error)
            .where(Ticket.run_id == run_id).order_by(Ticket.id)).all()
    return f"trials: {trials}\ntickets:\n" + "\n".join(str(tuple(t)) for t in tickets)


def test_f9_a_paused_worker_loses_its_trial_and_carries_on(
        pg_url: str, digits_frame: pd.DataFrame) -> None:
    client = Client(pg_url)
    slow = {**FAST, "max_epochs": 80, "patience": 80, "units": 128}
    run = client.submit(digits_frame, "target", space=slow, n_trials=3, n_seeds=1,
                        pruner="none")
    paused = worker(pg_url, "--lease", "2", "--idle-exit", "5")
    victim = first_value(lambda: training_trial(pg_url, run.id), 90, "a trial training")
    os.kill(paused.pid, signal.SIGSTOP)
    other = worker(pg_url, "--lease", "2", "--idle-exit", "5")
    wait_for(lambda: study_trials(pg_url, run.id)[victim.number].state == TrialState.FAIL,
             60, "the sweeper to fail the paused worker's trial",
             lambda: run_state(pg_url, run.id))
    os.kill(paused.pid, signal.SIGCONT)
    result = run.wait(progress=False, timeout=300)
    for process in (paused, other):
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output  # the resumed worker did not crash
    lost = study_trials(pg_url, run.id)[victim.number]
    assert lost.user_attrs["stop_reason"] == "lost_worker"  # the late writes were rejected
    complete = [t for t in study_trials(pg_url, run.id) if t.state == TrialState.COMPLETE]
    assert len(complete) == 3 and result["n_complete"] == 3
    assert any(t.params == lost.params for t in complete)  # re-run with its parameters


def test_f2_a_killed_worker_restarted_resumes_the_run(pg_url: str,
                                                      digits_frame: pd.DataFrame) -> None:
    client = Client(pg_url)
    slow = {**FAST, "max_epochs": 80, "patience": 80, "units": 128}
    run = client.submit(digits_frame, "target", space=slow, n_trials=3, n_seeds=1,
                        pruner="none")
    first = worker(pg_url, "--lease", "2")
    victim = first_value(lambda: training_trial(pg_url, run.id), 90, "a trial training")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    # What the dead worker left RUNNING: nothing changes it now but a sweeper. The victim
    # is among them (it was found as it started, and trains for seconds).
    orphans = {t.number for t in running_trials(pg_url, run.id)}
    assert victim.number in orphans, run_state(pg_url, run.id)
    second = worker(pg_url, "--lease", "2", "--idle-exit", "5")
    started(second)  # its imports take from 3 s to 20 s, with the machine's load

    def orphans_failed() -> bool:
        trials = study_trials(pg_url, run.id)
        return all(trials[number].state == TrialState.FAIL for number in orphans)

    # Failed by the restarted worker's sweep once the lease (2 s) lapsed (the bound only
    # stops a hang: nothing here is a speed claim), then re-run with their parameters.
    wait_for(orphans_failed, 180, "the restarted worker to fail the orphaned trials",
             lambda: run_state(pg_url, run.id))
    run.wait(progress=False, timeout=300)
    second.wait(timeout=120)
    trials = study_trials(pg_url, run.id)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    # Each trial the killed worker had started is failed as lost and run again, once,
    # with its own parameters; nothing else failed.
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert {t.number for t in lost} == orphans
    assert {t.user_attrs["stop_reason"] for t in lost} == {"lost_worker"}
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for trial in lost:
        rerun = [t for t in trials if t.params == trial.params]
        assert [t.state for t in rerun] == [TrialState.FAIL, TrialState.COMPLETE]


def test_f7_eight_workers_four_hundred_trials_exactly(pg_server, pg_url: str) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 256)
    frame = pd.DataFrame(rng.normal(size=(256, 8)) + y[:, None], columns=list("abcdefgh"))
    frame["y"] = y
    client = Client(pg_url)
    space = {"max_epochs": 5, "patience": 5, "n_layers": 1, "units": 8, "batch_size": 64}
    run = client.submit(frame, "y", space=space, n_trials=400, n_seeds=1)
    peak = [0]
    stop = threading.Event()

    def watch_connections() -> None:
        while not stop.is_set():
            (count,), = pg_server.psql("SELECT count(*) FROM pg_stat_activity")
            peak[0] = max(peak[0], int(count))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch_connections, daemon=True)
    watcher.start()
    workers = [worker(pg_url, "--idle-exit", "3") for _ in range(8)]
    try:
        result = run.wait(progress=False, timeout=900)
    finally:
        stop.set()
        for process in workers:
            process.wait(timeout=120)
    trials = study_trials(pg_url, run.id)
    assert sorted(t.number for t in trials) == list(range(400))  # unique and contiguous
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert result["n_trials"] == 400
    with Session(client.engine) as session:
        ledger = session.scalars(select(Ticket.result).where(Ticket.run_id == run.id,
                                                             Ticket.kind == "trial")).all()
    assert sorted(r["trial_number"] for r in ledger) == list(range(400))  # 0 lost, 0 phantom
    assert peak[0] < 100 - 10
