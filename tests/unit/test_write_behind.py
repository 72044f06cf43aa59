"""A running trial's reports and attributes are written in batches, and nothing is lost."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from study_settings import study_settings

from automl.study.storage import rows
from automl.study.storage.write_behind import WriteBehindStorage
from automl.study.studies import create_study, make_storage


def _write_behind(storage: optuna.storages.BaseStorage) -> WriteBehindStorage:
    inner = storage.inner  # type: ignore[attr-defined]  # RetryingStorage
    assert isinstance(inner, WriteBehindStorage)
    return inner


def _study(tmp_path: Path) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path / 'wb.db'}"
    return url, create_study(url, "s", study_settings(), {}, storage=make_storage(url))


def _from_disk(url: str) -> optuna.trial.FrozenTrial:
    """The trial as another process sees it (a plain storage, no cache, no buffer)."""
    return optuna.load_study(study_name="s", storage=optuna.storages.RDBStorage(url)).trials[0]


def test_reports_are_buffered_until_the_trial_ends(tmp_path: Path) -> None:
    url, study = _study(tmp_path)
    trial = study.ask()
    for epoch in range(10):
        trial.report(1.0 / (epoch + 1), epoch)
    trial.set_user_attr("stop_reason", "completed")
    # This process sees everything; the database has none of it yet.
    mine = study._storage.get_trial(trial._trial_id)
    assert len(mine.intermediate_values) == 10 and mine.user_attrs["stop_reason"] == "completed"
    assert _from_disk(url).intermediate_values == {}
    study.tell(trial, 0.1)
    stored = _from_disk(url)
    assert stored.state == TrialState.COMPLETE and stored.value == 0.1
    assert stored.intermediate_values == {e: 1.0 / (e + 1) for e in range(10)}
    assert stored.user_attrs == {"stop_reason": "completed"}


def test_a_failed_or_pruned_trial_keeps_its_curve_and_reason(tmp_path: Path) -> None:
    url, study = _study(tmp_path)
    trial = study.ask()
    trial.report(0.5, 0)
    trial.set_user_attr("prune_reason", "pruned at epoch 0")
    study.tell(trial, state=TrialState.PRUNED)
    stored = _from_disk(url)
    assert stored.state == TrialState.PRUNED
    assert stored.intermediate_values == {0: 0.5}
    assert stored.user_attrs["prune_reason"] == "pruned at epoch 0"


def test_curves_stay_live_for_the_dashboard(tmp_path: Path) -> None:
    url, study = _study(tmp_path)
    _write_behind(study._storage).flush_s = 0.0  # flush at every write
    trial = study.ask()
    trial.report(0.7, 0)
    assert _from_disk(url).intermediate_values == {0: 0.7}


def test_a_trial_finished_elsewhere_rejects_the_late_batch(tmp_path: Path) -> None:
    url, study = _study(tmp_path)
    trial = study.ask()
    trial.report(0.3, 0)
    # The sweeper of another worker fails this trial (lost lease) meanwhile.
    other = optuna.storages.RDBStorage(url)
    other.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        study._storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [0.3])
    stored = _from_disk(url)
    assert stored.state == TrialState.FAIL and stored.intermediate_values == {}
    assert not _write_behind(study._storage)._pending


def _commits_for_one_trial(study: optuna.Study, engine: object) -> tuple[int, int]:
    """Commits while a trial reports 10 epochs and 10 attributes, and for all of it."""
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    trial = study.ask()
    before = len(commits)
    for epoch in range(10):
        trial.report(float(epoch), epoch)
        trial.set_user_attr(f"a{epoch}", epoch)
    during = len(commits) - before
    study.tell(trial, 0.0)
    return during, len(commits) - before


def test_ten_reports_cost_no_round_trip_until_the_end(tmp_path: Path) -> None:
    _url, study = _study(tmp_path)
    ours = _commits_for_one_trial(study, _write_behind(study._storage)._rdb.engine)
    plain_storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'plain.db'}")
    plain = _commits_for_one_trial(optuna.create_study(storage=plain_storage),
                                   plain_storage.engine)
    assert ours[0] == 0 and plain[0] >= 20
    assert plain[1] - ours[1] >= 19  # 20 writes became one batch
    assert _write_behind(study._storage)._pending == {}


@pytest.mark.filterwarnings("ignore:The reported value is ignored")
def test_batched_rows_read_back_exactly_like_optunas_own(tmp_path: Path) -> None:
    """Infinities, NaN, a step reported twice and an attribute set twice (in two batches)."""
    url, study = _study(tmp_path)
    plain = optuna.create_study(storage=optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 'plain.db'}"))
    wb = _write_behind(study._storage)
    for target in (study, plain):
        trial = target.ask()
        trial.report(float("inf"), 0)
        trial.report(float("nan"), 1)
        trial.set_user_attr("config", {"units": [8, 16], "lr": 1e-3})
        wb.flush()  # a first batch (as after flush_s seconds)
        trial.report(0.25, 1)  # ignored by Optuna (step 1 was reported): stays NaN
        trial.report(0.25, 2)
        trial.set_user_attr("config", {"units": [32]})
        trial.set_user_attr("stop_reason", "early_stopped")
        target.tell(trial, 0.25)
    ours, theirs = _from_disk(url), plain.trials[0]
    assert ours.intermediate_values[0] == theirs.intermediate_values[0] == float("inf")
    assert math.isnan(ours.intermediate_values[1]) and math.isnan(theirs.intermediate_values[1])
    assert ours.intermediate_values[2] == theirs.intermediate_values[2] == 0.25
    assert ours.user_attrs == theirs.user_attrs == {"config": {"units": [32]},
                                                    "stop_reason": "early_stopped"}
    assert ours.state == theirs.state and ours.value == theirs.value


def test_a_batch_that_fails_to_write_is_kept_for_the_retry(tmp_path: Path,
                                                            monkeypatch) -> None:
    url, study = _study(tmp_path)
    wb = _write_behind(study._storage)
    trial = study.ask()
    trial.report(0.5, 0)
    real_write, calls = rows.write_batches, []

    def flaky_write(*args: object) -> set[int]:
        calls.append(1)
        if len(calls) == 1:  # the database restarted mid-flush
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))
        return real_write(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(rows, "write_batches", flaky_write)
    with pytest.raises(OperationalError):
        wb.flush()
    trial.report(0.4, 1)  # reported while the database was away
    study.tell(trial, 0.4)
    assert _from_disk(url).intermediate_values == {0: 0.5, 1: 0.4}


def _statements(engine: object) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: seen.append(statement))
    return seen


def test_suggested_params_are_written_with_the_next_attribute(tmp_path: Path) -> None:
    """Parameters wait for the trial's first attribute (our objective writes "config"
    right after suggesting), then land exactly as Optuna's own set_trial_param writes them."""
    url, study = _study(tmp_path)
    plain = optuna.create_study(storage=optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 'plain.db'}"))
    for target in (study, plain):
        trial = target.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_int("units", 4, 64)
        trial.suggest_categorical("activation", ["relu", "tanh"])
        if target is study:
            assert _from_disk(url).params == {}  # buffered ...
            assert study._storage.get_trial(trial._trial_id).params == trial.params
        trial.set_user_attr("config", {"n": 1})
        if target is study:
            assert _from_disk(url).params == trial.params  # ... until the next write
    ours, theirs = _from_disk(url), plain.trials[0]
    assert ours.distributions == theirs.distributions
    assert set(ours.params) == set(theirs.params) == {"lr", "units", "activation"}


def test_a_changed_distribution_is_refused_at_the_suggestion(tmp_path: Path) -> None:
    _url, study = _study(tmp_path)
    first = study.ask()
    first.suggest_categorical("activation", ["relu", "tanh"])
    study.tell(first, 1.0)
    second = study.ask()
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        second.suggest_float("activation", 0.0, 1.0)


def test_reading_the_running_trial_back_costs_no_query(tmp_path: Path) -> None:
    _url, study = _study(tmp_path)
    statements = _statements(_write_behind(study._storage)._rdb.engine)
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.report(0.5, 0)
    before = len(statements)
    mine = study._storage.get_trial(trial._trial_id)
    assert len(statements) == before
    assert mine.state == TrialState.RUNNING and mine.intermediate_values == {0: 0.5}
    assert "lr" in mine.params
    study.tell(trial, 0.5)
    assert study._storage.get_trial(trial._trial_id).state == TrialState.COMPLETE


def test_an_enqueued_trial_is_still_run_with_its_params(tmp_path: Path) -> None:
    url, study = _study(tmp_path)
    assert study._storage.get_all_trials(study._study_id, states=(TrialState.WAITING,)) == []
    study.enqueue_trial({"lr": 0.01})
    trial = study.ask()
    assert trial.suggest_float("lr", 1e-4, 1e-1, log=True) == 0.01
    study.tell(trial, 0.2)
    assert _from_disk(url).params == {"lr": 0.01}


def test_a_trial_failed_elsewhere_is_not_served_from_the_mirror_after_tell(
        tmp_path: Path) -> None:
    url, study = _study(tmp_path)
    trial = study.ask()
    optuna.storages.RDBStorage(url).set_trial_state_values(trial._trial_id, TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        study.tell(trial, 0.3)
    assert study._storage.get_trial(trial._trial_id).state == TrialState.FAIL


def test_recent_reads_of_all_trials_are_shared_until_this_process_writes(
        tmp_path: Path) -> None:
    url, study = _study(tmp_path)
    wb = _write_behind(study._storage)
    wb.reads.snapshot_s = 3600.0  # "recent" whatever the machine's load: no clock in the test
    study.tell(study.ask(), 1.0)
    statements = _statements(wb._rdb.engine)
    first = wb.get_all_trials(study._study_id)
    after_first = len(statements)
    assert wb.get_all_trials(study._study_id) == first and len(statements) == after_first
    study.tell(study.ask(), 2.0)  # a write of ours: the next read is fresh
    assert len(wb.get_all_trials(study._study_id)) == 2
    other = optuna.load_study(study_name="s", storage=optuna.storages.RDBStorage(url))
    other.tell(other.ask(), 3.0)  # another process: seen once the snapshot is older
    wb.reads.snapshot_s = 0.0
    assert len(wb.get_all_trials(study._study_id)) == 3


def test_the_last_batch_and_the_state_are_one_transaction(tmp_path: Path) -> None:
    url, study = _study(tmp_path)
    commits: list[int] = []
    event.listen(_write_behind(study._storage)._rdb.engine, "commit",
                 lambda _conn: commits.append(1))
    trial = study.ask()
    trial.report(0.5, 0)
    before = len(commits)
    study._storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [0.5])
    assert len(commits) - before == 1
    stored = _from_disk(url)
    assert stored.state == TrialState.COMPLETE and stored.value == 0.5
    assert stored.intermediate_values == {0: 0.5} and stored.datetime_complete is not None


def test_an_enqueued_trial_goes_to_one_asker_only_even_when_it_read_the_state_late(
        tmp_path: Path) -> None:
    """Optuna reads WAITING, then writes RUNNING; on SQLite (no SELECT ... FOR UPDATE) a
    second process reading between the two also got the trial (optuna#4002). The claim is
    now one conditional UPDATE: a late asker gets False and moves on."""
    url, study = _study(tmp_path)
    study.enqueue_trial({"x": 1.0})
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    first, late = make_storage(url), make_storage(url)  # two processes' storages
    assert first.set_trial_state_values(waiting._trial_id, TrialState.RUNNING)
    assert not late.set_trial_state_values(waiting._trial_id, TrialState.RUNNING)
    assert _from_disk(url).state == TrialState.RUNNING
    assert _from_disk(url).datetime_start is not None


def test_parallel_askers_each_get_a_different_enqueued_trial(tmp_path: Path) -> None:
    import threading

    url, study = _study(tmp_path)
    for x in range(4):
        study.enqueue_trial({"x": float(x)})
    barrier, numbers = threading.Barrier(4), []

    def ask() -> None:
        mine = optuna.load_study(study_name="s", storage=make_storage(url))
        barrier.wait()
        numbers.append(mine.ask().number)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(numbers) == [0, 1, 2, 3]


def test_a_lost_trials_retry_is_popped_before_waiting_warm_starts(tmp_path: Path) -> None:
    """Issue 17, case 2: the retry of a lost trial is enqueued behind warm-start trials
    still waiting; whichever process asks next must run the retry, with its own
    parameters, or at small budgets it stays WAITING and the lost trial is never re-run."""
    from automl.study.storage.write_behind import RETRY_ATTR

    url, study = _study(tmp_path)
    for units in (16, 32, 64):
        study.enqueue_trial({"units": units}, user_attrs={"warm_start": True})
    study.enqueue_trial({"units": 99}, user_attrs={RETRY_ATTR: True})
    other = optuna.load_study(study_name="s", storage=make_storage(url))
    trial = other.ask()
    assert trial.suggest_int("units", 1, 128) == 99
    assert [other.ask().suggest_int("units", 1, 128) for _ in range(3)] == [16, 32, 64]


def test_a_study_without_enqueued_trials_is_not_asked_again_at_every_ask(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, study = _study(tmp_path)
    wb = _write_behind(study._storage)
    wb.reads.waiting_s = 3600.0  # "within a second" whatever the machine's load
    queries: list[int] = []
    any_waiting = rows.any_waiting
    monkeypatch.setattr(rows, "any_waiting",
                        lambda *args: queries.append(1) or any_waiting(*args))
    for _ in range(3):
        study.tell(study.ask(), 1.0)
    assert len(queries) == 1  # one narrow query for three asks
    study.enqueue_trial({"lr": 0.01})  # ours: the next ask looks again and pops it
    trial = study.ask()
    assert trial.suggest_float("lr", 1e-4, 1e-1, log=True) == 0.01 and len(queries) == 2
    study.tell(trial, 0.5)
    other = optuna.load_study(study_name="s", storage=optuna.storages.RDBStorage(url))
    other.enqueue_trial({"lr": 0.02})  # another process's: seen once the answer is older
    wb.reads.waiting_s = 0.0
    trial = study.ask()
    assert trial.suggest_float("lr", 1e-4, 1e-1, log=True) == 0.02
