"""``tune()``: validate everything, run the study, then measure the winner and the baselines.

Order matters: the data and the space are fully checked (typed errors naming the column
or parameter) before the storage is touched or any worker starts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

from automl.artifacts import store_model
from automl.baselines import Baseline, rule_of_thumb_baselines
from automl.data import DataLimits, PreparedData, load_dataset
from automl.db.schema import ensure_schema
from automl.errors import ConfigError, StudyUnhealthyError
from automl.executor import Executor, StudyJob, check_gpu_share, default_executor
from automl.notes import write_note
from automl.progress import Progress
from automl.pruning import CURVE_PREFIX, BaselineCurve
from automl.result import ModelScore, TuneResult
from automl.space import Fixed, IntRange, SearchSpace
from automl.studies import StudySettings, check_storage_url, create_study, pruning_policy
from automl.summary import architecture, constant_baseline, final_seeds, metric_of, summarize
from automl.trials import best_trial, count_trials, fail_orphans, repeated_failure, trial_config
from automl.warm_start import warm_start_params

DEFAULT_STORAGE = "sqlite:///automl.db"
RESULT_ATTR = "result"  # the finished run's TuneResult.to_dict(), as a study user attribute


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


def tune(data: Any, target: Any = None, *, space: SearchSpace | dict[str, Any] | str | Path |
         None = None, executor: Executor | None = None, **options: Any) -> TuneResult:
    """Tune an MLP on ``data`` and compare it with the rule-of-thumb baselines.

    Args:
        data: a DataFrame, a file path (CSV/TSV[.gz], Parquet, .npz) or a numpy array.
        target: the target column name (or an array when ``data`` is an array).
        space: a :class:`SearchSpace`, a dict or a YAML/JSON path; overrides the default
            space parameter by parameter.
        executor: what runs the training (default: Ray, local unless ``ray_address``).
        **options: any field of :class:`TuneOptions` (``n_trials``, ``timeout``, ``seed``...).

    Raises:
        automl.errors.AutoMLError: with a stable ``code`` for bad data, space or options,
            before anything is stored or trained.
    """
    opts = TuneOptions(**options)
    started = time.monotonic()
    user_space = as_space(space)
    prepared = load_dataset(data, target, task=opts.task, seed=opts.seed, limits=opts.limits,
                            keep_identifiers=opts.keep_identifiers)
    resolved = user_space.resolve(prepared.task, len(prepared.x_train))
    baselines = baselines_for(prepared, resolved)
    executor = executor or default_executor(opts.ray_address, opts.n_workers,
                                            gpus_per_trial=opts.gpus_per_trial,
                                            head_start=opts.head_start)
    progress = Progress(opts.progress)
    try:
        ensure_schema(opts.storage)  # our tables (the models' artifact store) beside Optuna's
        curves = _baseline_curves(opts, prepared, baselines, executor, progress)
        study = _run_study(opts, prepared, resolved, executor, progress, curves, baselines)
        result = _measure(opts, prepared, study, baselines, executor, progress)
    finally:
        progress.close()
        executor.close()
    result.total_seconds = time.monotonic() - started
    study.set_user_attr(RESULT_ATTR, result.to_dict())  # read back by `automl report`
    write_note(study, result)  # the comparison on the study, in optuna-dashboard
    return result


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


def _baseline_curves(opts: TuneOptions, prepared: PreparedData, baselines: list[Baseline],
                     executor: Executor, progress: Progress) -> dict[str, Any]:
    """For baseline pruning: each trained baseline's validation curve (first final seed),
    as study attributes, before any trial starts."""
    if opts.pruner != "baseline":
        return {}
    trained = [(b, b.config) for b in baselines if b.config is not None]
    seed = final_seeds(opts.seed, 1)[0]
    progress.start(len(trained), "baseline curves (to prune against)")
    results = executor.evaluate([config for _, config in trained], [seed], prepared,
                                progress.step)
    progress.close()
    runs = [result["runs"][0] for result in results]
    return {CURVE_PREFIX + b.name: BaselineCurve(b.name, b.rule, r["val_score"],
                                                 r["history"]).to_attr()
            for (b, _), r in zip(trained, runs, strict=True)}


def _run_study(opts: TuneOptions, prepared: PreparedData, space: SearchSpace,
               executor: Executor, progress: Progress, curves: dict[str, Any],
               baselines: list[Baseline]) -> optuna.Study:
    settings = settings_of(opts, space)
    name = opts.study_name or _study_name(prepared)
    study = create_study(opts.storage, name, settings, {
        "task": prepared.task, "metric": metric_of(prepared.task), "dataset_hash":
        prepared.content_hash, "space": space.to_dict(), "n_trials": opts.n_trials, **curves},
        first_trials=first_trials(settings, baselines, space))
    job = StudyJob(opts.storage, name, space.to_dict(), opts.seed, pruning_policy(settings))
    deadline = None if opts.timeout is None else time.monotonic() + opts.timeout
    unhealthy: list[str] = []

    def on_trial_done() -> bool:
        progress.trials(count_trials(study))
        kind = repeated_failure(study, opts.max_consecutive_failures)
        if kind:
            unhealthy.append(kind)
        return bool(kind)

    progress.start(opts.n_trials, "trials")
    started = time.monotonic()
    executor.run_trials(job, prepared, opts.n_trials, deadline, on_trial_done)
    fail_orphans(study)
    study.set_user_attr("tuning_seconds", time.monotonic() - started)
    progress.trials(count_trials(study))
    if unhealthy:
        raise StudyUnhealthyError(
            f"stopped after {opts.max_consecutive_failures} consecutive trials failed the same "
            f"way ({unhealthy[0]}); check the search space (e.g. the learning-rate range)",
            field="space")
    return study


def _measure(opts: TuneOptions, prepared: PreparedData, study: optuna.Study,
             baselines: list[Baseline], executor: Executor, progress: Progress) -> TuneResult:
    best = best_trial(study)
    if best is None:
        raise StudyUnhealthyError("no trial completed: every trial was pruned or failed; "
                                  "see the study's trials for the reasons", field="study")
    trained = [(b, b.config) for b in baselines if b.config is not None]
    configs = [trial_config(best), *(config for _, config in trained)]
    seeds = final_seeds(opts.seed, opts.n_seeds)
    progress.start(len(configs), f"best model and baselines, {len(seeds)} seeds each")
    results = executor.evaluate(configs, seeds, prepared, progress.step, keep_model=0)
    progress.close()
    model_files = results[0].pop("model_files", None)  # the best config's seed ensemble
    if model_files:
        store_model(opts.storage, study, best.number, model_files)
    scores = [ModelScore.from_evaluations(b.name, b.rule, architecture(config), r["runs"],
                                          r["ensemble"])
              for (b, config), r in zip(trained, results[1:], strict=True)]
    scores.append(constant_baseline(prepared, baselines[-1]))
    return summarize(study, prepared, best, results[0], scores, n_seeds=opts.n_seeds,
                     storage=opts.storage,
                     tuning_seconds=float(study.user_attrs.get("tuning_seconds", 0.0)))


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


def _study_name(prepared: PreparedData) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    return f"tune-{prepared.content_hash[:10]}-{stamp}"


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a whole number >= 1, not {value!r}", field=name)
