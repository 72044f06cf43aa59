"""Runs say who submitted them: ``submitted_by``.

On PostgreSQL it is the database role that inserted the run (``current_user``), which
the row-level security policies of docs/service.md compare against: a client role may
cancel its own runs and add tickets to its own new runs, nobody else's. On SQLite it is
the operating-system user. Runs written before this revision have none (NULL): only the
owner role (or a worker) can change them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

Frozen history: this file never imports the current models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("automl_runs") as batch:
        batch.add_column(sa.Column("submitted_by", sa.String(length=63), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("automl_runs") as batch:
        batch.drop_column("submitted_by")
