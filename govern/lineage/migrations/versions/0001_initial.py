"""Initial lineage schema: runs, stages, artifacts, evidence, decisions, findings, waivers, PII findings,
signatures, the hash-chained audit log with its head row, and meta.

Revision ID: 0001
Revises:
Create Date: 2026-11-25 09:45:26

Shipped migrations are never edited: change the schema with a new revision.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: JSON documents: JSONB on PostgreSQL, JSON text (TEXT affinity) on SQLite — see models.JSONDocument.
JSON_DOCUMENT = sa.Text().with_variant(postgresql.JSONB(), "postgresql")
#: ``prev_hash`` of the first audit event.
GENESIS_HASH = "0" * 64


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('audit_chain_head',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('last_event_id', sa.Integer(), nullable=False),
    sa.Column('last_hash', sa.String(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('run_id', sa.String(), nullable=True),
    sa.Column('payload_json', sa.Text(), nullable=False),
    sa.Column('prev_hash', sa.String(), nullable=False),
    sa.Column('hash', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_audit_events_run_id', 'audit_events', ['run_id'], unique=False)

    op.create_table('base_models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('path', sa.String(), nullable=False),
    sa.Column('digest', sa.String(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'digest', name='uq_base_models_name_digest')
    )
    op.create_index('ix_base_models_digest', 'base_models', ['digest'], unique=False)

    op.create_table('meta',
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('waivers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('target', sa.String(), nullable=False),
    sa.Column('rule_id', sa.String(), nullable=False),
    sa.Column('granted_by', sa.String(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('until', sa.Date(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_waivers_target', 'waivers', ['target'], unique=False)

    op.create_table('runs',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('decision', sa.String(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('config', JSON_DOCUMENT, nullable=True),
    sa.Column('config_digest', sa.String(), nullable=True),
    sa.Column('config_path', sa.String(), nullable=True),
    sa.Column('policy_name', sa.String(), nullable=True),
    sa.Column('policy_version', sa.String(), nullable=True),
    sa.Column('policy_digest', sa.String(), nullable=True),
    sa.Column('policy_document', JSON_DOCUMENT, nullable=True),
    sa.Column('run_dir', sa.String(), nullable=True),
    sa.Column('code_revision', sa.String(), nullable=True),
    sa.Column('versions', JSON_DOCUMENT, nullable=True),
    sa.Column('parent_run_id', sa.String(), nullable=True),
    sa.Column('base_model_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['base_model_id'], ['base_models.id'], ),
    sa.ForeignKeyConstraint(['parent_run_id'], ['runs.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_runs_base_model_id', 'runs', ['base_model_id'], unique=False)
    op.create_index('ix_runs_kind_started_at', 'runs', ['kind', 'started_at', 'id'], unique=False)
    op.create_index('ix_runs_parent_run_id', 'runs', ['parent_run_id'], unique=False)
    op.create_index('ix_runs_started_at_id', 'runs', ['started_at', 'id'], unique=False)
    op.create_index('ix_runs_status_started_at', 'runs', ['status', 'started_at', 'id'], unique=False)

    op.create_table('datasets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('path', sa.String(), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=True),
    sa.Column('first_run_id', sa.String(), nullable=True),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['first_run_id'], ['runs.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('fingerprint')
    )
    op.create_table('decisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('decision', sa.String(), nullable=False),
    sa.Column('policy_name', sa.String(), nullable=False),
    sa.Column('policy_version', sa.String(), nullable=False),
    sa.Column('policy_digest', sa.String(), nullable=False),
    sa.Column('policy_document', JSON_DOCUMENT, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_decisions_run_id', 'decisions', ['run_id'], unique=False)

    op.create_table('pii_findings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(), nullable=False),
    sa.Column('dataset', sa.String(), nullable=False),
    sa.Column('file', sa.String(), nullable=False),
    sa.Column('record_id', sa.String(), nullable=True),
    sa.Column('line', sa.Integer(), nullable=True),
    sa.Column('field', sa.String(), nullable=False),
    sa.Column('entity_type', sa.String(), nullable=False),
    sa.Column('start', sa.Integer(), nullable=False),
    sa.Column('end', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('recognizer', sa.String(), nullable=False),
    sa.Column('value_hmac', sa.String(), nullable=False),
    sa.Column('action', sa.String(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_pii_findings_run_id', 'pii_findings', ['run_id'], unique=False)

    op.create_table('signatures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('subject', sa.String(), nullable=False),
    sa.Column('subject_digest', sa.String(), nullable=False),
    sa.Column('method', sa.String(), nullable=False),
    sa.Column('bundle_path', sa.String(), nullable=False),
    sa.Column('signer', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_signatures_run_id', 'signatures', ['run_id'], unique=False)
    op.create_index('ix_signatures_subject_digest', 'signatures', ['subject_digest'], unique=False)

    op.create_table('stage_executions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(), nullable=False),
    sa.Column('stage', sa.String(), nullable=False),
    sa.Column('input_digest', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('outputs', JSON_DOCUMENT, nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_stage_executions_run_id_stage', 'stage_executions', ['run_id', 'stage'], unique=False)

    op.create_table('artifacts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(), nullable=False),
    sa.Column('execution_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('path', sa.String(), nullable=False),
    sa.Column('sha256', sa.String(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('role', sa.String(), nullable=False),
    sa.Column('dataset_fingerprint', sa.String(), nullable=True),
    sa.Column('rows', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['execution_id'], ['stage_executions.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_artifacts_dataset_fingerprint', 'artifacts', ['dataset_fingerprint'], unique=False)
    op.create_index('ix_artifacts_run_id', 'artifacts', ['run_id'], unique=False)
    op.create_index('ix_artifacts_sha256', 'artifacts', ['sha256'], unique=False)

    op.create_table('evidence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(), nullable=False),
    sa.Column('execution_id', sa.Integer(), nullable=True),
    sa.Column('stage', sa.String(), nullable=False),
    sa.Column('document', JSON_DOCUMENT, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['execution_id'], ['stage_executions.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_evidence_run_id_stage', 'evidence', ['run_id', 'stage'], unique=False)
    op.create_index('ix_evidence_stage_run_id', 'evidence', ['stage', 'run_id'], unique=False)

    op.create_table('findings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('decision_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.String(), nullable=False),
    sa.Column('rule_id', sa.String(), nullable=False),
    sa.Column('severity', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('evidence_path', sa.String(), nullable=True),
    sa.Column('observed', JSON_DOCUMENT, nullable=True),
    sa.Column('threshold', JSON_DOCUMENT, nullable=True),
    sa.Column('waiver_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['decision_id'], ['decisions.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['waiver_id'], ['waivers.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_findings_decision_id', 'findings', ['decision_id'], unique=False)
    op.create_index('ix_findings_run_id', 'findings', ['run_id'], unique=False)

    now = datetime.now(UTC)
    chain_head = sa.table("audit_chain_head", sa.column("id", sa.Integer), sa.column("last_event_id", sa.Integer),
                          sa.column("last_hash", sa.String), sa.column("events", sa.Integer),
                          sa.column("updated_at", sa.DateTime(timezone=True)))
    op.bulk_insert(chain_head, [{"id": 1, "last_event_id": 0, "last_hash": GENESIS_HASH, "events": 0,
                                 "updated_at": now}])
    meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    op.bulk_insert(meta, [{"key": "schema_created_at", "value": now.isoformat()},
                          {"key": "audit_chain", "value": "sha256(prev_hash + canonical_json(event)) v1"}])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_findings_run_id', table_name='findings')
    op.drop_index('ix_findings_decision_id', table_name='findings')

    op.drop_table('findings')
    op.drop_index('ix_evidence_stage_run_id', table_name='evidence')
    op.drop_index('ix_evidence_run_id_stage', table_name='evidence')

    op.drop_table('evidence')
    op.drop_index('ix_artifacts_sha256', table_name='artifacts')
    op.drop_index('ix_artifacts_run_id', table_name='artifacts')
    op.drop_index('ix_artifacts_dataset_fingerprint', table_name='artifacts')

    op.drop_table('artifacts')
    op.drop_index('ix_stage_executions_run_id_stage', table_name='stage_executions')

    op.drop_table('stage_executions')
    op.drop_index('ix_signatures_subject_digest', table_name='signatures')
    op.drop_index('ix_signatures_run_id', table_name='signatures')

    op.drop_table('signatures')
    op.drop_index('ix_pii_findings_run_id', table_name='pii_findings')

    op.drop_table('pii_findings')
    op.drop_index('ix_decisions_run_id', table_name='decisions')

    op.drop_table('decisions')
    op.drop_table('datasets')
    op.drop_index('ix_runs_status_started_at', table_name='runs')
    op.drop_index('ix_runs_started_at_id', table_name='runs')
    op.drop_index('ix_runs_parent_run_id', table_name='runs')
    op.drop_index('ix_runs_kind_started_at', table_name='runs')
    op.drop_index('ix_runs_base_model_id', table_name='runs')

    op.drop_table('runs')
    op.drop_index('ix_waivers_target', table_name='waivers')

    op.drop_table('waivers')
    op.drop_table('meta')
    op.drop_index('ix_base_models_digest', table_name='base_models')

    op.drop_table('base_models')
    op.drop_index('ix_audit_events_run_id', table_name='audit_events')

    op.drop_table('audit_events')
    op.drop_table('audit_chain_head')
