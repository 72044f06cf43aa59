"""The Optuna side, in-process (no Ray): suggestion, pruning and how each trial ends."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from outages import database_away_after
from sqlalchemy.exc import OperationalError
from study_settings import study_settings

from automl.errors import ConfigError
from automl.space import Fixed, FloatRange, IntRange, SearchSpace
from automl.space.suggest import suggest_trial_config
from automl.study.pruning import (
    ASK_EVERY_EPOCH,
    BaselineCurve,
    BaselinePruner,
    percentile_name,
    prune_reason,
    record_curve,
)
from automl.study.settings import pruning_policy
from automl.study.studies import create_study, load_study
from automl.study.trials import count_trials, fail_orphans, fail_trial, repeated_failure
from workers.data import to_tensors
from workers.faults import Fault, install, parse_faults
from workers.objective import TrialHooks, run_trial

SMALL = {"max_epochs": Fixed(12), "patience": Fixed(12), "n_layers": IntRange(1, 2),
         "units": IntRange(8, 32), "batch_size": Fixed(32), "optimizer": Fixed("adam"),
         "lr_schedule": Fixed("constant")}


def small_space(task: str = "binary", **overrides) -> SearchSpace:
    return SearchSpace({**SMALL, **overrides}).resolve(task, 150)  # type: ignore[arg-type]


def new_study(tmp_path: Path, **settings) -> tuple[str, optuna.Study]:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    return url, create_study(url, "s", study_settings(**settings), {})


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
    assert loaded.metric_names == ["validation loss"]  # what the dashboard labels its axis


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
        tmp_path: Path, blobs, fault, reason, error) -> None:
    _, study = new_study(tmp_path)
    data = to_tensors(blobs)
    install(fault)
    try:
        run_trial(study, small_space(), data, seed=0)
    finally:
        install(None)
    run_trial(study, small_space(), data, seed=0)
    failed, next_one = study.trials
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["stop_reason"] == reason
    assert failed.user_attrs["error"].startswith(error)
    assert next_one.state == TrialState.COMPLETE


def test_a_storage_outage_escapes_and_leaves_the_trial_running(tmp_path: Path, blobs) -> None:
    """The database away past the retry budget while the trial trains (its epoch polls
    the ticket): no fault of the trial's, so it is not told FAIL ("error" would close its
    ticket without a retry); the error reaches the ticket layer and the trial stays
    RUNNING, for the sweeper to fail as lost_worker and run again."""
    _, study = new_study(tmp_path)
    with pytest.raises(OperationalError):
        run_trial(study, small_space(), to_tensors(blobs), seed=0,
                  hooks=TrialHooks(stop_reason=database_away_after(2)))
    (trial,) = study.trials
    assert trial.state == TrialState.RUNNING
    assert "stop_reason" not in trial.user_attrs and "error" not in trial.user_attrs
    assert len(trial.intermediate_values) == 2  # its epochs before the outage
    run_trial(study, small_space(), to_tensors(blobs), seed=0)  # the study goes on
    assert study.trials[1].state == TrialState.COMPLETE


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


def test_a_stale_running_read_does_not_fail_a_trial_that_has_just_ended(tmp_path: Path) -> None:
    """The driver's list of trials may be a tenth of a second old: a trial its worker has
    told in the meantime keeps its state and its reason (seen at the end of small runs)."""
    url, study = new_study(tmp_path)
    worker = load_study(url, "s")  # the worker's side: it runs the trial and prunes it
    asked = worker.ask()
    stale = study.get_trials(deepcopy=True, states=(TrialState.RUNNING,))[0]
    worker._storage.set_trial_user_attr(asked._trial_id, "stop_reason", "pruned")
    worker.tell(asked.number, state=TrialState.PRUNED)
    assert fail_trial(study, stale, "lost_worker") is False
    trial = load_study(url, "s").trials[0]
    assert trial.state == TrialState.PRUNED and trial.user_attrs["stop_reason"] == "pruned"


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
    assert parse_faults("oom@epoch:1; raise") == [Fault("oom", None, 1), Fault("raise")]


@pytest.mark.parametrize("spec", ["raise@trial:x", "raise@trial", "explode@epoch:1",
                                  "raise@batch:3"])
def test_a_malformed_fault_spec_is_refused_by_name(spec: str) -> None:
    with pytest.raises(ConfigError, match="AUTOML_FAULT"):
        parse_faults(spec)


class AlwaysPrune(optuna.pruners.BasePruner):
    """Says "prune" every time it is asked, and remembers at which epochs it was."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        self.asked.append(trial.last_step or 0)
        return True


def test_the_pruner_is_not_asked_during_its_warm_up(tmp_path: Path, blobs) -> None:
    _, study = new_study(tmp_path)
    study.pruner = pruner = AlwaysPrune()
    run_trial(study, small_space(), to_tensors(blobs), seed=0,
              pruning=replace(ASK_EVERY_EPOCH, first_epoch=5))
    trial = study.trials[0]
    assert pruner.asked == [5]
    assert trial.state == TrialState.PRUNED and len(trial.intermediate_values) == 6
    assert trial.user_attrs["prune_reason"].startswith("pruned at epoch 5: best val loss ")


def test_audited_trials_finish_and_say_when_they_would_have_been_pruned(
        tmp_path: Path, blobs) -> None:
    _, study = new_study(tmp_path)
    study.pruner = pruner = AlwaysPrune()
    run_trial(study, small_space(), to_tensors(blobs), seed=0,
              pruning=replace(ASK_EVERY_EPOCH, first_epoch=2, audit_share=1.0))
    trial = study.trials[0]
    assert pruner.asked == [2]  # asked once; after that the trial runs to its end
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["audit_would_prune_at"] == 2
    assert "prune_reason" not in trial.user_attrs


def test_prune_reason_names_the_median_it_was_compared_with(tmp_path: Path) -> None:
    _, study = new_study(tmp_path)
    for loss in (0.2, 0.3, 0.4):
        trial = study.ask()
        trial.report(loss, 3)
        study.tell(trial, loss)
    assert prune_reason(study, 3, 0.55) == (
        "pruned at epoch 3: best val loss 0.55 against median 0.3 of 3 completed trials")
    assert prune_reason(study, 3, 0.55, ("2/3-rule MLP", 0.25)).endswith(
        "against 0.25 for the 2/3-rule MLP and median 0.3 of 3 completed trials")
    assert prune_reason(study, 3, 0.55, percentile=25).endswith(
        "against 25th percentile 0.25 of 3 completed trials")
    assert prune_reason(study, 3, 0.55, rule="successive_halving") == (
        "pruned at epoch 3 by successive halving: best val loss 0.55; the trial was not in "
        "the best quarter of those at this rung (median of 3 completed trials at this "
        "epoch: 0.3)")
    assert "by Hyperband: best val loss 0.55; the trial was not in the best third" in (
        prune_reason(study, 3, 0.55, rule="hyperband"))
    assert "median" not in prune_reason(study, 9, 0.55, rule="hyperband")  # none at epoch 9
    assert [percentile_name(p) for p in (50, 40, 21, 12, 33.5)] == [
        "median", "40th percentile", "21st percentile", "12th percentile",
        "33.5th percentile"]


def test_percentile_pruner_keeps_only_the_best_share(tmp_path: Path) -> None:
    """At the 40th percentile a trial between the best 40 % and the median is pruned;
    the median rule lets the same trial go on."""
    settings = {"pruner_startup_trials": 0, "pruner_warmup_epochs": 0}
    decisions = {}
    for pruner in ("median", "percentile"):
        (tmp_path / pruner).mkdir()
        _, study = new_study(tmp_path / pruner, pruner=pruner, pruner_percentile=40,
                             **settings)
        for loss in (0.1, 0.2, 0.3, 0.4, 0.5):
            done = study.ask()
            done.report(loss, 1)
            study.tell(done, loss)
        trial = study.ask()
        trial.report(0.28, 1)  # 40th percentile 0.26 < 0.28 < median 0.3
        decisions[pruner] = trial.should_prune()
        policy = pruning_policy(study_settings(pruner=pruner, pruner_percentile=40))
        assert policy.percentile == (40 if pruner == "percentile" else 50)
    assert decisions == {"median": False, "percentile": True}


@pytest.mark.parametrize("bad", [0, 100, -5, "40%", True])
def test_pruner_percentile_is_refused_outside_zero_to_hundred(bad) -> None:
    with pytest.raises(ConfigError, match="pruner_percentile"):
        study_settings(pruner="percentile", pruner_percentile=bad)


def test_pruning_policy_follows_the_pruner() -> None:
    assert pruning_policy(study_settings(pruner_warmup_epochs=7)).first_epoch == 7
    assert pruning_policy(study_settings(pruner="none", max_epochs=50)).first_epoch == 51
    assert pruning_policy(study_settings(pruner="hyperband")).first_epoch == 0
    assert pruning_policy(study_settings(pruner="hyperband")).rule == "hyperband"  # reasons
    audit = replace(ASK_EVERY_EPOCH, audit_share=0.1, seed=3)
    share = sum(audit.audits(n) for n in range(2000)) / 2000
    assert 0.07 < share < 0.13
    assert [audit.audits(n) for n in range(50)] == [audit.audits(n) for n in range(50)]


def _curve_study(tmp_path: Path, curves: dict[str, tuple[float, list[float]]]) -> optuna.Study:
    _, study = new_study(tmp_path, pruner="baseline", pruner_warmup_epochs=2,
                         pruner_startup_trials=0)
    for name, (score, losses) in curves.items():
        record_curve(study, BaselineCurve(name, f"rule {name}", score, losses))
    return study


def _frozen(values: list[float]) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        state=TrialState.RUNNING, intermediate_values=dict(enumerate(values)))


def test_baseline_pruning_anchors_on_the_best_baseline_on_validation(tmp_path: Path) -> None:
    study = _curve_study(tmp_path, {"two_thirds_rule": (0.90, [0.6, 0.4, 0.3, 0.3, 0.3]),
                                    "linear": (0.80, [0.9, 0.8, 0.7, 0.7, 0.7])})
    pruner = study.pruner
    assert isinstance(pruner, BaselinePruner)
    assert pruner.anchor(study).name == "two_thirds_rule"  # type: ignore[union-attr]
    behind = [0.8, 0.7, 0.6, 0.5, 0.5]  # worse than 0.3-0.4 at every epoch
    assert not pruner.prune(study, _frozen(behind[:2]))  # warm-up
    assert pruner.prune(study, _frozen(behind[:5]))
    # Behind at epochs 2-3 but level at epoch 4: it caught up, so it goes on.
    assert not pruner.prune(study, _frozen([0.8, 0.7, 0.6, 0.5, 0.3]))
    # Never better than the linear model but ahead of nothing: judged against the best only.
    assert pruner.prune(study, _frozen([0.9, 0.8, 0.69, 0.65, 0.6]))
    assert pruner.anchor_at(study, 1) == ("two_thirds_rule baseline", 0.4)


def test_baseline_pruning_uses_the_median_until_a_baseline_is_trained(tmp_path: Path) -> None:
    study = _curve_study(tmp_path, {})
    assert study.pruner.anchor(study) is None  # type: ignore[attr-defined]
    assert not study.pruner.prune(study, _frozen([9.0] * 6))  # median: no completed trials


def test_a_pruned_trial_says_which_baseline_it_lost_to(tmp_path: Path, blobs) -> None:
    study = _curve_study(tmp_path, {"mean_rule": (0.99, [1e-4] * 12)})  # unbeatable
    run_trial(study, small_space(), to_tensors(blobs), seed=0,
              pruning=pruning_policy(study_settings(pruner="baseline",
                                                   pruner_warmup_epochs=2, pruning_audit=0)))
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert "against 0.0001 for the mean_rule baseline" in trial.user_attrs["prune_reason"]
    assert trial.user_attrs["prune_reason"].startswith("pruned at epoch 2:")
