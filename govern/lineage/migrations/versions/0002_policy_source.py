"""Policy source text: the policy as written (YAML, with the comments written for compliance readers).

A report showed the policy as a JSON dump of the parsed document; an auditor wants the file that was
applied, and with its bytes stored, ``sha256(policy_source) == policy_digest`` proves it is that file.
Rows written before this revision have no source (NULL) and their row commitments do not cover the
column (each commitment names the columns it covers).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 20:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("policy_source", sa.Text(), nullable=True))
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("policy_source", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("policy_source")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("policy_source")
