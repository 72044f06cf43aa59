"""A worker started while the database is away waits for it, beyond the retry budget;
an error that is not the database's is raised at once."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError

from automl.errors import exception_chain
from automl.study.storage.retry import is_transient, wait_through_outages, with_retry


def flaky(failures: int, error: Exception):  # type: ignore[no-untyped-def]
    calls = [0]

    def start() -> str:
        calls[0] += 1
        if calls[0] <= failures:
            raise error
        return "started"

    return start, calls


def test_it_waits_as_long_as_the_database_is_away() -> None:
    away = OperationalError("SELECT 1", {}, Exception("the database system is shutting down"))
    start, calls = flaky(3, away)
    assert wait_through_outages(start, "the worker starts", poll_s=0.0) == "started"
    assert calls[0] == 4


def test_an_error_of_its_own_is_raised_at_once() -> None:
    start, calls = flaky(3, ValueError("bad option"))
    with pytest.raises(ValueError, match="bad option"):
        wait_through_outages(start, "the worker starts", poll_s=0.0)
    assert calls[0] == 1


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
        caplog: pytest.LogCaptureFixture) -> None:
    away = OperationalError("SELECT 1", {}, Exception(
        "connection refused\n\tIs the server running on that host?"))
    start, calls = flaky(3, away)
    with caplog.at_level(logging.WARNING, logger="automl.study.storage.retry"):
        assert with_retry(start, budget_s=60) == "started"
    assert calls[0] == 4
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("database unavailable (OperationalError: ")
    assert "\n" not in messages[0] and "connection refused" in messages[0]
    assert messages[1].startswith("database answered again after ")


def test_a_call_that_never_failed_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="automl.study.storage.retry"):
        assert with_retry(lambda: "started") == "started"
    assert not caplog.records


def test_a_chain_that_loops_back_on_itself_is_walked_once() -> None:
    """Optuna raises StorageInternalError ``from`` SQLAlchemy's error; re-raising that
    error while handling the first closes a loop, which a worker once walked forever."""
    outer = RuntimeError("storage internal error")
    inner = ValueError("integrity")
    outer.__cause__, inner.__context__ = inner, outer
    assert [type(e) for e in exception_chain(outer)] == [RuntimeError, ValueError]
    assert not is_transient(outer)
    away = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    outer.__cause__, inner.__context__, inner.__cause__ = inner, outer, away
    assert is_transient(outer)
