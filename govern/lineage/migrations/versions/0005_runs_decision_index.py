"""An index for the console's decision filter: runs by decision, newest first.

Without it, "blocked runs" on the Runs page counts them with a scan of the whole runs table (each row carrying
its config and policy documents), which grows with every run ever recorded; with it, the count and each page
read only the index entries of that decision. The date filter needs nothing new: it is a range on
``ix_runs_started_at_id``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 03:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_runs_decision_started_at", "runs", ["decision", "started_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_decision_started_at", table_name="runs")
