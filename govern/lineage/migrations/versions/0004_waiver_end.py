"""Ending a waiver early: who ended it, when and why.

A waiver was valid through its ``until`` day with no way back; a compliance officer who learns that the
reason no longer holds must be able to end it. The row keeps its grant untouched and gains the end, which
the ending event re-commits (like a run's status), so ``govern lineage verify`` names an edited end too.
Rows written before this revision have no end (NULL) and their commitments do not cover these columns.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("waivers") as batch:
        batch.add_column(sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("ended_by", sa.String(), nullable=True))
        batch.add_column(sa.Column("end_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("waivers") as batch:
        batch.drop_column("end_reason")
        batch.drop_column("ended_by")
        batch.drop_column("ended_at")
