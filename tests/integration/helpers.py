"""Small builders for service-table tests (runs with dummy tickets, no training)."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from automl.db.models import Dataset, Run
from automl.db.queries import add_run, utcnow


def make_run(engine: Engine, tickets: list[tuple[str, str]], *, max_attempts: int = 3,
             timeout_s: float | None = None) -> str:
    """Insert a run (with a placeholder dataset) and its tickets; return the run id."""
    run_id = uuid.uuid4().hex
    with Session(engine) as session, session.begin():
        dataset = Dataset(content_hash=uuid.uuid4().hex, target="y", task="binary", n_rows=0,
                          n_columns=0, columns=[], format="parquet", data=b"",
                          created_at=utcnow())
        session.add(dataset)
        session.flush()
        run = Run(id=run_id, study_name=f"s-{run_id}", dataset_id=dataset.id, status="queued",
                  task="binary", metric="accuracy", space={}, settings={}, n_trials=0,
                  timeout_s=timeout_s, seed=0, n_seeds=1, created_at=utcnow())
        add_run(session, run, tickets, max_attempts)
    return run_id
