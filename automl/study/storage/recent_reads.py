"""Reads of a study that this process may serve again, until it writes.

Optuna reads a study more often than it changes within one process: TPE with the
constant liar reads all trials twice within one ``ask``, and every ``ask`` looks for
enqueued (WAITING) trials. :class:`RecentReads` keeps, per study,

* the last read of all its trials, served again while it is less than ``snapshot_s``
  (0.1 s) old and this process wrote nothing since (another process's writes are seen
  once it is older);
* that the study had no enqueued trial, believed for ``waiting_s`` (1 s) unless this
  process enqueues one. The product enqueues a lost trial's retry in the worker that
  then asks for it, and warm starts before any worker starts; a trial enqueued by hand
  from elsewhere waits up to a second.

:class:`~automl.study.storage.write_behind.WriteBehindStorage` tells it of every write
(:meth:`RecentReads.wrote`) and of every enqueue (:meth:`RecentReads.enqueued`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from optuna.trial import FrozenTrial


class RecentReads:
    """The recent reads of each study by id, dropped at this process's next write."""

    def __init__(self, snapshot_s: float = 0.1, waiting_s: float = 1.0) -> None:
        self.snapshot_s, self.waiting_s = snapshot_s, waiting_s
        self._writes = 0
        # study id -> (writes counter, monotonic time, all trials) of the last full read
        self._snapshots: dict[int, tuple[int, float, list[FrozenTrial]]] = {}
        self._none_waiting: dict[int, float] = {}  # study id -> when it had no WAITING trial
        self._lock = threading.Lock()

    def wrote(self) -> None:
        """This process wrote to the database: the next read of all trials is fresh."""
        with self._lock:
            self._writes += 1

    def enqueued(self, study_id: int) -> None:
        """This process enqueued a trial of ``study_id``."""
        with self._lock:
            self._writes += 1
            self._none_waiting.pop(study_id, None)

    def all_trials(self, study_id: int,
                   read: Callable[[], list[FrozenTrial]]) -> list[FrozenTrial]:
        """All trials of the study: the last ``read()`` if recent and nothing was written
        by this process since, else a fresh one (the list is shared: read-only)."""
        with self._lock:
            writes, now = self._writes, time.monotonic()
            last = self._snapshots.get(study_id)
            if last is not None and last[0] == writes and now - last[1] < self.snapshot_s:
                return last[2]
        trials = read()
        with self._lock:
            self._snapshots[study_id] = (writes, now, trials)
        return trials

    def any_waiting(self, study_id: int, query: Callable[[], bool]) -> bool:
        """Whether the study may have an enqueued trial: ``query()`` unless it had none
        less than ``waiting_s`` ago and this process enqueued none since."""
        with self._lock:
            since = self._none_waiting.get(study_id)
            if since is not None and time.monotonic() - since < self.waiting_s:
                return False
            writes, now = self._writes, time.monotonic()
        if query():
            return True
        with self._lock:
            if self._writes == writes:  # (a write of ours meanwhile: ask again next time)
                self._none_waiting[study_id] = now
        return False
