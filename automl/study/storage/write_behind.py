"""Fewer database round trips per trial: a running trial's reports are written in batches.

A plain Optuna trial commits one transaction per ``trial.report`` and per
``trial.set_user_attr``: with 10 epochs and our six attributes that is 16 commits, each a
round trip and (on PostgreSQL) a WAL flush. :class:`WriteBehindStorage` keeps a running
trial's intermediate values and user attributes in memory and writes them together, in
one transaction:

* when the trial ends, just before its state (``set_trial_state_values``);
* and whenever ``flush_s`` seconds have passed since the trial's last write, so that
  optuna-dashboard's learning curves stay live (at most ``flush_s`` plus one epoch behind).

A write carries everything this process has buffered, for all its running trials, in
one transaction (one INSERT per table): a cohort's members, which report together, are
written together. Inside :meth:`WriteBehindStorage.writing_together` the writes that
fall due wait for the scope's end and go in one transaction: a cohort epoch's ends
(``workers.trial_cohorts.cohort_epoch``) and the parameters of a cohort's refill, not one
transaction per trial; this process reads the ended trials back as ended at once. A
trial this process ended is served from memory afterwards (Optuna reads it right after
``tell``).

Other processes see a running trial's curve up to ``flush_s`` late; pruning is
unaffected, because the median rule compares against *completed* trials, whose values
are always written before their state. If the worker dies, its unwritten epochs go with
it; its trial is failed as ``lost_worker`` and re-run from the start anyway.

The parameters a trial suggests (and the sampler's system attributes) are buffered too,
but only until the trial's next report or attribute, which for our objective comes right
after its suggestions: another worker's TPE (constant liar) sees a running trial's
parameters before it trains. Optuna's check that a parameter keeps a compatible
distribution is run at the suggestion, as Optuna does, once per parameter and process.

Everything this process reads back through the storage (``get_trial``,
``get_all_trials``) includes what is still buffered. The trials this process created and
is running are mirrored in memory, so Optuna's reads of the running trial (at the start
and at ``tell``) cost no round trip; only this process writes them, except a sweeper
failing a lost trial, after which the next batch or ``tell`` is rejected. Optuna looks
for enqueued (WAITING) trials at every ``ask``; here that is one narrow query, not
repeated within a second unless this process enqueues one, and a read of all trials is
served again for 0.1 s unless this process writes (:mod:`automl.study.storage.recent_reads`).

The rows are written by :mod:`automl.study.storage.rows` through Optuna's own ORM models and
value encodings, so they are exactly those that ``report``, ``set_user_attr``,
``set_trial_param`` and ``tell`` would have written, after the same check that refuses
writes to a finished trial (with the trial's row locked, as ``tell`` does).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Container, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    check_distribution_compatibility,
    distribution_to_json,
)
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from automl.study.storage import rows
from automl.study.storage.recent_reads import RecentReads
from automl.study.storage.retry import is_transient, with_retry
from automl.study.storage.rows import Batch

logger = logging.getLogger(__name__)

# An enqueued trial with this user attribute (a lost trial's retry) is popped before any
# other WAITING trial (warm starts), so it runs with its own parameters at any load.
RETRY_ATTR = "retry_of_lost_trial"
# Trials this process finished, kept as they read back (Optuna reads one right after tell).
FINISHED_KEPT = 256


class WriteBehindStorage(BaseStorage):
    """Wraps an Optuna storage whose backend is an ``RDBStorage`` (directly, or inside
    Optuna's ``_CachedStorage``); every call not listed here goes straight through."""

    def __init__(self, inner: BaseStorage, flush_s: float = 5.0):
        self.inner, self.flush_s = inner, flush_s
        self.reads = RecentReads()
        rdb = getattr(inner, "_backend", inner)
        if not isinstance(rdb, RDBStorage):
            raise TypeError(f"WriteBehindStorage needs an RDBStorage, not {type(rdb).__name__}")
        self._rdb = rdb
        self._pending: dict[int, Batch] = {}
        self._running: dict[int, int] = {}  # trial id -> study id, created and run here
        self._mirror: dict[int, FrozenTrial] = {}  # those trials as last written
        self._known_distributions: dict[tuple[int, str], str] = {}
        self._finals: dict[int, rows.Final] = {}  # ended here, not yet written
        self._deferring = 0  # open writing_together scopes
        self._finished: OrderedDict[int, FrozenTrial] = OrderedDict()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # ---- the trials this process runs -------------------------------------------------
    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = self.inner.create_new_trial(study_id, template_trial)
        created = rows.cached_copy(self.inner, trial_id)
        state = created.state if created is not None else (
            TrialState.RUNNING if template_trial is None else template_trial.state)
        if state != TrialState.RUNNING:  # an enqueued (WAITING) one
            self.reads.enqueued(study_id)
            return trial_id
        self.reads.wrote()
        with self._lock:
            self._running[trial_id] = study_id
            if created is not None:
                self._mirror[trial_id] = created
        return trial_id

    # ---- buffered writes ------------------------------------------------------------
    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        study_id = self._running.get(trial_id)
        if study_id is None:
            self.inner.set_trial_param(trial_id, param_name, param_value_internal, distribution)
            self.reads.wrote()
            return
        self._check_distribution(study_id, param_name, distribution)
        with self._lock:
            self._buffer(trial_id).params[param_name] = (param_value_internal, distribution)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        if trial_id not in self._running:
            self.inner.set_trial_system_attr(trial_id, key, value)
            self.reads.wrote()
            return
        with self._lock:
            self._buffer(trial_id).system_attrs[key] = value

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        with self._lock:
            self._buffer(trial_id).values[step] = intermediate_value
        self._flush_if_due(trial_id)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        with self._lock:
            self._buffer(trial_id).user_attrs[key] = value
        self._flush_if_due(trial_id)

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        if not state.is_finished():
            if state == TrialState.RUNNING and values is None:  # popping an enqueued trial
                changed = rows.claim_waiting(self._rdb, trial_id)
            else:
                changed = self.inner.set_trial_state_values(trial_id, state, values)
            self.reads.wrote()
            return changed
        final = (state, values, datetime.now())
        with self._lock:
            self._finals[trial_id] = final
            # (a trial this process does not mirror, e.g. a popped enqueued one, is
            # written at once: it could not be read back as ended from memory)
            deferred = self._deferring > 0 and trial_id in self._mirror
            if deferred:  # read back as finished at once; written when the scope ends
                self._remember_finished(trial_id, self._pending.get(trial_id), final)
        if not deferred:  # the last batch and the final state: one transaction
            try:
                self._write_all(raise_for=trial_id)
            except Exception:  # its end is written by a retry of this call, or never
                self._drop_finals([trial_id])  # (others', held by a scope, wait for it)
                raise
        return True

    @contextmanager
    def writing_together(self) -> Iterator[None]:
        """Writes that fall due inside this scope wait for its end and go in one
        transaction: the trials that end (a cohort's members that stop at one epoch) and
        the parameters of the trials asked (a cohort's refill). Until then this process
        reads the ended trials back as ended; others see them running, as they would
        until a plain ``tell``. A trial that ended elsewhere meanwhile (failed by a sweeper
        after a lost lease) keeps that end; its late result is dropped and logged. Ends
        that cannot be written within the retry budget are dropped, leaving their trials
        running for their leases, as after a failed ``tell``."""
        with self._lock:
            self._deferring += 1
        try:
            yield
        finally:
            with self._lock:
                self._deferring -= 1
                last = self._deferring == 0
            if last:
                try:
                    with_retry(lambda: self._write_all(only_if_due=True))
                except Exception:
                    self._drop_finals()
                    raise

    def _check_distribution(self, study_id: int, name: str,
                            distribution: BaseDistribution) -> None:
        """Optuna's check that a parameter keeps a compatible distribution across the
        study's trials, against its first stored record; once per parameter and process."""
        as_json = distribution_to_json(distribution)
        if self._known_distributions.get((study_id, name)) == as_json:
            return
        first = rows.first_distribution(self._rdb, study_id, name)
        if first is not None:
            check_distribution_compatibility(first, distribution)
        self._known_distributions[(study_id, name)] = as_json

    def flush(self) -> None:
        """Write everything buffered (every trial's rows, and the trials ended inside a
        ``writing_together`` scope) in one transaction.

        A trial that has already finished (failed by the sweeper after a lost lease)
        rejects its rows, which are dropped; after a transient error (a database restart)
        everything is kept for the retry.
        """
        self._write_all()

    def _write_all(self, raise_for: int | None = None, only_if_due: bool = False) -> None:
        """:meth:`flush`; raises ``UpdateFinishedTrialError`` if ``raise_for`` (the trial
        whose call this is) was one that rejected its rows. ``only_if_due``: nothing
        unless a trial's end or a batch is due (reports alone can wait)."""
        with self._lock:
            if only_if_due and not (self._finals or any(
                    self._is_due(batch) for batch in self._pending.values())):
                return
            pending, self._pending = self._pending, {}
            finals, self._finals = self._finals, {}
            writes = [rows.Write(trial_id, pending.get(trial_id) or Batch(),
                                 self._mirror.get(trial_id), finals.get(trial_id))
                      for trial_id in {**pending, **finals}]
        if not writes:
            return
        try:
            rejected = rows.write_batches(self._rdb, writes)
        except Exception as exc:
            if is_transient(exc):  # the database restarted: everything waits for the retry
                self._restore(pending, finals)
            raise
        self._written(writes, rejected)
        for trial_id in rejected - {raise_for}:
            logger.info("late rows of trial id %d dropped: it had already finished", trial_id)
        if raise_for in rejected:  # Optuna's own error, as its tell would raise
            self._rdb.check_trial_is_updatable(raise_for, TrialState.FAIL)

    def _written(self, writes: list[rows.Write], rejected: set[int]) -> None:
        self.reads.wrote()
        with self._lock:
            for write in writes:
                trial_id = write.trial_id
                if trial_id in rejected:
                    self._finished.pop(trial_id, None)
                elif write.final is not None:
                    self._remember_finished(trial_id, write.batch, write.final)
                elif write.known is not None:
                    self._mirror[trial_id] = write.batch.apply_to(write.known)
                    continue
                self._running.pop(trial_id, None)
                self._mirror.pop(trial_id, None)

    def _remember_finished(self, trial_id: int, batch: Batch | None,
                           final: rows.Final) -> None:
        """Keep the trial as it reads back once its end is stored (under the lock): Optuna
        reads it right after ``tell``. Only the last ``FINISHED_KEPT`` are kept."""
        known = self._mirror.get(trial_id)
        if known is None:
            return
        state, values, completed_at = final
        finished = (batch or Batch()).apply_to(known)
        finished.state, finished.values = state, None if values is None else list(values)
        finished.datetime_complete = rows.as_read_back(completed_at)
        self._finished[trial_id] = finished
        while len(self._finished) > FINISHED_KEPT:
            self._finished.popitem(last=False)

    def _drop_finals(self, trial_ids: list[int] | None = None) -> None:
        """Forget the ends of ``trial_ids`` (all by default) that could not be written
        (their rows stay buffered)."""
        with self._lock:
            for trial_id in list(self._finals) if trial_ids is None else trial_ids:
                self._finals.pop(trial_id, None)
                self._finished.pop(trial_id, None)

    def _restore(self, pending: dict[int, Batch], finals: dict[int, rows.Final]) -> None:
        """Put batches and final states that failed to write back under what was
        buffered since."""
        with self._lock:
            for trial_id, batch in pending.items():
                newer = self._pending.get(trial_id)
                if newer is not None:
                    batch.absorb(newer)
                self._pending[trial_id] = batch
            self._finals = {**finals, **self._finals}

    def _buffer(self, trial_id: int) -> Batch:
        return self._pending.setdefault(trial_id, Batch())

    def _is_due(self, batch: Batch) -> bool:
        return batch.is_urgent() or time.monotonic() - batch.since >= self.flush_s

    def _flush_if_due(self, trial_id: int) -> None:
        with self._lock:
            pending = self._pending.get(trial_id)
            # inside writing_together, due writes wait for the scope's end
            due = pending is not None and not self._deferring and self._is_due(pending)
        if due:
            self._write_all(raise_for=trial_id)

    # ---- reads see the buffer ---------------------------------------------------------
    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            finished = self._finished.get(trial_id)
            mirrored = self._mirror.get(trial_id)
        if finished is not None:
            return copy.deepcopy(finished)
        if mirrored is not None:
            return self._merged(copy.deepcopy(mirrored))
        trial = self.inner.get_trial(trial_id)
        with self._lock:
            if trial_id in self._running and trial.state == TrialState.RUNNING:
                self._mirror[trial_id] = copy.deepcopy(trial)
        return self._merged(trial)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if rows.only_waiting(states) and not self.reads.any_waiting(
                study_id, lambda: rows.any_waiting(self._rdb, study_id)):
            return []  # Optuna asks at every ask(); most studies never enqueue a trial
        trials = list(self.reads.all_trials(  # (callers may reorder their list)
            study_id, lambda: self.inner.get_all_trials(study_id, deepcopy=False)))
        if self._finals:  # ended inside a writing_together scope: as they will read back
            with self._lock:
                trials = [self._finished.get(t._trial_id, t) if t._trial_id in self._finals
                          else t for t in trials]
        if states is not None:
            trials = [t for t in trials if t.state in states]
        if rows.only_waiting(states):  # Optuna pops the first WAITING trial it is given
            trials.sort(key=lambda t: (not t.user_attrs.get(RETRY_ATTR), t.number))
        if self._pending:  # (a cohort's members nearly always have rows buffered)
            with self._lock:
                pending = dict(self._pending)
            trials = [pending[t._trial_id].apply_to(t) if t._trial_id in pending else t
                      for t in trials]
        return copy.deepcopy(trials) if deepcopy else trials

    def _merged(self, trial: FrozenTrial) -> FrozenTrial:
        with self._lock:
            pending = self._pending.get(trial._trial_id)
            return trial if pending is None else pending.apply_to(trial)


def _forward(name: str) -> Any:
    reads = name.startswith("get_")

    def method(self: WriteBehindStorage, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.inner, name)(*args, **kwargs)
        if not reads:
            self.reads.wrote()
        return result

    method.__name__ = name
    return method


for _name in [n for n in dir(BaseStorage) if not n.startswith("_")
              and n not in WriteBehindStorage.__dict__]:
    setattr(WriteBehindStorage, _name, _forward(_name))
WriteBehindStorage.__abstractmethods__ = frozenset()


@contextmanager
def writing_together(study: Any) -> Iterator[None]:
    """:meth:`WriteBehindStorage.writing_together` on ``study``'s storage, wherever it sits
    among the wrappers; nothing for a storage without one (in memory, a gRPC proxy)."""
    storage = getattr(study, "_storage", None)
    while storage is not None and not isinstance(storage, WriteBehindStorage):
        storage = vars(storage).get("inner")
    if storage is None:
        yield
        return
    with storage.writing_together():
        yield
