"""Train the first trials in a forked copy of the driver while a local Ray starts.

A local Ray takes 4-8 s on a small machine before ``ray.init`` returns, and its workers
need a few seconds more to import torch. A plain Optuna script trains from the first
second, so on an easy problem that start-up alone decided the race (BENCHMARKS.md,
time-to-quality). :class:`HeadStart` forks the driver just before ``ray.init`` (torch,
the data and the study's code are already imported, so the copy trains at once) and the
copy runs trials one after another, exactly as a Ray worker would, until ``ray.init``
returns; it then finishes the trial in hand and exits.

It is a process, not a thread, for the same reason Ray's workers are: a trial that
kills its process (out of host memory, a crash in native code) loses that trial, not
the run. The trial is then left RUNNING and failed as ``lost_worker`` like any other.
The budget is shared exactly: the copy and the driver (for its Ray tasks) each claim a
trial under a lock on one shared counter.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import torch

from automl.data import PreparedData
from automl.executor import StudyJob, TrialDone
from automl.space import SearchSpace
from automl.studies import load_study, make_storage
from workers.data import to_tensors
from workers.objective import run_trial


def can_fork() -> bool:
    """Forking a process that imported torch is safe on Linux before it runs anything.

    (macOS's system libraries are not fork-safe, and Windows cannot fork.)"""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


class HeadStart:
    """A forked copy of this process running trials of ``job`` until :meth:`stop`."""

    def __init__(self, job: StudyJob, data: PreparedData, n_trials: int,
                 deadline: float | None) -> None:
        context = multiprocessing.get_context("fork")
        self._claimed: Synchronized[int] = context.Value("i", 0)
        self._stopped: Synchronized[int] = context.Value("i", 0)
        self._finished: Synchronized[int] = context.Value("i", 0)
        self._reported, self._n_trials = 0, n_trials
        self._process = context.Process(
            target=_run_trials, name="automl-head-start", daemon=True,
            args=(job, data, n_trials, deadline, self._claimed, self._stopped,
                  self._finished))
        self._process.start()

    def stop(self) -> None:
        """Claim no more trials: finish the one in hand, then exit."""
        with self._claimed.get_lock():
            self._stopped.value = 1

    def claim(self) -> int | None:
        """A trial of the shared budget for the driver (its index), or None when spent."""
        return _claim(self._claimed, None, self._n_trials, None)

    def newly_finished(self) -> int:
        """Trials finished since the last call (each is one ``on_trial_done``)."""
        finished = int(self._finished.value)
        new, self._reported = finished - self._reported, finished
        return new

    @property
    def finished(self) -> int:
        """Trials the fork ran to their end (COMPLETE, PRUNED or FAIL)."""
        return int(self._finished.value)

    @property
    def running(self) -> bool:
        return self._process.is_alive()

    def wait(self, timeout: float) -> None:
        self._process.join(timeout)

    def close(self) -> list[str]:
        """Wait for the trial in hand; the error, if the process did not exit cleanly."""
        self._process.join()
        code = self._process.exitcode
        self._process.close()
        if code == 0:
            return []
        return [f"head-start process exited with code {code}: its trial is lost"]


def start_meanwhile(start: Callable[[], None], head: HeadStart,
                    on_trial_done: TrialDone) -> bool:
    """Run ``start`` (Ray's start-up); meanwhile a thread reports the fork's trials.

    Each trial the fork finishes is reported at once, and when ``on_trial_done`` says stop
    (e.g. the circuit breaker on repeated failures) the fork claims no more. ``start`` keeps
    the calling thread: when ``ray.init`` ran on a thread that then ended, the driver lost
    its object store (Ray's daemons went with that thread). Once it returns, the fork
    finishes its trial in hand and exits (letting it go on until a Ray worker was ready was
    slower on 2 cores: it competes with the workers' start-up). Returns whether to stop.
    """
    started = threading.Event()
    stop: list[bool] = []

    def report() -> None:
        while not started.wait(timeout=0.2):
            if report_finished(head.newly_finished(), on_trial_done):
                stop.append(True)
                head.stop()

    reporter = threading.Thread(target=report, name="automl-head-start", daemon=True)
    reporter.start()
    try:
        start()
    finally:
        head.stop()
        started.set()
        reporter.join()
    return bool(stop)


def report_finished(n_done: int, on_trial_done: TrialDone) -> bool:
    """Call ``on_trial_done`` once per finished trial; True when any says stop."""
    return any([on_trial_done() for _ in range(n_done)])  # a list: every call is made


def _run_trials(job: StudyJob, data: PreparedData, n_trials: int, deadline: float | None,
                claimed: Synchronized[int], stopped: Synchronized[int],
                finished: Synchronized[int]) -> None:
    """The copy's loop: claim a trial, run it, count it; stop when told or out of budget."""
    logging.getLogger("optuna").setLevel(logging.WARNING)
    torch.set_num_threads(1)  # one trial's share, as a Ray worker with one CPU
    storage: Any = make_storage(job.storage_url)  # never the parent's connections
    space = SearchSpace.from_dict(job.space)
    tensors = to_tensors(data, "cpu")
    while (index := _claim(claimed, stopped, n_trials, deadline)) is not None:
        study = load_study(job.storage_url, job.study_name, index, storage=storage)
        run_trial(study, space, tensors, job.seed, pruning=job.pruning)
        with finished.get_lock():
            finished.value += 1


def _claim(claimed: Synchronized[int], stopped: Synchronized[int] | None, n_trials: int,
           deadline: float | None) -> int | None:
    """The next trial's index, or None when stopped, spent or past the deadline."""
    with claimed.get_lock():
        if (stopped is not None and stopped.value) or claimed.value >= n_trials or (
                deadline is not None and time.monotonic() >= deadline):
            return None
        claimed.value += 1
        return int(claimed.value) - 1
