"""The queue's leases: claim a ticket, renew it, release it, take back expired ones.

Claiming work is one statement: ``UPDATE ... WHERE id = (SELECT ... LIMIT 1 FOR UPDATE
SKIP LOCKED) RETURNING ...`` on PostgreSQL; on SQLite the lock clause is dropped and the
single-writer lock makes the same conditional UPDATE atomic. Leases are renewed by
heartbeats; an expired lease puts the ticket back in the queue until its attempts run out.
Every other statement on the service's tables is in :mod:`automl.queue.queries`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, String, bindparam, case, exists, func, select, update
from sqlalchemy.orm import aliased

from automl.queue.models import Run, Ticket
from automl.queue.queries import ACTIVE_RUN, rowcount, scalar, utcnow
from automl.study.storage.retry import with_retry


@dataclass(frozen=True)
class Claim:
    """A ticket a worker now holds."""

    id: int
    run_id: str
    kind: str
    name: str
    attempts: int
    retry_params: dict[str, Any] | None


@dataclass(frozen=True)
class Expired:
    """A running ticket whose lease ran out, and what became of it.

    ``held``: a trial ticket whose trial exists; the sweeper now holds its lease and must
    settle it (:func:`release_ticket` or :func:`requeue_lost`). Otherwise the ticket was
    re-queued (``requeued``) or failed, its attempts spent.
    """

    id: int
    run_id: str
    kind: str
    trial_number: int | None
    requeued: bool
    held: bool = False


def _claim_statement() -> Any:
    """``UPDATE ... WHERE id = (the next claimable ticket) RETURNING ...``, built once
    (building it cost more than running it); bound: worker_id, now, leased_until.

    First the run to serve (an active run with a claimable ticket: the fewest running
    first, then the one whose oldest claimable ticket is oldest), then its lowest
    claimable ticket: index lookups, so a claim costs about the same with 1,000 or
    100,000 tickets queued (``bench/queue_scale.py``). (Under SKIP LOCKED a claim racing
    another for a run's last claimable ticket finds nothing; its next poll goes on.)"""
    other, trial, queued = aliased(Ticket), aliased(Ticket), aliased(Ticket)
    running = (select(func.count()).where(other.run_id == Run.id, other.status == "running")
               .correlate(Run).scalar_subquery())

    def claimable(ticket: Any) -> Any:  # a run's best ticket waits for all its trials
        trials_pending = exists().where(trial.run_id == ticket.run_id, trial.kind == "trial",
                                        trial.status.in_(("queued", "running")))
        return (ticket.status == "queued") & ((ticket.kind != "best") | ~trials_pending)

    oldest = (select(func.min(queued.id)).where(queued.run_id == Run.id, claimable(queued))
              .correlate(Run).scalar_subquery())  # None: nothing claimable in the run
    next_run = (select(Run.id).where(Run.status.in_(ACTIVE_RUN), oldest.is_not(None))
                .order_by(running, oldest).limit(1).scalar_subquery())
    candidate = (select(Ticket.id).where(Ticket.run_id == next_run, claimable(Ticket))
                 .order_by(Ticket.id).limit(1)
                 .with_for_update(skip_locked=True).scalar_subquery())
    now = bindparam("b_now", type_=Ticket.updated_at.type)
    return (update(Ticket).where(Ticket.id == candidate, Ticket.status == "queued")
            .values(status="running", worker_id=bindparam("b_worker_id", type_=String),
                    attempts=Ticket.attempts + 1, heartbeat_at=now, updated_at=now,
                    leased_until=bindparam("b_leased_until", type_=Ticket.leased_until.type))
            .returning(Ticket.id, Ticket.run_id, Ticket.kind, Ticket.name,
                       Ticket.attempts, Ticket.retry_params))


_CLAIM = _claim_statement()


def claim_ticket(engine: Engine, worker_id: str, lease_s: float) -> Claim | None:
    """Take the next queued ticket, fairly across runs; None when there is nothing to do.

    A run's ``best`` ticket waits until none of its trials is queued or running. Among
    runs, the one with the fewest running tickets goes first.
    """
    def claim() -> Claim | None:
        now = utcnow()
        with engine.begin() as connection:
            row = connection.execute(_CLAIM, {
                "b_worker_id": worker_id, "b_now": now,
                "b_leased_until": now + timedelta(seconds=lease_s)}).first()
        return None if row is None else Claim(*row)

    return with_retry(claim)


def claim_more_trials(engine: Engine, worker_id: str, lease_s: float, run_id: str,
                      n: int, shares: int = 1) -> list[Claim]:
    """Take up to ``n`` more queued trial tickets of ``run_id`` (a cohort's members, one
    lease each, as :func:`claim_ticket` leases one), oldest first; at most a ``shares``-th
    of those queued (rounded up), so that the run's last trials are not all held by one
    worker while others have nothing to do."""
    def claim() -> list[Claim]:
        now = utcnow()
        with engine.connect() as connection:
            queued = connection.execute(
                select(func.count()).where(Ticket.run_id == run_id, Ticket.kind == "trial",
                                           Ticket.status == "queued")).scalar_one()
        share = min(n, -(-int(queued) // max(1, shares)))
        if share <= 0:
            return []
        waiting = (select(Ticket.id).where(Ticket.run_id == run_id, Ticket.kind == "trial",
                                           Ticket.status == "queued")
                   .order_by(Ticket.id).limit(share).with_for_update(skip_locked=True))
        with engine.begin() as connection:
            # The ids first, locked, then the update: as one ``UPDATE ... WHERE id IN
            # (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)``, PostgreSQL may re-run the
            # subquery for each row and take more than n.
            ids = list(connection.execute(waiting).scalars())
            rows = connection.execute(
                update(Ticket).where(Ticket.id.in_(ids), Ticket.status == "queued")
                .values(status="running", worker_id=worker_id, attempts=Ticket.attempts + 1,
                        heartbeat_at=now, updated_at=now,
                        leased_until=now + timedelta(seconds=lease_s))
                .returning(Ticket.id, Ticket.run_id, Ticket.kind, Ticket.name,
                           Ticket.attempts, Ticket.retry_params)).all() if ids else []
        return sorted((Claim(*row) for row in rows), key=lambda c: c.id)

    return with_retry(claim) if n > 0 else []


def renew_leases(engine: Engine, ticket_ids: Sequence[int], worker_id: str,
                 lease_s: float) -> set[int]:
    """Extend held leases; the ids still this worker's (the others expired and were
    re-queued, or their run was cancelled)."""
    now = utcnow()
    statement = (update(Ticket).where(Ticket.id.in_(list(ticket_ids)),
                                      Ticket.worker_id == worker_id, Ticket.status == "running")
                 .values(leased_until=now + timedelta(seconds=lease_s), heartbeat_at=now,
                         updated_at=now)
                 .returning(Ticket.id))

    def renew() -> set[int]:
        with engine.begin() as connection:
            return {row[0] for row in connection.execute(statement)}

    return with_retry(renew)


def renew_lease(engine: Engine, ticket_id: int, worker_id: str, lease_s: float) -> bool:
    """Extend a held lease; False if the ticket is no longer this worker's (expired and
    re-queued, or its run was cancelled)."""
    return ticket_id in renew_leases(engine, [ticket_id], worker_id, lease_s)


_RELEASE = (update(Ticket)
            .where(Ticket.id == bindparam("b_ticket_id"),
                   Ticket.worker_id == bindparam("b_worker_id"), Ticket.status == "running")
            .values(status=bindparam("b_status", type_=String),
                    result=bindparam("b_result", type_=Ticket.result.type),
                    error=bindparam("b_error", type_=String), leased_until=None,
                    updated_at=bindparam("b_now", type_=Ticket.updated_at.type)))
_SET_TRIAL_NUMBER = (update(Ticket).where(Ticket.id == bindparam("b_ticket_id"))
                     .values(trial_number=bindparam("b_number")))


def release_ticket(engine: Engine, ticket_id: int, worker_id: str, *, status: str,
                   result: dict[str, Any] | None = None, error: str | None = None) -> bool:
    """Finish a held ticket as ``done`` or ``failed``; False if the lease was lost."""
    values = {"b_ticket_id": ticket_id, "b_worker_id": worker_id, "b_status": status,
              "b_result": result, "b_error": error, "b_now": utcnow()}
    return with_retry(lambda: rowcount(engine, _RELEASE, values) == 1)


def set_trial_number(engine: Engine, ticket_id: int, number: int) -> None:
    with_retry(lambda: rowcount(engine, _SET_TRIAL_NUMBER,
                                 {"b_ticket_id": ticket_id, "b_number": number}))


LEASE_EXPIRED = "lease expired: the worker stopped sending heartbeats"


def end_leases_of(engine: Engine, worker_id: str) -> int:
    """A worker known to be dead (its process exited uncleanly): its leases end now, so the
    next sweep takes its tickets back without waiting a whole lease."""
    past = utcnow() - timedelta(seconds=1)
    statement = (update(Ticket).where(Ticket.worker_id == worker_id, Ticket.status == "running")
                 .values(leased_until=past))
    return with_retry(lambda: rowcount(engine, statement))


def expire_leases(engine: Engine, sweeper_id: str, lease_s: float) -> list[Expired]:
    """Take back expired running tickets.

    A trial ticket whose trial exists passes to the sweeper (``sweeper_id`` holds it for
    ``lease_s``) until the sweeper has read how the trial ended: no other worker can claim
    it meanwhile, so a trial told just before its worker died is not run twice, and a
    retry always carries the lost trial's parameters. Every other expired ticket is
    re-queued, or failed once its attempts are spent.
    """
    def expire() -> list[Expired]:
        now = utcnow()
        expired = []
        with engine.begin() as connection:
            rows = connection.execute(
                select(Ticket.id, Ticket.run_id, Ticket.kind, Ticket.trial_number,
                       Ticket.attempts < Ticket.max_attempts)
                .where(Ticket.status == "running", Ticket.leased_until < now)
                .with_for_update(skip_locked=True)).all()
            for ticket_id, run_id, kind, number, retry in rows:
                held = kind == "trial" and number is not None
                if held:
                    values: dict[str, Any] = {"worker_id": sweeper_id,
                                              "leased_until": now + timedelta(seconds=lease_s)}
                else:
                    values = {"status": "queued" if retry else "failed", "worker_id": None,
                              "leased_until": None}
                connection.execute(update(Ticket).where(Ticket.id == ticket_id)
                                   .values(**values, error=LEASE_EXPIRED, updated_at=now))
                expired.append(Expired(ticket_id, run_id, kind, number,
                                       bool(retry) and not held, held))
        return expired

    return with_retry(expire)


def requeue_lost(engine: Engine, ticket_id: int, worker_id: str,
                 retry_params: dict[str, Any] | None, error: str) -> None:
    """The process running a held ticket died: queue it again now (attempts permitting)
    instead of waiting for its lease to lapse."""
    statement = (update(Ticket).where(Ticket.id == ticket_id, Ticket.worker_id == worker_id,
                                      Ticket.status == "running")
                 .values(status=case((Ticket.attempts < Ticket.max_attempts, "queued"),
                                     else_="failed"),
                         worker_id=None, leased_until=None, retry_params=retry_params,
                         trial_number=None, error=error, updated_at=utcnow()))
    with_retry(lambda: rowcount(engine, statement))


def trial_number_of(engine: Engine, ticket_id: int) -> int | None:
    return scalar(engine, select(Ticket.trial_number).where(Ticket.id == ticket_id))


Holder = tuple[str, str | None, str]  # ticket status, the worker holding it, run status


def holders_of(engine: Engine, ticket_ids: Sequence[int]) -> dict[int, Holder]:
    """(ticket status, the worker holding it, run status) of each ticket."""
    def read() -> dict[int, Holder]:
        with engine.connect() as connection:
            rows = connection.execute(
                select(Ticket.id, Ticket.status, Ticket.worker_id, Run.status)
                .join(Run, Run.id == Ticket.run_id).where(Ticket.id.in_(list(ticket_ids))))
            return {row[0]: (row[1], row[2], row[3]) for row in rows}

    return with_retry(read)


def holder_of(engine: Engine, ticket_id: int) -> Holder:
    """(ticket status, the worker holding it, run status) of one ticket."""
    return holders_of(engine, [ticket_id])[ticket_id]
