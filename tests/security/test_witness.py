"""Truncation and re-chaining: what a hash chain inside the DB cannot catch, and a witness can.

The attacker here knows govern's code: after deleting or editing, they recompute every row commitment and
every event hash and fix the chain head, so `govern lineage verify` alone says "intact". The witness
statements written after each run, check, waiver and signature (kept elsewhere) catch it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from govern.config import canonical_json
from govern.lineage import LineageStore
from govern.lineage.integrity import commit_rows
from govern.lineage.store import event_hash
from govern.lineage.witness import emit_witness
from tests.spine.helpers import make_records, write_jsonl, write_project

Cli = Callable[..., tuple[int, str, str]]


def _record(url: str, name: str) -> str:
    with LineageStore.open(url) as store:
        run_id = store.create_run(name=name)
        execution = store.start_stage(run_id, "data", "sha256:in")
        store.finish_stage(execution, "completed", evidence={"rows": 10})
        store.record_decision(run_id, kind="final", decision="block", policy=_policy(),
                              results=[{"rule_id": "fairness.x", "severity": "block", "status": "fail"}])
        store.set_run_status(run_id, "blocked", decision="block")
        return run_id


def _policy() -> Any:
    from govern.lineage import PolicyRef

    return PolicyRef(name="default", version="1", digest="sha256:p", document={"apiVersion": "govern.dev/v1"})


def rechain(path: Path, *, drop_run: str | None = None, recommit: bool = False) -> None:
    """The attacker's full rewrite: drop a run (its rows and events), optionally re-commit every row as it
    now is (after editing rows), re-hash the whole chain and fix its head — the DB is self-consistent again."""
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        if drop_run is not None:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("DELETE FROM runs WHERE id = ?", (drop_run,))
            conn.execute("DELETE FROM audit_events WHERE run_id = ?", (drop_run,))
        events = conn.execute("SELECT * FROM audit_events ORDER BY id").fetchall()
        conn.execute("DELETE FROM audit_events")
        prev = "0" * 64
        for new_id, e in enumerate(events, start=1):
            payload = json.loads(e["payload_json"])
            for table, block in (payload.get("rows") or {}).items() if recommit else ():
                pk = "id"
                fresh = [dict(r) for r in conn.execute(
                    f"SELECT * FROM {table} WHERE {pk} IN ({','.join('?' * len(block['rows']))})",  # noqa: S608
                    [entry[0] for entry in block["rows"]])]
                for row in fresh:  # stored text back to the typed values govern commits over
                    for key in ("created_at", "started_at", "ended_at"):
                        if row.get(key):
                            row[key] = datetime.fromisoformat(row[key])
                    for key in ("config", "policy_document", "versions", "outputs", "document", "observed",
                                "threshold"):
                        if isinstance(row.get(key), str):
                            row[key] = json.loads(row[key])
                payload["rows"][table] = commit_rows(table, fresh)
            created = datetime.fromisoformat(e["created_at"])
            digest = event_hash(prev, new_id, created, e["kind"], e["run_id"], payload)
            conn.execute("INSERT INTO audit_events (id, created_at, kind, run_id, payload_json, prev_hash, hash) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (new_id, e["created_at"], e["kind"], e["run_id"], canonical_json(payload), prev, digest))
            prev = digest
        conn.execute("UPDATE audit_chain_head SET last_event_id = ?, last_hash = ?, events = ?",
                     (len(events), prev, len(events)))


@pytest.fixture
def witnessed(tmp_path: Path) -> tuple[Path, str, Path, list[str]]:
    """Two recorded runs, each followed by a witness kept in a folder the attacker cannot reach."""
    path = tmp_path / "lineage.db"
    url = f"sqlite:///{path}"
    vault = tmp_path / "vault"
    runs = []
    for name in ("first", "second"):
        run_id = _record(url, name)
        runs.append(run_id)
        with LineageStore.open(url) as store:
            assert emit_witness(store, "run", run_id=run_id, out_dir=vault) is not None
    return path, url, vault, runs


def test_a_deleted_tail_passes_without_a_witness_and_fails_with_it(witnessed: tuple[Path, str, Path, list[str]],
                                                                    govern_cli: Cli) -> None:
    path, url, vault, runs = witnessed
    with LineageStore.open(url, read_only=True) as store:
        first_of_second = min(e.id for e in store.events(runs[1]))
    rechain(path, drop_run=runs[1])  # the newest run, its rows and its events: the log's whole tail
    code, out, _ = govern_cli("lineage", "verify", "--db", url)
    assert code == 0 and "cannot be detected" in out  # what the README says: the log alone cannot tell
    code, out, _ = govern_cli("lineage", "verify", "--db", url, "--witness", str(vault))
    assert code == 1, out
    assert f"witnessed event #{first_of_second} is missing" in out and "newest events" in out


def test_a_deleted_run_rechained_is_caught_by_the_witness(witnessed: tuple[Path, str, Path, list[str]],
                                                          govern_cli: Cli) -> None:
    path, url, vault, runs = witnessed
    rechain(path, drop_run=runs[0])
    assert govern_cli("lineage", "verify", "--db", url)[0] == 0
    code, out, _ = govern_cli("lineage", "verify", "--db", url, "--witness", str(vault))
    assert code == 1 and "event #1 differs from the witnessed hash" in out


def test_an_edited_decision_with_recomputed_commitments_is_caught_by_the_witness(
        witnessed: tuple[Path, str, Path, list[str]], govern_cli: Cli) -> None:
    path, url, vault, runs = witnessed
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE decisions SET decision = 'pass' WHERE run_id = ?", (runs[1],))
        conn.execute("UPDATE runs SET decision = 'pass', status = 'completed' WHERE id = ?", (runs[1],))
    assert govern_cli("lineage", "verify", "--db", url)[0] == 1  # plain edits: caught by the commitments
    rechain(path, recommit=True)
    assert govern_cli("lineage", "verify", "--db", url)[0] == 0  # re-committed and re-hashed: not any more
    code, out, _ = govern_cli("lineage", "verify", "--db", url, "--witness", str(vault))
    assert code == 1 and "differs from the witnessed hash" in out and "rewritten" in out


def test_an_untouched_db_extends_all_its_witnesses(witnessed: tuple[Path, str, Path, list[str]],
                                                   govern_cli: Cli) -> None:
    _, url, vault, runs = witnessed
    _record(url, "third")  # the DB grows after the last witness: still extends it
    code, out, _ = govern_cli("lineage", "verify", "--db", url, "--witness", str(vault))
    assert code == 0 and "2 witness statement(s) extended" in out
    assert "unsigned" in out  # said, not hidden
    statements = sorted(vault.glob("witness-*.json"))
    second = json.loads(statements[1].read_text())
    assert second["events"][0][0] == json.loads(statements[0].read_text())["head"]["event_id"] + 1


def test_a_witness_of_another_db_is_refused(witnessed: tuple[Path, str, Path, list[str]], tmp_path: Path,
                                            govern_cli: Cli) -> None:
    _, _, vault, _ = witnessed
    other = f"sqlite:///{tmp_path / 'other.db'}"
    _record(other, "elsewhere")
    code, out, _ = govern_cli("lineage", "verify", "--db", other, "--witness", str(vault))
    assert code == 1 and "the DB was replaced" in out


def test_signed_witnesses_verify_and_a_forged_one_does_not(tmp_path: Path, govern_cli: Cli,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = govern_cli("keys", "generate", str(tmp_path / "keys"))
    assert code == 0, err
    public = next((tmp_path / "keys").glob("*.pub.pem"))
    private = next(p for p in (tmp_path / "keys").glob("*.pem") if p != public)
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    vault = tmp_path / "vault"
    monkeypatch.setenv("GOVERN_WITNESS_DIR", str(vault))
    monkeypatch.setenv("GOVERN_WITNESS_KEY", str(private))
    run_id = _record(url, "signed")
    code, _, err = govern_cli("waive", run_id, "fairness.x", "--by", "dpo", "--reason", "ok", "--until",
                              (date.today() + timedelta(days=2)).isoformat(), "--db", url)
    assert code == 0, err
    (statement,) = [p for p in vault.glob("witness-*.json") if not p.name.endswith(".sigstore.json")]
    assert statement.with_name(statement.name + ".sigstore.json").is_file()
    code, out, _ = govern_cli("lineage", "verify", "--db", url, "--witness", str(vault), "--witness-key", str(public))
    assert code == 0 and "signature not checked" not in out, out
    forged = json.loads(statement.read_text())
    forged["head"]["events"] += 1
    statement.write_text(canonical_json(forged) + "\n")
    code, out, _ = govern_cli("lineage", "verify", "--db", url, "--witness", str(vault), "--witness-key", str(public))
    assert code == 1 and "signature does not verify" in out


def test_a_second_db_keeps_the_witnesses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, govern_cli: Cli) -> None:
    second = f"sqlite:///{tmp_path / 'witness-store.db'}"
    monkeypatch.setenv("GOVERN_WITNESS_TO", second)
    path = tmp_path / "lineage.db"
    url = f"sqlite:///{path}"
    run_id = _record(url, "r")
    code, _, err = govern_cli("waive", run_id, "fairness.x", "--by", "dpo", "--reason", "ok", "--until",
                              (date.today() + timedelta(days=2)).isoformat(), "--db", url)
    assert code == 0, err  # a waiver emits a witness (to both places)
    with LineageStore.open(second, read_only=True) as store:
        assert [e.kind for e in store.events()] == ["witness.received"]
    rechain(path, drop_run=run_id)
    code, out, _ = govern_cli("lineage", "verify", "--db", url, "--witness", second)
    assert code == 1 and "is missing" in out


def test_govern_run_writes_a_witness_even_when_blocked(workdir: Path, govern_cli: Cli) -> None:
    cfg = write_project(workdir)
    records = make_records(200, 1, "train")
    records[13]["text"] += " my ssn is 388-40-1362"  # the default policy blocks US_SSN
    write_jsonl(workdir / "train.jsonl", records)
    code, _, err = govern_cli("run", str(cfg))
    assert code == 1, err
    witness_dir = Path(__import__("os").environ["GOVERN_WITNESS_DIR"])
    (statement,) = witness_dir.glob("witness-*.json")
    document = json.loads(statement.read_text())
    assert document["reason"] == "run" and document["run_id"].startswith("run-")
    with LineageStore.open(None, read_only=True) as store:
        events = store.events(document["run_id"])
    assert events[-1].kind == "witness.emitted" and events[-1].payload["head_event_id"] == document["head"]["event_id"]
    code, out, _ = govern_cli("lineage", "verify", "--witness", str(statement))
    assert code == 0, out
