"""SQLModel tables of the lineage database (the system of record of every governed run).

The schema itself is created and evolved only by the Alembic migrations in
``govern/lineage/migrations/versions`` — these classes describe it for queries. Change both together
(add a new migration; never edit one that has shipped).

Conventions:
- timestamps are timezone-aware UTC (:class:`UTCDateTime` stores naive UTC on SQLite, ``timestamptz`` on
  PostgreSQL, and always hands back aware datetimes);
- JSON documents use ``JSON`` (``JSONB`` on PostgreSQL);
- PII findings never carry the matched text: only type, location, score, recogniser and a keyed hash;
- ``audit_events`` is append-only and hash-chained; ``audit_chain_head`` remembers the last link so that
  deleting the newest event is detectable too.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlmodel import AutoString, Field, SQLModel

from govern.stage import PIIFindingRow


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite has no timezone type)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "sqlite":
            # Stored as naive UTC text, which sorts chronologically.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JSONDocument(sa.types.TypeDecorator[Any]):
    """JSON values: JSONB on PostgreSQL (queryable there), JSON text with TEXT affinity elsewhere.

    Not SQLAlchemy's generic ``JSON``: SQLite gives a column declared ``JSON`` NUMERIC affinity, which turns a
    stored scalar ``1.0`` into the integer ``1`` — a rule's observed value must come back as it was stored.
    """

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.JSONB())
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return json.dumps(value, ensure_ascii=False, allow_nan=False)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None or dialect.name == "postgresql":
            return value
        return json.loads(value)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Dataset(SQLModel, table=True):
    """A data set, identified by its content fingerprint (sha256 over a canonical serialisation)."""

    __tablename__ = "datasets"

    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(sa_column_kwargs={"unique": True}, nullable=False)
    name: str
    path: str
    rows: int | None = None
    first_run_id: str | None = Field(default=None, foreign_key="runs.id", ondelete="SET NULL")
    first_seen_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class BaseModelRow(SQLModel, table=True):
    """A pretrained model a run started from (name, path, tree digest)."""

    __tablename__ = "base_models"
    __table_args__ = (sa.UniqueConstraint("name", "digest", name="uq_base_models_name_digest"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str
    path: str
    digest: str = Field(index=True)
    first_seen_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class Run(SQLModel, table=True):
    """One governed run (or a standalone scan/audit/sign/verify)."""

    __tablename__ = "runs"
    __table_args__ = (
        sa.Index("ix_runs_started_at_id", "started_at", "id"),
        sa.Index("ix_runs_status_started_at", "status", "started_at", "id"),
        sa.Index("ix_runs_kind_started_at", "kind", "started_at", "id"),
        sa.Index("ix_runs_decision_started_at", "decision", "started_at", "id"),  # migration 0005
    )

    id: str = Field(primary_key=True)
    name: str
    kind: str = "run"
    status: str = "running"
    decision: str | None = None
    started_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    error: str | None = Field(default=None, sa_type=sa.Text)
    config: dict[str, Any] | None = Field(default=None, sa_type=JSONDocument)
    config_digest: str | None = None
    config_path: str | None = None
    policy_name: str | None = None
    policy_version: str | None = None
    policy_digest: str | None = None
    policy_document: dict[str, Any] | None = Field(default=None, sa_type=JSONDocument)
    policy_source: str | None = Field(default=None, sa_type=sa.Text)
    run_dir: str | None = None
    code_revision: str | None = None
    versions: dict[str, Any] | None = Field(default=None, sa_type=JSONDocument)
    parent_run_id: str | None = Field(default=None, foreign_key="runs.id", index=True, ondelete="SET NULL")
    base_model_id: int | None = Field(default=None, foreign_key="base_models.id", index=True)


class StageExecution(SQLModel, table=True):
    """One execution of one stage in a run (a resumed run may execute a stage again)."""

    __tablename__ = "stage_executions"
    __table_args__ = (sa.Index("ix_stage_executions_run_id_stage", "run_id", "stage"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", ondelete="CASCADE")
    stage: str
    input_digest: str
    status: str = "running"
    started_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    error: str | None = Field(default=None, sa_type=sa.Text)
    outputs: dict[str, Any] | None = Field(default=None, sa_type=JSONDocument)


class Artifact(SQLModel, table=True):
    """A file or folder a run consumed or produced, with its sha256 digest."""

    __tablename__ = "artifacts"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True, ondelete="CASCADE")
    execution_id: int | None = Field(default=None, foreign_key="stage_executions.id", ondelete="SET NULL")
    name: str
    kind: str
    path: str
    sha256: str = Field(index=True)
    size_bytes: int = Field(sa_type=sa.BigInteger)
    role: str = "output"
    dataset_fingerprint: str | None = Field(default=None, index=True)
    rows: int | None = None
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class EvidenceRow(SQLModel, table=True):
    """The evidence document one stage execution produced (JSON of an ``EvidenceModel``)."""

    __tablename__ = "evidence"
    __table_args__ = (
        sa.Index("ix_evidence_run_id_stage", "run_id", "stage"),
        sa.Index("ix_evidence_stage_run_id", "stage", "run_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", ondelete="CASCADE")
    execution_id: int | None = Field(default=None, foreign_key="stage_executions.id", ondelete="SET NULL")
    stage: str
    document: dict[str, Any] = Field(sa_type=JSONDocument, nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class Decision(SQLModel, table=True):
    """A policy decision over a run's evidence: after a stage (gate), at the end (final) or a re-check."""

    __tablename__ = "decisions"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True, ondelete="CASCADE")
    kind: str
    decision: str
    policy_name: str
    policy_version: str
    policy_digest: str
    policy_document: dict[str, Any] | None = Field(default=None, sa_type=JSONDocument)
    policy_source: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class Finding(SQLModel, table=True):
    """The result of one policy rule within a decision."""

    __tablename__ = "findings"

    id: int | None = Field(default=None, primary_key=True)
    decision_id: int = Field(foreign_key="decisions.id", index=True, ondelete="CASCADE")
    run_id: str = Field(foreign_key="runs.id", index=True, ondelete="CASCADE")
    rule_id: str
    severity: str
    status: str
    message: str = Field(sa_type=sa.Text)
    evidence_path: str | None = None
    observed: Any = Field(default=None, sa_type=JSONDocument, nullable=True)
    threshold: Any = Field(default=None, sa_type=JSONDocument, nullable=True)
    waiver_id: int | None = Field(default=None, foreign_key="waivers.id", ondelete="SET NULL")


class Waiver(SQLModel, table=True):
    """Who let which rule pass for which run or data set, why, and until when."""

    __tablename__ = "waivers"

    id: int | None = Field(default=None, primary_key=True)
    target: str = Field(index=True)
    rule_id: str
    granted_by: str
    reason: str = Field(sa_type=sa.Text)
    until: date
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    #: Set when someone ended the waiver before ``until`` (migration 0004): from that day on it waives nothing.
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    ended_by: str | None = None
    end_reason: str | None = Field(default=None, sa_type=sa.Text)


class PIIFinding(SQLModel, PIIFindingRow, table=True):
    """One PII finding: where, what type, how sure, which recogniser, keyed hash. Never the text.

    Its columns are the :class:`~govern.stage.PIIFindingRow` fields (declared once, there) plus the row id
    and run; ``action`` is stored as a string column (SQLModel maps no ``Literal``).
    """

    __tablename__ = "pii_findings"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True, ondelete="CASCADE")
    action: Literal["block", "redact", "allow"] = Field(sa_type=AutoString)


class Signature(SQLModel, table=True):
    """A signature bundle over an artifact (model, provenance attestation, audit log, report)."""

    __tablename__ = "signatures"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.id", index=True, ondelete="CASCADE")
    kind: str = "model"
    subject: str
    subject_digest: str = Field(index=True)
    method: str
    bundle_path: str
    signer: str | None = None
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class AuditEvent(SQLModel, table=True):
    """An append-only, hash-chained audit event.

    ``hash = sha256(prev_hash + canonical_json({id, created_at, kind, run_id, payload}))``; ids are
    assigned consecutively under the append lock, so a gap, a broken link or a changed row all show.
    ``payload_json`` is stored as the exact canonical text that was hashed.
    """

    __tablename__ = "audit_events"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    kind: str
    run_id: str | None = Field(default=None, index=True)
    payload_json: str = Field(sa_type=sa.Text)
    prev_hash: str
    hash: str


class AuditChainHead(SQLModel, table=True):
    """The single row naming the newest audit event and its hash (detects deletion of the last event)."""

    __tablename__ = "audit_chain_head"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    last_event_id: int = 0
    last_hash: str
    events: int = 0
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class RegisteredModel(SQLModel, table=True):
    """A model name in the registry (the run config's ``name``, or ``registry.model``)."""

    __tablename__ = "registered_models"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column_kwargs={"unique": True}, nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class ModelVersion(SQLModel, table=True):
    """One model a run produced, by tree digest, as a numbered version of a registered model.

    ``initiator`` is who ran the training (the actor of the run's ``run.created`` event): the four-eyes rule
    compares approvers against it. ``status`` is the lifecycle state; ``model_actions`` says how it got there.
    """

    __tablename__ = "model_versions"
    __table_args__ = (
        sa.UniqueConstraint("model_id", "digest", name="uq_model_versions_model_digest"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
    )

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="registered_models.id", ondelete="CASCADE")
    version: int
    run_id: str = Field(foreign_key="runs.id", index=True, ondelete="CASCADE")
    digest: str = Field(index=True)
    path: str
    initiator: str
    initiator_source: str
    status: str
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class ModelAction(SQLModel, table=True):
    """One lifecycle action on a model version: who, what (``from_status`` → ``to_status``), why, when.

    ``run_id`` repeats the version's run so that verifying one run also checks the actions on its model.
    """

    __tablename__ = "model_actions"

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(foreign_key="model_versions.id", index=True, ondelete="CASCADE")
    run_id: str = Field(foreign_key="runs.id", index=True, ondelete="CASCADE")
    action: str
    from_status: str | None = None
    to_status: str
    actor: str
    actor_source: str
    reason: str = Field(sa_type=sa.Text)
    details: dict[str, Any] | None = Field(default=None, sa_type=JSONDocument)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class Meta(SQLModel, table=True):
    """Key/value facts about the database itself (creation time, creator version)."""

    __tablename__ = "meta"

    key: str = Field(primary_key=True)
    value: str = Field(sa_type=sa.Text)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The ``sa.Table`` behind a table model, typed.

    SQLModel sets ``__table__`` on ``table=True`` classes at runtime but does not declare it, so the type
    checker cannot see it; this is the one place that says so.
    """
    table: sa.Table = model.__table__  # type: ignore[attr-defined]  # set by SQLModel's metaclass at runtime
    return table
