"""Someone with write access to the lineage DB edits, inserts or deletes rows with plain SQL.

Every row a gate, a report or `govern verify` reads is committed to by the hash-chained event that wrote
it: `govern lineage verify` names table, row and field of each change; `govern check`, `govern report`
and `govern verify --db` fail closed on the run they judge. The tampering is done the way an attacker
would, with sqlite3 on the file (no govern code, no foreign-key cascades)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest

from govern import api
from govern.errors import LineageError, RecordIntegrityError
from govern.lineage import LineageStore
from govern.lineage.store import event_hash
from tests.report.populate import RecordedDB, record_governed_db

Cli = Callable[..., tuple[int, str, str]]


@dataclass
class Recorded(RecordedDB):
    dataset_waiver: int


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """A blocked governed run (the fairness rule fails, no waiver for it) with every kind of row: stages,
    evidence, artifacts, data sets, base model, PII findings, decisions and findings, a signature, and a
    waiver on a data-set fingerprint."""
    db = record_governed_db(tmp_path_factory.mktemp("pristine"), waive_fairness=False)
    with LineageStore.open(db.url) as store:
        waiver = store.add_waiver(target=db.run.train_fingerprint, rule_id="pii.block.US_SSN", by="dpo@example.org",
                                  reason="synthetic numbers", until=date.today() + timedelta(days=30))
        assert store.verify_chain().ok
    assert db.run.decision == "block"
    yield Recorded(url=db.url, root=db.root, run=db.run, dataset_waiver=waiver)


@pytest.fixture
def db(pristine: Recorded, tmp_path: Path) -> tuple[Path, str]:
    """A private copy of the pristine DB to attack: (file, URL)."""
    target = tmp_path / "lineage.db"
    shutil.copy(pristine.path, target)
    return target, f"sqlite:///{target}"


def attack(path: Path, statement: str, params: tuple[object, ...] = ()) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(statement, params)


def scalar(path: Path, query: str, params: tuple[object, ...] = ()) -> object:
    with sqlite3.connect(path) as conn:
        return conn.execute(query, params).fetchone()[0]


# ------------------------------------------------------------------------------------------------ edits
EDITS = [
    # (table, SQL run against the blocked run, fields the problem must name)
    ("decisions", "UPDATE decisions SET decision = 'pass'", ["decision"]),
    ("runs", "UPDATE runs SET decision = 'pass', status = 'completed'", ["decision", "status"]),
    ("runs", "UPDATE runs SET policy_document = json_set(policy_document, '$.evaluation.min_accuracy', 0.0)",
     ["policy_document"]),
    ("findings", "UPDATE findings SET status = 'pass' WHERE status = 'fail'", ["status"]),
    ("findings", "UPDATE findings SET observed = '0.01' WHERE status = 'fail'", ["observed"]),
    ("findings", "UPDATE findings SET message = 'all good' WHERE status = 'fail'", ["message"]),
    ("stage_executions", "UPDATE stage_executions SET outputs = '{\"train_path\": \"/tmp/evil.jsonl\"}' "
                         "WHERE id = (SELECT min(id) FROM stage_executions)", ["outputs"]),
    ("artifacts", "UPDATE artifacts SET sha256 = 'ab' || substr(sha256, 3) WHERE kind = 'adapter'", ["sha256"]),
    ("datasets", "UPDATE datasets SET rows = 1", ["rows"]),
    ("pii_findings", "UPDATE pii_findings SET entity_type = 'PERSON', action = 'allow'", ["action", "entity_type"]),
    ("signatures", "UPDATE signatures SET subject_digest = 'sha256:' || printf('%064d', 1)",
     ["subject_digest"]),
    ("waivers", "UPDATE waivers SET until = '2999-12-31', rule_id = 'fairness.max_difference.equalized_odds_difference'",
     ["rule_id", "until"]),
    ("base_models", "UPDATE base_models SET digest = 'sha256:' || printf('%064d', 0)", ["digest"]),
]


@pytest.mark.parametrize(("table", "statement", "fields"), EDITS, ids=[f"{t}:{','.join(f)}" for t, _, f in EDITS])
def test_an_edited_row_is_named_by_table_row_and_field(db: tuple[Path, str], table: str, statement: str,
                                                       fields: list[str], govern_cli: Cli) -> None:
    path, url = db
    attack(path, statement)
    code, out, _ = govern_cli("lineage", "verify", "--db", url)
    assert code == 1, out
    lines = [line for line in out.splitlines() if line.strip().startswith(f"- {table} row ")]
    assert lines, out
    assert any(f"field(s) {', '.join(fields)} changed" in line and "edited outside govern" in line
               for line in lines), out


def test_edited_evidence_is_named_and_check_does_not_decide_on_it(db: tuple[Path, str], pristine: Recorded,
                                                                  govern_cli: Cli) -> None:
    path, url = db
    document = json.loads(str(scalar(path, "SELECT document FROM evidence WHERE stage = 'fairness'")))
    document["disparities"] = []
    attack(path, "UPDATE evidence SET document = ? WHERE stage = 'fairness'", (json.dumps(document),))
    code, out, _ = govern_cli("lineage", "verify", "--db", url)
    assert code == 1 and "stage fairness): content does not match the digest" in out
    code, out, err = govern_cli("check", pristine.run.run_id, "--db", url)
    assert code == 2 and "record of run" in err and "stage fairness" in err and "nothing was judged" in err


@pytest.mark.parametrize("statement", [
    "UPDATE decisions SET decision = 'pass'",
    "UPDATE runs SET decision = 'pass', status = 'completed'",
    "UPDATE findings SET status = 'pass' WHERE status = 'fail'",
    "UPDATE runs SET policy_document = json_set(policy_document, '$.fairness.max_difference', json('{}'))",
])
def test_check_report_and_verify_fail_closed_on_an_edited_blocked_run(
        db: tuple[Path, str], pristine: Recorded, statement: str, govern_cli: Cli, tmp_path: Path) -> None:
    path, url = db
    run_id = pristine.run.run_id
    attack(path, statement)
    code, _, err = govern_cli("check", run_id, "--db", url)
    assert code == 2, err
    assert "is broken" in err and "nothing was judged" in err
    assert "check" not in {str(k) for k in _decision_kinds(path)}  # nothing was decided on the edited record
    with pytest.raises(RecordIntegrityError) as raised:  # the API refuses the same way
        api.check(run_id, db_url=url)
    assert raised.value.problems and raised.value.exit_code == 2
    code, _, err = govern_cli("report", run_id, "--format", "md", "--out", str(tmp_path), "--db", url)
    assert code == 2 and "is broken" in err
    first_screen = (tmp_path / f"{run_id}.md").read_text().splitlines()[:6]
    assert any("RECORD BROKEN" in line for line in first_screen), first_screen
    code, _, _ = govern_cli("report", run_id, "--format", "html", "--out", str(tmp_path), "--db", url)
    html = (tmp_path / f"{run_id}.html").read_text()
    assert code == 2 and html.index("RECORD BROKEN") < html.index('id="decision"')


def _decision_kinds(path: Path) -> list[object]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT kind FROM decisions")]


def test_verify_db_fails_on_an_edited_decision(db: tuple[Path, str], pristine: Recorded) -> None:
    from govern.signing.verifying import (  # the --db part of `govern verify`
        VerificationReport,
        _check_lineage,
    )

    path, url = db
    run_id = pristine.run.run_id
    intact = VerificationReport(subject="model", kind="model")
    _check_lineage(url, run_id, [], intact)
    assert all(c.ok for c in intact.checks if c.name == "lineage-integrity")
    attack(path, "UPDATE decisions SET decision = 'pass'")
    attack(path, "UPDATE runs SET decision = 'pass', status = 'completed'")
    broken = VerificationReport(subject="model", kind="model")
    _check_lineage(url, run_id, [], broken)
    failed = [c.detail for c in broken.checks if not c.ok]
    assert any("record broken: decisions row" in d for d in failed), failed
    assert any("record broken: runs row" in d for d in failed), failed
    assert not broken.verified


# -------------------------------------------------------------------------------------- inserted rows
def test_a_waiver_inserted_by_hand_is_detected_and_not_honoured(db: tuple[Path, str], pristine: Recorded,
                                                                 govern_cli: Cli) -> None:
    path, url = db
    run_id = pristine.run.run_id
    attack(path, "INSERT INTO waivers (target, rule_id, granted_by, reason, until, created_at) VALUES "
                 "(?, 'fairness.max_difference.equalized_odds_difference', 'ciso', 'trust me', '2999-01-01', "
                 "'2026-01-01 00:00:00.000000')", (run_id,))
    new_id = scalar(path, "SELECT max(id) FROM waivers")
    code, out, _ = govern_cli("lineage", "verify", "--db", url)
    assert code == 1 and f"waivers row {new_id}: no audit event commits to it" in out
    code, _, err = govern_cli("check", run_id, "--db", url)
    assert code == 2 and f"waivers row {new_id}" in err


@pytest.mark.parametrize(("table", "statement"), [
    ("decisions", "INSERT INTO decisions (run_id, kind, decision, policy_name, policy_version, policy_digest, "
                  "created_at) SELECT run_id, 'final', 'pass', policy_name, policy_version, policy_digest, "
                  "'2999-01-01 00:00:00.000000' FROM decisions LIMIT 1"),
    ("findings", "INSERT INTO findings (decision_id, run_id, rule_id, severity, status, message) "
                 "SELECT decision_id, run_id, 'custom.ok', 'block', 'pass', 'ok' FROM findings LIMIT 1"),
    ("signatures", "INSERT INTO signatures (run_id, kind, subject, subject_digest, method, bundle_path, created_at) "
                   "SELECT run_id, 'model', subject, 'sha256:00', 'key', bundle_path, created_at FROM signatures"),
    ("evidence", "INSERT INTO evidence (run_id, stage, document, created_at) "
                 "SELECT run_id, 'signing', '{}', created_at FROM evidence LIMIT 1"),
])
def test_a_row_inserted_by_hand_is_detected(db: tuple[Path, str], pristine: Recorded, table: str,
                                            statement: str) -> None:
    path, url = db
    attack(path, statement)
    new_id = scalar(path, f"SELECT max(id) FROM {table}")
    with LineageStore.open(url) as store:
        problems = store.verify_run(pristine.run.run_id).problems
    assert any(p.startswith((f"{table} row {new_id}:", f"evidence row #{new_id} ")) and "inserted outside govern" in p
               for p in problems), problems


# --------------------------------------------------------------------------------------- deleted rows
@pytest.mark.parametrize("table", ["findings", "pii_findings", "signatures", "artifacts", "waivers", "decisions",
                                   "stage_executions", "evidence", "datasets", "base_models"])
def test_a_deleted_row_is_detected(db: tuple[Path, str], pristine: Recorded, table: str) -> None:
    path, url = db
    victim = scalar(path, f"SELECT min(id) FROM {table}")
    attack(path, f"DELETE FROM {table} WHERE id = ?", (victim,))
    with LineageStore.open(url) as store:
        problems = store.verify_chain().problems
    assert any(p.startswith(f"{table} row {victim!r} (committed by event #") and "deleted outside govern" in p
               for p in problems), problems


def test_a_deleted_run_is_detected(db: tuple[Path, str], pristine: Recorded) -> None:
    path, url = db
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA foreign_keys = ON")  # the attacker lets the cascades delete everything it owns
        conn.execute("DELETE FROM runs WHERE id = ?", (pristine.run.run_id,))
    with LineageStore.open(url) as store:
        problems = store.verify_chain().problems
    assert any(p.startswith(f"runs row '{pristine.run.run_id}'") and "deleted" in p for p in problems)
    assert any(p.startswith("decisions row") and "deleted" in p for p in problems)


# ------------------------------------------------------------------------------------ scope and guard
def test_the_run_check_is_scoped_to_what_judging_the_run_reads(db: tuple[Path, str], pristine: Recorded) -> None:
    path, url = db
    with LineageStore.open(url) as store:
        other = store.create_run(name="other")
        store.set_run_status(other, "completed", decision="pass")
    attack(path, "UPDATE runs SET name = 'renamed' WHERE id = ?", (other,))
    with LineageStore.open(url) as store:
        assert store.verify_run(pristine.run.run_id).ok
        assert not store.verify_run(other).ok
        # The dataset waiver applies to the run (same fingerprint): editing it breaks the run's record.
    attack(path, "UPDATE waivers SET until = '2999-01-01' WHERE id = ?", (pristine.dataset_waiver,))
    with LineageStore.open(url) as store:
        problems = store.verify_run(pristine.run.run_id).problems
    assert any(p.startswith(f"waivers row {pristine.dataset_waiver}: field(s) until") for p in problems), problems


def test_the_run_check_catches_an_edited_or_rehashed_event_of_the_run(db: tuple[Path, str],
                                                                     pristine: Recorded) -> None:
    """The per-run check walks the run's events only, each against its own hash and both neighbours."""
    from govern.lineage.store import event_hash_text

    path, url = db
    run_id = pristine.run.run_id
    with sqlite3.connect(path) as conn:
        event_id, created_at, kind, text, prev = conn.execute(
            "SELECT id, created_at, kind, payload_json, prev_hash FROM audit_events WHERE run_id = ? AND "
            "kind = 'decision.recorded' ORDER BY id DESC LIMIT 1", (run_id,)).fetchone()
    payload = json.loads(text)
    payload["decision"] = "pass"
    forged = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    attack(path, "UPDATE audit_events SET payload_json = ? WHERE id = ?", (forged, event_id))
    with LineageStore.open(url) as store:
        problems = store.verify_run(run_id).problems
    assert any(p.startswith(f"event #{event_id} (decision.recorded): content does not match its hash")
               for p in problems), problems
    from datetime import datetime

    rehashed = event_hash_text(prev, event_id, datetime.fromisoformat(created_at), kind, run_id, forged)
    attack(path, "UPDATE audit_events SET hash = ? WHERE id = ?", (rehashed, event_id))
    with LineageStore.open(url) as store:
        problems = store.verify_run(run_id).problems
    assert any(p.startswith(f"event #{event_id + 1}: prev_hash does not match the hash of event #{event_id}")
               for p in problems), problems


def test_govern_refuses_to_write_over_a_tampered_row(db: tuple[Path, str], pristine: Recorded) -> None:
    """Updating a run re-commits it: it must not launder an edit made behind govern's back."""
    path, url = db
    attack(path, "UPDATE runs SET policy_document = '{}' WHERE id = ?", (pristine.run.run_id,))
    with LineageStore.open(url) as store, pytest.raises(LineageError, match="refusing to record over a tampered row"):
        store.set_run_status(pristine.run.run_id, "completed", decision="pass")
    assert scalar(path, "SELECT status FROM runs") == "blocked"


def test_an_untouched_record_still_checks_and_reports(db: tuple[Path, str], pristine: Recorded,
                                                      govern_cli: Cli, tmp_path: Path) -> None:
    _, url = db
    code, out, _ = govern_cli("lineage", "verify", "--db", url)
    assert code == 0 and "intact" in out
    code, _, _ = govern_cli("check", pristine.run.run_id, "--db", url)
    assert code == 1  # still blocked, and now judged
    witnesses = [json.loads(p.read_text()) for p in Path(os.environ["GOVERN_WITNESS_DIR"]).glob("witness-*.json")]
    assert [(w["reason"], w["run_id"]) for w in witnesses] == [("check", pristine.run.run_id)]
    code, _, _ = govern_cli("report", pristine.run.run_id, "--format", "md", "--out", str(tmp_path), "--db", url)
    assert code == 0 and "RECORD BROKEN" not in (tmp_path / f"{pristine.run.run_id}.md").read_text()
    assert api.lineage_verify(db_url=url).ok


# --------------------------------------------------------------------------- DBs older than commitments
def _strip_commitments(path: Path) -> None:
    """Make the DB look as an older govern wrote it: events without row commitments, chain re-hashed."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT id, created_at, kind, run_id, payload_json FROM audit_events ORDER BY id").fetchall()
        prev = "0" * 64
        from datetime import datetime

        from govern.config import canonical_json

        for event_id, created_at, kind, run_id, payload_json in rows:
            payload = json.loads(payload_json)
            payload.pop("rows", None)
            created = datetime.fromisoformat(created_at)
            digest = event_hash(prev, event_id, created, kind, run_id, payload)
            conn.execute("UPDATE audit_events SET payload_json = ?, prev_hash = ?, hash = ? WHERE id = ?",
                         (canonical_json(payload), prev, digest, event_id))
            prev = digest
        conn.execute("UPDATE audit_chain_head SET last_hash = ?", (prev,))
        conn.execute("DELETE FROM meta WHERE key = 'row_commitments'")


def test_a_db_from_before_row_commitments_is_adopted_once_then_protected(db: tuple[Path, str],
                                                                        pristine: Recorded) -> None:
    path, url = db
    _strip_commitments(path)
    with LineageStore.open(url) as store:  # a recording open adopts the rows as they are (trust on first use)
        report = store.verify_chain()
        assert report.ok, report.problems
        assert any(e.kind == "rows.adopted" for e in store.events())
    attack(path, "UPDATE decisions SET decision = 'pass'")
    with LineageStore.open(url) as store:
        assert any(p.startswith("decisions row") for p in store.verify_run(pristine.run.run_id).problems)


def test_deleting_the_adoption_flag_does_not_launder_an_edit(db: tuple[Path, str], pristine: Recorded) -> None:
    """Whether a DB is adopted is decided by its audit log, not by the meta flag an attacker can delete."""
    path, url = db
    attack(path, "UPDATE decisions SET decision = 'pass'")
    attack(path, "DELETE FROM meta WHERE key = 'row_commitments'")
    with LineageStore.open(url) as store:
        assert not any(e.kind == "rows.adopted" for e in store.events())
        assert any(p.startswith("decisions row") for p in store.verify_run(pristine.run.run_id).problems)


# ----------------------------------------------------------------------------------------- PostgreSQL
def test_row_edits_are_detected_on_postgresql_too(store: LineageStore) -> None:
    import sqlalchemy as sa

    run_id = store.create_run(name="pg")
    execution = store.start_stage(run_id, "data", "sha256:in")
    store.finish_stage(execution, "completed", evidence={"rows": 10, "score": 0.5, "nested": {"a": [1.0, 2]}},
                       outputs={"train_path": "/x"})
    store.add_waiver(target=run_id, rule_id="r", by="me", reason="why", until=date.today() + timedelta(days=1))
    store.set_run_status(run_id, "blocked", decision="block")
    assert store.verify_run(run_id).ok, store.verify_run(run_id).problems
    with store.engine.connect() as conn, conn.begin():
        conn.execute(sa.text("UPDATE runs SET decision = 'pass'"))
        conn.execute(sa.text("DELETE FROM waivers"))
    problems = store.verify_chain().problems
    assert any(p.startswith(f"runs row '{run_id}': field(s) decision changed") for p in problems), problems
    assert any(p.startswith("waivers row 1 (committed by event") for p in problems), problems
