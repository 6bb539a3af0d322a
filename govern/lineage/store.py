"""The lineage store: the only module in govern that writes SQL.

Everything a report shows is read back from here, so a run can be re-examined (and re-judged under a newer
policy) from the database alone. Every mutating method also appends an event to the hash-chained audit log
in the same transaction, so the log and the tables never disagree about what happened.

Backends: SQLite (default, ``.govern/lineage.db`` under the working directory) and PostgreSQL
(``postgresql+psycopg://...``). Concurrency:

- SQLite: WAL mode, ``foreign_keys=ON`` and a busy timeout on every connection; every write transaction
  starts with ``BEGIN IMMEDIATE`` (one writer at a time, so the audit chain never forks) and is retried when
  the database stays locked; schema migrations are serialised by a file lock next to the DB file.
- PostgreSQL: every write transaction takes ``pg_advisory_xact_lock`` first; migrations are serialised by a
  session-level ``pg_advisory_lock``.

Where the rest lives: engines and migrations in :mod:`govern.lineage.engines`, the chain's links in
:mod:`govern.lineage.chain`, row commitments in :mod:`govern.lineage.integrity`, witnessed heads in
:mod:`govern.lineage.witness`. This module keeps the one class that reads and writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from pydantic import BaseModel as PydanticModel
from pydantic import ConfigDict, ValidationError
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.orm import Session
from sqlmodel import col

from govern.actor import Actor, current_actor
from govern.config import canonical_json
from govern.decisions import RuleResult
from govern.errors import LineageError, NotFoundError
from govern.lineage.chain import GENESIS_HASH, event_hash, event_hash_text
from govern.lineage.engines import (
    PG_WRITE_LOCK,
    is_lock_error,
    migrate,
    reason,
    require_schema,
    sqlite_engines,
)
from govern.lineage.integrity import (
    COMMITTED_TABLES,
    Commitment,
    commit_rows,
    commitments_in,
    json_document,
    missing_problem,
    row_problem,
)
from govern.lineage.models import (
    Artifact,
    AuditChainHead,
    AuditEvent,
    BaseModelRow,
    Dataset,
    Decision,
    EvidenceRow,
    Finding,
    Meta,
    ModelAction,
    ModelVersion,
    PIIFinding,
    RegisteredModel,
    Run,
    Signature,
    StageExecution,
    Waiver,
    table_of,
)
from govern.lineage.records import (
    AncestryGraph,
    ArtifactRecord,
    BaseModelRecord,
    ChainReport,
    DatasetRecord,
    DecisionRecord,
    EventRecord,
    FindingRecord,
    LedgerRow,
    ModelActionRecord,
    ModelVersionRecord,
    PIIFindingRecord,
    PolicyRef,
    RegisteredModelRecord,
    RunRecord,
    SignatureRecord,
    StageRecord,
    WaiverRecord,
)
from govern.stage import ArtifactOut, PIIFindingRow

T = TypeVar("T")

RUN_KINDS = frozenset({"run", "scan", "audit-fairness", "audit-membership", "sign", "verify"})
RUN_STATUSES = frozenset({"running", "completed", "failed", "blocked"})
TERMINAL_RUN_STATUSES = frozenset({"completed", "failed", "blocked"})
STAGE_STATUSES = frozenset({"running", "completed", "failed", "blocked", "skipped"})
DECISION_KINDS = frozenset({"gate", "final", "check"})
FINDING_STATUSES = frozenset({"pass", "fail", "waived", "skipped", "error"})
SIGNATURE_KINDS = frozenset({"model", "provenance", "audit", "bom", "report"})
MODEL_STATUSES = frozenset({"candidate", "approved", "deployed", "deprecated", "revoked"})

#: ``meta`` key set once every row of the DB is committed to by an audit event (fast path only).
_COMMITMENTS_FLAG = "row_commitments"
#: Tables whose rows belong to no single run.
_GLOBAL_TABLES = ("waivers", "datasets", "base_models", "registered_models")
_WRITE_ATTEMPTS = 12


# ------------------------------------------------------------------------------------------- helpers
def default_db_url() -> str:
    """``GOVERN_DB_URL`` when set, else SQLite in ``.govern/lineage.db`` under the working directory."""
    env = os.environ.get("GOVERN_DB_URL", "").strip()
    if env:
        return env
    return f"sqlite:///{Path.cwd() / '.govern' / 'lineage.db'}"


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by start time and is unique across processes: ``run-YYYYMMDDTHHMMSS-<6 hex>``."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"run-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(json_document(value)).encode()).hexdigest()


class ModelStep(PydanticModel):
    """One lifecycle transition handed to :meth:`LineageStore.apply_model_steps`.

    ``expected_status`` is the status the caller decided on: the step applies only if the version still has
    it inside the write transaction (compare-and-set), so of concurrent approvals exactly one moves it.
    """

    model_config = ConfigDict(frozen=True)

    version_id: int
    action: str
    expected_status: str
    to_status: str
    reason: str
    details: dict[str, Any] | None = None
    #: Refuse when the acting user already took this action on this version (one approval per person).
    once_per_actor: bool = False


class StaleModelStatus(LineageError):
    """A model version's status changed since the caller read it (another user acted first)."""

    exit_code = 1


# --------------------------------------------------------------------------------------------- store
class LineageStore:
    """Access to one lineage database. Open with :meth:`open`; methods return detached pydantic records."""

    def __init__(self, url: URL, write_engine: Engine, read_engine: Engine, *, read_only: bool = False,
                 actor: Actor | None = None) -> None:
        self._url = url
        self.read_only = read_only
        #: Recorded on every event this store appends (who ran, checked, waived, signed, verified).
        self.actor: Actor = actor or current_actor()
        #: Off only in the integrity benchmark's baseline: without commitments every row verifies as
        #: inserted outside govern.
        self.commit_rows = True
        self._write_engine = write_engine
        self._read_engine = read_engine
        self._backend = url.get_backend_name()
        self.url: str = url.render_as_string(hide_password=False)
        self.display_url: str = url.render_as_string(hide_password=True)

    # ------------------------------------------------------------------------------- open / close
    @classmethod
    def open(cls, url: str | None = None, *, read_only: bool = False, actor: Actor | None = None) -> LineageStore:
        """Connect, create the schema or migrate it to the newest revision, and return the store.

        ``read_only`` (every command that only reads: ``lineage verify``, ``runs``, ``report``) creates
        nothing: a DB that does not exist or has no govern schema is an error, not a new empty DB that then
        "verifies", and every transaction is read-only.

        Raises :class:`LineageError` when the URL is invalid, the backend unsupported or the DB unreachable.
        """
        raw = url or default_db_url()
        try:
            sa_url = make_url(raw)
        except ArgumentError as exc:
            raise LineageError(f"invalid lineage DB URL (expected sqlite:///PATH or "
                               f"postgresql+psycopg://USER@HOST/DB): {exc}") from None
        backend = sa_url.get_backend_name()
        if backend == "sqlite":
            write_engine, read_engine = sqlite_engines(sa_url, read_only=read_only)
        elif backend == "postgresql":
            if sa_url.drivername == "postgresql":
                sa_url = sa_url.set(drivername="postgresql+psycopg")
            connect_args = {"options": "-c default_transaction_read_only=on"} if read_only else {}
            write_engine = sa.create_engine(sa_url, pool_pre_ping=True, connect_args=connect_args)
            # Every read (a verification above all) sees one snapshot: under PostgreSQL's default READ
            # COMMITTED each statement would see what committed since the last one, so a row another process
            # wrote with its event between two of verify's statements looked like "inserted outside govern".
            # Read-only transactions never fail to serialise at this level. (SQLite reads are one snapshot.)
            read_engine = write_engine.execution_options(isolation_level="REPEATABLE READ")
        else:
            raise LineageError(f"unsupported lineage DB backend '{backend}' in "
                               f"{sa_url.render_as_string(hide_password=True)}: use sqlite or postgresql")
        store = cls(sa_url, write_engine, read_engine, read_only=read_only, actor=actor)
        try:
            if read_only:
                require_schema(store._read_engine, store.display_url)
            else:
                migrate(store._url, store._backend, store._write_engine)
                store._adopt_uncommitted_rows()
        except (OperationalError, DBAPIError) as exc:
            store.close()
            raise LineageError(f"cannot open lineage DB {store.display_url}: {reason(exc)}") from None
        except OSError as exc:
            store.close()
            raise LineageError(f"cannot open lineage DB {store.display_url}: {exc}") from None
        return store

    def close(self) -> None:
        self._write_engine.dispose()
        if self._read_engine is not self._write_engine:
            self._read_engine.dispose()

    def __enter__(self) -> LineageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._backend

    @property
    def engine(self) -> Engine:
        """The write engine (for tests and benchmarks that seed data in bulk)."""
        return self._write_engine

    def _adopt_uncommitted_rows(self) -> None:
        """Commit, once, to the rows of a DB written before govern committed to rows (trust on first use).

        Whether a DB needs it is decided by its audit log, not by a flag an attacker could delete: only a
        log with no row commitments at all is adopted (the ``meta`` flag is just the fast path). Edits made
        before the upgrade cannot be detected this way — except evidence, whose digests were always logged.
        """

        def flagged(session: Session) -> bool:
            return session.get(Meta, _COMMITMENTS_FLAG) is not None

        if self._read(flagged):
            return

        def work(session: Session) -> None:
            if flagged(session):
                return
            has_events = session.execute(sa.select(col(AuditEvent.id)).limit(1)).first() is not None
            committed = session.execute(sa.select(col(AuditEvent.id)).where(
                col(AuditEvent.payload_json).like('%"rows":{%')).limit(1)).first() is not None
            if has_events and not committed:
                for (run_id,) in session.execute(sa.select(col(Run.id)).order_by(col(Run.id))).all():
                    scope = self._scope(session, run_id)
                    rows = {table: self._stored(session, table, condition) for table, condition in scope.items()
                            if table not in _GLOBAL_TABLES}
                    self._append_event(session, "rows.adopted", run_id, {"reason": "upgrade"}, rows=rows)
                self._append_event(session, "rows.adopted", None, {"reason": "upgrade"}, rows={
                    table: self._stored(session, table) for table in _GLOBAL_TABLES})
            session.add(Meta(key=_COMMITMENTS_FLAG, value="v1"))

        self._write(work)

    def schema_revision(self) -> str | None:
        """The Alembic revision the DB is at (``None`` for an empty DB)."""
        from alembic.runtime.migration import MigrationContext

        with self._read_engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    # ------------------------------------------------------------------------------ transactions
    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one serialised write transaction, retrying while the DB is locked."""
        if self.read_only:
            raise LineageError(f"lineage DB {self.display_url} was opened read-only: this command records nothing")
        delay = 0.02
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
                    if self._backend == "postgresql":
                        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_WRITE_LOCK})
                    return work(session)
            except OperationalError as exc:
                if not is_lock_error(exc) or attempt == _WRITE_ATTEMPTS - 1:
                    raise LineageError(f"lineage DB {self.display_url}: {reason(exc)}") from None
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    def _read(self, work: Callable[[Session], T]) -> T:
        try:
            with Session(self._read_engine, expire_on_commit=False) as session, session.begin():
                return work(session)
        except OperationalError as exc:
            raise LineageError(f"lineage DB {self.display_url}: {reason(exc)}") from None

    def _append_event(self, session: Session, kind: str, run_id: str | None, payload: Any,
                      rows: dict[str, list[Any]] | None = None) -> int:
        """Append one chained event inside the caller's (serialised) write transaction.

        ``rows`` (table name → the rows this transaction wrote, as read back) are committed to in the
        payload (see :mod:`govern.lineage.integrity`); the actor is recorded on every event."""
        head = session.get(AuditChainHead, 1)
        if head is None:
            raise LineageError(f"lineage DB {self.display_url}: the audit chain head row is missing "
                               "(the database was altered outside govern); run `govern lineage verify`")
        document = json_document(payload or {})
        document["actor"] = self.actor.model_dump(mode="json")
        if rows and self.commit_rows:
            document["rows"] = {table: commit_rows(table, table_rows) for table, table_rows in rows.items()
                                if table_rows}
        created = utcnow()
        event_id = head.last_event_id + 1
        digest = event_hash(head.last_hash, event_id, created, kind, run_id, document)
        session.add(AuditEvent(id=event_id, created_at=created, kind=kind, run_id=run_id,
                               payload_json=canonical_json(document), prev_hash=head.last_hash, hash=digest))
        head.last_event_id = event_id
        head.last_hash = digest
        head.events += 1
        head.updated_at = created
        session.flush()
        return event_id

    @staticmethod
    def _stored(session: Session, table: str, *conditions: Any) -> list[Any]:
        """Rows of ``table`` as the DB stores them (read back inside the writing transaction, so a
        commitment is over exactly what later reads see, on every backend)."""
        session.flush()
        t = table_of(COMMITTED_TABLES[table])
        return list(session.execute(sa.select(t).where(*conditions)).mappings())

    def _stored_ids_after(self, session: Session, table: str, before: int, *conditions: Any) -> list[Any]:
        t = table_of(COMMITTED_TABLES[table])
        return self._stored(session, table, t.c.id > before, *conditions)

    @staticmethod
    def _max_id(session: Session, table: str) -> int:
        t = table_of(COMMITTED_TABLES[table])
        return int(session.execute(sa.select(sa.func.coalesce(sa.func.max(t.c.id), 0))).scalar_one())

    def _run_row(self, session: Session, run_id: str) -> dict[str, list[Any]]:
        return {"runs": self._stored(session, "runs", table_of(Run).c.id == run_id)}

    @staticmethod
    def _require_run(session: Session, run_id: str) -> Run:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFoundError(f"no run '{run_id}' in the lineage DB")
        return run

    # -------------------------------------------------------------------------------------- runs
    def create_run(self, *, name: str, kind: str = "run", config: dict[str, Any] | None = None,
                   config_digest: str | None = None, config_path: str | None = None,
                   policy: PolicyRef | None = None, run_dir: str | None = None,
                   code_revision: str | None = None, versions: dict[str, str] | None = None,
                   parent_run_id: str | None = None) -> str:
        """Record a new run (status ``running``) and return its id."""
        if kind not in RUN_KINDS:
            raise ValueError(f"run kind must be one of {sorted(RUN_KINDS)}, not {kind!r}")
        config_doc = json_document(config) if config is not None else None
        policy_doc = json_document(policy.document) if policy is not None else None

        for _ in range(5):
            started = utcnow()
            run_id = new_run_id(started)

            def work(session: Session, run_id: str = run_id, started: datetime = started) -> str:
                if parent_run_id is not None:
                    self._require_run(session, parent_run_id)
                if session.get(Run, run_id) is not None:
                    raise _IdTaken()
                session.add(Run(
                    id=run_id, name=name, kind=kind, status="running", started_at=started,
                    config=config_doc, config_digest=config_digest, config_path=config_path,
                    policy_name=policy.name if policy else None, policy_version=policy.version if policy else None,
                    policy_digest=policy.digest if policy else None, policy_document=policy_doc,
                    policy_source=policy.source if policy else None,
                    run_dir=run_dir, code_revision=code_revision, versions=dict(versions) if versions else None,
                    parent_run_id=parent_run_id,
                ))
                session.flush()
                self._append_event(session, "run.created", run_id, {
                    "name": name, "kind": kind, "config_digest": config_digest,
                    "policy_digest": policy.digest if policy else None, "parent_run_id": parent_run_id,
                    "code_revision": code_revision,
                }, rows=self._run_row(session, run_id))
                return run_id

            try:
                return self._write(work)
            except _IdTaken:
                continue
        raise LineageError("could not allocate a unique run id after 5 attempts")

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id; ``latest`` means the newest run. Raises :class:`NotFoundError`."""

        def work(session: Session) -> RunRecord:
            if run_id == "latest":
                row = session.scalars(sa.select(Run).order_by(col(Run.started_at).desc(), col(Run.id).desc())
                                      .limit(1)).first()
                if row is None:
                    raise NotFoundError("no runs in the lineage DB yet ('latest' needs at least one run)")
            else:
                row = session.get(Run, run_id)
                if row is None:
                    raise NotFoundError(f"no run '{run_id}' in the lineage DB")
            return RunRecord.model_validate(row)

        return self._read(work)

    def resolve_run_id(self, run_id: str) -> str:
        """Turn ``latest`` into the newest run's id; check any other id exists."""
        return self.get_run(run_id).id

    @staticmethod
    def _run_filters(status: str | None, kind: str | None, since: datetime | None,
                     dataset: str | None = None, decision: str | None = None,
                     before: datetime | None = None) -> list[Any]:
        conditions: list[Any] = []
        if decision is not None:
            conditions.append(col(Run.decision) == decision)
        if before is not None:
            conditions.append(col(Run.started_at) < before)
        if status is not None:
            conditions.append(col(Run.status) == status)
        if kind is not None:
            conditions.append(col(Run.kind) == kind)
        if since is not None:
            conditions.append(col(Run.started_at) >= since)
        if dataset is not None:
            conditions.append(col(Run.id).in_(sa.select(col(Artifact.run_id)).where(
                col(Artifact.dataset_fingerprint) == dataset)))
        return conditions

    def list_runs(self, *, limit: int = 50, offset: int = 0, status: str | None = None, kind: str | None = None,
                  since: datetime | None = None, dataset: str | None = None, decision: str | None = None,
                  before: datetime | None = None) -> list[RunRecord]:
        """Runs, newest first; ``dataset``: only the runs that recorded that data set (by fingerprint);
        ``since`` / ``before``: started at or after / strictly before (a half-open range, so consecutive
        days never share a run)."""
        stmt = (sa.select(Run).where(*self._run_filters(status, kind, since, dataset, decision, before))
                .order_by(col(Run.started_at).desc(), col(Run.id).desc())
                .limit(limit).offset(offset))
        return self._read(lambda s: [RunRecord.model_validate(r) for r in s.scalars(stmt)])

    def count_runs(self, *, status: str | None = None, kind: str | None = None,
                   since: datetime | None = None, dataset: str | None = None, decision: str | None = None,
                   before: datetime | None = None) -> int:
        stmt = sa.select(sa.func.count()).select_from(Run).where(
            *self._run_filters(status, kind, since, dataset, decision, before))
        return self._read(lambda s: int(s.execute(stmt).scalar_one()))

    def set_run_status(self, run_id: str, status: str, *, decision: str | None = None,
                       error: str | None = None) -> None:
        """Move a run to ``status``; terminal statuses (completed, failed, blocked) set ``ended_at``."""
        if status not in RUN_STATUSES:
            raise ValueError(f"run status must be one of {sorted(RUN_STATUSES)}, not {status!r}")

        def work(session: Session) -> None:
            run = self._require_run(session, run_id)
            self._guard(session, "runs", run_id, run_id)
            run.status = status
            if decision is not None:
                run.decision = decision
            if error is not None:
                run.error = error
            run.ended_at = utcnow() if status in TERMINAL_RUN_STATUSES else None
            # Free text stays out of the append-only log (it cannot be purged); its digest goes in.
            self._append_event(session, "run.status", run_id, {
                "status": status, "decision": decision,
                "error_sha256": hashlib.sha256(error.encode()).hexdigest() if error else None,
            }, rows=self._run_row(session, run_id))

        self._write(work)

    def set_run_policy(self, run_id: str, policy: PolicyRef) -> None:
        def work(session: Session) -> None:
            run = self._require_run(session, run_id)
            self._guard(session, "runs", run_id, run_id)
            run.policy_name, run.policy_version, run.policy_digest = policy.name, policy.version, policy.digest
            run.policy_document = json_document(policy.document)
            run.policy_source = policy.source
            self._append_event(session, "run.policy", run_id, {
                "name": policy.name, "version": policy.version, "digest": policy.digest},
                rows=self._run_row(session, run_id))

        self._write(work)

    def set_run_dir(self, run_id: str, run_dir: str) -> None:
        """Record where the run's files live (known only once the run id exists)."""

        def work(session: Session) -> None:
            run = self._require_run(session, run_id)
            self._guard(session, "runs", run_id, run_id)
            run.run_dir = run_dir
            self._append_event(session, "run.dir", run_id, {"run_dir": run_dir}, rows=self._run_row(session, run_id))

        self._write(work)

    # ------------------------------------------------------------------------------------ stages
    def start_stage(self, run_id: str, stage: str, input_digest: str) -> int:
        """Record that ``stage`` started in ``run_id``; returns the execution id."""

        def work(session: Session) -> int:
            self._require_run(session, run_id)
            row = StageExecution(run_id=run_id, stage=stage, input_digest=input_digest, status="running",
                                 started_at=utcnow())
            session.add(row)
            session.flush()
            assert row.id is not None
            self._append_event(session, "stage.started", run_id, {
                "execution_id": row.id, "stage": stage, "input_digest": input_digest},
                rows={"stage_executions": self._stored(session, "stage_executions",
                                                       table_of(StageExecution).c.id == row.id)})
            return row.id

        return self._write(work)

    def finish_stage(self, execution_id: int, status: str, *, evidence: dict[str, Any] | None = None,
                     outputs: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Close a stage execution; its evidence also lands in the evidence table (digest in the log)."""
        if status not in STAGE_STATUSES - {"running"}:
            raise ValueError(f"stage status must be one of {sorted(STAGE_STATUSES - {'running'})}, "
                             f"not {status!r}")
        evidence_doc = json_document(evidence) if evidence is not None else None
        outputs_doc = json_document(outputs) if outputs is not None else None

        def work(session: Session) -> None:
            row = session.get(StageExecution, execution_id)
            if row is None:
                raise NotFoundError(f"no stage execution #{execution_id} in the lineage DB")
            self._guard(session, "stage_executions", execution_id, row.run_id)
            before = self._max_id(session, "evidence")
            now = utcnow()
            row.status, row.ended_at, row.error = status, now, error
            if outputs_doc is not None:
                row.outputs = outputs_doc
            if evidence_doc is not None:
                session.add(EvidenceRow(run_id=row.run_id, execution_id=execution_id, stage=row.stage,
                                        document=evidence_doc, created_at=now))
            self._append_event(session, "stage.finished", row.run_id, {
                "execution_id": execution_id, "stage": row.stage, "status": status,
                "evidence_sha256": _digest(evidence_doc) if evidence_doc is not None else None,
                "outputs_sha256": _digest(outputs_doc) if outputs_doc is not None else None,
                "error_sha256": hashlib.sha256(error.encode()).hexdigest() if error else None,
            }, rows={"stage_executions": self._stored(session, "stage_executions",
                                                      table_of(StageExecution).c.id == execution_id),
                     "evidence": self._stored_ids_after(session, "evidence", before)})

        self._write(work)

    def stage_executions(self, run_id: str) -> list[StageRecord]:
        """Every stage execution of a run, in order, each with the evidence it produced."""

        def work(session: Session) -> list[StageRecord]:
            rows = session.scalars(sa.select(StageExecution).where(col(StageExecution.run_id) == run_id)
                                   .order_by(col(StageExecution.id))).all()
            evidence = {e.execution_id: e.document for e in session.scalars(
                sa.select(EvidenceRow).where(col(EvidenceRow.run_id) == run_id).order_by(col(EvidenceRow.id)))}
            return [StageRecord.model_validate(r).model_copy(update={"evidence": evidence.get(r.id)})
                    for r in rows]

        return self._read(work)

    def completed_stage(self, run_id: str, stage: str) -> StageRecord | None:
        """The latest completed execution of ``stage`` in ``run_id`` (for ``--resume``), or ``None``."""

        def work(session: Session) -> StageRecord | None:
            row = session.scalars(
                sa.select(StageExecution)
                .where(col(StageExecution.run_id) == run_id, col(StageExecution.stage) == stage,
                       col(StageExecution.status) == "completed")
                .order_by(col(StageExecution.id).desc()).limit(1)).first()
            if row is None:
                return None
            document = session.scalars(sa.select(col(EvidenceRow.document))
                                       .where(col(EvidenceRow.execution_id) == row.id)
                                       .order_by(col(EvidenceRow.id).desc()).limit(1)).first()
            return StageRecord.model_validate(row).model_copy(update={"evidence": document})

        return self._read(work)

    # ---------------------------------------------------------------- artifacts, datasets, base models
    def add_artifacts(self, run_id: str, execution_id: int | None, artifacts: list[ArtifactOut]) -> None:
        """Record artifacts; one with a ``dataset_fingerprint`` also registers that data set (once)."""
        if not artifacts:
            return

        def work(session: Session) -> None:
            self._require_run(session, run_id)
            now = utcnow()
            before = self._max_id(session, "artifacts")
            session.execute(sa.insert(Artifact), [{
                "run_id": run_id, "execution_id": execution_id, "name": a.name, "kind": a.kind,
                "path": a.path, "sha256": a.sha256, "size_bytes": a.size_bytes, "role": a.role,
                "dataset_fingerprint": a.dataset_fingerprint, "rows": a.rows, "created_at": now,
            } for a in artifacts])
            new_datasets: list[str] = []
            for a in artifacts:
                if a.dataset_fingerprint and self._insert_ignore(session, Dataset, ["fingerprint"], {
                        "fingerprint": a.dataset_fingerprint, "name": a.name, "path": a.path, "rows": a.rows,
                        "first_run_id": run_id, "first_seen_at": now}):
                    new_datasets.append(a.dataset_fingerprint)
            datasets = (self._stored(session, "datasets", table_of(Dataset).c.fingerprint.in_(new_datasets))
                        if new_datasets else [])
            self._append_event(session, "artifacts.added", run_id, {
                "execution_id": execution_id,
                "artifacts": [{"name": a.name, "kind": a.kind, "role": a.role, "sha256": a.sha256,
                               "dataset_fingerprint": a.dataset_fingerprint} for a in artifacts]},
                rows={"artifacts": self._stored_ids_after(session, "artifacts", before), "datasets": datasets})

        self._write(work)

    def _insert_ignore(self, session: Session, model: type[Any], keys: list[str], values: dict[str, Any]) -> bool:
        """INSERT ... ON CONFLICT DO NOTHING; True when a row was inserted."""
        stmt: sa.Executable
        if self._backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert
            stmt = pg_insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert
            stmt = sqlite_insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
        # an INSERT's result is a CursorResult, which has rowcount; Session.execute is typed as Result
        result = cast("sa.CursorResult[Any]", session.execute(stmt))
        return bool(result.rowcount)

    def artifacts(self, run_id: str) -> list[ArtifactRecord]:
        stmt = sa.select(Artifact).where(col(Artifact.run_id) == run_id).order_by(col(Artifact.id))
        return self._read(lambda s: [ArtifactRecord.model_validate(r) for r in s.scalars(stmt)])

    def upsert_base_model(self, *, name: str, path: str, digest: str) -> int:
        """The id of the base model (name, digest), recording it on first sight."""

        def work(session: Session) -> int:
            inserted = self._insert_ignore(session, BaseModelRow, ["name", "digest"], {
                "name": name, "path": path, "digest": digest, "first_seen_at": utcnow()})
            # the primary key of a stored row is never NULL (the model declares it optional for inserts)
            model_id = cast(int, session.execute(sa.select(col(BaseModelRow.id)).where(
                col(BaseModelRow.name) == name, col(BaseModelRow.digest) == digest)).scalar_one())
            if inserted:
                self._append_event(session, "base_model.recorded", None,
                                   {"id": model_id, "name": name, "digest": digest},
                                   rows={"base_models": self._stored(session, "base_models",
                                                                     table_of(BaseModelRow).c.id == model_id)})
            return int(model_id)

        return self._write(work)

    def link_base_model(self, run_id: str, base_model_id: int) -> None:
        def work(session: Session) -> None:
            run = self._require_run(session, run_id)
            if session.get(BaseModelRow, base_model_id) is None:
                raise NotFoundError(f"no base model #{base_model_id} in the lineage DB")
            self._guard(session, "runs", run_id, run_id)
            run.base_model_id = base_model_id
            self._append_event(session, "run.base_model", run_id, {"base_model_id": base_model_id},
                               rows=self._run_row(session, run_id))

        self._write(work)

    def base_model(self, base_model_id: int) -> BaseModelRecord:
        def work(session: Session) -> BaseModelRecord:
            row = session.get(BaseModelRow, base_model_id)
            if row is None:
                raise NotFoundError(f"no base model #{base_model_id} in the lineage DB")
            return BaseModelRecord.model_validate(row)

        return self._read(work)

    def datasets(self, *, limit: int | None = None, offset: int = 0) -> list[DatasetRecord]:
        """Data sets in the order they were first seen."""
        stmt = sa.select(Dataset).order_by(col(Dataset.id)).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._read(lambda s: [DatasetRecord.model_validate(r) for r in s.scalars(stmt)])

    def count_datasets(self) -> int:
        return self._read(lambda s: int(s.execute(sa.select(sa.func.count()).select_from(Dataset)).scalar_one()))

    def dataset(self, fingerprint: str) -> DatasetRecord:
        """One data set by its content fingerprint (``sha256:…``)."""
        stmt = sa.select(Dataset).where(col(Dataset.fingerprint) == fingerprint)

        def work(session: Session) -> DatasetRecord:
            row = session.scalars(stmt).first()
            if row is None:
                raise NotFoundError(f"no data set {fingerprint} in the lineage DB")
            return DatasetRecord.model_validate(row)

        return self._read(work)

    def dataset_pii_counts(self, fingerprint: str) -> dict[str, dict[str, int]]:
        """Run id → entity type → PII findings, for every run that scanned this data set, oldest run first.

        A finding belongs to the data set when its run recorded the data set under the name the scan gave
        the finding (``train``, ``eval``, a scanned file's name): the same file scanned as another data set
        in the same run is not counted here."""
        stmt = (sa.select(col(PIIFinding.run_id), col(PIIFinding.entity_type), sa.func.count())
                .join(Artifact, sa.and_(col(Artifact.run_id) == col(PIIFinding.run_id),
                                        col(Artifact.name) == col(PIIFinding.dataset)))
                .where(col(Artifact.dataset_fingerprint) == fingerprint)
                .group_by(col(PIIFinding.run_id), col(PIIFinding.entity_type))
                .order_by(col(PIIFinding.run_id), col(PIIFinding.entity_type)))

        def work(session: Session) -> dict[str, dict[str, int]]:
            counts: dict[str, dict[str, int]] = {}
            for run_id, entity, count in session.execute(stmt):
                counts.setdefault(str(run_id), {})[str(entity)] = int(count)
            return counts

        return self._read(work)

    # ----------------------------------------------------------------- evidence, decisions, findings
    def evidence(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Stage name → the latest evidence document that stage stored for the run."""

        def work(session: Session) -> dict[str, dict[str, Any]]:
            rows = session.execute(sa.select(col(EvidenceRow.stage), col(EvidenceRow.document))
                                   .where(col(EvidenceRow.run_id) == run_id).order_by(col(EvidenceRow.id)))
            return {stage: document for stage, document in rows}

        return self._read(work)

    def record_decision(self, run_id: str, *, kind: str, decision: str, policy: PolicyRef,
                        results: list[dict[str, Any]]) -> int:
        """Store a policy decision with one finding per rule result; returns the decision id."""
        if kind not in DECISION_KINDS:
            raise ValueError(f"decision kind must be one of {sorted(DECISION_KINDS)}, not {kind!r}")
        try:
            # Extra keys are ignored (a caller may hand a richer result): the shape recorded is RuleResult's.
            findings = [RuleResult.model_validate({k: v for k, v in r.items() if k in RuleResult.model_fields})
                        for r in results]
        except ValidationError as exc:
            raise ValueError(f"invalid rule result for record_decision: {exc}") from None
        policy_doc = json_document(policy.document)

        def work(session: Session) -> int:
            self._require_run(session, run_id)
            row = Decision(run_id=run_id, kind=kind, decision=decision, policy_name=policy.name,
                           policy_version=policy.version, policy_digest=policy.digest,
                           policy_document=policy_doc, policy_source=policy.source, created_at=utcnow())
            session.add(row)
            session.flush()
            assert row.id is not None
            if findings:
                session.execute(sa.insert(Finding), [{
                    "decision_id": row.id, "run_id": run_id, "rule_id": f.rule_id, "severity": f.severity,
                    "status": f.status, "message": f.message, "evidence_path": f.evidence_path,
                    "observed": json_document(f.observed), "threshold": json_document(f.threshold),
                    "waiver_id": f.waiver_id} for f in findings])
            self._append_event(session, "decision.recorded", run_id, {
                "decision_id": row.id, "kind": kind, "decision": decision, "policy_digest": policy.digest,
                "results_sha256": _digest([f.model_dump() for f in findings]),
                "failed_rules": sorted({f.rule_id for f in findings if f.status == "fail"}),
                "waived_rules": sorted({f.rule_id for f in findings if f.status == "waived"}),
            }, rows={"decisions": self._stored(session, "decisions", table_of(Decision).c.id == row.id),
                     "findings": self._stored(session, "findings", table_of(Finding).c.decision_id == row.id)})
            return row.id

        return self._write(work)

    def decisions(self, run_id: str) -> list[DecisionRecord]:
        """The run's decisions in order, each with its rule results."""
        return self._read(lambda s: self._decisions(s, run_id, None, None))

    def latest_decision(self, run_id: str, kind: str | None = None) -> DecisionRecord | None:
        found = self._read(lambda s: self._decisions(s, run_id, kind, 1))
        return found[0] if found else None

    @staticmethod
    def _decisions(session: Session, run_id: str, kind: str | None, latest: int | None) -> list[DecisionRecord]:
        stmt = sa.select(Decision).where(col(Decision.run_id) == run_id)
        if kind is not None:
            stmt = stmt.where(col(Decision.kind) == kind)
        if latest is not None:
            stmt = stmt.order_by(col(Decision.id).desc()).limit(latest)
        else:
            stmt = stmt.order_by(col(Decision.id))
        rows = list(session.scalars(stmt))
        if not rows:
            return []
        by_decision: dict[int | None, list[FindingRecord]] = {}
        for f in session.scalars(sa.select(Finding).where(col(Finding.decision_id).in_([r.id for r in rows]))
                                 .order_by(col(Finding.id))):
            by_decision.setdefault(f.decision_id, []).append(FindingRecord.model_validate(f))
        return [DecisionRecord.model_validate(r).model_copy(update={"results": by_decision.get(r.id, [])})
                for r in rows]

    # ----------------------------------------------------------------------------------- waivers
    def add_waiver(self, *, target: str, rule_id: str, by: str, reason: str, until: date) -> int:
        """Record a waiver for ``rule_id`` on a run id or dataset fingerprint, valid through ``until``."""
        if not by.strip() or not reason.strip():
            raise ValueError("a waiver needs who grants it (by) and why (reason)")

        def work(session: Session) -> int:
            row = Waiver(target=target, rule_id=rule_id, granted_by=by, reason=reason, until=until,
                         created_at=utcnow())
            session.add(row)
            session.flush()
            assert row.id is not None
            self._append_event(session, "waiver.added", target if target.startswith("run-") else None, {
                "waiver_id": row.id, "target": target, "rule_id": rule_id, "by": by,
                "until": until.isoformat(), "reason_sha256": hashlib.sha256(reason.encode()).hexdigest()},
                rows={"waivers": self._stored(session, "waivers", table_of(Waiver).c.id == row.id)})
            return row.id

        return self._write(work)

    def end_waiver(self, waiver_id: int, *, by: str, reason: str) -> WaiverRecord:
        """End a waiver before its ``until`` day (it waives nothing from today on). The grant stays as it was;
        the end is written on the row and committed to by a ``waiver.ended`` event."""
        if not by.strip() or not reason.strip():
            raise ValueError("ending a waiver needs who ends it (by) and why (reason)")

        def work(session: Session) -> WaiverRecord:
            row = session.get(Waiver, waiver_id)
            if row is None:
                raise NotFoundError(f"no waiver #{waiver_id} in the lineage DB")
            if row.ended_at is not None:
                raise LineageError(f"waiver #{waiver_id} was already ended by {row.ended_by} on "
                                   f"{row.ended_at.date().isoformat()}")
            run_id = row.target if row.target.startswith("run-") else None
            self._guard(session, "waivers", waiver_id, run_id)
            row.ended_at, row.ended_by, row.end_reason = utcnow(), by, reason
            session.flush()
            self._append_event(session, "waiver.ended", run_id, {
                "waiver_id": waiver_id, "target": row.target, "rule_id": row.rule_id, "by": by,
                "reason_sha256": hashlib.sha256(reason.encode()).hexdigest()},
                rows={"waivers": self._stored(session, "waivers", table_of(Waiver).c.id == waiver_id)})
            return _waiver_record(row)

        return self._write(work)

    def waivers(self, *, targets: list[str] | None = None) -> list[WaiverRecord]:
        """All waivers (expired ones too — callers check ``until``), optionally for some targets only."""
        stmt = sa.select(Waiver).order_by(col(Waiver.id))
        if targets is not None:
            stmt = stmt.where(col(Waiver.target).in_(targets))
        return self._read(lambda s: [_waiver_record(w) for w in s.scalars(stmt)])

    # ------------------------------------------------------------------------------ PII findings
    def add_pii_findings(self, run_id: str, rows: list[PIIFindingRow]) -> None:
        """Bulk-insert PII findings (type, location, score, recogniser, keyed hash — never the text)."""
        if not rows:
            return

        def work(session: Session) -> None:
            self._require_run(session, run_id)
            before = self._max_id(session, "pii_findings")
            session.execute(sa.insert(PIIFinding), [{"run_id": run_id, **r.model_dump()} for r in rows])
            counts: dict[str, int] = {}
            for r in rows:
                counts[r.entity_type] = counts.get(r.entity_type, 0) + 1
            self._append_event(session, "pii.findings", run_id, {
                "count": len(rows), "by_entity": counts,
                "rows_sha256": _digest([r.model_dump() for r in rows])},
                rows={"pii_findings": self._stored_ids_after(session, "pii_findings", before)})

        self._write(work)

    def pii_findings(self, run_id: str, limit: int | None = None) -> list[PIIFindingRecord]:
        stmt = sa.select(PIIFinding).where(col(PIIFinding.run_id) == run_id).order_by(col(PIIFinding.id))
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._read(lambda s: [PIIFindingRecord.model_validate(r) for r in s.scalars(stmt)])

    # -------------------------------------------------------------------------------- signatures
    def add_signature(self, run_id: str, *, subject: str, subject_digest: str, method: str, bundle_path: str,
                      signer: str | None, kind: str = "model") -> int:
        if kind not in SIGNATURE_KINDS:
            raise ValueError(f"signature kind must be one of {sorted(SIGNATURE_KINDS)}, not {kind!r}")

        def work(session: Session) -> int:
            self._require_run(session, run_id)
            row = Signature(run_id=run_id, kind=kind, subject=subject, subject_digest=subject_digest,
                            method=method, bundle_path=bundle_path, signer=signer, created_at=utcnow())
            session.add(row)
            session.flush()
            assert row.id is not None
            self._append_event(session, "signature.added", run_id, {
                "signature_id": row.id, "kind": kind, "subject": subject, "subject_digest": subject_digest,
                "method": method, "signer": signer},
                rows={"signatures": self._stored(session, "signatures", table_of(Signature).c.id == row.id)})
            return row.id

        return self._write(work)

    def signatures(self, run_id: str) -> list[SignatureRecord]:
        stmt = sa.select(Signature).where(col(Signature.run_id) == run_id).order_by(col(Signature.id))
        return self._read(lambda s: [SignatureRecord.model_validate(r) for r in s.scalars(stmt)])

    # ---------------------------------------------------------------------------- model registry
    def register_model_version(self, *, model: str, run_id: str, digest: str, path: str, initiator: str,
                               initiator_source: str) -> ModelVersionRecord:
        """The version of ``model`` with this digest, registering both (status ``candidate``) on first sight.

        Idempotent: registering the same (model, digest) again returns the existing version unchanged."""
        if not model.strip() or not digest.strip():
            raise ValueError("a model version needs a model name and a digest")

        def work(session: Session) -> ModelVersionRecord:
            self._require_run(session, run_id)
            now = utcnow()
            inserted = self._insert_ignore(session, RegisteredModel, ["name"], {"name": model, "created_at": now})
            model_id = cast(int, session.execute(sa.select(col(RegisteredModel.id)).where(
                col(RegisteredModel.name) == model)).scalar_one())
            existing = session.scalars(sa.select(ModelVersion).where(
                col(ModelVersion.model_id) == model_id, col(ModelVersion.digest) == digest)).first()
            if existing is not None:
                return self._version_record(session, existing)
            number = int(session.execute(sa.select(sa.func.coalesce(sa.func.max(col(ModelVersion.version)), 0))
                                         .where(col(ModelVersion.model_id) == model_id)).scalar_one()) + 1
            row = ModelVersion(model_id=model_id, version=number, run_id=run_id, digest=digest, path=path,
                               initiator=initiator, initiator_source=initiator_source, status="candidate",
                               created_at=now, updated_at=now)
            session.add(row)
            session.flush()
            assert row.id is not None
            if inserted:
                # Run-less, like other rows shared by runs (data sets, base models): every run's verification
                # reads the run-less events, so each version's run sees the commitment to its model's name.
                self._append_event(session, "model.created", None, {"model": model, "model_id": model_id},
                                   rows={"registered_models": self._stored(
                                       session, "registered_models", table_of(RegisteredModel).c.id == model_id)})
            self._append_event(session, "model.registered", run_id, {
                "model": model, "version": number, "version_id": row.id, "digest": digest,
                "initiator": initiator}, rows={"model_versions": self._stored(
                    session, "model_versions", table_of(ModelVersion).c.id == row.id)})
            return self._version_record(session, row)

        return self._write(work)

    def apply_model_steps(self, event_kind: str, steps: list[ModelStep], *,
                          payload: dict[str, Any] | None = None) -> list[ModelVersionRecord]:
        """Apply lifecycle steps atomically (all or none) and record them as one audit event.

        Each step is checked against the version's status inside the write transaction: a version whose status
        is no longer ``expected_status`` raises :class:`StaleModelStatus` and nothing is written. Free-text
        reasons live in the (committed) ``model_actions`` rows; the event carries their digests."""
        for step in steps:
            if step.to_status not in MODEL_STATUSES or step.expected_status not in MODEL_STATUSES:
                raise ValueError(f"model status must be one of {sorted(MODEL_STATUSES)}")
            if not step.reason.strip():
                raise ValueError("every model lifecycle action needs a reason")

        def work(session: Session) -> list[ModelVersionRecord]:
            before = self._max_id(session, "model_actions")
            touched: list[ModelVersion] = []
            now = utcnow()
            for step in steps:
                row = session.get(ModelVersion, step.version_id)
                if row is None:
                    raise NotFoundError(f"no model version #{step.version_id} in the lineage DB")
                self._guard(session, "model_versions", step.version_id, row.run_id)
                if row.status != step.expected_status:
                    raise StaleModelStatus(
                        f"model version #{row.id} is now '{row.status}', not '{step.expected_status}': someone "
                        f"else acted on it first; nothing was recorded")
                if step.once_per_actor and session.execute(sa.select(col(ModelAction.id)).where(
                        col(ModelAction.version_id) == row.id, col(ModelAction.action) == step.action,
                        col(ModelAction.actor) == self.actor.name).limit(1)).first() is not None:
                    raise StaleModelStatus(f"{self.actor.name} already did '{step.action}' on model version "
                                           f"#{row.id}; nothing was recorded")
                session.add(ModelAction(version_id=row.id or 0, run_id=row.run_id, action=step.action,
                                        from_status=row.status, to_status=step.to_status, actor=self.actor.name,
                                        actor_source=self.actor.source, reason=step.reason,
                                        details=json_document(step.details) if step.details is not None else None,
                                        created_at=now))
                if row.status != step.to_status:
                    row.status, row.updated_at = step.to_status, now
                touched.append(row)
            session.flush()
            # One event per run (in this one transaction): a run's own events commit to its rows, which is
            # what verifying that run alone, and the guard on the next update, look for.
            t_versions, t_actions = table_of(ModelVersion), table_of(ModelAction)
            for run_id in sorted({r.run_id for r in touched}):
                ids = sorted({r.id for r in touched if r.run_id == run_id and r.id is not None})
                self._append_event(session, event_kind, run_id, {
                    **(payload or {}),
                    "steps": [{"version_id": st.version_id, "action": st.action, "from": st.expected_status,
                               "to": st.to_status, "reason_sha256": hashlib.sha256(st.reason.encode()).hexdigest()}
                              for st in steps if st.version_id in ids]},
                    rows={"model_versions": self._stored(session, "model_versions", t_versions.c.id.in_(ids)),
                          "model_actions": self._stored_ids_after(session, "model_actions", before,
                                                                  t_actions.c.run_id == run_id)})
            return [self._version_record(session, r) for r in touched]

        return self._write(work)

    @staticmethod
    def _version_record(session: Session, row: ModelVersion) -> ModelVersionRecord:
        model = session.get(RegisteredModel, row.model_id)
        actions = [ModelActionRecord.model_validate(a) for a in session.scalars(
            sa.select(ModelAction).where(col(ModelAction.version_id) == row.id).order_by(col(ModelAction.id)))]
        return ModelVersionRecord.model_validate(row).model_copy(
            update={"model": model.name if model is not None else "", "actions": actions})

    def registered_models(self) -> list[RegisteredModelRecord]:
        stmt = sa.select(RegisteredModel).order_by(col(RegisteredModel.name))
        return self._read(lambda s: [RegisteredModelRecord.model_validate(r) for r in s.scalars(stmt)])

    def model_versions(self, *, model: str | None = None, digest: str | None = None, run_id: str | None = None,
                       statuses: Iterable[str] | None = None, version: int | None = None, limit: int | None = None,
                       offset: int = 0, dataset: str | None = None) -> list[ModelVersionRecord]:
        """Model versions, newest first (by registered model name, then version number descending);
        ``dataset``: only versions whose run recorded that data set (by fingerprint)."""
        stmt = (sa.select(ModelVersion, col(RegisteredModel.name))
                .join(RegisteredModel, col(RegisteredModel.id) == col(ModelVersion.model_id)))
        if model is not None:
            stmt = stmt.where(col(RegisteredModel.name) == model)
        if digest is not None:
            stmt = stmt.where(col(ModelVersion.digest) == digest)
        if run_id is not None:
            stmt = stmt.where(col(ModelVersion.run_id) == run_id)
        if version is not None:
            stmt = stmt.where(col(ModelVersion.version) == version)
        if statuses is not None:
            stmt = stmt.where(col(ModelVersion.status).in_(sorted(set(statuses))))
        if dataset is not None:
            stmt = stmt.where(col(ModelVersion.run_id).in_(sa.select(col(Artifact.run_id)).where(
                col(Artifact.dataset_fingerprint) == dataset)))
        stmt = stmt.order_by(col(RegisteredModel.name), col(ModelVersion.version).desc()).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)

        def work(session: Session) -> list[ModelVersionRecord]:
            rows = list(session.execute(stmt).all())
            if not rows:
                return []
            by_version: dict[int, list[ModelActionRecord]] = {}
            ids = [v.id for v, _ in rows]
            for start in range(0, len(ids), 500):
                for a in session.scalars(sa.select(ModelAction).where(
                        col(ModelAction.version_id).in_(ids[start:start + 500])).order_by(col(ModelAction.id))):
                    by_version.setdefault(a.version_id, []).append(ModelActionRecord.model_validate(a))
            return [ModelVersionRecord.model_validate(v).model_copy(
                update={"model": name, "actions": by_version.get(v.id or 0, [])}) for v, name in rows]

        return self._read(work)

    def runs_using_dataset(self, fingerprint: str) -> list[str]:
        """Ids of the runs that recorded this data set (as input), oldest first."""
        stmt = (sa.select(col(Artifact.run_id)).where(col(Artifact.dataset_fingerprint) == fingerprint)
                .group_by(col(Artifact.run_id)).order_by(col(Artifact.run_id)))
        return self._read(lambda s: [str(r) for r in s.scalars(stmt)])

    # ---------------------------------------------------------------------------- privacy ledger
    def privacy_ledger(self, dataset_fingerprint: str | None = None) -> list[LedgerRow]:
        """Every training run's recorded privacy spend per data set it touched, oldest first.

        Built from the stored training evidence (what the accountant computed) joined to the run's data set
        artifacts; nothing is recomputed or taken from the config.
        """

        def work(session: Session) -> list[LedgerRow]:
            datasets_stmt = (sa.select(col(Artifact.run_id), col(Artifact.dataset_fingerprint), col(Artifact.name))
                             .where(col(Artifact.dataset_fingerprint).is_not(None))
                             .order_by(col(Artifact.id)))
            if dataset_fingerprint is not None:
                datasets_stmt = datasets_stmt.where(col(Artifact.dataset_fingerprint) == dataset_fingerprint)
            per_run: dict[str, dict[str, str]] = {}
            for run_id, fingerprint, name in session.execute(datasets_stmt):
                # cast: the WHERE clause above excludes NULL fingerprints
                per_run.setdefault(run_id, {}).setdefault(cast(str, fingerprint), name)
            if not per_run:
                return []
            training: dict[str, dict[str, Any]] = {}
            run_ids = list(per_run)
            for chunk_start in range(0, len(run_ids), 500):
                chunk = run_ids[chunk_start:chunk_start + 500]
                for run_id, document in session.execute(
                        sa.select(col(EvidenceRow.run_id), col(EvidenceRow.document))
                        .where(col(EvidenceRow.stage) == "training", col(EvidenceRow.run_id).in_(chunk))
                        .order_by(col(EvidenceRow.id))):
                    training[run_id] = document  # latest wins
            runs = {r.id: r for r in session.scalars(sa.select(Run).where(col(Run.id).in_(list(training))))}
            ledger: list[LedgerRow] = []
            for run_id, document in training.items():
                run = runs[run_id]
                for fingerprint, name in per_run[run_id].items():
                    ledger.append(LedgerRow(
                        run_id=run_id, dataset_fingerprint=fingerprint, dataset_name=name,
                        dp_enabled=bool(document.get("dp_enabled", False)),
                        epsilon={k: float(v) for k, v in (document.get("epsilon") or {}).items() if v is not None},
                        delta=document.get("delta"), noise_multiplier=document.get("noise_multiplier"),
                        sample_rate=document.get("sample_rate"), steps=document.get("steps"),
                        accountant=document.get("accountant"), started_at=run.started_at,
                        run_status=run.status))
            ledger.sort(key=lambda row: (row.started_at, row.run_id, row.dataset_fingerprint))
            return ledger

        return self._read(work)

    # -------------------------------------------------------------------------------- provenance
    def ancestry(self, artifact_sha256: str) -> AncestryGraph:
        """Where an artifact came from: the run that produced it, that run's inputs and data sets, base
        model, policy, config digest, signatures, and its parent runs (following ``parent_run_id``)."""

        def work(session: Session) -> AncestryGraph:
            artifact = session.scalars(
                sa.select(Artifact).where(col(Artifact.sha256) == artifact_sha256)
                .order_by((col(Artifact.role) == "output").desc(), col(Artifact.id).desc()).limit(1)).first()
            if artifact is None:
                raise NotFoundError(f"no artifact with sha256 {artifact_sha256} in the lineage DB")
            run = session.get(Run, artifact.run_id)
            assert run is not None
            run_artifacts = [ArtifactRecord.model_validate(a) for a in session.scalars(
                sa.select(Artifact).where(col(Artifact.run_id) == run.id).order_by(col(Artifact.id)))]
            fingerprints = sorted({a.dataset_fingerprint for a in run_artifacts if a.dataset_fingerprint})
            datasets = [DatasetRecord.model_validate(d) for d in session.scalars(
                sa.select(Dataset).where(col(Dataset.fingerprint).in_(fingerprints)).order_by(col(Dataset.id)))] if fingerprints else []
            stages = [StageRecord.model_validate(st) for st in session.scalars(
                sa.select(StageExecution).where(col(StageExecution.run_id) == run.id).order_by(col(StageExecution.id)))]
            base = session.get(BaseModelRow, run.base_model_id) if run.base_model_id is not None else None
            signatures = [SignatureRecord.model_validate(sg) for sg in session.scalars(
                sa.select(Signature).where(col(Signature.run_id) == run.id).order_by(col(Signature.id)))]
            parents: list[RunRecord] = []
            seen = {run.id}
            parent_id = run.parent_run_id
            while parent_id is not None and parent_id not in seen:
                seen.add(parent_id)
                parent = session.get(Run, parent_id)
                if parent is None:
                    break
                parents.append(RunRecord.model_validate(parent))
                parent_id = parent.parent_run_id
            run_record = RunRecord.model_validate(run)
            return AncestryGraph(
                artifact=ArtifactRecord.model_validate(artifact), run=run_record, stages=stages,
                inputs=[a for a in run_artifacts if a.role == "input"],
                outputs=[a for a in run_artifacts if a.role == "output"], datasets=datasets,
                base_model=BaseModelRecord.model_validate(base) if base is not None else None,
                policy=run_record.policy, config_digest=run.config_digest, signatures=signatures,
                parents=parents)

        return self._read(work)

    # ------------------------------------------------------------------------------- audit events
    def append_event(self, kind: str, *, run_id: str | None = None, payload: dict[str, Any] | None = None) -> None:
        """Append an event of the caller's own (e.g. ``report.rendered``) to the hash-chained log.

        The payload must not contain personal data or secrets: the log is append-only and cannot be purged.
        ``rows`` and ``actor`` are govern's own keys (row commitments, who did it) and cannot be passed.
        """
        reserved = {"rows", "actor"} & set(payload or {})
        if reserved:
            raise ValueError(f"event payload keys {sorted(reserved)} are reserved for govern's own records")
        self._write(lambda s: self._append_event(s, kind, run_id, payload))

    def chain_head(self) -> tuple[int, str, int]:
        """(newest event id, its hash, event count) as the chain head row states them."""

        def work(session: Session) -> tuple[int, str, int]:
            head = session.get(AuditChainHead, 1)
            if head is None:
                raise LineageError(f"lineage DB {self.display_url}: the audit chain head row is missing")
            return head.last_event_id, head.last_hash, head.events

        return self._read(work)

    def event_hashes(self, *, after_id: int = 0) -> list[tuple[int, str]]:
        """(id, hash) of every event after ``after_id``, oldest first (what a witness lists)."""
        stmt = (sa.select(col(AuditEvent.id), col(AuditEvent.hash)).where(col(AuditEvent.id) > after_id)
                .order_by(col(AuditEvent.id)))
        return self._read(lambda s: [(int(i), str(h)) for i, h in s.execute(stmt)])

    def last_witnessed_event_id(self) -> int:
        """The head event id of the newest witness this DB records having emitted (0 if none)."""
        stmt = (sa.select(col(AuditEvent.payload_json)).where(col(AuditEvent.kind) == "witness.emitted")
                .order_by(col(AuditEvent.id).desc()).limit(1))

        def work(session: Session) -> int:
            text = session.execute(stmt).scalar()
            try:
                return int(json.loads(text)["head_event_id"]) if text else 0
            except (ValueError, KeyError, TypeError):
                return 0

        return self._read(work)

    def created_at(self) -> str:
        """When this DB was created (its ``meta`` row): what tells one lineage DB from another."""

        def work(session: Session) -> str:
            row = session.get(Meta, "schema_created_at")
            return row.value if row is not None else ""

        return self._read(work)

    def recent_events(self, *, limit: int = 50, offset: int = 0) -> list[EventRecord]:
        """A page of the audit log, newest first (the console's Audit log page): by primary key, so a page
        costs the same in a log of any length."""
        stmt = sa.select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit).offset(offset)
        return self._read(lambda s: [self._event_record(e) for e in s.scalars(stmt)])

    @staticmethod
    def _event_record(e: AuditEvent) -> EventRecord:
        try:
            payload = json.loads(e.payload_json)
        except ValueError:
            payload = {"_unreadable": True}
        return EventRecord(id=e.id, created_at=e.created_at, kind=e.kind, run_id=e.run_id,
                           payload=payload if isinstance(payload, dict) else {"value": payload},
                           prev_hash=e.prev_hash, hash=e.hash)

    def events(self, run_id: str | None = None) -> list[EventRecord]:
        stmt = sa.select(AuditEvent).order_by(col(AuditEvent.id))
        if run_id is not None:
            stmt = stmt.where(col(AuditEvent.run_id) == run_id)

        def work(session: Session) -> list[EventRecord]:
            out = []
            for e in session.scalars(stmt):
                try:
                    payload = json.loads(e.payload_json)
                except ValueError:
                    payload = {"_unreadable": True}
                out.append(EventRecord(id=e.id, created_at=e.created_at, kind=e.kind, run_id=e.run_id,
                                       payload=payload if isinstance(payload, dict) else {"value": payload},
                                       prev_hash=e.prev_hash, hash=e.hash))
            return out

        return self._read(work)

    def verify_chain(self, *, check_evidence: bool = True, run_id: str | None = None) -> ChainReport:
        """Recompute every link of the audit log; report each edited, missing or re-linked row by id, and a
        chain head that names an event no longer there (deletion of the newest events).

        With ``check_evidence`` (the default) every row of every table a gate, a report or ``govern verify``
        reads is also checked against the commitment of the (verified) event that wrote it — naming table,
        row and field of each edit, rows no event wrote (inserted by hand) and committed rows that are gone
        — and the evidence documents against the digests their ``stage.finished`` events recorded.

        ``run_id`` limits the row checks to what judging that run reads (its rows, the waivers and data
        sets that apply to it, its base model): the chain itself is always checked whole, since every
        commitment rests on it. This is the check ``govern check``/``report``/``verify --db`` fail closed on.
        """

        def work(session: Session) -> ChainReport:
            problems: list[str] = []
            head = session.get(AuditChainHead, 1)
            if head is None:
                return ChainReport(ok=False, events=0, head_event_id=0, head_hash="",
                                   problems=["the audit chain head row (audit_chain_head id 1) is missing"])
            head_id, head_hash, head_count = head.last_event_id, head.last_hash, head.events
            evidence_digests: dict[Any, tuple[int, str]] = {}
            unverifiable: set[Any] = set()
            commitments: dict[tuple[str, Any], tuple[Commitment, str | None]] = {}
            untrusted: set[tuple[str, Any]] = set()
            untrusted_runs: set[str | None] = set()

            def take(event: Any) -> None:
                """Check one event's own hash; keep what it commits to (rows, evidence digests)."""
                intact = event_hash_text(event.prev_hash, event.id, event.created_at, event.kind, event.run_id,
                                         event.payload_json) == event.hash
                try:
                    payload = json.loads(event.payload_json)
                except ValueError:
                    problems.append(f"event #{event.id} ({event.kind}): payload is not valid JSON — the row "
                                    "was edited")
                    untrusted_runs.add(event.run_id)
                    return
                if not intact:
                    problems.append(f"event #{event.id} ({event.kind}): content does not match its hash — "
                                    "the row was edited")
                    if isinstance(payload, dict):
                        unverifiable.add(payload.get("execution_id"))  # already reported above
                    untrusted.update((t, pk) for t, pk, *_ in commitments_in(payload))
                    # What an edited event committed to is unknown: the rows of its run are not judged again
                    # (the event itself is the problem reported, and verification fails on it).
                    untrusted_runs.add(event.run_id)
                    return
                if event.kind == "stage.finished" and isinstance(payload, dict) and payload.get("evidence_sha256"):
                    evidence_digests[payload.get("execution_id")] = (event.id, payload["evidence_sha256"])
                for table, pk, committed_columns, digest, tags in commitments_in(payload):
                    commitments[(table, pk)] = (Commitment(event.id, event.kind, committed_columns, digest, tags),
                                                event.run_id)

            c = table_of(AuditEvent).c
            stmt = (sa.select(c.id, c.created_at, c.kind, c.run_id, c.payload_json, c.prev_hash, c.hash)
                    .where(c.id <= head_id).order_by(c.id).execution_options(yield_per=5000))
            if run_id is None:
                seen = self._walk_whole_chain(session, stmt, take, problems, head_id, head_hash, head_count)
            else:
                seen = self._walk_run_events(session, stmt, run_id, take, problems, head_id, head_hash)
            if check_evidence:
                evidence_problems, edited_executions = self._check_evidence(session, evidence_digests,
                                                                            unverifiable, run_id)
                problems.extend(evidence_problems)
                problems.extend(self._check_rows(session, commitments, untrusted, untrusted_runs, run_id,
                                                 edited_executions))
            return ChainReport(ok=not problems, events=seen, head_event_id=head_id, head_hash=head_hash,
                               problems=problems)

        return self._read(work)

    @staticmethod
    def _walk_whole_chain(session: Session, stmt: Any, take: Callable[[Any], None], problems: list[str],
                          head_id: int, head_hash: str, head_count: int) -> int:
        """Every event in order: gaps, broken links, and a head that names a missing or other event."""
        prev_hash, prev_id, seen = GENESIS_HASH, 0, 0
        for event in _rows(session.execute(stmt)):
            seen += 1
            if event.id != prev_id + 1:
                missing = f"#{prev_id + 1}" if event.id == prev_id + 2 else f"#{prev_id + 1}..#{event.id - 1}"
                problems.append(f"event(s) {missing} missing: deleted before event #{event.id}")
            if event.prev_hash != prev_hash:
                problems.append(f"event #{event.id} ({event.kind}): prev_hash does not match the hash of the event "
                                f"before it (#{prev_id}) — an event was deleted, inserted or re-hashed")
            take(event)
            prev_hash, prev_id = event.hash, event.id
        if prev_id != head_id:
            missing = f"#{head_id}" if head_id == prev_id + 1 else f"#{prev_id + 1}..#{head_id}"
            problems.append(f"event(s) {missing} missing: the chain head names event #{head_id} as the newest "
                            f"but the log ends at #{prev_id} (the newest events were deleted)")
        elif prev_hash != head_hash:
            problems.append(f"event #{prev_id}: its hash does not match the chain head — the newest event was "
                            "edited or replaced")
        if seen != head_count:
            problems.append(f"the chain head counts {head_count} events but {seen} are stored")
        return seen

    def _walk_run_events(self, session: Session, stmt: Any, run_id: str, take: Callable[[Any], None],
                         problems: list[str], head_id: int, head_hash: str) -> int:
        """Only the events that can commit to what judging ``run_id`` reads — the run's own, those of the runs
        that first recorded its data sets, and the run-less ones (data-set waivers, base models) — each
        checked against its own hash and linked to both neighbours.

        As strong as walking the whole chain for these events (an edited event breaks its own hash; an edited
        and re-hashed one breaks its successor's link; a deleted one leaves a gap next to a neighbour) while
        the cost follows the run, not the DB's age: whole-chain rewrites need a witness either way."""
        c = table_of(AuditEvent).c
        fingerprints = sorted(self._scope_fingerprints(session, run_id))
        related = {run_id}
        if fingerprints:
            related |= {r for r in session.scalars(sa.select(col(Dataset.first_run_id)).where(
                col(Dataset.fingerprint).in_(fingerprints))) if r}
        links: dict[int, tuple[str, str]] = {}
        seen = 0
        for event in _rows(session.execute(stmt.where(sa.or_(c.run_id.in_(sorted(related)), c.run_id.is_(None))))):
            seen += 1
            links[event.id] = (event.prev_hash, event.hash)
            take(event)
        own = set(links)
        neighbours = sorted(({i - 1 for i in own} | {i + 1 for i in own}) - own - {0})
        for start in range(0, len(neighbours), 500):
            chunk = neighbours[start:start + 500]
            for event_id, prev_hash, digest in session.execute(
                    sa.select(c.id, c.prev_hash, c.hash).where(c.id.in_(chunk))):
                links[event_id] = (prev_hash, digest)
        for event_id in sorted(own):
            prev_hash, digest = links[event_id]
            before = links.get(event_id - 1)
            if event_id == 1:
                if prev_hash != GENESIS_HASH:
                    problems.append("event #1: prev_hash is not the genesis hash — the log was rewritten")
            elif before is None:
                problems.append(f"event(s) #{event_id - 1} missing: deleted before event #{event_id}")
            elif before[1] != prev_hash:
                problems.append(f"event #{event_id}: prev_hash does not match the hash of the event before it "
                                f"(#{event_id - 1}) — an event was deleted, inserted or re-hashed")
            after = links.get(event_id + 1)
            if event_id == head_id:
                if digest != head_hash:
                    problems.append(f"event #{event_id}: its hash does not match the chain head — the newest event "
                                    "was edited or replaced")
            elif after is None:
                problems.append(f"event #{event_id + 1} missing: deleted after event #{event_id}")
            elif after[0] != digest:
                problems.append(f"event #{event_id + 1}: prev_hash does not match the hash of event #{event_id} — "
                                f"event #{event_id} was edited and re-hashed")
        if head_id and head_id not in links and session.get(AuditEvent, head_id) is None:
            problems.append(f"event #{head_id} missing: the chain head names it as the newest (the newest events "
                            "were deleted)")
        return seen

    def verify_run(self, run_id: str) -> ChainReport:
        """:meth:`verify_chain` limited to the rows that judging or reporting ``run_id`` reads."""
        return self.verify_chain(run_id=self.resolve_run_id(run_id))

    @staticmethod
    def _scope_fingerprints(session: Session, run_id: str) -> set[str]:
        """The data sets ``run_id`` used (their waivers and ledger rows apply to it)."""
        return {fp for fp in session.scalars(
            sa.select(col(Artifact.dataset_fingerprint)).where(col(Artifact.run_id) == run_id,
                                                          col(Artifact.dataset_fingerprint).is_not(None)))
            if fp}

    @classmethod
    def _scope(cls, session: Session, run_id: str) -> dict[str, Any]:
        """Per table, the condition selecting the rows that judging ``run_id`` reads."""
        run = session.get(Run, run_id)
        fingerprints = sorted(cls._scope_fingerprints(session, run_id))
        scope: dict[str, Any] = {}
        for table, model in COMMITTED_TABLES.items():
            t = table_of(model)
            if table == "runs":
                scope[table] = t.c.id == run_id
            elif table == "waivers":
                scope[table] = t.c.target.in_([run_id, *fingerprints])
            elif table == "datasets":
                scope[table] = t.c.fingerprint.in_(fingerprints)
            elif table == "base_models":
                scope[table] = t.c.id == (run.base_model_id if run is not None else None)
            elif table == "registered_models":
                scope[table] = t.c.id.in_(sa.select(col(ModelVersion.model_id)).where(
                    col(ModelVersion.run_id) == run_id))
            else:
                scope[table] = t.c.run_id == run_id
        return scope

    def _check_rows(self, session: Session, commitments: dict[tuple[str, Any], tuple[Commitment, str | None]],
                    untrusted: set[tuple[str, Any]], untrusted_runs: set[str | None], run_id: str | None,
                    edited_executions: set[Any]) -> list[str]:
        """Every stored row against its newest commitment; then committed rows that are gone."""
        problems: list[str] = []
        scope = self._scope(session, run_id) if run_id is not None else {}
        found: set[tuple[str, Any]] = set()
        for table, model in COMMITTED_TABLES.items():
            t = table_of(model)
            pk_name = next(iter(t.primary_key.columns)).name
            stmt = sa.select(t).order_by(t.c[pk_name]).execution_options(yield_per=2000)
            if table in scope:
                stmt = stmt.where(scope[table])
            for row in session.execute(stmt).mappings():
                key = (table, row[pk_name])
                found.add(key)
                entry = commitments.get(key)
                if (entry is None and key in untrusted) or \
                        row.get("run_id", row["id"] if table == "runs" else None) in untrusted_runs - {None}:
                    continue  # the event that wrote it is itself reported as edited
                if table == "evidence" and row["execution_id"] in edited_executions:
                    continue  # already reported against the digest its stage.finished event recorded
                problem = row_problem(table, row[pk_name], row, entry[0] if entry else None)
                if problem is not None:
                    problems.append(problem)
        for (table, pk), (commitment, event_run) in commitments.items():
            if (table, pk) in found or (run_id is not None and event_run != run_id):
                continue
            problems.append(missing_problem(table, pk, commitment))
        return problems

    def _guard(self, session: Session, table: str, pk: Any, run_id: str | None) -> None:
        """Refuse to update a row that was edited outside govern since govern last wrote it: re-committing
        it would launder the edit into the record."""
        if not self.commit_rows:
            return
        t = table_of(COMMITTED_TABLES[table])
        stmt = (sa.select(col(AuditEvent.id), col(AuditEvent.kind), col(AuditEvent.payload_json))
                .where(col(AuditEvent.run_id) == run_id, col(AuditEvent.payload_json).like(f'%"{table}":%'))
                .order_by(col(AuditEvent.id).desc()))
        commitment: Commitment | None = None
        for event_id, kind, text in session.execute(stmt):
            try:
                payload = json.loads(text)
            except ValueError:
                continue
            for t_name, key, columns, digest, tags in commitments_in(payload):
                if t_name == table and key == pk:
                    commitment = Commitment(event_id, kind, columns, digest, tags)
            if commitment is not None:
                break
        stored = self._stored(session, table, t.c[next(iter(t.primary_key.columns)).name] == pk)
        problem = row_problem(table, pk, stored[0], commitment) if stored else None
        if problem is not None:
            raise LineageError(f"lineage DB {self.display_url}: refusing to record over a tampered row: {problem}."
                               " Run `govern lineage verify`")

    @staticmethod
    def _check_evidence(session: Session, recorded: dict[Any, tuple[int, str]], unverifiable: set[Any],
                        run_id: str | None = None) -> tuple[list[str], set[Any]]:
        """Evidence rows against the digests the (already verified) audit log recorded for them. Rows whose
        recording event is itself broken are skipped: that event is already reported. Also returns the
        execution ids whose evidence was found edited (the row check then does not report them twice)."""
        problems: list[str] = []
        edited: set[Any] = set()
        stmt = (sa.select(col(EvidenceRow.id), col(EvidenceRow.execution_id), col(EvidenceRow.run_id), col(EvidenceRow.stage),
                          col(EvidenceRow.document))
                .order_by(col(EvidenceRow.id)).execution_options(yield_per=2000))
        if run_id is not None:
            stmt = stmt.where(col(EvidenceRow.run_id) == run_id)
            in_run = set(session.scalars(sa.select(col(StageExecution.id)).where(col(StageExecution.run_id) == run_id)))
            recorded = {k: v for k, v in recorded.items() if k in in_run}
        found: set[Any] = set()
        for row_id, execution_id, row_run_id, stage, document in session.execute(stmt):
            entry = recorded.get(execution_id)
            where = f"evidence row #{row_id} (run {row_run_id}, stage {stage})"
            if entry is None:
                if execution_id in unverifiable:
                    continue
                problems.append(f"{where}: no audit event recorded it — it was inserted outside govern")
                edited.add(execution_id)
                continue
            found.add(execution_id)
            if _digest(document) != entry[1]:
                problems.append(f"{where}: content does not match the digest recorded by event #{entry[0]} — "
                                "the evidence was edited")
                edited.add(execution_id)
        for execution_id, (event_id, _) in sorted(recorded.items(), key=lambda kv: kv[1][0]):
            if execution_id not in found:
                problems.append(f"evidence of stage execution #{execution_id} (recorded by event #{event_id}) "
                                "is missing — the evidence row was deleted")
        return problems, edited


# ------------------------------------------------------------------------------------ module helpers
class _IdTaken(Exception):
    """A freshly drawn run id collided with an existing one (retry with a new one)."""


def _rows(result: Iterable[T]) -> Iterator[T]:
    yield from result


def _waiver_record(w: Waiver) -> WaiverRecord:
    return WaiverRecord(id=w.id or 0, target=w.target, rule_id=w.rule_id, by=w.granted_by, reason=w.reason,
                        until=w.until, created_at=w.created_at, ended_at=w.ended_at, ended_by=w.ended_by,
                        end_reason=w.end_reason)


__all__ = [
    "GENESIS_HASH",
    "LineageStore",
    "default_db_url",
    "event_hash",
    "new_run_id",
]
