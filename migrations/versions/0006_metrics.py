"""Runs report the metric a user chose (``--metric``), and every model every metric.

``automl_runs.metric`` widens to 32 characters (``balanced_accuracy`` does not fit 16);
``automl_baselines.metrics`` holds a baseline's test score in every metric that applies
to its task, and ``search_val_score`` its validation score in the metric trials record
(accuracy or R²: the report's search plots); NULL for baselines stored before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Frozen history: this file never imports the current models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if _enforces_lengths():
        with op.batch_alter_table("automl_runs") as batch:
            batch.alter_column("metric", existing_type=sa.String(length=16),
                               type_=sa.String(length=32), existing_nullable=False)
    with op.batch_alter_table("automl_baselines") as batch:
        batch.add_column(sa.Column("metrics", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("search_val_score", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("automl_baselines") as batch:
        batch.drop_column("search_val_score")
        batch.drop_column("metrics")
    if _enforces_lengths():
        with op.batch_alter_table("automl_runs") as batch:
            batch.alter_column("metric", existing_type=sa.String(length=32),
                               type_=sa.String(length=16), existing_nullable=False)


def _enforces_lengths() -> bool:
    """SQLite ignores VARCHAR lengths, and changing one there rebuilds automl_runs, which
    its tickets' foreign keys forbid once a run exists: only other databases alter it."""
    return bool(op.get_bind().dialect.name != "sqlite")
