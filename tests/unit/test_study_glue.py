"""The Optuna side, in-process (no Ray): suggestion, pruning and how each trial ends."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from automl.space import Fixed, FloatRange, IntRange, SearchSpace
from automl.studies import StudySettings, create_study, load_study
from automl.suggest import suggest_trial_config
from automl.trials import count_trials, fail_orphans, repeated_failure
from workers.data import to_tensors
from workers.faults import FAULT_ENV, parse_faults
from workers.objective import run_trial

SMALL = {"max_epochs": Fixed(12), "patience": Fixed(12), "n_layers": IntRange(1, 2),
         "units": IntRange(8, 32), "batch_size": Fixed(32), "optimizer": Fixed("adam"),
         "lr_schedule": Fixed("constant")}


def small_space(task: str = "binary", **overrides) -> SearchSpace:
    return SearchSpace({**SMALL, **overrides}).resolve(task, 150)  # type: ignore[arg-type]


def new_study(tmp_path: Path, **settings) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    return url, create_study(url, "s", StudySettings(**settings), {})


def test_default_space_suggests_conditional_widths() -> None:
    space = SearchSpace({}).resolve("multiclass", 1000)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        config = suggest_trial_config(trial, space, seed=0)
        widths = [k for k in trial.params if k.startswith("n_units_l")]
        assert len(widths) == config.model.depth == trial.params["n_layers"]
        assert ("momentum" in trial.params) == (config.train.optimizer == "sgd")
        study.tell(trial, 0.0)


@pytest.mark.parametrize(("name", "pruner"), [
    ("median", optuna.pruners.MedianPruner),
    ("hyperband", optuna.pruners.HyperbandPruner),
    ("successive_halving", optuna.pruners.SuccessiveHalvingPruner),
    ("none", optuna.pruners.NopPruner),
])
def test_workers_rebuild_the_stored_sampler_and_pruner(tmp_path: Path, name: str,
                                                       pruner: type) -> None:
    url, _ = new_study(tmp_path, seed=5, pruner=name)
    loaded = load_study(url, "s", worker_index=2)
    assert isinstance(loaded.pruner, pruner)
    assert isinstance(loaded.sampler, optuna.samplers.TPESampler)


def test_a_clearly_bad_trial_is_pruned(tmp_path: Path, blobs) -> None:
    _url, study = new_study(tmp_path, pruner_startup_trials=4, pruner_warmup_epochs=2)
    data = to_tensors(blobs)
    space = small_space(lr=FloatRange(5e-3, 2e-2, log=True))
    for _ in range(4):
        run_trial(study, space, data, seed=0)
    run_trial(study, small_space(lr=Fixed(1e-7)), data, seed=0)  # learns nothing
    bad = study.trials[-1]
    assert bad.state == TrialState.PRUNED
    assert bad.user_attrs["stop_reason"] == "pruned"
    assert len(bad.intermediate_values) < 12
    assert all(t.state == TrialState.COMPLETE for t in study.trials[:4])


def test_divergence_is_pruned_with_its_reason_and_never_a_value(tmp_path: Path,
                                                                 diabetes) -> None:
    _, study = new_study(tmp_path)
    space = small_space("regression", optimizer=Fixed("sgd"), lr=Fixed(9.0),
                        momentum=Fixed(0.99), activation=Fixed("relu"),
                        batch_norm=Fixed(False), loss=Fixed("mse"))
    run_trial(study, space, to_tensors(diabetes), seed=0)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED and trial.value is None
    assert trial.user_attrs["stop_reason"] == "diverged"
    assert trial.user_attrs["detail"].startswith("non_finite_loss@epoch")


@pytest.mark.parametrize(("fault", "reason", "error"), [
    ("oom@epoch:1", "out_of_memory", "OutOfMemoryError"),
    ("raise@trial:0:epoch:0", "error", "RuntimeError"),
])
def test_exceptions_fail_the_trial_with_a_reason_and_the_study_goes_on(
        tmp_path: Path, blobs, monkeypatch, fault, reason, error) -> None:
    monkeypatch.setenv(FAULT_ENV, fault)
    _, study = new_study(tmp_path)
    data = to_tensors(blobs)
    run_trial(study, small_space(), data, seed=0)
    monkeypatch.delenv(FAULT_ENV)
    run_trial(study, small_space(), data, seed=0)
    failed, next_one = study.trials
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["stop_reason"] == reason
    assert failed.user_attrs["error"].startswith(error)
    assert next_one.state == TrialState.COMPLETE


def test_completed_trials_record_config_cost_and_stop_reason(tmp_path: Path, blobs) -> None:
    _, study = new_study(tmp_path)
    run_trial(study, small_space(), to_tensors(blobs), seed=0)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    assert set(trial.user_attrs) >= {"config", "n_parameters", "epochs", "stop_reason",
                                     "val_score", "seconds"}
    assert trial.user_attrs["stop_reason"] in ("completed", "early_stopped")
    assert len(trial.intermediate_values) == trial.user_attrs["epochs"]
    assert trial.value == min(trial.intermediate_values.values())


def test_orphaned_running_trials_are_failed_as_lost(tmp_path: Path) -> None:
    _, study = new_study(tmp_path)
    study.ask()
    assert fail_orphans(study) == 1
    trial = study.trials[0]
    assert trial.state == TrialState.FAIL and trial.user_attrs["stop_reason"] == "lost_worker"
    assert count_trials(study).running == 0


def test_circuit_breaker_sees_identical_consecutive_failures(tmp_path: Path) -> None:
    _, study = new_study(tmp_path)
    for _ in range(3):
        trial = study.ask()
        trial.set_user_attr("stop_reason", "diverged")
        study.tell(trial, state=TrialState.PRUNED)
    assert repeated_failure(study, 3) == "diverged"
    study.tell(study.ask(), 0.5)
    assert repeated_failure(study, 3) is None


def test_fault_specs_parse() -> None:
    (fault,) = parse_faults("sigkill@trial:3:epoch:2")
    assert (fault.action, fault.trial, fault.epoch) == ("sigkill", 3, 2)
    assert fault.matches(3, 2) and not fault.matches(3, 1)
