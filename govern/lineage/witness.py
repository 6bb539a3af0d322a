"""Witnessed chain heads: what makes truncation and re-chaining of the audit log detectable.

A hash chain kept in the same DB it protects cannot stop someone who rewrites all of it: delete the
newest events (or a whole run's) and fix ``audit_chain_head``, or edit a row and re-hash every event
after it, and the chain verifies again. A *witness* can: after each run, check, waiver and signature,
govern writes a statement of the chain head — event count, last event id and hash, plus the hash of
every event since the previous witness — signed with the run's signing key where one is configured.
The statement goes beside the reports (``reports/witness/``, or ``GOVERN_WITNESS_DIR``) and, optionally,
to second stores (``GOVERN_WITNESS_TO``: folders, or lineage DB URLs where it is recorded as an event of
that DB's own chain). Its digest is recorded in the DB it witnesses.

``govern lineage verify --witness FILE|DIR|DB_URL ...`` then proves the DB still extends every witnessed
head: a deleted tail, a deleted run or a re-hashed chain fails at the first missing or differing event.
A witness is only as good as where it is kept: one the attacker can also rewrite proves nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from govern.config import canonical_json
from govern.errors import GovernError

if TYPE_CHECKING:
    from govern.lineage.store import LineageStore

log = logging.getLogger("govern.lineage.witness")

WITNESS_TYPE: Literal["https://govern.dev/witness/v1"] = "https://govern.dev/witness/v1"
#: Event hashes listed in one statement at most; a longer stretch is sampled evenly (head always kept).
MAX_LISTED_EVENTS = 50_000


class WitnessedHead(BaseModel):
    event_id: int
    hash: str
    events: int


class WitnessStatement(BaseModel):
    """One witness: the chain head of one lineage DB at one moment."""

    type: Literal["https://govern.dev/witness/v1"] = Field(default=WITNESS_TYPE, alias="_type")
    db: str = Field(description="The DB witnessed (password masked).")
    db_created_at: str = Field(description="The DB's creation time from its meta table: tells DBs apart.")
    head: WitnessedHead
    events: list[tuple[int, str]] = Field(
        default_factory=list, description="(event id, hash) of every event since the previous witness.")
    reason: str
    run_id: str | None = None
    created_at: datetime
    actor: dict[str, Any] = Field(default_factory=dict)

    model_config = {"populate_by_name": True}


class WitnessOut(BaseModel):
    path: str
    sha256: str
    bundle_path: str | None = None
    copies: list[str] = Field(default_factory=list)


def witness_key() -> Path | None:
    """The private key that signs witnesses outside a run (``GOVERN_WITNESS_KEY``), if any."""
    value = os.environ.get("GOVERN_WITNESS_KEY", "").strip()
    return Path(value) if value else None


def default_witness_dir() -> Path:
    return Path(os.environ.get("GOVERN_WITNESS_DIR") or Path.cwd() / "reports" / "witness")


def build_statement(store: LineageStore, reason: str, run_id: str | None) -> WitnessStatement:
    head_id, head_hash, count = store.chain_head()
    since = store.last_witnessed_event_id()
    listed = store.event_hashes(after_id=since)
    if len(listed) > MAX_LISTED_EVENTS:
        step = -(-len(listed) // MAX_LISTED_EVENTS)
        listed = listed[::step] + ([listed[-1]] if (len(listed) - 1) % step else [])
    return WitnessStatement(db=store.display_url, db_created_at=store.created_at(), reason=reason, run_id=run_id,
                            head=WitnessedHead(event_id=head_id, hash=head_hash, events=count), events=listed,
                            created_at=datetime.now(UTC), actor=store.actor.model_dump(mode="json"))


def emit_witness(store: LineageStore, reason: str, *, run_id: str | None = None, sign_key: Path | None = None,
                 out_dir: Path | None = None, targets: Iterable[str] | None = None) -> WitnessOut | None:
    """Write (and sign) a witness of the chain head and record its digest; ``None`` when it could not be
    written — a missing witness must not lose the run it follows, so the failure is logged, not raised."""
    try:
        return _emit(store, reason, run_id=run_id, sign_key=sign_key, out_dir=out_dir, targets=targets)
    except (OSError, GovernError, ValueError) as exc:
        log.warning("could not write the chain-head witness (%s): %s", reason, exc)
        return None


def _emit(store: LineageStore, reason: str, *, run_id: str | None, sign_key: Path | None, out_dir: Path | None,
          targets: Iterable[str] | None) -> WitnessOut:
    statement = build_statement(store, reason, run_id)
    folder = out_dir or default_witness_dir()
    folder.mkdir(parents=True, exist_ok=True)
    text = canonical_json(statement.model_dump(mode="json", by_alias=True)) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()
    path = folder / f"witness-{statement.head.event_id:08d}-{statement.head.hash[:12]}.json"
    path.write_text(text)
    bundle: Path | None = None
    if sign_key is not None:
        from govern.signing.signing import sign_artifact

        bundle = path.with_name(path.name + ".sigstore.json")
        sign_artifact(path, "key", private_key=sign_key, out=bundle)
    copies: list[str] = []
    env_targets = [t.strip() for t in os.environ.get("GOVERN_WITNESS_TO", "").split(",") if t.strip()]
    for target in [*(targets or []), *env_targets]:
        copies.append(_copy_to(target, path, bundle, statement, digest))
    store.append_event("witness.emitted", run_id=run_id, payload={
        "sha256": digest, "reason": reason, "head_event_id": statement.head.event_id,
        "head_hash": statement.head.hash, "file": path.name, "signed": bundle is not None, "copies": len(copies)})
    return WitnessOut(path=str(path), sha256=digest, bundle_path=str(bundle) if bundle else None, copies=copies)


def _copy_to(target: str, path: Path, bundle: Path | None, statement: WitnessStatement, digest: str) -> str:
    if "://" in target:
        from govern.lineage.store import LineageStore

        with LineageStore.open(target) as second:
            second.append_event("witness.received", payload={
                "witnessed_db": statement.db, "db_created_at": statement.db_created_at, "sha256": digest,
                "statement": statement.model_dump(mode="json", by_alias=True)})
            return second.display_url
    folder = Path(target)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, folder / path.name)
    if bundle is not None:
        shutil.copy2(bundle, folder / bundle.name)
    return str(folder / path.name)


# ------------------------------------------------------------------------------------------ verify
class WitnessCheck(BaseModel):
    source: str
    statements: int = 0
    problems: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def load_statements(source: str) -> list[tuple[str, WitnessStatement]]:
    """Witness statements from a file, a folder of them, or a second lineage DB (``witness.received``)."""
    if "://" in source:
        from govern.lineage.store import LineageStore

        with LineageStore.open(source, read_only=True) as second:
            found = []
            for event in second.events():
                if event.kind == "witness.received":
                    found.append((f"{second.display_url} event #{event.id}",
                                  _parse(event.payload.get("statement"), f"{source} event #{event.id}")))
            return found
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.glob("witness-*.json") if not p.name.endswith(".sigstore.json"))
        return [(str(p), _read(p)) for p in files]
    if not path.is_file():
        raise GovernError(f"--witness {source}: no such file, folder or DB")
    return [(str(path), _read(path))]


def _read(path: Path) -> WitnessStatement:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise GovernError(f"--witness {path}: not a govern witness statement ({exc})") from None
    return _parse(data, str(path))


def _parse(data: Any, where: str) -> WitnessStatement:
    try:
        return WitnessStatement.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise GovernError(f"--witness {where}: not a govern witness statement "
                          f"({'.'.join(map(str, first['loc']))}: {first['msg']})") from None


def verify_witnesses(store: LineageStore, sources: list[str], *, public_key: Path | None = None) -> list[WitnessCheck]:
    """Check that the DB still extends every witnessed head (and that signed witnesses verify)."""
    stored = dict(store.event_hashes(after_id=0))
    last_id = max(stored) if stored else 0
    created = store.created_at()
    checks: list[WitnessCheck] = []
    for source in sources:
        check = WitnessCheck(source=source)
        for where, statement in load_statements(source):
            check.statements += 1
            if statement.db_created_at != created:
                check.problems.append(f"{where}: witnesses a DB created {statement.db_created_at}, but this DB was "
                                      f"created {created} — the DB was replaced (or this is another DB's witness)")
                continue
            _check_signature(where, public_key, check)
            expected = sorted({*statement.events, (statement.head.event_id, statement.head.hash)})
            for event_id, digest in expected:
                if event_id not in stored:
                    check.problems.append(
                        f"{where}: witnessed event #{event_id} is missing — the DB's log now ends at #{last_id} "
                        "(its newest events, or a run's, were deleted)" if event_id > last_id else
                        f"{where}: witnessed event #{event_id} is missing — events were deleted")
                    break
                if stored[event_id] != digest:
                    check.problems.append(f"{where}: event #{event_id} differs from the witnessed hash — the chain "
                                          "was rewritten (re-hashed) from this event on")
                    break
        checks.append(check)
    return checks


def _check_signature(where: str, public_key: Path | None, check: WitnessCheck) -> None:
    if "://" in where:
        return  # recorded in a second DB: that DB's own chain (and its witnesses) protect it
    path = Path(where)
    bundle = path.with_name(path.name + ".sigstore.json")
    if not bundle.is_file():
        check.notes.append(f"{where}: unsigned (no signing key was configured when it was written)")
        return
    if public_key is None:
        check.notes.append(f"{where}: signed, signature not checked (pass --witness-key PUBLIC.pem)")
        return
    from govern.signing.verifying import Trust, verify

    report = verify(path, bundle, Trust(public_key=public_key))
    if not report.verified:
        failed = "; ".join(c.detail for c in report.checks if not c.ok)
        check.problems.append(f"{where}: its signature does not verify with {public_key}: {failed}")
