"""Row commitments: every row that a gate, a report or ``govern verify`` reads is committed to by the
hash-chained audit event that wrote it, so editing, inserting or deleting a row is detected by name.

Why not only the event log: the log records *that* something happened (``decision.recorded``), but the
gates and reports read the tables (``decisions.decision``, ``runs.policy_document``, ``waivers``). An
attacker with write access to the DB edits those, not the log. So each write puts, in the payload of the
event it appends in the same transaction, a commitment per row it created or changed:

    "rows": {"runs": {"columns": [...], "rows": [[pk, sha256, tags], ...]}}

- ``sha256`` covers the row's values in ``columns`` (canonical JSON): this is what makes an edit
  detectable;
- ``tags`` are four hex digits per column (a short hash of each value): they only say *which* field
  changed, so a mismatch can be named (a 1-in-65,536 tag collision still fails on ``sha256`` and is
  reported as "a field changed");
- ``columns`` are recorded with the commitment, so a later migration that adds a column does not break
  the commitments of rows written before it.

The newest commitment of a row (by event id) is the one it must match: a row updated by govern (a run's
status) is re-committed by the event that updated it.

This module is pure: it turns row values into commitments and compares them; ``store.py`` reads the rows.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pydantic_core import to_jsonable_python
from sqlmodel import SQLModel

from govern.config import canonical_json
from govern.lineage import models as m
from govern.lineage.models import table_of

#: Every table whose rows are committed to, by table name. Rows of these tables that no event commits
#: to were inserted outside govern. (``audit_events``/``audit_chain_head`` are the chain itself; ``meta``
#: holds nothing a gate or report reads.)
COMMITTED_TABLES: dict[str, type[SQLModel]] = {
    str(model.__tablename__): model
    for model in (m.Run, m.StageExecution, m.Artifact, m.EvidenceRow, m.Decision, m.Finding, m.Waiver, m.PIIFinding,
                  m.Signature, m.Dataset, m.BaseModelRow, m.RegisteredModel, m.ModelVersion, m.ModelAction)
}

_TAG_HEX = 4


def _columns(table: str) -> list[str]:
    return [c.name for c in table_of(COMMITTED_TABLES[table]).columns]


def _primary_key(table: str) -> str:
    keys: list[str] = [str(c.name) for c in table_of(COMMITTED_TABLES[table]).primary_key.columns]
    assert len(keys) == 1, table
    return keys[0]


def json_document(value: Any) -> Any:
    """JSON-safe copy of ``value`` for storage: pydantic models, paths and dates become JSON; NaN and ±inf
    become ``None`` (PostgreSQL's JSONB and canonical JSON reject them)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return clean(to_jsonable_python(value, fallback=str))


def _plain(value: Any) -> Any:
    """The canonical form of a stored value: what it reads back as on SQLite and PostgreSQL alike."""
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return aware.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    return json_document(value)


def _sha(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def row_values(table: str, row: Any, columns: Iterable[str] | None = None) -> dict[str, Any]:
    """The canonical values of ``row`` (an ORM object or a mapping) for the given (or all) columns."""
    names = list(columns) if columns is not None else _columns(table)
    if isinstance(row, Mapping):
        return {name: _plain(row.get(name)) for name in names}
    return {name: _plain(getattr(row, name, None)) for name in names}


def commit_rows(table: str, rows: Iterable[Any]) -> dict[str, Any]:
    """The commitment block of one table for an event payload."""
    columns = sorted(_columns(table))
    pk = _primary_key(table)
    entries = []
    for row in rows:
        values = row_values(table, row, columns)
        tags = "".join(_sha(values[c])[:_TAG_HEX] for c in columns)
        entries.append([values[pk], _sha(values), tags])
    return {"columns": columns, "rows": entries}


@dataclass(frozen=True)
class Commitment:
    """The newest commitment of one row, as the verified audit log holds it."""

    event_id: int
    event_kind: str
    columns: tuple[str, ...]
    sha256: str
    tags: str


def commitments_in(payload: Any) -> Iterable[tuple[str, Any, tuple[str, ...], str, str]]:
    """``(table, pk, columns, sha256, tags)`` for every row an event payload commits to."""
    if not isinstance(payload, dict):
        return
    blocks = payload.get("rows")
    if not isinstance(blocks, dict):
        return
    for table, block in blocks.items():
        if table not in COMMITTED_TABLES or not isinstance(block, dict):
            continue
        columns = tuple(str(c) for c in block.get("columns") or [])
        for entry in block.get("rows") or []:
            if isinstance(entry, list) and len(entry) == 3:
                yield table, entry[0], columns, str(entry[1]), str(entry[2])


def row_problem(table: str, pk: Any, row: Any, commitment: Commitment | None) -> str | None:
    """What is wrong with one stored row, or ``None`` when it matches its commitment."""
    where = f"{table} row {pk!r}"
    if commitment is None:
        return f"{where}: no audit event commits to it — the row was inserted outside govern"
    values = row_values(table, row, commitment.columns)
    if _sha(values) == commitment.sha256:
        return None
    changed = [column for i, column in enumerate(commitment.columns)
               if _sha(values[column])[:_TAG_HEX] != commitment.tags[i * _TAG_HEX:(i + 1) * _TAG_HEX]]
    fields = (f"field(s) {', '.join(changed)}" if changed else "a field")
    return (f"{where}: {fields} changed since event #{commitment.event_id} ({commitment.event_kind}) "
            "committed to it — the row was edited outside govern")


def missing_problem(table: str, pk: Any, commitment: Commitment) -> str:
    return (f"{table} row {pk!r} (committed by event #{commitment.event_id}, {commitment.event_kind}) is "
            "missing — the row was deleted outside govern")
