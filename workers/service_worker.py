"""``automl worker``: claim tickets from the service's database and run them.

The loop is short: sweep (expired leases, overdue trials, finished runs), claim one
ticket, run it under a heartbeat that renews its lease, release it, repeat. Whichever
worker sees a run's last ticket end writes the run's summary. With ``--ray-address`` the
same loop hands tickets to Ray instead (:mod:`workers.ray_service`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timezone

import torch

from automl.queue import leases, queries
from automl.queue.schema import check_schema
from automl.results.note import write_note
from automl.run.finish import constant_baseline, summarize
from automl.run.plan import baselines_for
from automl.study.settings import StudySettings
from automl.study.storage.retry import is_transient, one_line, with_retry
from automl.study.trials import fail_orphans, repeated_failure, unhealthy_message
from workers.cohort_size import default_cohort_trials
from workers.tickets import StopReason, TicketRunner

logger = logging.getLogger(__name__)


class Heartbeat:
    """Renews a cohort's (or one ticket's) leases in the background; ``reasons`` says, per
    ticket, why its work should stop (cancelled, lease lost)."""

    def __init__(self, worker: ServiceWorker, ticket_ids: Sequence[int], run_id: str):
        self.worker, self.ticket_ids, self.run_id = worker, list(ticket_ids), run_id
        self.reasons: dict[int, str] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def stop_reason(self, ticket_id: int) -> StopReason:
        """What the work of ``ticket_id`` polls every epoch."""
        return lambda: self.reasons.get(ticket_id)

    def _beat(self) -> None:
        interval = self.worker.lease_s / 3
        held = list(self.ticket_ids)
        failing_since: float | None = None
        while held and not self._done.wait(interval):
            try:
                renewed = leases.renew_leases(self.worker.engine, held, self.worker.worker_id,
                                              self.worker.lease_s)
            except Exception as exc:  # the database is away: keep trying until the leases lapse
                if failing_since is None:
                    failing_since = time.monotonic()
                    logger.warning("heartbeat failed (%s); retrying until the leases lapse",
                                   one_line(exc))
                logger.debug("heartbeat failed", exc_info=True)
                continue
            if failing_since is not None:
                logger.warning("heartbeat renewed the leases again after %.1f s",
                               time.monotonic() - failing_since)
                failing_since = None
            if lost := [ticket for ticket in held if ticket not in renewed]:
                run = queries.run_of(self.worker.engine, self.run_id)
                reason = "cancelled" if run and run.status == "cancelled" else "lease_lost"
                self.reasons.update(dict.fromkeys(lost, reason))
                held = [ticket for ticket in held if ticket in renewed]


class ServiceWorker:
    """One worker process. ``serve()`` runs tickets until told to stop or idle."""

    def __init__(self, url: str, *, worker_id: str | None = None, lease_s: float = 30.0,
                 poll_s: float = 1.0, threads: int = 1, optuna_proxy: str | None = None,
                 device: str | None = None, cohort_trials: int | None = None):
        self.url, self.lease_s, self.poll_s = url, lease_s, poll_s
        # Sweeping costs three queries; once every few seconds is soon enough for leases.
        self.sweep_s, self._swept_at = min(5.0, lease_s / 3), -float("inf")
        torch.set_num_threads(threads)
        self.optuna_proxy = optuna_proxy
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.runner = TicketRunner(url, device, optuna_proxy)
        self.engine = self.runner.engine
        # Trial tickets claimed at once, trained as cohorts where that pays.
        self.cohort_trials = cohort_trials or default_cohort_trials(device)
        self.claim_limit: int | None = None  # what serve(max_tickets) has left
        # A worker started while the database restarts waits for it, as every other call does.
        with_retry(lambda: check_schema(self.engine))
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._started_runs: set[str] = set()
        self._unheld_since: dict[tuple[str, int], float] = {}

    def serve(self, max_tickets: int | None = None, idle_exit: float | None = None,
              until: Callable[[], bool] | None = None) -> int:
        """Run tickets; stop after ``max_tickets``, ``idle_exit`` seconds with no work, or
        once ``until()`` (asked before each step) says so."""
        done, idle_since = 0, time.monotonic()
        while (max_tickets is None or done < max_tickets) and not (until and until()):
            self.claim_limit = None if max_tickets is None else max_tickets - done
            try:
                worked = self.step()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                logger.warning("database unavailable beyond the retry budget; waiting")
                worked = 0
            if worked:
                done, idle_since = done + worked, time.monotonic()
            elif idle_exit is not None and time.monotonic() - idle_since >= idle_exit \
                    and self.idle():
                break
            elif self.idle():  # (a Ray worker with work in flight has just waited on it)
                time.sleep(self.poll_s)
        return done

    def idle(self) -> bool:
        """True when nothing is in flight (always, for the in-process worker)."""
        return True

    def close(self) -> None:
        """Release this worker's database connections."""
        self.engine.dispose()

    def step(self) -> int:
        """Sweep (when due), then claim and run one ticket, or a cohort of trial tickets;
        the number of tickets finished."""
        self.sweep_if_due()
        claims = self.claim_cohort()
        if not claims:
            self.sweep()  # nothing to do here: look for lost work and finished runs
            return 0
        with Heartbeat(self, [claim.id for claim in claims], claims[0].run_id) as beat:
            try:
                results = self.runner.execute_all(
                    claims, [beat.stop_reason(claim.id) for claim in claims])
            except Exception as exc:
                if is_transient(exc):  # the storage went away mid-ticket: not the work's fault
                    logger.warning("ticket(s) %s lost their storage (%s); left to their "
                                   "lease, after which a sweeper runs them again",
                                   [c.id for c in claims], describe(exc))
                    return 0
                error = describe(exc)
                logger.warning("ticket(s) %s failed: %s", [c.id for c in claims], error)
                for claim in claims:
                    self.release(claim, "failed", None, error)
                return len(claims)
        for claim, result in zip(claims, results, strict=True):
            self.release(claim, "done", result, None)
        return len(claims)

    def claim(self) -> leases.Claim | None:
        """The next ticket, its run marked started (once per run and worker is enough)."""
        claim = leases.claim_ticket(self.engine, self.worker_id, self.lease_s)
        if claim is not None and claim.run_id not in self._started_runs:
            queries.start_run(self.engine, claim.run_id)
            self._started_runs.add(claim.run_id)
        return claim

    def claim_cohort(self) -> list[leases.Claim]:
        """The next ticket and, when it is a trial, up to ``cohort_trials`` - 1 more trial
        tickets of its run, to train together (:mod:`workers.trial_cohorts`): at most its
        share of the run's queued trials over this worker's slots."""
        claim = self.claim()
        if claim is None:
            return []
        size = min(self.cohort_trials, self.claim_limit or self.cohort_trials)
        if claim.kind != "trial" or size < 2:
            return [claim]
        return [claim, *leases.claim_more_trials(self.engine, self.worker_id, self.lease_s,
                                                 claim.run_id, size - 1, self.slots())]

    def slots(self) -> int:
        """How many claims this worker runs at once (one, here)."""
        return 1

    def release(self, claim: leases.Claim, status: str, result: dict | None,
                error: str | None) -> None:
        leases.release_ticket(self.engine, claim.id, self.worker_id, status=status,
                              result=result, error=error)
        if claim.kind != "trial":  # a run ends with its best or baseline tickets, never a trial
            self.finish_ready_runs()
        elif result and result.get("failure"):
            self.stop_if_unhealthy(claim.run_id)

    def stop_if_unhealthy(self, run_id: str) -> None:
        """The circuit breaker: when the run's last ``max_consecutive_failures`` trials all
        failed the same way (e.g. diverged: the space is wrong), the run fails at once with
        that reason rather than spending its budget; trials in flight finish."""
        run = self.runner.context(run_id).run
        limit = StudySettings.from_stored(run.settings).max_consecutive_failures
        kind = repeated_failure(self.runner.study(run), limit)
        if kind:
            queries.fail_run(self.engine, run_id, unhealthy_message(limit, kind))

    def sweep_if_due(self) -> None:
        if time.monotonic() - self._swept_at >= self.sweep_s:
            self.sweep()

    def sweep(self) -> None:
        """Take back expired leases (settling their lost trials), skip overdue trials and
        write the summary of every run whose work is all done."""
        self._swept_at = time.monotonic()
        for expired in leases.expire_leases(self.engine, self.worker_id, self.lease_s):
            if expired.held and expired.trial_number is not None:
                self.settle_lost_trial(expired.id, expired.run_id, expired.trial_number,
                                       leases.LEASE_EXPIRED)
        self.fail_unheld_trials()
        queries.skip_overdue_trials(self.engine)
        self.finish_ready_runs()

    def fail_unheld_trials(self) -> None:
        """Fail (``lost_worker``) a RUNNING trial that no running ticket has held for a
        whole lease: its worker is gone, and nothing else would ever end it. A trial is failed
        only when two sweeps a lease apart both found it unheld (the query already spares
        the trials of a run whose ticket is still recording its number, at any load)."""
        now = time.monotonic()
        unheld = with_retry(lambda: queries.unheld_running_trials(self.engine))
        self._unheld_since = {key: self._unheld_since.get(key, now) for key in unheld}
        for (run_id, number), since in list(self._unheld_since.items()):
            if now - since >= self.lease_s:
                logger.warning("run %s: trial %d has had no live ticket for a lease; failing "
                               "it as lost_worker", run_id, number)
                self.runner.fail_lost_trial(run_id, number)
                del self._unheld_since[(run_id, number)]

    def settle_lost_trial(self, ticket_id: int, run_id: str, number: int, error: str) -> None:
        """A trial ticket this worker holds whose training process died: close it if its
        trial was told, else fail the trial and queue the ticket again (attempts
        permitting) with the trial's parameters."""
        lost = self.runner.fail_lost_trial(run_id, number)
        if lost.finished:  # told before its worker died: nothing to run again
            leases.release_ticket(self.engine, ticket_id, self.worker_id, status="done",
                                  result={"trial_number": number})
        else:
            leases.requeue_lost(self.engine, ticket_id, self.worker_id, lost.params, error)

    def finish_ready_runs(self) -> None:
        for run_id in with_retry(lambda: queries.unfinished_runs_done(self.engine)):
            self.finish(run_id)

    def finish(self, run_id: str) -> None:
        """Write the run's summary (or its failure) from the stored results."""
        ctx = self.runner.context(run_id)
        best, scores = with_retry(lambda: queries.finished_tickets(self.engine, run_id))
        if best is None:
            queries.finish_run(self.engine, run_id, status="failed", summary=None,
                               error="no trial completed: every trial was pruned or failed")
            return
        study = self.runner.study(ctx.run)
        # Every ticket is closed: a trial still RUNNING lost its worker (a storage outage
        # longer than the lease can leave one), so it ends FAIL and the counts add up.
        if orphans := fail_orphans(study):
            logger.warning("run %s: failed %d trial(s) left RUNNING by lost workers", run_id,
                           orphans)
        trial = next(t for t in study.get_trials(deepcopy=False)
                     if t.number == best["trial_number"])
        floor = next(b for b in baselines_for(ctx.prepared, ctx.space) if b.config is None)
        scores.append(constant_baseline(ctx.prepared, floor, ctx.run.metric))
        created = ctx.run.created_at.replace(tzinfo=ctx.run.created_at.tzinfo or timezone.utc)
        result = summarize(study, ctx.prepared, trial, best, scores,
                           n_seeds=ctx.run.n_seeds, storage=self.url,
                           total_seconds=(queries.utcnow() - created).total_seconds(),
                           metric=ctx.run.metric)
        write_note(study, result)  # before "succeeded", so a finished run has its note
        queries.finish_run(self.engine, run_id, status="succeeded", summary=result.to_dict())


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]
