"""The audit log is hash-chained: editing or deleting any event row — including the newest — is detected
and the row is named. The tampering is done with raw SQL, as someone with DB access would."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from govern.lineage import LineageStore
from govern.lineage.store import event_hash


def _seed(store: LineageStore) -> int:
    """A realistic little history: 2 runs with stages, a decision and a status each (12 events)."""
    for name in ("first", "second"):
        run_id = store.create_run(name=name)
        exe = store.start_stage(run_id, "data", "sha256:in")
        store.finish_stage(exe, "completed", evidence={"rows": 10})
        store.append_event("report.rendered", run_id=run_id, payload={"format": "md"})
        store.set_run_status(run_id, "completed", decision="pass")
        store.set_run_status(run_id, "completed", decision="pass")
    report = store.verify_chain()
    assert report.ok, report.problems
    return report.events


def _sql(store: LineageStore, statement: str, **params: object) -> None:
    with store.engine.connect() as conn, conn.begin():
        conn.execute(sa.text(statement), params)


def _problems_after(store: LineageStore, statement: str, **params: object) -> list[str]:
    """Seed the history, tamper with it by one SQL ``statement``, and return what ``verify_chain`` names
    (it must not pass)."""
    _seed(store)
    _sql(store, statement, **params)
    report = store.verify_chain()
    assert not report.ok
    return report.problems


def test_untouched_chain_verifies(store: LineageStore) -> None:
    assert _seed(store) == 12
    report = store.verify_chain()
    assert report.ok and report.problems == [] and report.head_event_id == 12


def test_edited_event_payload_is_detected_and_named(store: LineageStore) -> None:
    problems = _problems_after(store, "UPDATE audit_events SET payload_json = :p WHERE id = 3",
                               p=json.dumps({"execution_id": 1, "stage": "data", "status": "failed"}))
    assert any(p.startswith("event #3 (stage.finished)") and "edited" in p for p in problems)
    assert len(problems) == 1  # the rows after it still link to its stored hash


def test_edited_event_kind_is_detected(store: LineageStore) -> None:
    problems = _problems_after(store, "UPDATE audit_events SET kind = 'run.deleted' WHERE id = 7")
    assert any(p.startswith("event #7 (run.deleted)") for p in problems)


def test_edited_and_rehashed_event_breaks_the_next_link(store: LineageStore) -> None:
    _seed(store)
    with store.engine.connect() as conn, conn.begin():
        row = conn.execute(sa.text("SELECT id, created_at, kind, run_id, prev_hash FROM audit_events "
                                   "WHERE id = 5")).mappings().one()
        payload = {"status": "completed", "decision": "pass", "error_sha256": None, "forged": True}
        events = {e.id: e for e in store.events()}
        forged = event_hash(row["prev_hash"], 5, events[5].created_at, row["kind"], row["run_id"], payload)
        conn.execute(sa.text("UPDATE audit_events SET payload_json = :p, hash = :h WHERE id = 5"),
                     {"p": json.dumps(payload), "h": forged})
    problems = store.verify_chain().problems
    assert any(p.startswith("event #6") and "prev_hash" in p and "#5" in p for p in problems)


def test_deleted_middle_event_is_detected_and_named(store: LineageStore) -> None:
    problems = _problems_after(store, "DELETE FROM audit_events WHERE id = 4")
    assert any("event(s) #4 missing" in p and "before event #5" in p for p in problems)
    assert any(p.startswith("event #5") and "prev_hash" in p for p in problems)
    assert any("counts 12 events but 11" in p for p in problems)


def test_deleted_last_event_is_detected_and_named(store: LineageStore) -> None:
    problems = _problems_after(store, "DELETE FROM audit_events WHERE id = 12")
    assert any("event(s) #12 missing" in p and "log ends at #11" in p for p in problems)


def test_deleted_last_events_then_new_append_still_detected(store: LineageStore) -> None:
    _seed(store)
    _sql(store, "DELETE FROM audit_events WHERE id >= 11")
    store.append_event("note", payload={"n": 1})  # links to the head's (deleted) #12, gets id 13
    problems = store.verify_chain().problems
    assert any("event(s) #11..#12 missing" in p for p in problems)
    assert any(p.startswith("event #13") and "prev_hash" in p for p in problems)


def test_deleted_chain_head_is_reported(store: LineageStore) -> None:
    assert "head row" in _problems_after(store, "DELETE FROM audit_chain_head")[0]
    with pytest.raises(Exception, match="chain head row is missing"):
        store.create_run(name="after tampering")


def test_edited_or_deleted_evidence_is_detected_against_the_logged_digest(store: LineageStore) -> None:
    _seed(store)  # two runs, one evidence row each (ids 1 and 2), both recorded by stage.finished events
    _sql(store, "UPDATE evidence SET document = :d WHERE id = 1", d=json.dumps({"rows": 10_000}))
    problems = store.verify_chain().problems
    assert len(problems) == 1 and problems[0].startswith("evidence row #1 (run ") and "edited" in problems[0]
    assert "event #3" in problems[0]
    _sql(store, "DELETE FROM evidence WHERE id = 2")
    problems = store.verify_chain().problems
    assert any("evidence of stage execution #2" in p and "deleted" in p for p in problems)
    assert store.verify_chain(check_evidence=False).ok


def test_hashing_the_stored_text_equals_hashing_the_parsed_payload(store: LineageStore) -> None:
    """Verification hashes each event's stored canonical text (fast path); it must be the same link."""
    from govern.lineage.store import event_hash_text

    _seed(store)
    for e in store.events():
        with store.engine.connect() as conn:
            text = conn.execute(sa.text("SELECT payload_json FROM audit_events WHERE id = :i"), {"i": e.id}).scalar_one()
        assert event_hash_text(e.prev_hash, e.id, e.created_at, e.kind, e.run_id, text) == e.hash
        assert event_hash(e.prev_hash, e.id, e.created_at, e.kind, e.run_id, e.payload) == e.hash
