"""Serve a run's first tickets in a forked copy of the driver while a local Ray starts.

A local Ray takes 4-8 s on a small machine before ``ray.init`` returns, and its workers
need a few seconds more to import torch. A plain Optuna script trains from the first
second, so on an easy problem that start-up alone decided the race (BENCHMARKS.md,
time-to-quality). :class:`HeadStart` forks the driver just before ``ray.init`` (torch,
the data and the study's code are already imported, so the copy trains at once); the copy
is an ordinary in-process :class:`~workers.service_worker.ServiceWorker` that claims the
run's tickets one after another until told to stop, then finishes the ticket in hand.

It is a process, not a thread, for the same reason Ray's workers are: a ticket that
kills its process (out of host memory, a crash in native code) loses that ticket, not the
run. The driver then hands the copy's tickets to its sweeper at once (:meth:`close`).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import multiprocessing.process
import socket
import sys
import uuid
from multiprocessing.synchronize import Event

from automl.data import PreparedData
from workers.service_worker import ServiceWorker


def can_fork() -> bool:
    """Forking a process that imported torch is safe on Linux before it runs anything.

    (macOS's system libraries are not fork-safe, and Windows cannot fork.)"""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


class HeadStart:
    """A forked copy of this process serving ``run_id``'s tickets until :meth:`stop`.

    Fork before this process opens any database connection it keeps (the copy opens its
    own) and before it starts threads."""

    def __init__(self, url: str, run_id: str, prepared: PreparedData, lease_s: float) -> None:
        context = multiprocessing.get_context("fork")
        self.worker_id = f"{socket.gethostname()}:head-start:{uuid.uuid4().hex[:6]}"
        self._stop = context.Event()
        self._process = context.Process(
            target=_serve, name="automl-head-start", daemon=True,
            args=(url, run_id, prepared, self.worker_id, lease_s, self._stop))
        start_frozen(self._process)

    def stop(self) -> None:
        """Claim no more tickets: finish the one in hand, then exit."""
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._process.is_alive()

    def close(self) -> bool:
        """Wait for the ticket in hand; True if the copy exited cleanly (else whatever it
        held is lost, and is for the sweeper)."""
        self.stop()
        self._process.join()
        code = self._process.exitcode
        self._process.close()
        return code == 0


def start_frozen(process: multiprocessing.process.BaseProcess) -> None:
    """Fork ``process`` with every object this process holds frozen (``gc.freeze``): the
    copy's garbage collector never frees what it inherits.

    Freeing some libraries' objects in a forked copy hangs it: an onnxruntime session left
    for the collector by an earlier ``Predictor`` destroys a condition variable that its
    thread pool was waiting on when the fork was made, and those threads do not exist in
    the copy (seen once in the test suite: the copy stuck in ``pthread_cond_destroy``
    under ``gc`` while exporting its first model). The parent thaws at once."""
    gc.freeze()
    try:
        process.start()
    finally:
        gc.unfreeze()


def _serve(url: str, run_id: str, prepared: PreparedData, worker_id: str, lease_s: float,
           stop: Event) -> None:
    """The copy: one CPU thread, a short poll, the submitter's data (its tickets carry
    its ``worker_id``)."""
    logging.getLogger("optuna").setLevel(logging.WARNING)
    worker = ServiceWorker(url, worker_id=worker_id, lease_s=lease_s, poll_s=0.1,
                           threads=1, device="cpu", cohort_trials=1)
    worker.runner.preload(run_id, prepared)
    worker.serve(until=stop.is_set)
