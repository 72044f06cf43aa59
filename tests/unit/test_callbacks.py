"""The end-of-epoch callbacks of a trial (workers/callbacks.py), each on its own, against
real in-memory Optuna trials."""

from __future__ import annotations

from dataclasses import replace

import optuna
import pytest
from optuna.pruners import BasePruner
from optuna.trial import FrozenTrial

from automl.study.pruning import ASK_EVERY_EPOCH, AUDIT_ATTR, REASON_ATTR
from workers.callbacks import Faults, Interruption, Pruning, Report, in_turn
from workers.faults import install


class AlwaysPrune(BasePruner):
    def __init__(self) -> None:
        self.asked = 0

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        self.asked += 1
        return True


def new_trial(pruner: BasePruner | None = None) -> optuna.Trial:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(pruner=pruner or optuna.pruners.NopPruner()).ask()


def test_in_turn_stops_at_the_first_true_and_calls_no_later_callback() -> None:
    calls: list[str] = []

    def say(name: str, answer: bool):  # type: ignore[no-untyped-def]
        return lambda epoch, loss: calls.append(name) or answer

    assert in_turn([say("a", False), say("b", True), say("c", False)])(0, 1.0)
    assert calls == ["a", "b"]
    assert not in_turn([say("d", False)])(0, 1.0)


def test_interruption_stops_with_the_reason_given_from_outside() -> None:
    reasons = iter([None, "cancelled"])
    interruption = Interruption(lambda: next(reasons))
    assert not interruption(0, 1.0) and interruption.reason is None
    assert interruption(1, 1.0) and interruption.reason == "cancelled"
    assert not Interruption(None)(0, 1.0)


def test_report_tells_optuna_each_epoch_and_keeps_the_losses() -> None:
    trial = new_trial()
    report = Report(trial)
    assert not report(0, 0.9) and not report(1, 0.7)
    assert report.losses == [0.9, 0.7]
    stored = trial.study.trials[0]
    assert stored.intermediate_values == {0: 0.9, 1: 0.7}


def test_pruning_waits_for_its_first_epoch_then_stops_with_a_reason() -> None:
    pruner = AlwaysPrune()
    trial = new_trial(pruner)
    report = Report(trial)
    pruning = Pruning(trial, replace(ASK_EVERY_EPOCH, first_epoch=2), report)
    for epoch in range(3):
        report(epoch, 1.0 - epoch / 10)
        stopped = pruning(epoch, 1.0 - epoch / 10)
    assert stopped and pruning.pruned_at == 2 and pruner.asked == 1
    assert "epoch 2" in trial.study.trials[0].user_attrs[REASON_ATTR]


def test_an_audited_trial_is_let_finish_and_the_pruner_is_not_asked_again() -> None:
    pruner = AlwaysPrune()
    trial = new_trial(pruner)
    pruning = Pruning(trial, replace(ASK_EVERY_EPOCH, audit_share=1.0), Report(trial))
    assert not any(pruning(epoch, 0.5) for epoch in range(4))
    assert pruning.audited_at == 0 and pruning.pruned_at is None and pruner.asked == 1
    assert trial.study.trials[0].user_attrs[AUDIT_ATTR] == 0


def test_faults_raise_only_where_installed() -> None:
    install("raise@trial:3:epoch:1")
    try:
        assert not Faults(3)(0, 1.0) and not Faults(2)(1, 1.0)
        with pytest.raises(RuntimeError, match="trial 3, epoch 1"):
            Faults(3)(1, 1.0)
    finally:
        install(None)
    assert not Faults(3)(1, 1.0)
