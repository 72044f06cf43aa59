"""How a study proposes and prunes trials: the settings stored on it, and the TPE sampler
and the pruner every worker rebuilds from them.

The settings are stored on the run and on the study (as a user attribute), so a worker
that loads the study builds exactly the same sampler and pruner, whichever process or
machine it runs on. They are derived from :class:`automl.options.TuneOptions`
(:func:`automl.run.plan.settings_of`) and have no defaults of their own.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from automl.options import TuneOptions, check_pruning
from automl.study.pruning import RUNG_PRUNERS, BaselinePruner, PruningPolicy
from automl.study.storage.completed_curves import CachedMedianPruner, CachedPercentilePruner
from automl.study.storage.draw_ahead import DrawAheadTPESampler
from automl.study.storage.history_window import HISTORY_WINDOW
from automl.study.storage.tpe_numerics import use_vectorised_log_ndtr

# Fields that runs stored by earlier versions lack; read back, they take TuneOptions' default.
STORED_LATER = ("pruner_percentile", "pruning_audit", "warm_start", "max_consecutive_failures")


@dataclass(frozen=True)
class StudySettings:
    """How trials are proposed and pruned; stored on the study for every worker."""

    seed: int
    pruner: str
    tpe_startup_trials: int  # random trials before TPE models the space
    pruner_startup_trials: int  # completed trials before the pruner may stop one
    pruner_warmup_epochs: int
    pruner_percentile: float  # "percentile": trials outside the best this many % are pruned
    max_epochs: int
    pruning_audit: float  # share of to-be-pruned trials let finish, to audit pruning
    warm_start: bool  # the first trials try the rules of thumb (automl.study.warm_start)
    max_consecutive_failures: int  # the run stops when this many fail the same way

    def __post_init__(self) -> None:
        check_pruning(self.pruner, self.pruner_percentile, self.pruning_audit, self.warm_start)

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> StudySettings:
        """Settings read back from a run or a study, whichever version stored them."""
        return cls(**{**{name: getattr(TuneOptions, name) for name in STORED_LATER}, **stored})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_sampler(settings: StudySettings, worker_index: int = 0,
                 window: int | None = HISTORY_WINDOW) -> optuna.samplers.TPESampler:
    """Parallel-aware TPE: multivariate, grouped for the conditional widths, constant liar,
    fitted on at most ``window`` finished trials plus the best ones
    (:mod:`automl.study.storage.history_window`; ``None``: Optuna's TPE on the whole history),
    and able to draw a cohort's members from one fit (:mod:`automl.study.storage.draw_ahead`).

    Each worker gets its own seed (``seed + worker_index``) so that parallel workers do not
    draw the same random start-up points.
    """
    use_vectorised_log_ndtr()  # the same TPE, its tail masses in C (tpe_numerics)
    options: dict[str, Any] = {"n_startup_trials": settings.tpe_startup_trials,
                               "multivariate": True, "group": True, "constant_liar": True,
                               "seed": settings.seed + worker_index}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if window is None:
            return optuna.samplers.TPESampler(**options)
        return DrawAheadTPESampler(window=window, **options)


def make_pruner(settings: StudySettings) -> optuna.pruners.BasePruner:
    """Median rule by default (with start-up and warm-up so it does not prune on noise);
    "percentile" is the same rule with a stricter bar (the best ``pruner_percentile`` % of
    completed trials at that epoch); "baseline" prunes trials that stay behind the best
    rule-of-thumb baseline's curve."""
    startup, warmup = settings.pruner_startup_trials, settings.pruner_warmup_epochs
    median = CachedMedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if settings.pruner == "median":
        return median
    if settings.pruner == "baseline":
        return BaselinePruner(warmup, fallback=median, startup_trials=startup)
    if settings.pruner == "percentile":
        return CachedPercentilePruner(settings.pruner_percentile, n_startup_trials=startup,
                                      n_warmup_steps=warmup)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, warmup), max_resource=settings.max_epochs,
            reduction_factor=RUNG_PRUNERS["hyperband"][1])
    if settings.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=max(1, warmup), reduction_factor=RUNG_PRUNERS["successive_halving"][1])
    return optuna.pruners.NopPruner()


def pruning_policy(settings: StudySettings) -> PruningPolicy:
    """From which epoch the pruner is worth asking, and the audit share."""
    warmup = settings.pruner_warmup_epochs
    first = {"median": warmup, "percentile": warmup, "baseline": warmup,
             "none": settings.max_epochs + 1}.get(settings.pruner, 0)
    percentile = settings.pruner_percentile if settings.pruner == "percentile" else 50.0
    return PruningPolicy(first_epoch=first, audit_share=settings.pruning_audit,
                         seed=settings.seed, percentile=percentile, rule=settings.pruner)
