"""Optuna's artifact store in the database: ``automl_artifacts`` replaces ``automl_models``.

The best model of a run is now a bundle of artifacts (model.json, model.safetensors,
model.onnx) in Optuna's artifact store, whose blobs live in ``automl_artifacts``; the
per-run ``automl_models`` table goes. Models stored there by 0001 are not carried over
(0001 was never released). Downgrading recreates an empty ``automl_models``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Frozen history: this file never imports the current models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "automl_artifacts",
        sa.Column("artifact_id", sa.String(128), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("artifact_id", name="pk_automl_artifacts"),
    )
    op.drop_table("automl_models")


def downgrade() -> None:
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
    op.drop_table("automl_artifacts")
