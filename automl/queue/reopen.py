"""Re-opening an ended run: to finish it from the trials it has, or to resume its search.

A run interrupted by Ctrl-C is ``cancelled``: its tickets that had not ended are
``cancelled`` too, and its finished trials stay in the study. A run whose process crashed
stays ``running`` with tickets whose leases have lapsed. Either can be re-opened:

- **finish**: the trials it has are all it gets (the rest of its budget is ``skipped``);
  its baselines and final evaluation are queued again.
- **resume**: its unspent trial tickets are queued again as well, so the search goes on up
  to its trial budget (a run with a timeout gets the whole timeout again).

Nothing already done is run again: done tickets stay done, and the study keeps its trials.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, exists, func, select, update

from automl.errors import ConfigError
from automl.queue.models import Run, Ticket
from automl.queue.queries import utcnow
from automl.study.storage.retry import with_retry

UNSPENT = ("queued", "running", "cancelled")  # trial tickets that never finished a trial
FINAL_KINDS = ("baseline", "best")


@dataclass(frozen=True)
class Reopened:
    """What re-opening changed: trial tickets skipped or queued again, final ones queued."""

    run_id: str
    trials_skipped: int
    trials_queued: int
    final_queued: int


def reopen_run(engine: Engine, run_id: str, *, resume: bool, note: str | None = None
               ) -> Reopened:
    """Re-open the ended (or crashed) run ``run_id``; ``note`` is added to the notes its
    result prints. Refuses a run that succeeded or that a live worker still holds."""
    def reopen() -> Reopened:
        now = utcnow()
        with engine.begin() as connection:
            run = connection.execute(select(Run.status, Run.data_notes, Run.timeout_s)
                                     .where(Run.id == run_id)).one()
            _check_reopenable(connection, run_id, run.status, now)
            trials = (update(Ticket).where(Ticket.run_id == run_id, Ticket.kind == "trial",
                                           Ticket.status.in_(UNSPENT)))
            trial_values = _queued(now) if resume else {
                "status": "skipped", "error": "the run was finished early", "updated_at": now}
            changed = connection.execute(trials.values(**trial_values)).rowcount
            final = connection.execute(
                update(Ticket).where(Ticket.run_id == run_id, Ticket.kind.in_(FINAL_KINDS),
                                     Ticket.status != "done")
                .values(**_queued(now))).rowcount
            notes = [*(n for n in run.data_notes or [] if n != note), *([note] if note else [])]
            deadline = None if not resume or run.timeout_s is None \
                else now + timedelta(seconds=run.timeout_s)  # a resumed run's timeout anew
            connection.execute(update(Run).where(Run.id == run_id).values(
                status="running", error=None, finished_at=None, summary=None,
                data_notes=notes, deadline_at=deadline))
        return Reopened(run_id, 0 if resume else changed, changed if resume else 0, final)

    return with_retry(reopen)


def _queued(now: datetime) -> dict[str, object]:
    return {"status": "queued", "error": None, "worker_id": None, "leased_until": None,
            "attempts": 0, "updated_at": now}


def _check_reopenable(connection: Connection, run_id: str, status: str, now: datetime) -> None:
    if status == "succeeded":
        raise ConfigError(f"run {run_id} already finished: see it with `automl result "
                          f"{run_id}`", field="run")
    live = select(exists().where(Ticket.run_id == run_id, Ticket.status == "running",
                                 Ticket.leased_until > now))
    if connection.execute(live).scalar():  # a failed run's trials in flight finish too
        raise ConfigError(f"run {run_id} is still running (a worker holds its work); wait "
                          f"for it, or stop it with `automl cancel {run_id}` first",
                          field="run")


def trial_tickets(engine: Engine, run_id: str) -> dict[str, int]:
    """The run's trial tickets counted by status."""
    with engine.connect() as connection:
        rows = connection.execute(select(Ticket.status, func.count())
                                  .where(Ticket.run_id == run_id, Ticket.kind == "trial")
                                  .group_by(Ticket.status)).all()
    return {str(status): int(n) for status, n in rows}
