"""How a trial's pruning checks are run, audited and explained (no torch, no database).

* **No useless checks.** The median rule never prunes before its warm-up epoch, so the
  objective does not ask it (each ``should_prune`` costs a database read).
* **Audit.** A small, seeded share of the trials the pruner wants to stop is allowed to
  finish. Such a trial carries the user attribute ``audit_would_prune_at`` (the epoch it
  would have been stopped at); the report counts how often pruning would have stopped a
  future winner.
* **Reasons.** A pruned trial carries ``prune_reason``, a sentence for the user: "pruned at
  epoch 7: best val loss 0.41 against median 0.36 of 12 completed trials".
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

AUDIT_ATTR = "audit_would_prune_at"
REASON_ATTR = "prune_reason"


@dataclass(frozen=True)
class PruningPolicy:
    """When the objective asks the pruner, and which pruned trials it lets finish."""

    first_epoch: int
    audit_share: float
    seed: int
    percentile: float  # what the pruner compares with (50: the median), for reasons
    rule: str  # the pruner's name (StudySettings.pruner), for reasons

    def worth_asking(self, epoch: int) -> bool:
        """False where the pruner cannot say yes (its warm-up)."""
        return epoch >= self.first_epoch

    def audits(self, trial_number: int) -> bool:
        """Seeded per trial, so a re-run of the same trial makes the same choice."""
        draw = random.Random(f"audit:{self.seed}:{trial_number}").random()
        return draw < self.audit_share


# Optuna's own behaviour, for an objective run outside a study's settings: the pruner is
# asked at every epoch and no trial is let finish as an audit.
ASK_EVERY_EPOCH = PruningPolicy(first_epoch=0, audit_share=0.0, seed=0, percentile=50.0,
                                rule="median")


def percentile_at(study: optuna.Study, epoch: int,
                  percentile: float = 50.0) -> tuple[float | None, int]:
    """The given percentile (50: the median) of completed trials' validation losses at
    ``epoch``, interpolated as Optuna's pruners do, and how many trials had one."""
    values = [t.intermediate_values[epoch]
              for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if epoch in t.intermediate_values]
    if not values:
        return None, 0
    return float(np.nanpercentile(np.asarray(values, dtype=float), percentile)), len(values)


def percentile_name(percentile: float) -> str:
    """"median" for 50, else "40th percentile", "21st percentile", "12.5th percentile"."""
    if percentile == 50:
        return "median"
    text = f"{percentile:g}"
    suffix = "th"
    if text.isdigit() and not text.endswith(("11", "12", "13")):
        suffix = {"1": "st", "2": "nd", "3": "rd"}.get(text[-1], "th")
    return f"{text}{suffix} percentile"


# Rung-based pruners: name and reduction factor (Optuna's defaults; make_pruner passes
# them): each rung keeps the best 1/factor of the trials that reached it.
RUNG_PRUNERS = {"hyperband": ("Hyperband", 3), "successive_halving": ("successive halving", 4)}
_SHARES = {2: "half", 3: "third", 4: "quarter"}


def prune_reason(study: optuna.Study, epoch: int, best_loss: float,
                 anchor: tuple[str, float] | None = None, percentile: float = 50.0,
                 rule: str = "median") -> str:
    """Why a trial was stopped: its best validation loss so far against the numbers the
    pruner compared it with (the anchor baseline's best by then; the median, or the
    pruner's percentile, of completed trials at this epoch). Hyperband and successive
    halving rank the trials that reached the same rung instead; their reasons say so, with
    the median for scale."""
    level, count = percentile_at(study, epoch, percentile)
    if rule in RUNG_PRUNERS:
        name, factor = RUNG_PRUNERS[rule]
        share = _SHARES.get(factor, f"1/{factor}")
        scale = ("" if level is None else
                 f" (median of {count} completed trials at this epoch: {level:.4g})")
        return (f"pruned at epoch {epoch} by {name}: best val loss {best_loss:.4g}; the "
                f"trial was not in the best {share} of those at this rung{scale}")
    against = []
    if anchor is not None:
        against.append(f"{anchor[1]:.4g} for the {anchor[0]}")
    if level is not None:
        against.append(f"{percentile_name(percentile)} {level:.4g} of {count} completed trials")
    detail = f" against {' and '.join(against)}" if against else ""
    return f"pruned at epoch {epoch}: best val loss {best_loss:.4g}{detail}"


# ---- baseline-anchored pruning ------------------------------------------------------------
CURVE_PREFIX = "automl_baseline_curve:"
REFRESH_S = 30.0


@dataclass(frozen=True)
class BaselineCurve:
    """A trained baseline's validation loss per epoch (first final seed) and its score."""

    name: str
    rule: str
    val_score: float
    val_loss: list[float]

    def best_by(self, epoch: int) -> float:
        """Its best validation loss up to ``epoch`` (its last one if it stopped earlier)."""
        return min(self.val_loss[:epoch + 1])


def record_curve(study: optuna.Study, curve: BaselineCurve) -> None:
    """Store a baseline's curve on the study (one attribute each: no read-modify-write)."""
    study.set_user_attr(CURVE_PREFIX + curve.name, {
        "rule": curve.rule, "val_score": curve.val_score, "val_loss": curve.val_loss})


def best_curve(attrs: dict[str, object]) -> BaselineCurve | None:
    """The baseline with the best validation score among the curves stored so far."""
    curves = [BaselineCurve(key[len(CURVE_PREFIX):], str(v["rule"]), float(v["val_score"]),
                            [float(x) for x in v["val_loss"]])
              for key, v in attrs.items()
              if key.startswith(CURVE_PREFIX) and isinstance(v, dict) and v.get("val_loss")]
    return max(curves, key=lambda c: c.val_score, default=None)


class BaselinePruner(optuna.pruners.BasePruner):
    """Stops a trial whose validation loss stays behind the best baseline's at the same epoch.

    After ``warmup`` epochs, a trial is pruned when its best validation loss so far has
    been worse than the best baseline's best-so-far at the same epoch for ``patience``
    epochs in a row, once ``startup_trials`` trials have completed (so the study always has
    finished trials, even when no trial can match the baselines). Until some baseline has
    been trained (its curve is stored on the study by whoever trains it), the median rule
    decides.
    """

    def __init__(self, warmup: int, fallback: optuna.pruners.BasePruner, patience: int = 3,
                 startup_trials: int = 0):
        self.warmup, self.fallback, self.patience = warmup, fallback, patience
        self.startup_trials = startup_trials
        self._curve: BaselineCurve | None = None
        self._read_at = -float("inf")

    def anchor(self, study: optuna.Study) -> BaselineCurve | None:
        """The best baseline's curve, re-read at most every ``REFRESH_S`` seconds."""
        if time.monotonic() - self._read_at >= REFRESH_S:
            self._curve, self._read_at = best_curve(study.user_attrs), time.monotonic()
        return self._curve

    def anchor_at(self, study: optuna.Study, epoch: int) -> tuple[str, float] | None:
        """For the prune reason: which baseline, and its best loss by ``epoch``."""
        curve = self.anchor(study)
        return None if curve is None else (f"{curve.name} baseline", curve.best_by(epoch))

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.warmup:
            return False
        curve = self.anchor(study)
        if curve is None:
            return self.fallback.prune(study, trial)
        if self.startup_trials and len(study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE,))) < self.startup_trials:
            return False  # like the median rule: some trials always finish
        values = trial.intermediate_values
        epochs = [e for e in range(step - self.patience + 1, step + 1) if e >= 0]
        if len(epochs) < self.patience:
            return False
        return all(
            min(v for s, v in values.items() if s <= e) > curve.best_by(e) for e in epochs)
