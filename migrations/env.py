"""Alembic environment: only the ``automl_`` tables, in their own version table.

The connection is handed in by :func:`automl.queue.schema.upgrade` through
``config.attributes["connection"]``, so no database URL (or password) ever passes through
Alembic's configuration or logs.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from automl.queue.models import PREFIX, VERSION_TABLE, Base


def include_object(obj: Any, name: str | None, type_: str, reflected: bool,
                   compare_to: Any) -> bool:
    """Leave every table that is not ours (Optuna's included) alone."""
    if type_ == "table":
        return bool(name and name.startswith(PREFIX))
    table = getattr(obj, "table", None)
    return table is None or str(table.name).startswith(PREFIX)


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
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
