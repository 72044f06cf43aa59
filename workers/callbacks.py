"""What a trial does at the end of each epoch, one small object per concern.

The training loop calls ``on_epoch(epoch, val_loss)`` and stops when it answers True
(:mod:`workers.train`). A trial's answer is made of these callbacks, in this order, as
skorch composes its callbacks: the fault hook of the reliability tests, an interruption
from outside (a cancelled run, a lost lease), the report to Optuna, and the pruner's
verdict (with the audit that lets a few to-be-pruned trials finish). Each keeps what it
saw, and the objective reads it when the loop has ended.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import optuna

from automl.study.pruning import AUDIT_ATTR, REASON_ATTR, PruningPolicy, prune_reason
from workers.faults import inject


class EpochCallback(Protocol):
    def __call__(self, epoch: int, val_loss: float) -> bool:
        """Called after each epoch; True stops the training."""


@dataclass
class Faults:
    """Injects the process's installed faults (:mod:`workers.faults`) into this trial."""

    trial_number: int

    def __call__(self, epoch: int, val_loss: float) -> bool:
        inject(self.trial_number, epoch)
        return False


@dataclass
class Interruption:
    """Stops the trial when ``stop_reason`` says why (cancelled, lease lost)."""

    stop_reason: Callable[[], str | None] | None
    reason: str | None = None

    def __call__(self, epoch: int, val_loss: float) -> bool:
        if self.stop_reason is not None:
            self.reason = self.stop_reason() or None
        return self.reason is not None


@dataclass
class Report:
    """Reports each epoch's validation loss to Optuna and keeps the losses."""

    trial: optuna.Trial
    losses: list[float] = field(default_factory=list)

    def __call__(self, epoch: int, val_loss: float) -> bool:
        self.trial.report(val_loss, epoch)
        self.losses.append(val_loss)
        return False


@dataclass
class Pruning:
    """Asks the pruner from the policy's first epoch on. A trial it would stop is either
    let finish as an audit (once, recorded in ``AUDIT_ATTR``) or stopped, with the reason
    in words (``REASON_ATTR``)."""

    trial: optuna.Trial
    policy: PruningPolicy
    report: Report
    pruned_at: int | None = None
    audited_at: int | None = None

    def __call__(self, epoch: int, val_loss: float) -> bool:
        if self.audited_at is not None or not self.policy.worth_asking(epoch) \
                or not self.trial.should_prune():
            return False
        if self.policy.audits(self.trial.number):  # let it finish: was pruning right?
            self.audited_at = epoch
            self.trial.set_user_attr(AUDIT_ATTR, epoch)
            return False
        self.pruned_at = epoch
        study = self.trial.study
        anchor_at = getattr(study.pruner, "anchor_at", None)
        anchor = anchor_at(study, epoch) if anchor_at is not None else None
        self.trial.set_user_attr(REASON_ATTR, prune_reason(
            study, epoch, min(self.report.losses), anchor, self.policy.percentile,
            self.policy.rule))
        return True


def in_turn(callbacks: Sequence[EpochCallback]) -> Callable[[int, float], bool]:
    """One ``on_epoch`` calling ``callbacks`` in order; the first True stops the rest."""
    def on_epoch(epoch: int, val_loss: float) -> bool:
        return any(callback(epoch, val_loss) for callback in callbacks)

    return on_epoch
