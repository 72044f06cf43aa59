"""The head start: trials trained in a fork of the driver while Ray starts (no Ray here)."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from automl.data import PreparedData
from automl.executor import StudyJob
from automl.space import Fixed, IntRange, SearchSpace
from automl.studies import StudySettings, create_study
from workers.faults import install
from workers.head_start import HeadStart, can_fork

pytestmark = pytest.mark.skipif(not can_fork(), reason="the head start forks (Linux only)")

TINY = {"max_epochs": Fixed(4), "patience": Fixed(4), "n_layers": Fixed(1),
        "units": IntRange(4, 8), "batch_size": Fixed(64), "lr_schedule": Fixed("constant")}


def start(tmp_path: Path, data: PreparedData, n_trials: int,
          deadline: float | None = None) -> tuple[HeadStart, str]:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    create_study(url, "s", StudySettings(), {})
    space = SearchSpace(TINY).resolve(data.task, len(data.x_train))  # type: ignore[arg-type]
    job = StudyJob(url, "s", space.to_dict(), seed=0)
    return HeadStart(job, data, n_trials, deadline), url


def stored_trials(url: str) -> list[FrozenTrial]:
    """What the fork wrote, read afresh (the driver's own study may serve a read 0.1 s old)."""
    return optuna.load_study(study_name="s", storage=url).get_trials()


def wait_until_done(head: HeadStart, timeout: float = 60) -> None:
    stop_at = time.monotonic() + timeout
    while head.running and time.monotonic() < stop_at:
        head.wait(timeout=0.1)
    assert not head.running, "the fork did not finish its trials"


def test_the_fork_runs_the_budget_when_ray_never_comes(tmp_path: Path, blobs) -> None:
    head, url = start(tmp_path, blobs, n_trials=3)
    wait_until_done(head)
    assert head.close() == []
    assert head.newly_finished() == 3 and head.newly_finished() == 0
    assert head.claim() is None  # the budget is spent: the driver launches nothing more
    trials = stored_trials(url)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(t.user_attrs["stop_reason"] for t in trials)


def test_after_stop_the_fork_finishes_its_trial_and_the_driver_claims_the_rest(
        tmp_path: Path, blobs) -> None:
    head, url = start(tmp_path, blobs, n_trials=5)
    stop_at = time.monotonic() + 60
    while not stored_trials(url) and time.monotonic() < stop_at:
        time.sleep(0.02)
    head.stop()
    wait_until_done(head)
    assert head.close() == []
    ran = head.newly_finished()
    assert ran >= 1 and len(stored_trials(url)) == ran
    claimed = [head.claim() for _ in range(5)]
    assert claimed == [*range(ran, 5), *([None] * ran)]  # one budget, never overrun


def test_an_expired_deadline_claims_nothing(tmp_path: Path, blobs) -> None:
    head, url = start(tmp_path, blobs, n_trials=3, deadline=time.monotonic())
    wait_until_done(head)
    assert head.close() == [] and head.newly_finished() == 0
    assert stored_trials(url) == []


def test_a_killed_fork_loses_its_trial_not_the_run(tmp_path: Path, blobs) -> None:
    install("sigkill@trial:0:epoch:1")  # the fork inherits this process's faults
    try:
        head, url = start(tmp_path, blobs, n_trials=3)
    finally:
        install(None)
    wait_until_done(head)
    (error,) = head.close()
    assert "head-start process exited with code -9" in error
    assert head.newly_finished() == 0
    (trial,) = stored_trials(url)
    assert trial.state == TrialState.RUNNING  # failed as lost_worker by fail_orphans
    assert head.claim() == 1  # the driver goes on with the rest of the budget
