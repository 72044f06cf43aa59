"""A running trial's reports and attributes are written in batches, and nothing is lost."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event

from automl.studies import StudySettings, create_study, make_storage
from automl.write_behind import WriteBehindStorage


def _write_behind(storage: optuna.storages.BaseStorage) -> WriteBehindStorage:
    inner = storage.inner  # type: ignore[attr-defined]  # RetryingStorage
    assert isinstance(inner, WriteBehindStorage)
    return inner


def _study(tmp_path: Path) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path / 'wb.db'}"
    return url, create_study(url, "s", StudySettings(), {}, storage=make_storage(url))


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
    real_write, calls = wb._write, []

    def flaky_write(trial_id: int, pending: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("connection reset")  # the database restarted mid-flush
        real_write(trial_id, pending)  # type: ignore[arg-type]

    monkeypatch.setattr(wb, "_write", flaky_write)
    with pytest.raises(OSError):
        wb.flush()
    trial.report(0.4, 1)  # reported while the database was away
    study.tell(trial, 0.4)
    assert _from_disk(url).intermediate_values == {0: 0.5, 1: 0.4}
