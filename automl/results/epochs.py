"""The epochs a run trained and the epochs pruning saved, per trial and in all.

Read from the finished trials (``FrozenTrial``): the report's epochs plot, the dashboard
note and the CLI's explanation show these figures.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial

from automl.study.pruning import AUDIT_ATTR
from automl.study.studies import SETTINGS_ATTR


@dataclass(frozen=True)
class TrialEpochs:
    number: int
    outcome: str  # stop_reason: completed, early_stopped, pruned, diverged, error...
    run: int  # epochs trained
    saved: int  # epochs pruning saved (up to the epoch budget); 0 unless pruned
    would_prune_at: int | None  # for audited trials: the epoch the pruner would have stopped


@dataclass(frozen=True)
class EpochAccount:
    max_epochs: int
    trials: list[TrialEpochs]

    @property
    def trained(self) -> int:
        return sum(t.run for t in self.trials)

    @property
    def saved(self) -> int:
        """Upper bound: a pruned trial might have stopped early before the full budget."""
        return sum(t.saved for t in self.trials)

    @property
    def typical_saved(self) -> int:
        """Estimate: pruned trials would have run as long as the median finished trial."""
        full = [t.run for t in self.trials if t.outcome in ("completed", "early_stopped")]
        typical = statistics.median(full) if full else self.max_epochs
        return int(sum(max(0.0, typical - t.run) for t in self.trials if t.outcome == "pruned"))

    @property
    def audit_cost(self) -> int:
        """Epochs audited trials ran past the epoch the pruner would have stopped them at."""
        return sum(max(0, t.run - (t.would_prune_at + 1)) for t in self.trials
                   if t.would_prune_at is not None)


def epoch_account(trials: Iterable[FrozenTrial], max_epochs: int) -> EpochAccount:
    """Per finished trial: epochs run (user attr ``epochs``, else the reported epochs) and,
    for pruned ones, the epochs left in the budget that pruning saved."""
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        if not t.state.is_finished():
            continue
        run = t.user_attrs.get("epochs")
        run = int(run) if isinstance(run, (int, float)) else len(t.intermediate_values)
        outcome = str(t.user_attrs.get("stop_reason") or t.state.name.lower())
        saved = max(0, max_epochs - run) if outcome == "pruned" else 0
        audit = t.user_attrs.get(AUDIT_ATTR)
        rows.append(TrialEpochs(t.number, outcome, run, saved,
                                int(audit) if isinstance(audit, (int, float)) else None))
    return EpochAccount(max_epochs, rows)


def max_epochs_of(study: optuna.Study) -> int:
    """The epoch budget of a trial: from the study's settings, else the trials' longest."""
    settings = study.user_attrs.get(SETTINGS_ATTR) or {}
    if isinstance(settings.get("max_epochs"), int):
        return int(settings["max_epochs"])
    runs = [len(t.intermediate_values) for t in study.get_trials(deepcopy=False)]
    return max(runs, default=1)
