"""What a run is made of, before anything trains: its options, space, baselines and
first trials. Both ways of starting a run (``tune()`` here and now, ``Client.submit``
to the service) plan it with these, so the two cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.baselines import Baseline, rule_of_thumb_baselines
from automl.data import DataLimits, PreparedData
from automl.errors import ConfigError
from automl.space import Fixed, IntRange, SearchSpace
from automl.studies import StudySettings, check_storage_url
from automl.warm_start import warm_start_params

DEFAULT_STORAGE = "sqlite:///automl.db"


@dataclass(frozen=True)
class TuneOptions:
    """Budget, reproducibility and where things run. Validated on construction."""

    n_trials: int = 30
    timeout: float | None = None
    seed: int = 0
    n_seeds: int = 3
    pruner: str = "median"
    pruner_startup_trials: int | None = None  # default: pruner_startup(n_trials)
    pruner_warmup_epochs: int = 10
    pruner_percentile: float = 40.0  # with pruner="percentile": keep the best 40 %
    pruning_audit: float = 0.1  # share of to-be-pruned trials let finish (0 turns it off)
    warm_start: bool = True  # the first trials try the rules of thumb (automl.warm_start)
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None
    task: str | None = None
    n_workers: int | None = None
    ray_address: str | None = None
    head_start: bool = True  # train the first trials while a local Ray starts (CPU only)
    gpus_per_trial: float = 0.0  # a fraction packs several trials on one GPU (BENCHMARKS.md)
    max_consecutive_failures: int = 10
    progress: bool = True
    limits: DataLimits = field(default_factory=DataLimits)
    keep_identifiers: bool = False  # keep columns that look like row ids (dropped by default)

    def __post_init__(self) -> None:
        _positive_int("n_trials", self.n_trials)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0, not {self.seed!r}",
                              field="seed")
        _positive_int("n_seeds", self.n_seeds)
        _positive_int("max_consecutive_failures", self.max_consecutive_failures)
        if self.n_workers is not None:
            _positive_int("n_workers", self.n_workers)
        if self.timeout is not None and (not isinstance(self.timeout, (int, float))
                                         or isinstance(self.timeout, bool)
                                         or not 0 < self.timeout < math.inf):
            raise ConfigError(f"timeout must be a positive number of seconds, not "
                              f"{self.timeout!r}", field="timeout")
        if self.pruner_startup_trials is not None and (
                isinstance(self.pruner_startup_trials, bool)
                or not isinstance(self.pruner_startup_trials, int)
                or self.pruner_startup_trials < 0):
            raise ConfigError("pruner_startup_trials must be a whole number >= 0, not "
                              f"{self.pruner_startup_trials!r}", field="pruner_startup_trials")
        for flag in ("head_start", "keep_identifiers"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag} must be true or false, not "
                                  f"{getattr(self, flag)!r}", field=flag)
        check_gpu_share(self.gpus_per_trial)
        StudySettings(pruner=self.pruner, pruning_audit=self.pruning_audit,
                      pruner_percentile=self.pruner_percentile, warm_start=self.warm_start)
        check_storage_url(self.storage)


def settings_of(options: TuneOptions, space: SearchSpace) -> StudySettings:
    """The sampler and pruner settings stored on the study for every worker."""
    return StudySettings(seed=options.seed, pruner=options.pruner,
                         tpe_startup_trials=startup_trials(options.n_trials),
                         pruner_startup_trials=pruner_startup(options.n_trials)
                         if options.pruner_startup_trials is None
                         else options.pruner_startup_trials,
                         pruner_warmup_epochs=options.pruner_warmup_epochs,
                         pruner_percentile=options.pruner_percentile,
                         pruning_audit=options.pruning_audit,
                         warm_start=options.warm_start,
                         max_consecutive_failures=options.max_consecutive_failures,
                         max_epochs=upper_bound(space, "max_epochs"))


def first_trials(settings: StudySettings, baselines: list[Baseline],
                 space: SearchSpace) -> list[dict[str, Any]]:
    """The rules of thumb a new study tries first: at most half its random start-up."""
    if not settings.warm_start:
        return []
    return warm_start_params(baselines, space, max(1, settings.tpe_startup_trials // 2))


def pruner_startup(n_trials: int) -> int:
    """Completed trials before the pruner may stop one: the sampler's start-up, at most 5.

    Measured on digits, 40 trials, 3 seeds (BENCHMARKS.md, pruning): 5 saved 31 % of the
    epochs against 21 % with 10, at the same quality (validation +0.09 against -0.28
    points, test -0.12 against -0.19, both against no pruning)."""
    return min(5, startup_trials(n_trials))


def startup_trials(n_trials: int) -> int:
    """Random trials before TPE models the space, and completed trials before the pruner
    may stop one: a third of the budget, from 3 to 10. A fixed 10 left a 20-trial run on
    a large dataset with almost no TPE-chosen trials (BENCHMARKS.md, quality section)."""
    return max(3, min(10, n_trials // 3))


def as_space(space: SearchSpace | dict[str, Any] | str | Path | None) -> SearchSpace:
    if space is None:
        return SearchSpace({})
    if isinstance(space, SearchSpace):
        return space
    if isinstance(space, (str, Path)):
        return SearchSpace.from_file(space)
    return SearchSpace.from_dict(space)


def baselines_for(prepared: PreparedData, space: SearchSpace) -> list[Baseline]:
    """The rule-of-thumb baselines for this data, with the space's epoch budget."""
    return rule_of_thumb_baselines(
        prepared.n_features, prepared.n_outputs, prepared.task,
        max_epochs=upper_bound(space, "max_epochs"), patience=upper_bound(space, "patience"),
        n_train_rows=len(prepared.x_train))


def upper_bound(space: SearchSpace, name: str) -> int:
    """The largest value a whole-number parameter can take in ``space``."""
    param = space[name]
    if isinstance(param, Fixed):
        return int(param.value)
    if isinstance(param, IntRange):
        return int(param.high)
    return int(max(param.choices))  # type: ignore[union-attr]


def check_gpu_share(value: Any) -> None:
    """``gpus_per_trial``: 0 (CPU), a fraction of one GPU (trials share it), or a whole
    number of GPUs, as Ray accepts; anything else is refused by name."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not 0 <= value < math.inf or (value > 1 and value != int(value)):
        raise ConfigError("gpus_per_trial must be 0, a fraction of one GPU such as 0.25, "
                          f"or a whole number of GPUs, not {value!r}", field="gpus_per_trial")


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, not {value!r}", field=name)
