"""Riding out a database that goes away for a while (a restart, a failover).

One policy for everything that talks to the database: transient connection errors are
retried with exponential backoff for at most ``BUDGET_S`` seconds (``automl worker
--db-retry`` sets it for the process: :func:`set_budget`), then re-raised.
Optuna's storage gets the same policy through :class:`RetryingStorage`: plain Optuna
crashes a worker mid-trial when PostgreSQL restarts and leaves its trial RUNNING.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from optuna.storages import BaseStorage
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from automl.errors import ConfigError, exception_chain

logger = logging.getLogger(__name__)
T = TypeVar("T")
BUDGET_S = 30.0
_budget_s = BUDGET_S


def set_budget(seconds: float) -> None:
    """How long this process's storage calls keep retrying a lost database; called once,
    at the entry point (``automl worker --db-retry``)."""
    global _budget_s
    if not seconds > 0:
        raise ConfigError(f"the database retry budget (--db-retry) must be a positive number "
                          f"of seconds, not {seconds}", field="db_retry")
    _budget_s = float(seconds)


def is_transient(exc: BaseException | None) -> bool:
    """A lost or refused connection, SQLite's 'database is locked' or an unreachable gRPC
    storage proxy, anywhere in the exception's chain (Optuna wraps SQLAlchemy errors in
    StorageInternalError)."""
    return any(isinstance(link, (OperationalError, InterfaceError)) or _proxy_unavailable(link)
               or (isinstance(link, DBAPIError) and link.connection_invalidated)
               for link in exception_chain(exc))


def _proxy_unavailable(exc: BaseException) -> bool:
    """An Optuna gRPC storage proxy that is restarting or not reachable (yet)."""
    code = getattr(exc, "code", None)
    if not callable(code) or type(exc).__module__.split(".")[0] != "grpc":
        return False
    try:
        return getattr(code(), "name", "") == "UNAVAILABLE"
    except Exception:
        return False


def with_retry(action: Callable[[], T], budget_s: float | None = None) -> T:
    """Run ``action``; on a transient database error wait and try again, within budget
    (the process's, :func:`set_budget`, unless given)."""
    started = time.monotonic()
    deadline = started + (_budget_s if budget_s is None else budget_s)
    delay, failures = 0.05, 0
    while True:
        try:
            result = action()
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            failures += 1
            # One line when the database goes away and one when it answers: a log read
            # after an outage says how long it lasted, not every backoff step.
            log = logger.warning if failures == 1 else logger.debug
            log("database unavailable (%s); retrying for up to %.0f s",
                one_line(exc), deadline - started)
            time.sleep(delay)
            delay = min(2 * delay, 2.0)
            continue
        if failures:
            logger.warning("database answered again after %.1f s", time.monotonic() - started)
        return result


def one_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message (a driver's message runs
    over several lines, SQLAlchemy's adds a background link)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def wait_through_outages(action: Callable[[], T], what: str, poll_s: float = 1.0) -> T:
    """Run ``action`` (itself retrying within budget) until the database answers, however
    long it is away: a worker started during an outage waits for the database, as a
    running worker does between tickets. Errors that are not the database's are raised."""
    while True:
        try:
            return action()
        except Exception as exc:
            if not is_transient(exc):
                raise
            logger.warning("database unavailable beyond the retry budget while %s; waiting",
                           what)
            time.sleep(poll_s)


class RetryingStorage(BaseStorage):
    """An Optuna storage whose every call is retried through :func:`with_retry`.

    A call that had committed before the connection dropped may run twice; for Optuna's
    writes that is harmless (they set values) except ``create_new_trial``, which could
    add one extra WAITING/RUNNING trial in that narrow window.
    """

    def __init__(self, inner: BaseStorage, budget_s: float | None = None):
        self.inner, self.budget_s = inner, budget_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _forward(name: str) -> Callable[..., Any]:
    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return with_retry(lambda: getattr(self.inner, name)(*args, **kwargs), self.budget_s)

    method.__name__ = name
    return method


for _name in [n for n in dir(BaseStorage) if not n.startswith("_")]:
    setattr(RetryingStorage, _name, _forward(_name))
RetryingStorage.__abstractmethods__ = frozenset()
