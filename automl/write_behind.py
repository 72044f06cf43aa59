"""Fewer database round trips per trial: a running trial's reports are written in batches.

A plain Optuna trial commits one transaction per ``trial.report`` and per
``trial.set_user_attr``: with 10 epochs and our six attributes that is 16 commits, each a
round trip and (on PostgreSQL) a WAL flush. :class:`WriteBehindStorage` keeps a running
trial's intermediate values and user attributes in memory and writes them together, in
one transaction:

* when the trial ends, just before its state (``set_trial_state_values``);
* and whenever ``flush_s`` seconds have passed since the trial's last write, so that
  optuna-dashboard's learning curves stay live (at most ``flush_s`` plus one epoch behind).

Everything this process reads back through the storage (``get_trial``,
``get_all_trials``) includes what is still buffered. Other processes see a running
trial's curve up to ``flush_s`` late; pruning is unaffected, because the median rule
compares against *completed* trials, whose values are always written before their state.
If the worker dies, its unwritten epochs go with it; its trial is failed as
``lost_worker`` and re-run from the start anyway.

The batch goes through Optuna's own ORM models and value encoding inside one of
RDBStorage's sessions, so the rows are exactly those that ``report`` and ``set_user_attr``
would have written, after the same check that refuses writes to a finished trial (with
the trial's row locked, as ``tell`` does). It relies on RDBStorage internals, which is
why optuna is pinned below 5 and the tests compare the stored rows with Optuna's own.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState

FLUSH_S = 5.0


@dataclass
class _Pending:
    values: dict[int, float] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    since: float = field(default_factory=time.monotonic)


class WriteBehindStorage(BaseStorage):
    """Wraps an Optuna storage whose backend is an ``RDBStorage`` (directly, or inside
    Optuna's ``_CachedStorage``); every call not listed here goes straight through."""

    def __init__(self, inner: BaseStorage, flush_s: float = FLUSH_S):
        self.inner, self.flush_s = inner, flush_s
        rdb = getattr(inner, "_backend", inner)
        if not isinstance(rdb, RDBStorage):
            raise TypeError(f"WriteBehindStorage needs an RDBStorage, not {type(rdb).__name__}")
        self._rdb = rdb
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # ---- buffered writes ------------------------------------------------------------
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
        if state.is_finished():
            self.flush(trial_id)
        return self.inner.set_trial_state_values(trial_id, state, values)

    def flush(self, trial_id: int | None = None) -> None:
        """Write the buffered rows of one trial (or of all) in one transaction each.

        A trial that has already finished (failed by the sweeper after a lost lease)
        rejects them with ``UpdateFinishedTrialError`` and its buffer is dropped; on any
        other error (a database restart) the batch is kept for the retry.
        """
        with self._lock:
            ids = [trial_id] if trial_id is not None else list(self._pending)
            batches = [(i, self._pending.pop(i)) for i in ids if i in self._pending]
        for tid, pending in batches:
            if not (pending.values or pending.user_attrs):
                continue
            try:
                self._write(tid, pending)
            except UpdateFinishedTrialError:
                raise  # nobody may write to that trial any more: drop its batch
            except Exception:
                self._restore(tid, pending)  # e.g. the database restarted: retry later
                raise

    def _restore(self, trial_id: int, batch: _Pending) -> None:
        """Put a batch that failed to write back under what was buffered since."""
        with self._lock:
            newer = self._pending.get(trial_id)
            if newer is not None:
                batch.values.update(newer.values)
                batch.user_attrs.update(newer.user_attrs)
            self._pending[trial_id] = batch

    def _write(self, trial_id: int, pending: _Pending) -> None:
        """One transaction: check the trial is still running, read which steps and keys
        it already has, then update those and insert the rest (a few statements in all,
        where one ``report`` each would take three)."""
        with _create_scoped_session(self._rdb.scoped_session) as session:
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
            self._rdb.check_trial_is_updatable(trial_id, cast(TrialState, trial.state))
            if pending.values:
                _upsert_values(session, trial_id, pending.values)
            if pending.user_attrs:
                _upsert_user_attrs(session, trial_id, pending.user_attrs)

    def _buffer(self, trial_id: int) -> _Pending:
        return self._pending.setdefault(trial_id, _Pending())

    def _flush_if_due(self, trial_id: int) -> None:
        with self._lock:
            pending = self._pending.get(trial_id)
            due = pending is not None and time.monotonic() - pending.since >= self.flush_s
        if due:
            self.flush(trial_id)

    # ---- reads see the buffer ---------------------------------------------------------
    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._merged(self.inner.get_trial(trial_id))

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        trials = self.inner.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        if not self._pending:
            return trials
        return [self._merged(t) for t in trials]

    def _merged(self, trial: FrozenTrial) -> FrozenTrial:
        with self._lock:
            pending = self._pending.get(trial._trial_id)
            if pending is None:
                return trial
            merged = copy.copy(trial)
            merged.intermediate_values = {**trial.intermediate_values, **pending.values}
            merged.user_attrs = {**trial.user_attrs, **pending.user_attrs}
            return merged


def _upsert_values(session: Any, trial_id: int, values: dict[int, float]) -> None:
    model = models.TrialIntermediateValueModel
    stored = {row.step: row for row in
              session.query(model).filter(model.trial_id == trial_id,
                                          model.step.in_(list(values)))}
    for step, value in sorted(values.items()):
        number, kind = model.intermediate_value_to_stored_repr(value)
        row = stored.get(step)
        if row is None:
            session.add(model(trial_id=trial_id, step=step, intermediate_value=number,
                              intermediate_value_type=kind))
        else:
            row.intermediate_value, row.intermediate_value_type = number, kind


def _upsert_user_attrs(session: Any, trial_id: int, attrs: dict[str, Any]) -> None:
    model = models.TrialUserAttributeModel
    stored = {row.key: row for row in
              session.query(model).filter(model.trial_id == trial_id,
                                          model.key.in_(list(attrs)))}
    for key, value in attrs.items():
        row = stored.get(key)
        if row is None:
            session.add(model(trial_id=trial_id, key=key, value_json=json.dumps(value)))
        else:
            row.value_json = json.dumps(value)


def _forward(name: str) -> Any:
    def method(self: WriteBehindStorage, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, name)(*args, **kwargs)

    method.__name__ = name
    return method


for _name in [n for n in dir(BaseStorage) if not n.startswith("_")
              and n not in WriteBehindStorage.__dict__]:
    setattr(WriteBehindStorage, _name, _forward(_name))
WriteBehindStorage.__abstractmethods__ = frozenset()
