"""The rows :mod:`.write_behind` writes to (and reads from) Optuna's own tables.

Everything here goes through Optuna's ORM models, value encodings and sessions, so the
rows are exactly those Optuna's ``RDBStorage`` would write. It relies on RDBStorage
internals (``optuna.storages._rdb``: the ORM models, ``_create_scoped_session``,
``_set_trial_value_without_commit``) that Optuna 4.x and 5.x share, except the one
difference handled in :func:`_stored_now`; CI runs the tests on both (``make
test-optuna4``), and tests compare the rows with Optuna's own.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, cast

from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import insert, update

Final = tuple[TrialState, Sequence[float] | None, datetime]  # last state, values, end time


@dataclass
class Batch:
    """What one trial has buffered since its last write."""

    values: dict[int, float] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, tuple[float, BaseDistribution]] = field(default_factory=dict)
    since: float = field(default_factory=time.monotonic)

    def is_empty(self) -> bool:
        return not (self.values or self.user_attrs or self.system_attrs or self.params)

    def is_urgent(self) -> bool:
        """Parameters are for other workers' samplers: they go with the next write."""
        return bool(self.params or self.system_attrs)

    def absorb(self, newer: Batch) -> None:
        self.values.update(newer.values)
        self.user_attrs.update(newer.user_attrs)
        self.system_attrs.update(newer.system_attrs)
        self.params.update(newer.params)

    def apply_to(self, trial: FrozenTrial) -> FrozenTrial:
        """A copy of ``trial`` with this batch on top."""
        merged = copy.copy(trial)
        merged.intermediate_values = {**trial.intermediate_values, **self.values}
        merged.user_attrs = {**trial.user_attrs, **self.user_attrs}
        merged.system_attrs = {**trial.system_attrs, **self.system_attrs}
        if self.params:
            merged.params = {**trial.params, **{
                name: dist.to_external_repr(value)
                for name, (value, dist) in self.params.items()}}
            merged.distributions = {**trial.distributions, **{
                name: dist for name, (_value, dist) in self.params.items()}}
        return merged


@dataclass
class Write:
    """One trial's share of a transaction: its buffered rows, what this process last wrote
    to it (``known``: None when unknown) and, when it ends, its last state, values and
    completion time."""

    trial_id: int
    batch: Batch
    known: FrozenTrial | None
    final: Final | None = None


def write_batches(rdb: RDBStorage, writes: Sequence[Write]) -> set[int]:
    """One transaction for every write: lock the trials' rows (in id order, as ``tell``
    locks one, so two workers never wait on each other in a cycle), drop the writes of
    trials that are no longer running, then write the others' rows, one INSERT per table
    for all of them, and each final state as Optuna's ``set_trial_state_values`` would.
    Rows a trial's ``known`` does not have are inserted without first reading which exist.
    Returns the ids of the trials whose writes were dropped (ended elsewhere, or gone)."""
    ids = sorted({write.trial_id for write in writes})
    model = models.TrialModel
    with _create_scoped_session(rdb.scoped_session) as session:
        locked = {trial.trial_id: trial for trial in session.query(model).filter(
            model.trial_id.in_(ids)).order_by(model.trial_id).with_for_update()}
        running = {i for i, trial in locked.items()
                   if not TrialState(trial.state).is_finished()}
        kept = [write for write in writes if write.trial_id in running]
        tables: dict[Any, list[dict[str, Any]]] = {}
        for write in kept:
            _collect_rows(session, write, tables)
        for table, new_rows in tables.items():
            _insert(session, table, new_rows)
        for write in kept:
            if write.final is not None:
                _finish(rdb, session, locked[write.trial_id], write)
    return set(ids) - running


def _collect_rows(session: Any, write: Write, tables: dict[Any, list[dict[str, Any]]]) -> None:
    """The rows ``write`` adds, by table; the rows it changes are updated in place."""
    trial_id, batch, known = write.trial_id, write.batch, write.known
    tables.setdefault(models.TrialParamModel, []).extend(
        {"trial_id": trial_id, "param_name": name, "param_value": value,
         "distribution_json": distribution_to_json(dist)}
        for name, (value, dist) in batch.params.items())
    tables.setdefault(models.TrialSystemAttributeModel, []).extend(_upsert_attrs(
        session, models.TrialSystemAttributeModel, trial_id, batch.system_attrs,
        None if known is None else known.system_attrs))
    tables.setdefault(models.TrialIntermediateValueModel, []).extend(_upsert_values(
        session, trial_id, batch.values, None if known is None else known.intermediate_values))
    tables.setdefault(models.TrialUserAttributeModel, []).extend(_upsert_attrs(
        session, models.TrialUserAttributeModel, trial_id, batch.user_attrs,
        None if known is None else known.user_attrs))
    if write.final is not None and known is not None and not known.values:
        tables.setdefault(models.TrialValueModel, []).extend(  # ours, and it has none yet
            _value_row(trial_id, objective, value)
            for objective, value in enumerate(write.final[1] or ()))


def _finish(rdb: RDBStorage, session: Any, trial: Any, write: Write) -> None:
    assert write.final is not None
    state, values, completed_at = write.final
    if write.known is None or write.known.values:  # values of unknown rows: Optuna's upsert
        for objective, value in enumerate(values or ()):
            rdb._set_trial_value_without_commit(session, trial, objective, value)
    trial.state = state
    trial.datetime_complete = completed_at


def as_read_back(completed_at: datetime) -> datetime | None:
    """``completed_at`` as ``get_trial`` reads it back once stored (Optuna 5 stores UTC and
    reads local time; Optuna 4 stores it as it is)."""
    stored = models.TrialModel()
    stored.datetime_complete = completed_at
    return cast(datetime | None, stored.datetime_complete)


def claim_waiting(rdb: RDBStorage, trial_id: int) -> bool:
    """Move an enqueued trial from WAITING to RUNNING unless another process got there
    first: one conditional UPDATE, atomic on every database.

    Optuna reads the state and then writes it, relying on ``SELECT ... FOR UPDATE``, which
    SQLite ignores: two workers that ask at the same moment could both pop the same
    enqueued trial and train it twice, while the budget lost a trial (optuna#4002)."""
    model = models.TrialModel
    with _create_scoped_session(rdb.scoped_session) as session:
        claimed = session.execute(
            update(model.__table__)
            .where(model.trial_id == trial_id, model.state == TrialState.WAITING)
            .values({"state": TrialState.RUNNING, "datetime_start": _stored_now()}))
        return cast(int, claimed.rowcount) == 1  # type: ignore[attr-defined]


# Optuna 5 stores trial datetimes as naive UTC (``TrialModel._datetime_start_utc``, column
# ``datetime_start``, converted by a property); Optuna 4 stores naive local time.
_STORES_UTC = hasattr(models.TrialModel, "_datetime_start_utc")


def _stored_now() -> datetime:
    """Now, as Optuna's ``trials.datetime_start`` column holds it in this Optuna version."""
    if _STORES_UTC:
        return datetime.now(timezone.utc).replace(tzinfo=None)
    return datetime.now()


def any_waiting(rdb: RDBStorage, study_id: int) -> bool:
    """Whether the study has an enqueued (WAITING) trial: one narrow query."""
    model = models.TrialModel
    with _create_scoped_session(rdb.scoped_session) as session:
        return session.query(model.trial_id).filter(
            model.study_id == study_id, model.state == TrialState.WAITING).first() is not None


def first_distribution(rdb: RDBStorage, study_id: int, name: str) -> BaseDistribution | None:
    """The distribution of the study's first stored record of parameter ``name``."""
    with _create_scoped_session(rdb.scoped_session) as session:
        first = (session.query(models.TrialParamModel).join(models.TrialModel)
                 .filter(models.TrialModel.study_id == study_id)
                 .filter(models.TrialParamModel.param_name == name).first())
        return None if first is None else json_to_distribution(str(first.distribution_json))


def only_waiting(states: Container[TrialState] | None) -> bool:
    return isinstance(states, (tuple, list, set, frozenset)) and \
        list(states) == [TrialState.WAITING]


def cached_copy(storage: BaseStorage, trial_id: int) -> FrozenTrial | None:
    """The trial as Optuna's ``_CachedStorage`` holds it right after creating it (its
    ``create_new_trial`` keeps the new row), or None for any other storage."""
    index = getattr(storage, "_trial_id_to_study_id_and_number", None)
    studies = getattr(storage, "_studies", None)
    lock = getattr(storage, "_lock", None)
    if index is None or studies is None or lock is None:
        return None
    with lock:
        if trial_id not in index:
            return None
        study_id, number = index[trial_id]
        trial = studies[study_id].trials.get(number)
        return None if trial is None else copy.deepcopy(trial)


def _upsert_values(session: Any, trial_id: int, values: dict[int, float],
                   known: dict[int, float] | None) -> list[dict[str, Any]]:
    """Update stored intermediate values in place and return the rows to insert;
    ``known``: the steps this process knows are stored (None: read which are)."""
    model = models.TrialIntermediateValueModel
    existing = list(values) if known is None else [s for s in values if s in known]
    stored = {row.step: row for row in
              session.query(model).filter(model.trial_id == trial_id,
                                          model.step.in_(existing))} if existing else {}
    new = []
    for step, value in sorted(values.items()):
        number, kind = model.intermediate_value_to_stored_repr(value)
        row = stored.get(step)
        if row is None:
            new.append({"trial_id": trial_id, "step": step, "intermediate_value": number,
                        "intermediate_value_type": kind})
        else:
            row.intermediate_value, row.intermediate_value_type = number, kind
    return new


def _upsert_attrs(session: Any, model: Any, trial_id: int, attrs: dict[str, Any],
                  known: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Update stored attributes in place and return the rows to insert (as above)."""
    existing = list(attrs) if known is None else [k for k in attrs if k in known]
    stored = {row.key: row for row in
              session.query(model).filter(model.trial_id == trial_id,
                                          model.key.in_(existing))} if existing else {}
    new = []
    for key, value in attrs.items():
        row = stored.get(key)
        if row is None:
            new.append({"trial_id": trial_id, "key": key, "value_json": json.dumps(value)})
        else:
            row.value_json = json.dumps(value)
    return new


def _value_row(trial_id: int, objective: int, value: float) -> dict[str, Any]:
    stored, kind = models.TrialValueModel.value_to_stored_repr(value)
    return {"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind}


def _insert(session: Any, model: Any, rows: list[dict[str, Any]]) -> None:
    """New rows of one table in one statement (SQLAlchemy's bulk INSERT)."""
    if rows:
        session.execute(insert(model), rows)
