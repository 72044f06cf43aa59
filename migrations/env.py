"""Alembic environment: only the ``automl_`` tables, in their own version table.

The connection is handed in by :func:`automl.queue.schema.upgrade` through
``config.attributes["connection"]``, so no database URL (or password) ever passes through
Alembic's configuration or logs.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context

from automl.queue.models import PREFIX, VERSION_TABLE, Base


def include_object(obj: Any, name: str | None, type_: str, reflected: bool,
                   compare_to: Any) -> bool:
    """Leave every table that is not ours (Optuna's included) alone."""
    if type_ == "table":
        return bool(name and name.startswith(PREFIX))
    table = getattr(obj, "table", None)
    return table is None or str(table.name).startswith(PREFIX)


def compare_type(ctx: Any, inspected_column: Any, metadata_column: Any, inspected_type: Any,
                 metadata_type: Any) -> bool | None:
    """SQLite enforces no VARCHAR length, so a length is not drift there (0006 widens
    ``automl_runs.metric`` only where lengths count); otherwise Alembic's comparison."""
    def short_text(t: Any) -> bool:
        return isinstance(t, sa.String) and not isinstance(t, sa.Text | sa.Enum)

    lengths_only = short_text(inspected_type) and short_text(metadata_type)
    if ctx.dialect.name == "sqlite" and lengths_only:
        return False
    return None


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through 'automl db upgrade', which passes the "
                           "connection in")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=compare_type,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
