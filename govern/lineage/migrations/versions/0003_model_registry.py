"""Model registry: registered models, their versions (one per model digest) and every lifecycle action.

A governed run's model becomes a *version* of a *registered model*; ``model_actions`` records each
transition (approve, promote, deprecate, revoke, rollback) with who did it and why. Like every table a gate
or report reads, their rows are committed to by the audit events that write them, so an approval edited in
the DB is named by ``govern lineage verify``. Existing DBs upgrade in place: the tables start empty.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 22:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Self-contained (a shipped migration never changes when the models do): the column types of models.py.
JSON_DOCUMENT = sa.Text().with_variant(postgresql.JSONB(), "postgresql")
UTC_DATETIME = sa.DateTime(timezone=True)

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registered_models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False, unique=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("registered_models.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("initiator", sa.String(), nullable=False),
        sa.Column("initiator_source", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("model_id", "digest", name="uq_model_versions_model_digest"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
    )
    op.create_index("ix_model_versions_digest", "model_versions", ["digest"])
    op.create_index("ix_model_versions_run_id", "model_versions", ["run_id"])
    op.create_table(
        "model_actions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version_id", sa.Integer(), sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("run_id", sa.String(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("from_status", sa.String(), nullable=True),
        sa.Column("to_status", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("actor_source", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", JSON_DOCUMENT, nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_model_actions_version_id", "model_actions", ["version_id"])
    op.create_index("ix_model_actions_run_id", "model_actions", ["run_id"])


def downgrade() -> None:
    op.drop_table("model_actions")
    op.drop_table("model_versions")
    op.drop_table("registered_models")
