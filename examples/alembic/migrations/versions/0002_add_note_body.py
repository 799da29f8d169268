"""add notes.body and an index on notes.title

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: SQLite rebuilds the table where ALTER cannot; PostgreSQL just ALTERs.
    with op.batch_alter_table("notes") as batch:
        batch.add_column(sa.Column("body", sa.Text, nullable=True))
        batch.create_index("ix_notes_title", ["title"])


def downgrade() -> None:
    with op.batch_alter_table("notes") as batch:
        batch.drop_index("ix_notes_title")
        batch.drop_column("body")
