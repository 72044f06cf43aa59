"""``automl worker --ray-address``: claim tickets here, run them as Ray tasks.

The worker process is the driver: it claims as many tickets as the cluster has room for
(``num_cpus`` and fractional ``num_gpus`` per ticket, so several small trials can share
a GPU), renews their leases, and releases them as their tasks finish. A task whose Ray
worker dies (SIGKILL, node lost, host OOM) is handled at once: its trial is failed as
``lost_worker`` and the ticket re-queued with the trial's parameters.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import ray
import torch

from automl.data import PreparedData
from automl.errors import ConfigError
from automl.queue import leases
from workers.cohort_size import default_cohort_trials
from workers.ray_setup import check_gpus, start_ray, trial_slots
from workers.service_worker import Heartbeat, ServiceWorker, describe
from workers.tickets import StopReason, TicketRunner

logger = logging.getLogger(__name__)
_RUNNER: TicketRunner | None = None
# What tasks need from the driver's environment: the fault-injection hook of the tests.
PASSTHROUGH_ENV = ("AUTOML_FAULT",)


class TicketWatch:
    """Inside a task: checks now and then (one query for all of its tickets) that the
    driver still holds them."""

    def __init__(self, engine: Any, ticket_ids: Sequence[int], worker_id: str,
                 every_s: float = 2.0):
        self.engine, self.ticket_ids, self.worker_id = engine, list(ticket_ids), worker_id
        self.every_s = every_s
        self.checked_at = time.monotonic()
        self.reasons: dict[int, str] = {}

    def stop_reason(self, ticket_id: int) -> StopReason:
        """What the work of ``ticket_id`` polls every epoch."""
        def reason() -> str | None:
            self._check()
            return self.reasons.get(ticket_id)

        return reason

    def _check(self) -> None:
        if time.monotonic() - self.checked_at < self.every_s:
            return
        self.checked_at = time.monotonic()
        for ticket_id, (status, holder, run_status) in leases.holders_of(
                self.engine, self.ticket_ids).items():
            if run_status == "cancelled":
                self.reasons.setdefault(ticket_id, "cancelled")
            elif status != "running" or holder != self.worker_id:
                self.reasons.setdefault(ticket_id, "lease_lost")


def task_runner(url: str, optuna_proxy: str | None = None) -> TicketRunner:
    """One runner per Ray worker process; threads and device follow the task's resources."""
    global _RUNNER
    resources = ray.get_runtime_context().get_assigned_resources()
    torch.set_num_threads(max(1, int(resources.get("CPU", 1))))
    device = "cuda" if resources.get("GPU", 0) > 0 and torch.cuda.is_available() else "cpu"
    if _RUNNER is None or (_RUNNER.url, _RUNNER.device, _RUNNER.optuna_proxy) != (
            url, device, optuna_proxy):
        _RUNNER = TicketRunner(url, device, optuna_proxy)
    return _RUNNER


@ray.remote(max_retries=0)
def run_tickets(url: str, claims: list[leases.Claim], worker_id: str,
                optuna_proxy: str | None = None,
                prepared: PreparedData | None = None) -> list[dict[str, Any]]:
    """One ticket, or a cohort of trial tickets of one run, in a Ray worker; ``prepared``:
    the run's data from the object store, when the driver has it (a local run), instead
    of reading it back from the database."""
    logging.getLogger("optuna").setLevel(logging.WARNING)
    runner = task_runner(url, optuna_proxy)
    if prepared is not None:
        runner.preload(claims[0].run_id, prepared)
    watch = TicketWatch(runner.engine, [claim.id for claim in claims], worker_id)
    return runner.execute_all(claims, [watch.stop_reason(claim.id) for claim in claims])


class RayServiceWorker(ServiceWorker):
    """The service worker loop with tickets running on Ray: a cluster at ``ray_address``,
    or a Ray started here (``"local"``, with ``n_workers`` CPUs, all of them by default).

    ``preload``: runs whose data this process already holds (``tune``'s own run); it goes
    to the object store once and each Ray worker turns it into tensors once."""

    def __init__(self, url: str, *, ray_address: str, cpus_per_trial: float = 1.0,
                 gpus_per_trial: float = 0.0, max_parallel: int | None = None,
                 n_workers: int | None = None,
                 preload: dict[str, PreparedData] | None = None,
                 cohort_trials: int | None = None, **options: Any):
        super().__init__(url, cohort_trials=cohort_trials or default_cohort_trials(
            "cuda" if gpus_per_trial > 0 else "cpu"), **options)
        local = ray_address == "local"
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            env = {key: os.environ[key] for key in PASSTHROUGH_ENV if key in os.environ}
            start_ray(None if local else ray_address, n_workers, env_vars=env)
        self.options = {"num_cpus": cpus_per_trial, "num_gpus": gpus_per_trial}
        resources = ray.cluster_resources()
        try:
            check_gpus(resources, gpus_per_trial, local=local)
        except ConfigError:
            self.close()
            raise
        # A local Ray has n_workers CPUs, so its slots already count them; a cluster may be
        # asked for more than fits now (an autoscaler adds nodes for the rest).
        slots = trial_slots(resources, **self.options)
        self.max_parallel = max_parallel or (slots if local else n_workers or slots)
        self.inflight: dict[ray.ObjectRef, tuple[list[leases.Claim], Heartbeat]] = {}
        self._data = {run_id: ray.put(prepared) for run_id, prepared in (preload or {}).items()}
        for run_id, prepared in (preload or {}).items():
            self.runner.preload(run_id, prepared)

    def close(self) -> None:
        """Shut down the Ray this worker started (its tasks die with it)."""
        self._data.clear()
        if self.started_ray:
            ray.shutdown()
        super().close()

    def idle(self) -> bool:
        return not self.inflight

    def slots(self) -> int:
        return self.max_parallel

    def step(self) -> int:
        self.sweep_if_due()
        while len(self.inflight) < self.max_parallel and (claims := self.claim_cohort()):
            beat = Heartbeat(self, [claim.id for claim in claims], claims[0].run_id).__enter__()
            ref = run_tickets.options(**self.options).remote(
                self.url, claims, self.worker_id, self.optuna_proxy,
                self._data.get(claims[0].run_id))
            self.inflight[ref] = (claims, beat)
        if not self.inflight:
            self.sweep()  # nothing to do here: look for lost work and finished runs
            return 0
        done, _ = ray.wait(list(self.inflight), num_returns=1, timeout=self.poll_s)
        for ref in done:
            self.collect(ref)
        return len(done)

    def collect(self, ref: ray.ObjectRef) -> None:
        claims, beat = self.inflight.pop(ref)
        beat.__exit__(None, None, None)
        try:
            results = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the work raised: the tickets failed
            for claim in claims:
                self.release(claim, "failed", None, describe(exc.cause or exc))
        except ray.exceptions.RayError as exc:  # the process running it is gone
            for claim in claims:
                self.lost(claim, exc)
        else:
            for claim, result in zip(claims, results, strict=True):
                self.release(claim, "done", result, None)

    def lost(self, claim: leases.Claim, exc: BaseException) -> None:
        """Settle the dead task's ticket now rather than when its lease lapses."""
        logger.warning("ticket %s lost its Ray worker: %s", claim.id, type(exc).__name__)
        error = f"lost_worker: {type(exc).__name__}"
        number = leases.trial_number_of(self.engine, claim.id)
        if claim.kind == "trial" and number is not None:
            self.settle_lost_trial(claim.id, claim.run_id, number, error)
        else:
            leases.requeue_lost(self.engine, claim.id, self.worker_id, None, error)
