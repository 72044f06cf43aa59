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
from typing import Any

import ray
import torch

from automl.data import PreparedData
from automl.errors import ConfigError
from automl.queue import leases
from workers.ray_setup import check_gpus, start_ray, trial_slots
from workers.service_worker import Heartbeat, ServiceWorker, describe
from workers.tickets import TicketRunner

logger = logging.getLogger(__name__)
_RUNNER: TicketRunner | None = None
# What tasks need from the driver's environment: the fault-injection hook of the tests.
PASSTHROUGH_ENV = ("AUTOML_FAULT",)


class TicketWatch:
    """Inside a task: checks now and then that the driver still holds the ticket."""

    def __init__(self, engine: Any, ticket_id: int, worker_id: str, every_s: float = 2.0):
        self.engine, self.ticket_id, self.worker_id, self.every_s = (engine, ticket_id,
                                                                     worker_id, every_s)
        self.checked_at = time.monotonic()
        self.reason: str | None = None

    def stop_reason(self) -> str | None:
        if self.reason is None and time.monotonic() - self.checked_at >= self.every_s:
            self.checked_at = time.monotonic()
            status, holder, run_status = leases.holder_of(self.engine, self.ticket_id)
            if run_status == "cancelled":
                self.reason = "cancelled"
            elif status != "running" or holder != self.worker_id:
                self.reason = "lease_lost"
        return self.reason


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
def run_ticket(url: str, claim: leases.Claim, worker_id: str, optuna_proxy: str | None = None,
               prepared: PreparedData | None = None) -> dict[str, Any]:
    """One ticket in a Ray worker; ``prepared``: the run's data from the object store,
    when the driver has it (a local run), instead of reading it back from the database."""
    logging.getLogger("optuna").setLevel(logging.WARNING)
    runner = task_runner(url, optuna_proxy)
    if prepared is not None:
        runner.preload(claim.run_id, prepared)
    return runner.execute(claim, TicketWatch(runner.engine, claim.id, worker_id).stop_reason)


class RayServiceWorker(ServiceWorker):
    """The service worker loop with tickets running on Ray: a cluster at ``ray_address``,
    or a Ray started here (``"local"``, with ``n_workers`` CPUs, all of them by default).

    ``preload``: runs whose data this process already holds (``tune``'s own run); it goes
    to the object store once and each Ray worker turns it into tensors once."""

    def __init__(self, url: str, *, ray_address: str, cpus_per_trial: float = 1.0,
                 gpus_per_trial: float = 0.0, max_parallel: int | None = None,
                 n_workers: int | None = None,
                 preload: dict[str, PreparedData] | None = None, **options: Any):
        super().__init__(url, **options)
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
        self.inflight: dict[ray.ObjectRef, tuple[leases.Claim, Heartbeat]] = {}
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

    def step(self) -> int:
        self.sweep_if_due()
        while len(self.inflight) < self.max_parallel and (claim := self.claim()) is not None:
            beat = Heartbeat(self, claim.id, claim.run_id).__enter__()
            ref = run_ticket.options(**self.options).remote(
                self.url, claim, self.worker_id, self.optuna_proxy, self._data.get(claim.run_id))
            self.inflight[ref] = (claim, beat)
        if not self.inflight:
            self.sweep()  # nothing to do here: look for lost work and finished runs
            return 0
        done, _ = ray.wait(list(self.inflight), num_returns=1, timeout=self.poll_s)
        for ref in done:
            self.collect(ref)
        return len(done)

    def collect(self, ref: ray.ObjectRef) -> None:
        claim, beat = self.inflight.pop(ref)
        beat.__exit__(None, None, None)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the work raised: the ticket failed
            self.release(claim, "failed", None, describe(exc.cause or exc))
        except ray.exceptions.RayError as exc:  # the process running it is gone
            self.lost(claim, exc)
        else:
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
