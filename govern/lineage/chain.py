"""The audit chain's links: how an event's hash covers its content and the event before it.

``hash = sha256(prev_hash + canonical_json({created_at, id, kind, payload, run_id}))``; the first event
links to :data:`GENESIS_HASH`. Kept apart from the store so that anyone can recompute a link (a witness,
an auditor's own script) without a database.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from govern.config import canonical_json

#: ``prev_hash`` of the first audit event (must match migration 0001).
GENESIS_HASH = "0" * 64


def _event_time(value: datetime) -> str:
    """The canonical text of an event's timestamp inside its hash (microseconds, UTC)."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(prev_hash: str, event_id: int, created_at: datetime, kind: str, run_id: str | None,
               payload: Any) -> str:
    """``sha256(prev_hash + canonical_json(content))`` — the link of the audit chain."""
    content = {"id": event_id, "created_at": _event_time(created_at), "kind": kind, "run_id": run_id,
               "payload": payload}
    return hashlib.sha256((prev_hash + canonical_json(content)).encode()).hexdigest()


def event_hash_text(prev_hash: str, event_id: int, created_at: datetime, kind: str, run_id: str | None,
                    payload_json: str) -> str:
    """:func:`event_hash` over the payload's stored canonical text, without parsing and re-serialising it.

    The same bytes as ``canonical_json(content)`` (keys sorted: created_at, id, kind, payload, run_id) when
    ``payload_json`` is canonical — which is how govern stores it; a stored text that is not (an edit) hashes
    differently, as it should. Verification hashes every event, so this is its hot path."""
    dump = json.dumps
    text = (f'{{"created_at":{dump(_event_time(created_at), ensure_ascii=False)},"id":{int(event_id)},'
            f'"kind":{dump(kind, ensure_ascii=False)},"payload":{payload_json},'
            f'"run_id":{dump(run_id, ensure_ascii=False)}}}')
    return hashlib.sha256((prev_hash + text).encode()).hexdigest()
