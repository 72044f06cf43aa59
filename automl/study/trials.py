"""Reading a finished (or running) study back: counts, the best trial, orphan clean-up."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.configs import TrialConfig
from automl.study.storage.private import set_stored_user_attr, stored_trial


@dataclass(frozen=True)
class TrialCounts:
    complete: int
    pruned: int
    failed: int
    diverged: int
    running: int
    best_value: float | None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed


def count_trials(study: optuna.Study) -> TrialCounts:
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return TrialCounts(
        complete=states[TrialState.COMPLETE], pruned=states[TrialState.PRUNED],
        failed=states[TrialState.FAIL],
        diverged=sum(t.user_attrs.get("stop_reason") == "diverged" for t in trials),
        running=states[TrialState.RUNNING] + states[TrialState.WAITING],
        best_value=min(complete) if complete else None)


def search_seconds(study: optuna.Study) -> float:
    """Wall time of the search: from the first trial's start to the last trial's end."""
    trials = study.get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0


def failure_kind(trial: FrozenTrial) -> str | None:
    """'diverged', 'error: <Exception>' ... for unhealthy trials; None for healthy ones."""
    reason = trial.user_attrs.get("stop_reason")
    if reason == "diverged":
        return "diverged"
    if trial.state == TrialState.FAIL:
        error = str(trial.user_attrs.get("error", "")).split(":")[0]
        return f"{reason or 'error'}: {error}" if error else str(reason or "error")
    return None


UNHEALTHY = "stopped after"  # how the circuit breaker's message starts


def unhealthy_message(limit: int, kind: str) -> str:
    """Why the circuit breaker stopped a run (``kind``: :func:`repeated_failure`'s)."""
    return (f"{UNHEALTHY} {limit} consecutive trials failed the same way ({kind}); "
            "check the search space (e.g. the learning-rate range)")


def repeated_failure(study: optuna.Study, limit: int) -> str | None:
    """The failure kind if the last ``limit`` finished trials all failed the same way."""
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    if len(finished) < limit:
        return None
    kinds = {failure_kind(t) for t in sorted(finished, key=lambda t: t.number)[-limit:]}
    return kinds.pop() if len(kinds) == 1 and None not in kinds else None


def fail_orphans(study: optuna.Study, reason: str = "lost_worker") -> int:
    """Mark trials still RUNNING (their worker is gone) as FAIL with ``reason``; returns
    how many it failed."""
    orphans = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return sum(fail_trial(study, trial, reason) for trial in orphans)


def fail_trial(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """End a RUNNING trial whose worker is gone as FAIL, recording why.

    ``trial`` may be a stale read: a list of trials served from a short-lived cache can
    still show RUNNING a trial its worker has just told (the last two trials of a run
    often end within a tenth of a second). The trial is read again first, so such a trial
    keeps its state and its ``stop_reason``; returns False for it.
    """
    if stored_trial(study, trial).state.is_finished():
        return False
    set_stored_user_attr(study, trial, "stop_reason", reason)
    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    return True


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda t: t.value) if complete else None  # type: ignore[arg-type,return-value]


def trial_config(trial: FrozenTrial) -> TrialConfig:
    return TrialConfig.from_dict(trial.user_attrs["config"])
