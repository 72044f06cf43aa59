"""Small builders for service-table tests (runs with dummy tickets, no training)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from sqlalchemy import Engine

from automl.queue.models import Run
from automl.queue.queries import submit_run, utcnow


def make_run(engine: Engine, tickets: list[tuple[str, str]], *, max_attempts: int = 3,
             timeout_s: float | None = None) -> str:
    """Insert a run (with a placeholder dataset) and its tickets; return the run id."""
    run_id = uuid.uuid4().hex
    dataset = {"content_hash": uuid.uuid4().hex, "target": "y", "task": "binary",
               "n_rows": 0, "n_columns": 0, "columns": [], "format": "parquet", "data": b"",
               "created_at": utcnow()}
    run = Run(id=run_id, study_name=f"s-{run_id}", status="queued", task="binary",
              metric="accuracy", space={}, settings={}, n_trials=0, timeout_s=timeout_s,
              seed=0, n_seeds=1, created_at=utcnow())
    submit_run(engine, dataset["content_hash"], lambda: dataset, run, tickets, max_attempts)
    return run_id


DOCS = Path(__file__).resolve().parents[2] / "docs" / "service.md"
DOCUMENTED_ROLES = ("automl_client", "automl_worker", "automl_reader", "alice")


def documented_role_statements(roles: dict[str, str], database: str) -> list[str]:
    """The SQL block of docs/service.md's "Least-privilege roles", one statement each, with
    each role renamed as ``roles`` says (roles are per server: tests use fresh names) and
    the database ``automl`` as ``database``."""
    text = DOCS.read_text()
    block = text[text.index("## Least-privilege roles"):]
    sql = block[block.index("```sql") + len("```sql"):]
    sql = sql[:sql.index("```")]
    lines = [line.split("--")[0] for line in sql.splitlines()]
    statements = [" ".join(s.split()) for s in "\n".join(lines).split(";")]
    renamed = []
    for statement in filter(None, statements):
        for name, role in roles.items():
            statement = re.sub(rf"\b{name}\b", role, statement)
        renamed.append(re.sub(r"\bDATABASE automl\b", f"DATABASE {database}", statement))
    return renamed
