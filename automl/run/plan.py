"""What a run is made of, before anything trains: its options, space, baselines and
first trials. Both ways of starting a run (``tune()`` here and now, ``Client.submit``
to the service) plan it with these, so the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automl.data import PreparedData
from automl.options import TuneOptions
from automl.space import Fixed, IntRange, SearchSpace
from automl.space.baselines import Baseline, rule_of_thumb_baselines
from automl.study.settings import StudySettings
from automl.study.warm_start import warm_start_params


def settings_of(options: TuneOptions, space: SearchSpace) -> StudySettings:
    """The sampler and pruner settings stored on the study for every worker."""
    startup = options.pruner_startup_trials
    return StudySettings(
        seed=options.seed, pruner=options.pruner,
        tpe_startup_trials=startup_trials(options.n_trials),
        pruner_startup_trials=pruner_startup(options.n_trials) if startup is None else startup,
        pruner_warmup_epochs=options.pruner_warmup_epochs,
        pruner_percentile=options.pruner_percentile, pruning_audit=options.pruning_audit,
        warm_start=options.warm_start, max_consecutive_failures=options.max_consecutive_failures,
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
    """The rule-of-thumb baselines for this data, with the space's epoch budget and its
    class weights (when it fixes them; a space that lets TPE choose leaves them off)."""
    weights = space.params.get("class_weight")
    return rule_of_thumb_baselines(
        prepared.n_features, prepared.n_outputs, prepared.task,
        max_epochs=upper_bound(space, "max_epochs"), patience=upper_bound(space, "patience"),
        n_train_rows=len(prepared.x_train),
        class_weight=str(weights.value) if isinstance(weights, Fixed) else "none")


def upper_bound(space: SearchSpace, name: str) -> int:
    """The largest value a whole-number parameter can take in ``space``."""
    param = space[name]
    if isinstance(param, Fixed):
        return int(param.value)
    if isinstance(param, IntRange):
        return int(param.high)
    return int(max(param.choices))  # type: ignore[union-attr]
