"""The service's tables: datasets, runs, tickets, baselines and models.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Frozen history: this file never imports the current models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "automl_datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("n_columns", sa.Integer(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_automl_datasets"),
        sa.UniqueConstraint("content_hash", name="uq_automl_datasets_content_hash"),
    )
    op.create_table(
        "automl_runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("study_name", sa.String(512), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(16), nullable=False),
        sa.Column("space", sa.JSON(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("n_trials", sa.Integer(), nullable=False),
        sa.Column("timeout_s", sa.Float(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("n_seeds", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("started_at", TZ, nullable=True),
        sa.Column("finished_at", TZ, nullable=True),
        sa.Column("deadline_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(["dataset_id"], ["automl_datasets.id"],
                                name="fk_automl_runs_dataset_id_automl_datasets"),
        sa.PrimaryKeyConstraint("id", name="pk_automl_runs"),
        sa.UniqueConstraint("study_name", name="uq_automl_runs_study_name"),
    )
    op.create_index("ix_automl_runs_status", "automl_runs", ["status"])
    op.create_table(
        "automl_tickets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(128), nullable=True),
        sa.Column("leased_until", TZ, nullable=True),
        sa.Column("heartbeat_at", TZ, nullable=True),
        sa.Column("trial_number", sa.Integer(), nullable=True),
        sa.Column("retry_params", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["automl_runs.id"],
                                name="fk_automl_tickets_run_id_automl_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_automl_tickets"),
    )
    op.create_index("ix_automl_tickets_run_id", "automl_tickets", ["run_id"])
    op.create_index("ix_automl_tickets_claim", "automl_tickets", ["status", "run_id"])
    op.create_table(
        "automl_baselines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(256), nullable=False),
        sa.Column("architecture", sa.JSON(), nullable=True),
        sa.Column("test_score", sa.Float(), nullable=False),
        sa.Column("test_score_std", sa.Float(), nullable=False),
        sa.Column("test_scores", sa.JSON(), nullable=False),
        sa.Column("val_score", sa.Float(), nullable=True),
        sa.Column("n_parameters", sa.Integer(), nullable=False),
        sa.Column("train_seconds", sa.Float(), nullable=False),
        sa.Column("epochs", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["automl_runs.id"],
                                name="fk_automl_baselines_run_id_automl_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_automl_baselines"),
        sa.UniqueConstraint("run_id", "name", name="uq_automl_baselines_run_id"),
    )
    op.create_index("ix_automl_baselines_run_id", "automl_baselines", ["run_id"])
    op.create_table(
        "automl_models",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("preprocessor", sa.JSON(), nullable=False),
        sa.Column("n_inputs", sa.Integer(), nullable=False),
        sa.Column("n_outputs", sa.Integer(), nullable=False),
        sa.Column("weights", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["automl_runs.id"],
                                name="fk_automl_models_run_id_automl_runs"),
        sa.PrimaryKeyConstraint("run_id", name="pk_automl_models"),
    )


def downgrade() -> None:
    op.drop_table("automl_models")
    op.drop_index("ix_automl_baselines_run_id", table_name="automl_baselines")
    op.drop_table("automl_baselines")
    op.drop_index("ix_automl_tickets_claim", table_name="automl_tickets")
    op.drop_index("ix_automl_tickets_run_id", table_name="automl_tickets")
    op.drop_table("automl_tickets")
    op.drop_index("ix_automl_runs_status", table_name="automl_runs")
    op.drop_table("automl_runs")
    op.drop_table("automl_datasets")
