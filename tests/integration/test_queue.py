"""The work queue: exactly-once claims, leases, fairness, gating and cancel."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import Counter

import pytest
from helpers import make_run
from sqlalchemy import select
from sqlalchemy.orm import Session

from automl.queue import leases, queries
from automl.queue.engine import make_engine
from automl.queue.models import Ticket


@pytest.fixture
def url(service_url: str) -> str:
    return service_url


def drain(url: str, worker: str, out: mp.Queue) -> None:
    """A worker process: claim and release until the queue is empty."""
    engine = make_engine(url)
    claimed = []
    while (claim := leases.claim_ticket(engine, worker, lease_s=60)) is not None:
        claimed.append(claim.id)
        assert leases.release_ticket(engine, claim.id, worker, status="done",
                                     result={"by": worker})
    out.put((worker, claimed))


def drain_in_cohorts(url: str, worker: str, out: mp.Queue) -> None:
    """A worker process claiming up to four trials at a time, as a cohort does."""
    engine = make_engine(url)
    claimed = []
    while (claim := leases.claim_ticket(engine, worker, lease_s=60)) is not None:
        cohort = [claim, *leases.claim_more_trials(engine, worker, 60, claim.run_id, 3)]
        for member in cohort:
            claimed.append(member.id)
            assert leases.release_ticket(engine, member.id, worker, status="done",
                                         result={"by": worker})
    out.put((worker, claimed))


@pytest.mark.parametrize("target", [drain, drain_in_cohorts])
def test_two_processes_racing_run_each_ticket_exactly_once(url: str, target) -> None:
    engine = make_engine(url)
    run_id = make_run(engine, [("trial", str(i)) for i in range(50)])
    context = mp.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=target, args=(url, f"w{i}", out)) for i in range(2)]
    for process in workers:
        process.start()
    claims = dict(out.get(timeout=120) for _ in workers)
    for process in workers:
        process.join(timeout=60)
    everything = claims["w0"] + claims["w1"]
    assert len(everything) == len(set(everything)) == 50
    with Session(engine) as session:
        tickets = session.scalars(select(Ticket).where(Ticket.run_id == run_id)).all()
    assert {t.status for t in tickets} == {"done"} and {t.attempts for t in tickets} == {1}
    assert Counter(t.result["by"] for t in tickets) == Counter(
        {worker: len(c) for worker, c in claims.items() if c})


def test_an_expired_lease_is_requeued_until_attempts_run_out(url: str) -> None:
    engine = make_engine(url)
    make_run(engine, [("trial", "0")], max_attempts=2)
    first = leases.claim_ticket(engine, "dead", lease_s=0.2)
    assert first is not None and first.attempts == 1  # died before its trial was asked
    time.sleep(0.4)
    (expired,) = leases.expire_leases(engine, "sweeper", 10)
    assert expired.requeued and not expired.held and expired.trial_number is None
    assert not leases.renew_lease(engine, first.id, "dead", 10)  # the dead worker lost it
    second = leases.claim_ticket(engine, "alive", lease_s=0.2)
    assert second is not None and second.id == first.id and second.attempts == 2
    time.sleep(0.4)
    (again,) = leases.expire_leases(engine, "sweeper", 10)
    assert not again.requeued
    assert leases.claim_ticket(engine, "alive", lease_s=1) is None


def test_an_expired_trial_is_held_by_the_sweeper_until_it_settles_it(url: str) -> None:
    """Between the expiry and the sweeper's reading of the trial no worker may claim the
    ticket: it would ask Optuna for a new trial beside a lost one that may have finished."""
    engine = make_engine(url)
    make_run(engine, [("trial", "0")], max_attempts=2)
    first = leases.claim_ticket(engine, "dead", lease_s=0.2)
    assert first is not None
    leases.set_trial_number(engine, first.id, 7)
    time.sleep(0.4)
    (expired,) = leases.expire_leases(engine, "sweeper", 10)
    assert expired.held and not expired.requeued and expired.trial_number == 7
    assert not leases.renew_lease(engine, first.id, "dead", 10)
    assert leases.claim_ticket(engine, "alive", lease_s=1) is None  # the sweeper holds it
    leases.requeue_lost(engine, first.id, "sweeper", {"lr": 0.01}, "lease expired")
    retry = leases.claim_ticket(engine, "alive", lease_s=1)
    assert retry is not None and retry.retry_params == {"lr": 0.01} and retry.attempts == 2


def test_renewed_leases_do_not_expire(url: str) -> None:
    engine = make_engine(url)
    make_run(engine, [("trial", "0")])
    claim = leases.claim_ticket(engine, "w", lease_s=0.3)
    assert claim is not None
    for _ in range(3):
        time.sleep(0.15)
        assert leases.renew_lease(engine, claim.id, "w", 0.3)
    assert leases.expire_leases(engine, "sweeper", 10) == []


def test_runs_are_claimed_fairly(url: str) -> None:
    engine = make_engine(url)
    first = make_run(engine, [("trial", str(i)) for i in range(4)])
    second = make_run(engine, [("trial", str(i)) for i in range(4)])
    order = [leases.claim_ticket(engine, "w", 60) for _ in range(4)]
    assert [c.run_id for c in order if c] == [first, second, first, second]


def test_best_waits_for_every_trial(url: str) -> None:
    engine = make_engine(url)
    make_run(engine, [("trial", "0"), ("best", "best")])
    trial = leases.claim_ticket(engine, "w", 60)
    assert trial is not None and trial.kind == "trial"
    assert leases.claim_ticket(engine, "w", 60) is None  # the trial is still running
    leases.release_ticket(engine, trial.id, "w", status="done")
    best = leases.claim_ticket(engine, "w", 60)
    assert best is not None and best.kind == "best"


def test_cancel_stops_handing_out_work_and_ends_running_tickets(url: str) -> None:
    engine = make_engine(url)
    run_id = make_run(engine, [("trial", "0"), ("trial", "1")])
    running = leases.claim_ticket(engine, "w", 60)
    assert running is not None
    assert queries.cancel_run(engine, run_id)
    assert leases.claim_ticket(engine, "w", 60) is None
    assert not leases.renew_lease(engine, running.id, "w", 60)
    assert not queries.cancel_run(engine, run_id)


def test_a_timed_out_run_skips_its_unstarted_trials(url: str) -> None:
    engine = make_engine(url)
    run_id = make_run(engine, [("trial", "0"), ("trial", "1")], timeout_s=0.1)
    queries.start_run(engine, run_id)
    time.sleep(0.3)
    assert queries.skip_overdue_trials(engine) == 2
    assert leases.claim_ticket(engine, "w", 60) is None


def test_a_ticket_that_loses_its_storage_is_left_to_its_lease_not_failed(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17, case 1: when the database goes away mid-ticket, Optuna's own optimize()
    replaces the storage error with 'AssertionError: Should not reach.'; the ticket used
    to end 'failed' with it and was never retried. Now the worker leaves it to its lease,
    and the sweeper takes it back once the storage answers again."""
    from sqlalchemy import update
    from sqlalchemy.exc import OperationalError

    from workers.service_worker import ServiceWorker

    engine = make_engine(url)
    make_run(engine, [("baseline", "mean_rule")], max_attempts=3)
    worker = ServiceWorker(url, lease_s=60)

    def storage_gone(*_args: object) -> None:
        try:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        except OperationalError:
            raise AssertionError("Should not reach.") from None

    monkeypatch.setattr(worker.runner, "execute", storage_gone)
    assert worker.step() == 0
    with Session(engine) as session:
        (ticket,) = session.scalars(select(Ticket)).all()
    assert ticket.status == "running" and ticket.error is None
    with engine.begin() as connection:  # the lease lapses (as it does while the storage is down)
        connection.execute(update(Ticket).values(leased_until=queries.utcnow()))
    worker.sweep()
    with Session(engine) as session:
        (ticket,) = session.scalars(select(Ticket)).all()
    assert ticket.status == "queued" and ticket.error == leases.LEASE_EXPIRED


def test_a_cohort_claims_its_share_of_a_runs_queued_trials(url: str) -> None:
    """More trial tickets of the same run, each under its own lease, at most a share of
    those queued, and never another run's or a baseline."""
    engine = make_engine(url)
    run_id = make_run(engine, [("trial", str(i)) for i in range(9)] + [("baseline", "b")])
    other = make_run(engine, [("trial", "x")])
    first = leases.claim_ticket(engine, "w", lease_s=60)
    assert first is not None and first.kind == "trial" and first.run_id == run_id
    more = leases.claim_more_trials(engine, "w", 60, first.run_id, n=7, shares=2)
    assert len(more) == 4  # 8 queued, over 2 slots
    assert {c.run_id for c in more} == {first.run_id} and {c.kind for c in more} == {"trial"}
    assert [c.id for c in more] == sorted(c.id for c in more)
    assert leases.renew_leases(engine, [first.id, *(c.id for c in more)], "w", 60) == {
        first.id, *(c.id for c in more)}
    rest = leases.claim_more_trials(engine, "w", 60, first.run_id, n=7)
    assert len(rest) == 4  # the rest, within n
    assert leases.claim_more_trials(engine, "w", 60, first.run_id, n=7) == []
    with Session(engine) as session:
        statuses = dict(session.execute(select(Ticket.name, Ticket.status)
                                        .where(Ticket.run_id.in_((run_id, other)))).all())
    assert statuses["b"] == "queued" and statuses["x"] == "queued"
