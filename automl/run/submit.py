"""Submitting a run to the service: validate everything, then write it in one transaction.

The dataset (deduplicated by content hash, stored as Parquet bytes), the run and its
tickets (one per trial, one per trained baseline, one for the final evaluation of the
best trial) are written together or not at all. The Optuna study is created by the first
worker that picks the run up, from the settings stored on the run.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from automl.data import PreparedData
from automl.data.checks import CheckedDataset, check_dataset
from automl.data.preprocess import prepare
from automl.data.sources import read_dataset
from automl.metrics import check_metric
from automl.options import TuneOptions
from automl.queue.models import Dataset, Run
from automl.queue.queries import submit_run, utcnow
from automl.run.plan import as_space, baselines_for, settings_of
from automl.space import SearchSpace
from automl.study.storage.retry import with_retry

MAX_ATTEMPTS = 3


@dataclass
class Submission:
    """A fully validated run, ready to be written."""

    checked: CheckedDataset
    prepared: PreparedData
    space: SearchSpace
    options: TuneOptions
    target: str
    metric: str  # the one the comparison reports: the option's, or the task's default


def validate_submission(data: Any, target: Any, space: Any, options: TuneOptions) -> Submission:
    """Every check ``tune()`` makes, without training anything or touching storage."""
    user_space = as_space(space)
    raw = read_dataset(data, target, options.limits)
    checked = check_dataset(raw, options.task, options.limits,
                            keep_identifiers=options.keep_identifiers)
    prepared = prepare(checked, options.seed)
    resolved = user_space.resolve(prepared.task, len(prepared.x_train),
                                  len(prepared.preprocessor.numeric_columns), options.budget)
    # Stored: the columns and rows the model uses, the target as given (not class codes).
    checked.target = raw.target.loc[raw.target.notna()].reset_index(drop=True)
    metric = check_metric(options.metric, prepared.task)
    return Submission(checked, prepared, resolved, options, str(raw.target.name), metric)


def write_submission(engine: Engine, sub: Submission, study_name: str | None = None) -> str:
    """Insert dataset (if new), run and tickets in one transaction; return the run id.
    The run's Optuna study is ``study_name`` (default ``automl-<run id>``)."""
    run_id = uuid.uuid4().hex
    # The final evaluation waits for every trial, then goes before the baselines still
    # queued: it is the longest ticket (it also exports the model), so it starts first.
    trials = [*(("trial", str(i)) for i in range(sub.options.n_trials)), ("best", "best")]
    baselines = [("baseline", b.name) for b in baselines_for(sub.prepared, sub.space)
                 if b.config is not None]
    # Tickets are claimed in id order: baseline pruning needs the baselines' curves first.
    first, then = (baselines, trials) if sub.options.pruner == "baseline" else (trials, baselines)
    with_retry(lambda: submit_run(engine, sub.prepared.content_hash, lambda: _new_dataset(sub),
                                  _new_run(run_id, sub, study_name or f"automl-{run_id}"),
                                  [*first, *then], MAX_ATTEMPTS))
    return run_id


def _new_dataset(sub: Submission) -> dict[str, Any]:
    """The dataset row's values: the checked table as Parquet bytes."""
    frame = sub.checked.features.assign(**{sub.target: sub.checked.target.to_numpy()})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return {"content_hash": sub.prepared.content_hash, "target": sub.target,
            "task": sub.prepared.task, "n_rows": len(frame), "n_columns": frame.shape[1],
            "columns": [str(c) for c in frame.columns], "format": "parquet",
            "data": buffer.getvalue(), "created_at": utcnow()}


def _new_run(run_id: str, sub: Submission, study_name: str) -> Run:
    """The run's row; its dataset is set when the row is stored (queries.submit_run)."""
    opts = sub.options
    return Run(id=run_id, study_name=study_name,
               status="queued", task=sub.prepared.task, metric=sub.metric,
               space=sub.space.to_dict(), settings=settings_of(opts, sub.space).to_dict(),
               n_trials=opts.n_trials, timeout_s=opts.timeout, seed=opts.seed,
               n_seeds=opts.n_seeds, data_notes=list(sub.prepared.warnings),
               created_at=utcnow())


def read_frame(dataset: Dataset) -> pd.DataFrame:
    """The stored table, read back from its Parquet bytes."""
    return pd.read_parquet(io.BytesIO(dataset.data))
