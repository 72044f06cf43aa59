"""``tune()``: submit a run to the storage and serve it to its end from this process.

A ``tune`` run is a service run: the same validation, the same tickets (trials,
baselines, the final evaluation), the same worker loop and the same stored result, so
``automl runs``, ``result``, ``report``, ``export`` and the dashboard find it like any
other. Only where it trains differs: on a local Ray started here (or ``ray_address``),
with the first trials training while Ray starts (:mod:`workers.local_run`).

Order matters: the data and the space are fully checked (typed errors naming the column
or parameter) before the storage is touched or any worker starts.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from automl.data import PreparedData
from automl.errors import ConfigError, StudyUnhealthyError
from automl.options import DEFAULT_STORAGE, TuneOptions
from automl.queue import queries
from automl.queue.engine import make_engine
from automl.queue.schema import ensure_schema
from automl.results.result import TuneResult, result_from_dict
from automl.run.progress import RunProgress
from automl.run.runtime import check_local_gpus, run_to_end
from automl.run.submit import validate_submission, write_submission
from automl.space import SearchSpace
from automl.study.studies import load_study_if_exists
from automl.study.trials import UNHEALTHY, fail_orphans

__all__ = ["DEFAULT_STORAGE", "TuneOptions", "tune"]


def tune(data: Any, target: Any = None, *,
         space: SearchSpace | dict[str, Any] | str | Path | None = None,
         **options: Any) -> TuneResult:
    """Tune an MLP on ``data`` and compare it with the rule-of-thumb baselines.

    Args:
        data: a DataFrame, a file path (CSV/TSV[.gz], Parquet, .npz) or a numpy array.
        target: the target column name (or an array when ``data`` is an array).
        space: a :class:`SearchSpace`, a dict or a YAML/JSON path; overrides the default
            space parameter by parameter.
        **options: any field of :class:`TuneOptions` (``n_trials``, ``timeout``, ``seed``,
            ``storage``, ``ray_address``...).

    Raises:
        automl.errors.AutoMLError: with a stable ``code`` for bad data, space or options,
            before anything is stored or trained; :class:`StudyUnhealthyError` when the
            run ended without a model (every trial failed, or the circuit breaker).
    """
    opts = TuneOptions(**options)
    submission = validate_submission(data, target, space, opts)
    if opts.ray_address is None:
        check_local_gpus(opts.gpus_per_trial)
    ensure_schema(opts.storage)  # our tables (the queue, the artifact store) beside Optuna's
    engine = make_engine(opts.storage)
    try:
        name = opts.study_name or study_name_for(data, submission.target)
        if queries.study_exists(engine, name):  # a run starts a study of its own
            raise ConfigError(f"a study named {name!r} already exists in this storage; "
                              "choose another name, or leave it out for a fresh one",
                              field="study_name")
        run_id = write_submission(engine, submission, study_name=name)
        engine.dispose()  # the head start forks next: no pooled connection may cross it
        serve_run(engine, run_id, submission.prepared, opts)
        return stored_result(engine, run_id)
    finally:
        engine.dispose()


def serve_run(engine: Engine, run_id: str, prepared: PreparedData, opts: TuneOptions) -> None:
    """Train the run here; interrupted, it is cancelled and its RUNNING trials failed."""
    progress = RunProgress(engine, run_id, opts.progress)
    try:
        run_to_end(opts.storage, run_id, prepared, progress.watch,
                   ray_address=opts.ray_address, n_workers=opts.n_workers,
                   gpus_per_trial=opts.gpus_per_trial, head_start=opts.head_start,
                   cohort_trials=opts.cohort_trials)
    except BaseException:
        _abandon(engine, opts.storage, run_id)
        raise
    finally:
        progress.close()


def stored_result(engine: Engine, run_id: str) -> TuneResult:
    """The run's stored result; a typed error if it ended without one."""
    run = queries.run_of(engine, run_id)
    assert run is not None, f"no run {run_id}"
    if run.status == "succeeded" and run.summary is not None:
        return result_from_dict(dict(run.summary))
    error = run.error or f"the run ended {run.status}"
    raise StudyUnhealthyError(error, field="space" if error.startswith(UNHEALTHY) else "study")


def _abandon(engine: Engine, url: str, run_id: str) -> None:
    queries.cancel_run(engine, run_id)
    run = queries.run_of(engine, run_id)
    study = None if run is None else load_study_if_exists(url, run.study_name)
    if study is not None:
        fail_orphans(study, "interrupted")


def study_name_for(data: Any, target: str) -> str:
    """A run's study name a person can tell apart in the dashboard and type: the data's
    name, the target, when it started and 4 random hex digits, e.g.
    ``digits-target-20261206-101500-3f2a`` (``table`` for a DataFrame or an array)."""
    label = "table"
    if isinstance(data, str | Path):
        text = str(data)
        label = text.removeprefix("sklearn:") if text.startswith("sklearn:") \
            else Path(text).name.split(".")[0]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    words = (_safe(label) or "table", _safe(target) or "target", stamp, uuid.uuid4().hex[:4])
    return "-".join(words)


def _safe(text: str) -> str:
    """``text`` with what a shell or a URL would trip over made ``_``, at most 40 chars."""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_.")[:40]
