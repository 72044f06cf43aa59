"""Engines for the service's storage: small pools, SQLite tuned for several processes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from automl.errors import ConfigError, PermissionDeniedError, exception_chain

INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE for a refused grant or policy


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def connection_url(url: str) -> str:
    """``url`` with the driver this project installs: a plain ``postgresql://`` URL (which
    SQLAlchemy 2.1 maps to psycopg 3, not installed) becomes ``postgresql+psycopg2://``.
    Every engine and Optuna storage is made from a URL passed through here."""
    try:
        parsed = make_url(url)
    except Exception:
        return url  # make_engine and check_storage_url say what is wrong with it
    if parsed.drivername == "postgresql":
        return parsed.set(drivername="postgresql+psycopg2").render_as_string(
            hide_password=False)
    return url


def make_engine(url: str, pool_size: int = 2) -> Engine:
    """An engine with a small pool; SQLite gets WAL, a busy timeout and foreign keys."""
    try:
        parsed = make_url(connection_url(url))
    except Exception as exc:
        raise ConfigError("storage is not a database URL", field="storage") from exc
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_size=pool_size, max_overflow=2, pool_pre_ping=True,
                         hide_parameters=True)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def refusal(exc: BaseException) -> PermissionDeniedError | None:
    """A typed error for a statement the database role may not run (a missing grant, a
    row-level security policy, a read-only role), found anywhere in ``exc``'s chain (Optuna
    wraps SQLAlchemy's errors); None for any other error."""
    for seen in exception_chain(exc):
        if getattr(getattr(seen, "orig", None), "pgcode", None) == INSUFFICIENT_PRIVILEGE:
            detail = str(getattr(seen, "orig", seen)).strip().splitlines()[0]
            return PermissionDeniedError(
                f"the database refused this role: {detail} (docs/service.md, "
                "'Least-privilege roles', says what each role may do)", field="storage")
    return None
