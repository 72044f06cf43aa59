"""Bring the database to the code's schema, and refuse to run against an older one.

``upgrade`` migrates the service's tables with Alembic (own version table) and Optuna's
with Optuna's own upgrade; both are idempotent. ``check_schema`` is what workers and
clients call before doing anything.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from automl.errors import AutoMLError
from automl.queue.engine import connection_url, is_sqlite, make_engine
from automl.queue.models import VERSION_TABLE

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


class SchemaError(AutoMLError):
    """The database is not at the schema this code needs."""

    code = "E_SCHEMA"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection,
                                             opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def migrate(engine: Engine, revision: str = "head", *, down: bool = False) -> None:
    """Alembic upgrade (or downgrade) of the service's tables only."""
    with engine.begin() as connection:
        (command.downgrade if down else command.upgrade)(alembic_config(connection), revision)


def upgrade(url: str) -> str:
    """Migrate the service's tables and Optuna's to head; returns our head revision."""
    engine = make_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    storage = optuna.storages.RDBStorage(connection_url(url), skip_compatibility_check=True)
    if storage.get_current_version() != storage.get_head_version():
        storage.upgrade()
    storage.engine.dispose()
    return head_revision()


def ensure_schema(url: str) -> None:
    """For embedded runs: create our tables in a database that has none, and migrate a
    SQLite file; a server database at an older revision must go through ``automl db
    upgrade`` (:class:`SchemaError`), as the service requires."""
    engine = make_engine(url)
    try:
        current = current_revision(engine)
        if current == head_revision():
            return
        if current is not None and not is_sqlite(url):
            check_schema(engine)
    finally:
        engine.dispose()
    upgrade(url)


def check_schema(engine: Engine) -> None:
    """Raise :class:`SchemaError` unless the service's tables are at head."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        found = "no automl tables" if current is None else f"schema revision {current}"
        raise SchemaError(f"the database has {found}, this version needs {head}: run "
                          "'automl db upgrade --storage URL' first", field="storage")
