"""Run one submitted run to its end from this process: what ``tune()`` does after submitting.

The run's tickets are served exactly as the service serves them: a
:class:`~workers.ray_service.RayServiceWorker` in this process claims them and runs them
as Ray tasks (a local Ray by default, or a cluster), and whichever step sees the last one
end writes the result. Two start-up tricks keep a local run as quick as a plain script:
the first tickets train in a fork of this process while Ray starts
(:mod:`workers.head_start`), and the data goes to Ray's workers through the object store
rather than being read back from the database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import ray

from automl.data import PreparedData
from automl.queue import leases
from workers.head_start import HeadStart, can_fork
from workers.ray_service import RayServiceWorker

logger = logging.getLogger(__name__)
LEASE_S = 30.0  # as `automl worker`'s default: a busy machine's heartbeats keep up


def run_to_end(url: str, run_id: str, prepared: PreparedData, finished: Callable[[], bool],
               *, ray_address: str | None = None, n_workers: int | None = None,
               gpus_per_trial: float = 0.0, head_start: bool = True,
               cohort_trials: int | None = None) -> None:
    """Serve ``run_id``'s tickets until ``finished()`` (asked between steps, and every half
    second while Ray starts: it also draws the progress) says the run has ended. They train
    on Ray at ``ray_address`` (None: a local Ray with ``n_workers`` CPUs), each taking
    ``gpus_per_trial`` of a GPU, up to ``cohort_trials`` trials per task (None: the
    device's default, :func:`workers.cohort_size.default_cohort_trials`); ``head_start``:
    see :mod:`workers.head_start`.

    Whatever happens, the fork has exited and a Ray started here is shut down on return,
    so nothing of this run trains any more (an interrupted run's RUNNING trials are the
    caller's to settle)."""
    head = None
    if head_start and gpus_per_trial == 0 and ray_address is None \
            and not ray.is_initialized() and can_fork():
        head = HeadStart(url, run_id, prepared, LEASE_S)
    try:
        with _asking(finished):
            worker = RayServiceWorker(url, ray_address=ray_address or "local",
                                      n_workers=n_workers, gpus_per_trial=gpus_per_trial,
                                      lease_s=LEASE_S, poll_s=0.2, preload={run_id: prepared},
                                      cohort_trials=cohort_trials)
    except BaseException:
        if head is not None:
            head.close()
        raise
    try:
        if head is not None:
            head.stop()  # it finishes its ticket in hand, then exits

        def done() -> bool:
            nonlocal head
            if head is not None and not head.running:
                _close_head(head, worker)
                head = None
            return finished()

        worker.serve(until=done)
    finally:
        if head is not None:
            _close_head(head, worker)
        worker.close()


def _close_head(head: HeadStart, worker: RayServiceWorker) -> None:
    """Wait for the fork to end; if it died (its ticket killed it), hand what it held to
    the sweeper now rather than after a lease."""
    if head.close():
        return
    logger.warning("the head start's process died; its ticket is run again")
    leases.end_leases_of(worker.engine, head.worker_id)
    worker.sweep()


@contextmanager
def _asking(finished: Callable[[], bool]) -> Iterator[None]:
    """Ask ``finished`` every half second on a thread while the body runs (Ray's start-up
    keeps the calling thread: started on a thread that then ends, Ray loses its daemons)."""
    stop = threading.Event()

    def ask() -> None:
        while not stop.wait(0.5):
            finished()

    thread = threading.Thread(target=ask, name="automl-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
