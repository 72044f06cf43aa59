"""``tune()``: validate everything, run the study, then measure the winner and the baselines.

Order matters: the data and the space are fully checked (typed errors naming the column
or parameter) before the storage is touched or any worker starts.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

from automl.artifacts import store_model
from automl.baselines import Baseline
from automl.data import PreparedData, load_dataset
from automl.db.schema import ensure_schema
from automl.errors import StudyUnhealthyError
from automl.executor import Executor, StudyJob
from automl.notes import write_note
from automl.plan import (
    DEFAULT_STORAGE,
    TuneOptions,
    as_space,
    baselines_for,
    first_trials,
    settings_of,
)
from automl.progress import Progress
from automl.pruning import CURVE_PREFIX, BaselineCurve
from automl.result import RESULT_ATTR, ModelScore, TuneResult
from automl.runtime import default_executor
from automl.space import SearchSpace
from automl.studies import create_study, pruning_policy
from automl.summary import architecture, constant_baseline, final_seeds, metric_of, summarize
from automl.trials import best_trial, count_trials, fail_orphans, repeated_failure, trial_config

__all__ = ["DEFAULT_STORAGE", "RESULT_ATTR", "TuneOptions", "tune"]


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


def _study_name(prepared: PreparedData) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    return f"tune-{prepared.content_hash[:10]}-{stamp}"
