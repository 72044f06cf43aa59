"""A process's buffered rows go to the database together: one transaction carries every
running trial's batch, and the writes that fall due inside ``writing_together`` (a
cohort's refill asking its members, the members stopping at one epoch) go in one
transaction when it closes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from study_settings import study_settings

from automl.study.storage import retry, rows
from automl.study.storage.write_behind import WriteBehindStorage, writing_together
from automl.study.studies import create_study, make_storage


def _study(tmp_path: Path) -> tuple[str, optuna.Study, WriteBehindStorage]:
    url = f"sqlite:///{tmp_path / 'together.db'}"
    study = create_study(url, "s", study_settings(), {}, storage=make_storage(url))
    inner = study._storage.inner  # type: ignore[attr-defined]  # RetryingStorage
    assert isinstance(inner, WriteBehindStorage)
    return url, study, inner


def _on_disk(url: str) -> list[optuna.trial.FrozenTrial]:
    """The trials as another process sees them (a plain storage: no cache, no buffer)."""
    return optuna.load_study(study_name="s", storage=optuna.storages.RDBStorage(url)).trials


def _commits(storage: WriteBehindStorage) -> list[int]:
    commits: list[int] = []
    event.listen(storage._rdb.engine, "commit", lambda _conn: commits.append(1))
    return commits


def _asked(study: optuna.Study, n: int) -> list[optuna.Trial]:
    """``n`` trials asked and suggested, as a cohort's members are before they train."""
    trials = [study.ask() for _ in range(n)]
    for trial in trials:
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_int("units", 8, 64)
    return trials


def test_one_trials_parameters_take_every_running_trials_along(tmp_path: Path) -> None:
    url, study, storage = _study(tmp_path)
    trials = _asked(study, 4)
    commits = _commits(storage)
    trials[0].set_user_attr("config", {"units": 8})  # its parameters are due now ...
    assert len(commits) == 1  # ... and everyone's go with them
    on_disk = _on_disk(url)
    assert [set(t.params) for t in on_disk] == [{"lr", "units"}] * 4
    assert on_disk[0].user_attrs == {"config": {"units": 8}}
    commits.clear()
    for trial in trials[1:]:
        trial.report(0.8, 0)  # only values: they wait for the next write
    assert not commits and not storage._pending[trials[1]._trial_id].is_urgent()


def test_a_refills_parameters_are_one_write_when_it_ends(tmp_path: Path) -> None:
    url, study, storage = _study(tmp_path)
    commits = _commits(storage)
    with writing_together(study):
        trials = _asked(study, 4)
        for trial in trials:
            trial.set_user_attr("config", {"units": 8})  # due now, but the scope holds it
        asked = len(commits)  # (each new trial's row is a commit of its own)
        assert [t.params for t in _on_disk(url)] == [{}] * 4
    assert len(commits) == asked + 1
    assert [set(t.params) for t in _on_disk(url)] == [{"lr", "units"}] * 4


def test_members_that_end_together_are_one_transaction(tmp_path: Path) -> None:
    url, study, storage = _study(tmp_path)
    trials = _asked(study, 4)
    for epoch in range(3):
        for i, trial in enumerate(trials):
            trial.report(1.0 / (epoch + i + 1), epoch)
    commits = _commits(storage)
    with writing_together(study):
        told = [study.tell(trials[0], 0.25), study.tell(trials[1], state=TrialState.PRUNED),
                study.tell(trials[2], state=TrialState.FAIL)]
        assert not commits  # nothing written yet: others see them running
        assert [t.state for t in _on_disk(url)][:3] == [TrialState.RUNNING] * 3
        # ... while this process reads them back as they ended
        mine = study.get_trials(deepcopy=False)
        assert [t.state for t in mine] == [TrialState.COMPLETE, TrialState.PRUNED,
                                          TrialState.FAIL, TrialState.RUNNING]
        with pytest.raises(ValueError, match="Cannot tell a COMPLETE trial"):
            study.tell(trials[0], 0.5)  # told twice: refused, as Optuna refuses it
        commits.clear()  # (the reads above commit too)
    assert len(commits) == 1
    on_disk = _on_disk(url)
    assert [t.state for t in on_disk] == [TrialState.COMPLETE, TrialState.PRUNED,
                                         TrialState.FAIL, TrialState.RUNNING]
    for ours, stored in zip(told, on_disk, strict=False):  # read back exactly as stored
        assert ours.value == stored.value and ours.datetime_complete == stored.datetime_complete
        assert ours.intermediate_values == stored.intermediate_values
        assert ours.params == stored.params and ours.user_attrs == stored.user_attrs
    assert on_disk[3].intermediate_values == {0: 0.25, 1: 0.2, 2: 1 / 6}  # its batch went too


def test_a_trial_read_right_after_tell_costs_no_query(tmp_path: Path) -> None:
    url, study, storage = _study(tmp_path)
    trial = _asked(study, 1)[0]
    trial.report(0.5, 0)
    study.tell(trial, 0.5)
    statements: list[str] = []
    event.listen(storage._rdb.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: statements.append(statement))
    mine = study._storage.get_trial(trial._trial_id)
    assert not statements
    stored = _on_disk(url)[0]
    assert (mine.state, mine.value, mine.datetime_complete, mine.intermediate_values) == \
        (stored.state, stored.value, stored.datetime_complete, stored.intermediate_values)


def test_a_member_failed_elsewhere_keeps_that_end_and_the_others_are_written(
        tmp_path: Path) -> None:
    url, study, _storage = _study(tmp_path)
    lost, kept = _asked(study, 2)
    lost.report(0.4, 0)
    kept.report(0.3, 0)
    with writing_together(study):
        # another worker's sweeper fails ``lost`` (its lease lapsed) while it trains
        optuna.storages.RDBStorage(url).set_trial_state_values(lost._trial_id, TrialState.FAIL)
        study.tell(lost, 0.4)
        study.tell(kept, 0.3)
    on_disk = _on_disk(url)
    assert on_disk[0].state == TrialState.FAIL and on_disk[0].value is None
    assert on_disk[1].state == TrialState.COMPLETE and on_disk[1].value == 0.3
    assert study._storage.get_trial(lost._trial_id).state == TrialState.FAIL


def test_a_storage_without_a_buffer_finishes_as_usual() -> None:
    study = optuna.create_study()
    trial = study.ask()
    with writing_together(study):
        study.tell(trial, 1.0)
        assert study.trials[0].state == TrialState.COMPLETE


def _flaky_writes(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[int]:
    """``rows.write_batches`` failing ``failures`` times as a restarting database does."""
    real, calls = rows.write_batches, []

    def write(*args: Any) -> set[int]:
        calls.append(1)
        if len(calls) <= failures:
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return real(*args)

    monkeypatch.setattr(rows, "write_batches", write)
    return calls


def test_ends_that_meet_a_restarting_database_are_written_by_the_retry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, study, _storage = _study(tmp_path)
    trials = _asked(study, 2)
    calls = _flaky_writes(monkeypatch, failures=1)
    with writing_together(study):
        for trial in trials:
            study.tell(trial, 0.5)
    assert len(calls) == 2
    assert [t.state for t in _on_disk(url)] == [TrialState.COMPLETE] * 2


def test_ends_lost_with_the_database_leave_the_trials_running_for_their_leases(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, study, _storage = _study(tmp_path)
    trials = _asked(study, 2)
    monkeypatch.setattr(retry, "_budget_s", 0.2)
    _flaky_writes(monkeypatch, failures=10**6)
    with pytest.raises(OperationalError), writing_together(study):
        for trial in trials:
            study.tell(trial, 0.5)
    # as after a tell that failed: running here and on disk, its rows still buffered
    assert study._storage.get_trial(trials[0]._trial_id).state == TrialState.RUNNING
    assert [t.state for t in _on_disk(url)] == [TrialState.RUNNING] * 2


def test_an_enqueued_trial_ended_together_with_others_reads_back_ended(
        tmp_path: Path) -> None:
    """A lost trial's retry is enqueued and popped, not created here: it is not mirrored,
    and its end is written at once so that tell's read-back sees it."""
    url, study, _storage = _study(tmp_path)
    study.enqueue_trial({"lr": 0.01})
    retried, fresh = study.ask(), study.ask()
    retried.suggest_float("lr", 1e-4, 1e-1, log=True)
    with writing_together(study):
        told = study.tell(retried, state=TrialState.FAIL)
        assert told.state == TrialState.FAIL
        study.tell(fresh, 0.1)
    assert [t.state for t in _on_disk(url)] == [TrialState.FAIL, TrialState.COMPLETE]


def test_an_end_written_at_once_that_meets_an_outage_keeps_the_scopes_other_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a scope, an enqueued retry's end is written at once; when that write is
    retried through a database restart, the members' ends the scope holds still go."""
    url, study, _storage = _study(tmp_path)
    study.enqueue_trial({"lr": 0.01})
    retried, member = study.ask(), study.ask()
    retried.suggest_float("lr", 1e-4, 1e-1, log=True)
    with writing_together(study):
        study.tell(member, 0.2)  # held by the scope
        calls = _flaky_writes(monkeypatch, failures=1)
        study.tell(retried, 0.1)  # written at once: fails, then the retry writes it
        assert len(calls) == 2
    assert [t.state for t in _on_disk(url)] == [TrialState.COMPLETE] * 2
    assert study._storage.get_trial(member._trial_id).state == TrialState.COMPLETE
