"""Runs keep the notes on what was done to their data: ``data_notes``.

A submission's checks may drop rows whose target is missing, drop identifier or empty
columns, expand dates and impute missing values; each change is one plain-words note.
The table stored for the run already has those rows and columns removed, so the notes
are kept with the run and shown with its result. Runs written before this revision
have none (NULL) and show the notes their workers derive.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Frozen history: this file never imports the current models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("automl_runs") as batch:
        batch.add_column(sa.Column("data_notes", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("automl_runs") as batch:
        batch.drop_column("data_notes")
