"""The one piece of glue between an Optuna trial and the training loop.

Each trial ends in Optuna as COMPLETE (value = best validation loss), PRUNED (the pruner
stopped it, or it diverged: a non-finite loss is a bad region of the space, and TPE
learns from pruned trials but ignores failed ones) or FAIL (an exception, recorded with
its class and message). Why it stopped is always in the ``stop_reason`` user attribute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import torch
from optuna.trial import FrozenTrial
from torch import nn

from automl.configs import TrialConfig, count_parameters
from automl.space import SearchSpace
from automl.space.suggest import suggest_trial_config
from automl.study.pruning import ASK_EVERY_EPOCH, PruningPolicy
from automl.study.storage.private import stored_trial
from automl.study.storage.retry import is_transient
from workers.callbacks import Faults, Interruption, Pruning, Report, in_turn
from workers.data import TensorSplits, predict, score
from workers.evaluate import fit
from workers.train import TrainOutcome

logger = logging.getLogger(__name__)


class TrialInterrupted(Exception):
    """The trial was stopped from outside: its run was cancelled or its lease lost."""


class _StorageAway(BaseException):
    """A storage outage carried past ``study.optimize``, which tells FAIL for any
    ``Exception``: an outage is no trial's fault, so the trial must stay RUNNING for the
    sweeper to fail as lost_worker and run again (as a cohort's trials do)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True)
class TrialHooks:
    """What a service worker needs to hear from, and say to, a running trial."""

    on_start: Callable[[optuna.Trial], None] | None = None
    stop_reason: Callable[[], str | None] | None = None


@dataclass
class TrialWatch:
    """A running trial's ``on_epoch`` and what its callbacks saw (see
    :mod:`workers.callbacks`)."""

    on_epoch: Callable[[int, float], bool]
    interruption: Interruption
    pruning: Pruning


def start_trial(trial: optuna.Trial, space: SearchSpace, data: TensorSplits,
                seed: int) -> TrialConfig:
    """Sample ``trial``'s configuration and record it, its device and its size."""
    config = suggest_trial_config(trial, space, seed=seed + trial.number)
    trial.set_user_attr("config", config.to_dict())
    trial.set_user_attr("device", str(data.device))
    trial.set_user_attr("n_parameters",
                        count_parameters(data.n_inputs, data.n_outputs, config.model,
                                         data.n_numeric))
    return config


def watch_trial(trial: optuna.Trial, policy: PruningPolicy,
                stop_reason: Callable[[], str | None] | None) -> TrialWatch:
    """The epoch callbacks of one trial: faults, interruption, report, pruning."""
    interruption = Interruption(stop_reason)
    report = Report(trial)
    pruning = Pruning(trial, policy, report)
    return TrialWatch(in_turn([Faults(trial.number), interruption, report, pruning]),
                      interruption, pruning)


def record_error(trial: optuna.Trial, exc: BaseException) -> None:
    """Why a trial failed: out of memory or an error, with its class and message."""
    oom = isinstance(exc, torch.OutOfMemoryError)
    trial.set_user_attr("stop_reason", "out_of_memory" if oom else "error")
    trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])


def trial_value(trial: optuna.Trial, data: TensorSplits, model: nn.Module,
                outcome: TrainOutcome, watch: TrialWatch) -> float:
    """Record how a trained trial ended and return its value (its best validation
    loss); raises :class:`TrialInterrupted` or ``optuna.TrialPruned`` instead."""
    if watch.interruption.reason is not None:
        trial.set_user_attr("stop_reason", watch.interruption.reason)
        raise TrialInterrupted(watch.interruption.reason)
    trial.set_user_attr("val_score", score(data.task, predict(model, data.x_val), data.y_val))
    trial.set_user_attr("epochs", outcome.epochs_run)
    trial.set_user_attr("seconds", outcome.seconds)
    pruned_at = watch.pruning.pruned_at
    trial.set_user_attr("stop_reason", "pruned" if pruned_at is not None
                        else outcome.stop_reason)
    if pruned_at is not None:
        raise optuna.TrialPruned(f"pruned at epoch {pruned_at}")
    if outcome.stop_reason == "diverged":
        trial.set_user_attr("detail", outcome.detail)
        raise optuna.TrialPruned(f"diverged: {outcome.detail}")
    return outcome.best_val_loss


def make_objective(space: SearchSpace, data: TensorSplits, seed: int,
                   hooks: TrialHooks | None = None,
                   pruning: PruningPolicy | None = None) -> Callable[[optuna.Trial], float]:
    """An Optuna objective training one MLP per trial and reporting every epoch.

    Trials see only the training and validation splits; the test split is used once, by
    the final comparison. ``pruning`` says from which epoch the pruner is asked and which
    trials it wants to stop are let finish as an audit (:mod:`automl.study.pruning`).
    """
    hooks = hooks or TrialHooks()
    policy = pruning or ASK_EVERY_EPOCH

    def trained(trial: optuna.Trial) -> float:
        if hooks.on_start is not None:
            hooks.on_start(trial)
        config = start_trial(trial, space, data, seed)
        watch = watch_trial(trial, policy, hooks.stop_reason)
        try:
            model, outcome = fit(config, data, watch.on_epoch)
        except Exception as exc:
            if not is_transient(exc):
                record_error(trial, exc)
            raise
        return trial_value(trial, data, model, outcome, watch)

    def objective(trial: optuna.Trial) -> float:
        try:
            return trained(trial)
        except Exception as exc:
            if is_transient(exc):  # the storage's, past its retry budget: not the trial's
                raise _StorageAway(exc) from exc
            raise

    return objective


def run_trial(study: optuna.Study, space: SearchSpace, data: TensorSplits, seed: int,
              hooks: TrialHooks | None = None,
              pruning: PruningPolicy | None = None) -> FrozenTrial | None:
    """Run exactly one trial of ``study``; any exception of the trial's ends it as FAIL,
    never escapes. Returns the trial as told (None when it was ended elsewhere first).

    A storage outage past the retry budget is not the trial's: the error escapes, and the
    trial stays RUNNING until its lease lapses and a sweeper runs it again.

    A trial that was already ended from outside (its lease expired and the sweeper failed
    it) rejects the late result; that is logged once and is not an error.
    """
    objective = make_objective(space, data, seed, hooks, pruning)
    started: list[optuna.Trial] = []
    told: list[FrozenTrial] = []

    def tracked(trial: optuna.Trial) -> float:
        started.append(trial)
        return objective(trial)

    try:
        study.optimize(tracked, n_trials=1, catch=(Exception,),
                       callbacks=[lambda _study, trial: told.append(trial)])
    except _StorageAway as away:
        raise away.error from None
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError) as exc:
        # Optuna refuses to tell (ValueError) or to write to a finished trial.
        if not started or not stored_trial(study, started[0]).state.is_finished():
            raise
        logger.info("late result ignored, the trial was already finished: %s", exc)
    return told[0] if told else None
