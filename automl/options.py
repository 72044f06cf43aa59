"""Every option of a run, with its one default, and the checks that refuse bad ones.

``TuneOptions`` is the options type: the CLI's flags, ``tune()``'s keywords and
``Client.submit``'s take their defaults from it, and the study settings stored on a run
(:class:`automl.study.settings.StudySettings`) are derived from it
(:func:`automl.run.plan.settings_of`). Environment variables are read by the entry
points (the CLI, ``Client.from_env``), never here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import make_url

from automl.data import DataLimits
from automl.errors import ConfigError
from automl.metrics import METRICS
from automl.space.defaults import BUDGETS

PRUNERS = ("median", "percentile", "baseline", "hyperband", "successive_halving", "none")

DEFAULT_STORAGE = "sqlite:///automl.db"


@dataclass(frozen=True)
class TuneOptions:
    """Budget, reproducibility and where things run. Validated on construction."""

    n_trials: int = 30
    timeout: float | None = None
    budget: str = "default"  # "fast": the plain MLP of before issue 19, for a quick look
    seed: int = 0
    n_seeds: int = 3
    pruner: str = "median"
    pruner_startup_trials: int | None = None  # default: pruner_startup(n_trials)
    pruner_warmup_epochs: int = 10
    pruner_percentile: float = 40.0  # with pruner="percentile": keep the best 40 %
    pruning_audit: float = 0.1  # share of to-be-pruned trials let finish (0 turns it off)
    warm_start: bool = True  # the first trials try the rules of thumb (automl.study.warm_start)
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None
    task: str | None = None
    metric: str | None = None  # what the comparison reports (automl.metrics); None: the task's
    n_workers: int | None = None
    ray_address: str | None = None
    head_start: bool = True  # train the first trials while a local Ray starts (CPU only)
    gpus_per_trial: float = 0.0  # a fraction packs several trials on one GPU (BENCHMARKS.md)
    # Trial tickets a Ray task claims and trains as cohorts where that pays (issue 20);
    # None: 8 on a CPU, 256 on a GPU; 1: one trial per task, as before cohorts.
    cohort_trials: int | None = None
    max_consecutive_failures: int = 10
    progress: bool = True
    limits: DataLimits = field(default_factory=DataLimits)
    keep_identifiers: bool = False  # keep columns that look like row ids (dropped by default)

    def __post_init__(self) -> None:
        _whole_number("n_trials", self.n_trials)
        _whole_number("seed", self.seed, least=0)
        _whole_number("n_seeds", self.n_seeds)
        _whole_number("max_consecutive_failures", self.max_consecutive_failures)
        if self.metric is not None and self.metric not in METRICS:
            raise ConfigError(f"unknown metric {self.metric!r}: use one of "
                              f"{', '.join(METRICS)}", field="metric")
        if self.n_workers is not None:
            _whole_number("n_workers", self.n_workers)
        if self.cohort_trials is not None:
            check_cohort_trials(self.cohort_trials)
        if self.timeout is not None and (not isinstance(self.timeout, (int, float))
                                         or isinstance(self.timeout, bool)
                                         or not 0 < self.timeout < math.inf):
            raise ConfigError(f"timeout must be a positive number of seconds, not "
                              f"{self.timeout!r}", field="timeout")
        if self.pruner_startup_trials is not None:
            _whole_number("pruner_startup_trials", self.pruner_startup_trials, least=0)
        for flag in ("head_start", "keep_identifiers"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be true or false, not "
                                  f"{getattr(self, flag)!r}", field=flag)
        check_gpu_share(self.gpus_per_trial)
        check_pruning(self.pruner, self.pruner_percentile, self.pruning_audit, self.warm_start)
        if self.budget not in BUDGETS:
            raise ConfigError(f"unknown budget {self.budget!r}: use {', '.join(BUDGETS)}",
                              field="budget")
        check_storage_url(self.storage)


def check_pruning(pruner: Any, percentile: Any, audit: Any, warm_start: Any) -> None:
    """The pruner by name, its percentile (0 < p < 100: trials outside the best p % are
    pruned), the audit share (0 to 1) and the warm-start switch."""
    if pruner not in PRUNERS:
        raise ConfigError(f"unknown pruner '{pruner}': use {', '.join(PRUNERS)}",
                          field="pruner")
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) \
            or not 0 < percentile < 100:
        raise ConfigError("pruner_percentile must be a number between 0 and 100 (trials "
                          f"outside the best that many % are pruned), not {percentile!r}",
                          field="pruner_percentile")
    if isinstance(audit, bool) or not isinstance(audit, (int, float)) or not 0 <= audit <= 1:
        raise ConfigError(f"pruning_audit must be a share between 0 and 1, not {audit!r}",
                          field="pruning_audit")
    if not isinstance(warm_start, bool):
        raise ConfigError(f"warm_start must be true or false, not {warm_start!r}",
                          field="warm_start")


def check_storage_url(url: str) -> None:
    """Refuse a malformed storage URL before anything else happens."""
    try:
        make_url(url)
    except Exception as exc:
        raise ConfigError("storage is not a database URL (e.g. sqlite:///automl.db or "
                          "postgresql://host/db)", field="storage") from exc


def check_gpu_share(value: Any) -> None:
    """``gpus_per_trial``: 0 (CPU), a fraction of one GPU (trials share it), or a whole
    number of GPUs, as Ray accepts; anything else is refused by name."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not 0 <= value < math.inf or (value > 1 and value != int(value)):
        raise ConfigError("gpus_per_trial must be 0, a fraction of one GPU such as 0.25, "
                          f"or a whole number of GPUs, not {value!r}", field="gpus_per_trial")


def check_cohort_trials(value: Any) -> None:
    """``cohort_trials``: a whole number of trial tickets, at least one."""
    _whole_number("cohort_trials", value)


def _whole_number(name: str, value: Any, least: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ConfigError(f"{name} must be a whole number >= {least}, not {value!r}", field=name)
