"""Baselines keep their seed ensemble's scores: ``ensemble_score``, ``ensemble_val_score``.

Every model of the final comparison is trained from the run's seeds; the model a user
gets averages those seeds' predictions, and baselines are compared the same way. Rows
written before this revision have no ensemble and read back as NULL (the seeds' mean
is then used).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Frozen history: this file never imports the current models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("automl_baselines") as batch:
        batch.add_column(sa.Column("ensemble_score", sa.Float(), nullable=True))
        batch.add_column(sa.Column("ensemble_val_score", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("automl_baselines") as batch:
        batch.drop_column("ensemble_val_score")
        batch.drop_column("ensemble_score")
