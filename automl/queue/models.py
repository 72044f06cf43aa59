"""SQLAlchemy 2.0 models of the service's tables.

Migrations in ``migrations/versions`` are frozen copies of this schema's history and
never import this module; ``alembic check`` (a test) keeps the two in step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

PREFIX = "automl_"
VERSION_TABLE = "automl_alembic_version"

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Dataset(Base):
    """A validated table, stored once per content hash as Parquet bytes (no pickles)."""

    __tablename__ = f"{PREFIX}datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    target: Mapped[str] = mapped_column(String(512))
    task: Mapped[str] = mapped_column(String(16))
    n_rows: Mapped[int] = mapped_column(Integer)
    n_columns: Mapped[int] = mapped_column(Integer)
    columns: Mapped[list[Any]] = mapped_column(JSON)
    format: Mapped[str] = mapped_column(String(16))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Run(Base):
    """One tuning job: what to tune, its budget and settings, its status and summary."""

    __tablename__ = f"{PREFIX}runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    study_name: Mapped[str] = mapped_column(String(512), unique=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey(f"{PREFIX}datasets.id"))
    status: Mapped[str] = mapped_column(String(16), index=True)
    task: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(32))
    space: Mapped[dict[str, Any]] = mapped_column(JSON)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    n_trials: Mapped[int] = mapped_column(Integer)
    timeout_s: Mapped[float | None] = mapped_column(Float)
    seed: Mapped[int] = mapped_column(Integer)
    n_seeds: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    data_notes: Mapped[list[Any] | None] = mapped_column(JSON)  # what was done to the data
    error: Mapped[str | None] = mapped_column(Text)
    submitted_by: Mapped[str | None] = mapped_column(String(63))  # the database role
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Ticket(Base):
    """A unit of work: one trial, one baseline, or the final evaluation of the best trial."""

    __tablename__ = f"{PREFIX}tickets"
    __table_args__ = (Index("ix_automl_tickets_claim", "status", "run_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey(f"{PREFIX}runs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    worker_id: Mapped[str | None] = mapped_column(String(128))
    leased_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    trial_number: Mapped[int | None] = mapped_column(Integer)
    retry_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BaselineResult(Base):
    """A rule-of-thumb baseline of one run, trained over the run's seeds."""

    __tablename__ = f"{PREFIX}baselines"
    __table_args__ = (UniqueConstraint("run_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey(f"{PREFIX}runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(256))
    architecture: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    test_score: Mapped[float] = mapped_column(Float)
    test_score_std: Mapped[float] = mapped_column(Float)
    test_scores: Mapped[list[Any]] = mapped_column(JSON)
    val_score: Mapped[float | None] = mapped_column(Float)
    n_parameters: Mapped[int] = mapped_column(Integer)
    train_seconds: Mapped[float] = mapped_column(Float)
    epochs: Mapped[float] = mapped_column(Float)
    ensemble_score: Mapped[float | None] = mapped_column(Float)  # the seeds averaged
    ensemble_val_score: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # every metric, on test
    search_val_score: Mapped[float | None] = mapped_column(Float)  # accuracy or R²


class ArtifactBlob(Base):
    """One file of Optuna's artifact store (:mod:`automl.results.artifacts`), e.g. a best model's
    ``model.safetensors``. Which study or trial it belongs to is Optuna's metadata."""

    __tablename__ = f"{PREFIX}artifacts"
    artifact_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
