"""Every query the service makes on its own tables, in one place with
:mod:`automl.queue.leases` (claiming, renewing and releasing tickets): data sets, runs and
their tickets, results, model files, and the few reads of Optuna's tables a run's status
needs (through ``table()`` definitions, no private Optuna API).
"""

from __future__ import annotations

import getpass
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine, column, delete, exists, func, insert, select, table, update
from sqlalchemy.orm import Session

from automl.errors import PermissionDeniedError
from automl.queue.models import ArtifactBlob, BaselineResult, Dataset, Run, Ticket
from automl.results.result import ModelScore
from automl.study.storage.retry import with_retry

ACTIVE_RUN = ("queued", "running")
SCORE_FIELDS = tuple(f.name for f in fields(ModelScore))  # a baseline row's scores
TERMINAL_TICKET = ("done", "failed", "skipped", "cancelled")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _dataset_id(session: Session, content_hash: str) -> int | None:
    """The id of the dataset with this content hash, if stored."""
    return session.scalar(select(Dataset.id).where(Dataset.content_hash == content_hash))


def _insert_dataset(session: Session, values: dict[str, Any]) -> int:
    """Insert-or-select a dataset by content hash; its id either way.

    ``ON CONFLICT DO NOTHING`` (PostgreSQL and SQLite): a submitter racing another with
    the same new data waits for the other's insert to commit, inserts nothing, and reads
    the committed row back, instead of failing on the unique content hash."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert  # type: ignore[assignment]
    session.execute(upsert(Dataset).values(**values)
                    .on_conflict_do_nothing(index_elements=["content_hash"]))
    found = _dataset_id(session, values["content_hash"])
    assert found is not None, "a dataset inserted or found by its hash is there"
    return found


def submit_run(engine: Engine, content_hash: str, new_dataset: Callable[[], dict[str, Any]],
               run: Run, tickets: Iterable[tuple[str, str]], max_attempts: int) -> None:
    """In one transaction: the dataset with ``content_hash`` (stored from the row values
    ``new_dataset()`` makes, called only when no such dataset is stored: serialising a
    large table is not free), then the run on it (``run.dataset_id`` is set) and its
    tickets (``(kind, name)`` pairs).

    The run is stamped with who submits it (:func:`current_role`): the row-level security
    of docs/service.md lets a client role add tickets to, and cancel, only its own runs."""
    now = utcnow()
    with Session(engine) as session, session.begin():
        run.dataset_id = (_dataset_id(session, content_hash)
                          or _insert_dataset(session, new_dataset()))
        run.submitted_by = run.submitted_by or current_role(session)
        session.add(run)
        session.flush()
        session.execute(insert(Ticket), [  # one executemany: a large budget is many rows
            {"run_id": run.id, "kind": kind, "name": name, "status": "queued", "attempts": 0,
             "max_attempts": max_attempts, "created_at": now, "updated_at": now}
            for kind, name in tickets])


def current_role(session: Session) -> str:
    """The database role of this session (PostgreSQL), or the OS user (SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        return str(session.scalar(select(func.current_user())))
    return getpass.getuser()


def rowcount(engine: Engine, statement: Any, values: dict[str, Any] | None = None) -> int:
    with engine.begin() as connection:
        return int(connection.execute(statement, values).rowcount)


def scalar(engine: Engine, statement: Any) -> Any:
    """One value read in its own connection, retried through outages."""
    def read() -> Any:
        with engine.connect() as connection:
            return connection.scalar(statement)

    return with_retry(read)


def start_run(engine: Engine, run_id: str) -> None:
    """Mark a queued run running and start its clock (deadline from its timeout)."""
    def start() -> None:
        now = utcnow()
        with engine.begin() as connection:
            run = connection.execute(select(Run.status, Run.timeout_s)
                                     .where(Run.id == run_id)).one()
            if run.status != "queued":
                return
            deadline = None if run.timeout_s is None else now + timedelta(seconds=run.timeout_s)
            connection.execute(update(Run).where(Run.id == run_id, Run.status == "queued")
                               .values(status="running", started_at=now, deadline_at=deadline))

    with_retry(start)


def skip_overdue_trials(engine: Engine) -> int:
    """Trials not yet started when their run's timeout passed are skipped."""
    now = utcnow()
    overdue = select(Run.id).where(Run.deadline_at < now)
    statement = (update(Ticket).where(Ticket.kind == "trial", Ticket.status == "queued",
                                      Ticket.run_id.in_(overdue))
                 .values(status="skipped", error="run timeout reached", updated_at=now))
    return with_retry(lambda: rowcount(engine, statement))


def cancel_run(engine: Engine, run_id: str) -> bool:
    """Stop handing out the run's tickets; running ones notice at their next heartbeat.

    False if the run had already ended. Raises :class:`PermissionDeniedError` when the
    run is still active but this role may not cancel it (row-level security lets a client
    role cancel only the runs it submitted: the update then changes no row)."""
    now = utcnow()
    with Session(engine) as session, session.begin():
        changed = session.connection().execute(
            update(Run).where(Run.id == run_id, Run.status.in_(ACTIVE_RUN))
            .values(status="cancelled", finished_at=now)).rowcount
        session.execute(update(Ticket).where(Ticket.run_id == run_id,
                                             Ticket.status.in_(("queued", "running")))
                        .values(status="cancelled", updated_at=now))
        if changed == 1:
            return True
        run = session.execute(select(Run.status, Run.submitted_by)
                              .where(Run.id == run_id)).first()
        if run is not None and run.status in ACTIVE_RUN:
            raise PermissionDeniedError(
                f"run {run_id} is {run.status}, but role {current_role(session)} may not "
                f"cancel it: it was submitted by {run.submitted_by or 'an unknown role'}; "
                "ask them or the service's admin", field="run")
    return False


def fail_run(engine: Engine, run_id: str, error: str) -> bool:
    """End an active run as failed with ``error``: its queued tickets are cancelled, the
    running ones run to their end. False if the run had already ended."""
    def fail() -> bool:
        now = utcnow()
        with engine.begin() as connection:
            changed = connection.execute(
                update(Run).where(Run.id == run_id, Run.status.in_(ACTIVE_RUN))
                .values(status="failed", error=error, finished_at=now)).rowcount
            connection.execute(update(Ticket).where(Ticket.run_id == run_id,
                                                    Ticket.status == "queued")
                               .values(status="cancelled", error=error, updated_at=now))
        return bool(changed == 1)

    return with_retry(fail)


@dataclass(frozen=True)
class RunState:
    """A run (detached), its tickets counted by ``(kind, status)`` and its trials by
    state (``COMPLETE``, ``PRUNED``, ``FAIL``, ``RUNNING``, ``WAITING``)."""

    run: Run
    tickets: Counter[tuple[str, str]]
    trials: Counter[str]
    best_value: float | None = None  # the lowest validation loss of a COMPLETE trial


def run_state(engine: Engine, run_id: str) -> RunState | None:
    """What ``status`` shows, read in one session; None for an unknown run."""
    with Session(engine, expire_on_commit=False) as session:
        run = session.get(Run, run_id)
        if run is None:
            return None
        state = RunState(run, _ticket_counts(session, run_id),
                         _trial_states(session, run.study_name),
                         _best_value(session, run.study_name))
        session.expunge_all()
        return state


def _ticket_counts(session: Session, run_id: str) -> Counter[tuple[str, str]]:
    rows = session.execute(select(Ticket.kind, Ticket.status, func.count())
                           .where(Ticket.run_id == run_id)
                           .group_by(Ticket.kind, Ticket.status)).all()
    return Counter({(kind, status): n for kind, status, n in rows})


# Optuna's own tables, only the columns a run's status reads (no private Optuna API).
_STUDIES = table("studies", column("study_id"), column("study_name"))
_TRIALS = table("trials", column("trial_id"), column("study_id"), column("number"),
                column("state"))
_VALUES = table("trial_values", column("trial_id"), column("value"))


def _trial_states(session: Session, study_name: str) -> Counter[str]:
    """How many of the study's trials are in each state (as :class:`RunState` counts
    them), read from Optuna's tables; empty while no worker has created the study."""
    rows = session.execute(select(_TRIALS.c.state, func.count())
                           .join(_STUDIES, _STUDIES.c.study_id == _TRIALS.c.study_id)
                           .where(_STUDIES.c.study_name == study_name)
                           .group_by(_TRIALS.c.state)).all()
    return Counter({str(state): n for state, n in rows})


def study_exists(engine: Engine, study_name: str) -> bool:
    """Whether Optuna's tables hold a study of this name (or a run will create one)."""
    optuna_study = select(_STUDIES.c.study_id).where(_STUDIES.c.study_name == study_name)
    ours = select(Run.id).where(Run.study_name == study_name)
    return bool(scalar(engine, select(exists(optuna_study) | exists(ours))))


def _best_value(session: Session, study_name: str) -> float | None:
    """The study's best (lowest) objective value so far; None before a trial completes."""
    best = session.scalar(select(func.min(_VALUES.c.value))
                          .join(_TRIALS, _TRIALS.c.trial_id == _VALUES.c.trial_id)
                          .join(_STUDIES, _STUDIES.c.study_id == _TRIALS.c.study_id)
                          .where(_STUDIES.c.study_name == study_name,
                                 _TRIALS.c.state == "COMPLETE"))
    return None if best is None else float(best)


def unheld_running_trials(engine: Engine) -> list[tuple[str, int]]:
    """``(run id, trial number)`` of every RUNNING trial of a running run that no running
    ticket of the run holds. A worker records its trial's number on its ticket just after
    Optuna starts the trial; until it has, any RUNNING trial of the run may be that one,
    so a run with a running trial ticket that has no number yet has no unheld trials. A
    trial that stays unheld has lost its worker (e.g. a storage outage between the two)."""
    running = (Ticket.run_id == Run.id, Ticket.status == "running")
    held = exists().where(*running, Ticket.trial_number == _TRIALS.c.number)
    starting = exists().where(*running, Ticket.kind == "trial", Ticket.trial_number.is_(None))
    with engine.connect() as connection:
        rows = connection.execute(select(Run.id, _TRIALS.c.number)
                                  .join(_STUDIES, _STUDIES.c.study_name == Run.study_name)
                                  .join(_TRIALS, _TRIALS.c.study_id == _STUDIES.c.study_id)
                                  .where(Run.status == "running", _TRIALS.c.state == "RUNNING",
                                         ~held, ~starting)).all()
    return [(str(run_id), int(number)) for run_id, number in rows]


def unfinished_runs_done(engine: Engine) -> list[str]:
    """Running runs whose every ticket is terminal: ready for their summary."""
    open_ticket = exists().where(Ticket.run_id == Run.id,
                                 Ticket.status.not_in(TERMINAL_TICKET))
    with engine.connect() as connection:
        return list(connection.scalars(select(Run.id).where(Run.status == "running",
                                                            ~open_ticket)))


def finish_run(engine: Engine, run_id: str, *, status: str, summary: dict[str, Any] | None,
               error: str | None = None) -> bool:
    """Write the run's outcome once; False if another worker already did."""
    statement = (update(Run).where(Run.id == run_id, Run.status == "running")
                 .values(status=status, summary=summary, error=error, finished_at=utcnow()))
    return with_retry(lambda: rowcount(engine, statement) == 1)


def recent_run_ids(engine: Engine, limit: int = 50) -> list[str]:
    """The ids of the most recent runs, newest first."""
    with engine.connect() as connection:
        return list(connection.scalars(select(Run.id).order_by(Run.created_at.desc())
                                       .limit(limit)))


def save_baseline(engine: Engine, run_id: str, score: ModelScore) -> None:
    """Store a baseline's scores, replacing an earlier result of the same run and name
    (a ticket run again after its worker was lost)."""
    with Session(engine) as session, session.begin():
        session.execute(delete(BaselineResult).where(BaselineResult.run_id == run_id,
                                                     BaselineResult.name == score.name))
        session.add(BaselineResult(run_id=run_id, **asdict(score)))


def finished_tickets(engine: Engine, run_id: str) -> tuple[dict[str, Any] | None,
                                                          list[ModelScore]]:
    """The final evaluation's result (None unless its ticket is done) and the baselines'
    stored scores, in their order of storing."""
    with Session(engine, expire_on_commit=False) as session:
        best = session.scalars(select(Ticket.result).where(Ticket.run_id == run_id,
                                                           Ticket.kind == "best",
                                                           Ticket.status == "done")).first()
        rows = session.scalars(select(BaselineResult).where(BaselineResult.run_id == run_id)
                               .order_by(BaselineResult.id))
        scores = [ModelScore(**{name: getattr(row, name) for name in SCORE_FIELDS})
                  for row in rows]
    return best, scores


def table_counts(engine: Engine) -> dict[str, int]:
    """Row counts of every service table (for tests that check nothing was written)."""
    with Session(engine) as session:
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model))
                or 0 for model in (Dataset, Run, Ticket, BaselineResult, ArtifactBlob)}


def write_artifact(engine: Engine, artifact_id: str, data: bytes) -> None:
    """Store (or replace) one artifact's bytes."""
    def write() -> None:
        with engine.begin() as connection:
            connection.execute(delete(ArtifactBlob)
                               .where(ArtifactBlob.artifact_id == artifact_id))
            connection.execute(insert(ArtifactBlob).values(
                artifact_id=artifact_id, data=data, size=len(data), created_at=utcnow()))

    with_retry(write)


def read_artifact(engine: Engine, artifact_id: str) -> bytes | None:
    return scalar(engine, select(ArtifactBlob.data)
                   .where(ArtifactBlob.artifact_id == artifact_id))


def delete_artifact(engine: Engine, artifact_id: str) -> bool:
    """Remove one artifact; False if there was none."""
    statement = delete(ArtifactBlob).where(ArtifactBlob.artifact_id == artifact_id)
    return with_retry(lambda: rowcount(engine, statement) == 1)


def run_and_dataset(engine: Engine, run_id: str) -> tuple[Run, str, str] | None:
    """A run (detached), its dataset's content hash and target column (not the bytes)."""
    with Session(engine, expire_on_commit=False) as session:
        row = session.execute(select(Run, Dataset.content_hash, Dataset.target)
                              .join(Dataset, Dataset.id == Run.dataset_id)
                              .where(Run.id == run_id)).first()
        session.expunge_all()
    return None if row is None else (row[0], row[1], row[2])


def dataset_bytes(engine: Engine, content_hash: str) -> bytes:
    """The stored Parquet bytes of a dataset."""
    data = scalar(engine, select(Dataset.data).where(Dataset.content_hash == content_hash))
    if data is None:
        raise LookupError(f"no dataset with hash {content_hash}")
    return bytes(data)


def run_of(engine: Engine, run_id: str, *, or_study: bool = False) -> Run | None:
    """The run with this id (detached), or None; ``or_study``: also the run whose Optuna
    study has this name."""
    def read() -> Run | None:
        with Session(engine, expire_on_commit=False) as session:
            run = session.get(Run, run_id)
            if run is None and or_study:
                run = session.scalars(select(Run).where(Run.study_name == run_id)).first()
            session.expunge_all()
            return run

    return with_retry(read)
