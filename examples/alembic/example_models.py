"""The example application's tables: what the migrations build, and what
``dbprofile migrate check`` compares them with."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Column("body", sa.Text, nullable=True),
    sa.Index("ix_notes_title", "title"),
)
