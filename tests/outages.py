"""A storage outage as a running trial's ticket poll meets it, for the unit tests."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.exc import OperationalError


def database_away_after(polls: int) -> Callable[[], str | None]:
    """A ``stop_reason`` hook that answers "go on" ``polls`` times, then raises the error
    a lost connection raises past the retry budget."""
    count = [0]

    def stop_reason() -> str | None:
        count[0] += 1
        if count[0] > polls:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return None

    return stop_reason
