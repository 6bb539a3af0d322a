"""The PII gate inside a governed run: blocked PII stops training; redacted data is what training reads;
no planted value reaches the lineage DB, the run folder, or the CLI's output."""

from __future__ import annotations

import json
import os
from pathlib import Path

from govern.lineage import LineageStore
from tests.spine.helpers import make_records, write_jsonl, write_project
from tests.spine.stages import assert_blocked_by_pii, run_through_pii

PLANTED = {
    "email": "maria.kowalski@example.org",
    "card": "4111 1111 1111 1111",
    "iban": "DE89 3704 0044 0532 0130 00",
    "ssn": "388-40-1362",
}


def _plant(workdir: Path, *, ssn: bool) -> None:
    records = make_records(200, 1, "train")
    records[5]["text"] += f" mail me at {PLANTED['email']}"
    records[9]["text"] += f" card {PLANTED['card']} please"
    records[11]["text"] += f" iban {PLANTED['iban']}"
    if ssn:
        records[13]["text"] += f" my ssn is {PLANTED['ssn']}"
    write_jsonl(workdir / "train.jsonl", records)


def _everything_written(workdir: Path) -> list[Path]:
    return [p for p in workdir.rglob("*") if p.is_file() and p.name not in ("train.jsonl",)]


def test_blocked_pii_stops_training_and_records_a_blocked_run(workdir: Path) -> None:
    cfg = write_project(workdir)
    _plant(workdir, ssn=True)  # the default policy blocks US_SSN
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        outcome, training = run_through_pii(store, cfg)
        assert_blocked_by_pii(store, outcome, training, {"US_SSN": 1})
        findings = store.pii_findings(outcome.run_id)
        assert {f.entity_type for f in findings} >= {"US_SSN", "EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE"}
        ssn = next(f for f in findings if f.entity_type == "US_SSN")
        assert (ssn.dataset, ssn.line, ssn.field, ssn.action) == ("train", 14, "text", "block")
    for path in _everything_written(workdir):
        data = path.read_bytes()
        for value in PLANTED.values():
            assert value.encode() not in data, f"planted value found in {path}"


def test_redacted_copy_is_what_training_reads_and_no_value_is_persisted(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir)
    _plant(workdir, ssn=False)
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        outcome, training = run_through_pii(store, cfg)
        assert outcome.decision == "pass", outcome.results
        evidence = store.evidence(outcome.run_id)["pii"]
        assert evidence["redacted"] is True and "train" in evidence["redacted_files"]
        datasets = {a.name: a for a in store.artifacts(outcome.run_id) if a.kind == "dataset"}
        assert any("redacted" in a.path for a in datasets.values())
    assert "redacted" in training.read_path.name
    redacted = training.read_path.read_text()
    assert "<EMAIL_ADDRESS>" in redacted and "<CREDIT_CARD>" in redacted and "<IBAN_CODE>" in redacted
    assert len(redacted.splitlines()) == 200
    # every output a user or auditor sees, plus the DB file and run folder: no planted value
    outputs = [govern_cli("runs", "show", "latest", "--format", "json")[1],
               govern_cli("check", "latest", "--format", "json")[1],
               govern_cli("scan", str(workdir / "train.jsonl"), "--format", "json")[1],
               govern_cli("scan", str(workdir / "train.jsonl"), "--format", "sarif")[1]]
    sarif = json.loads(outputs[-1])
    assert sarif["runs"][0]["results"], "the scan must report the planted values (by location)"
    for text in outputs:
        for value in PLANTED.values():
            assert value not in text
    for path in _everything_written(workdir):
        data = path.read_bytes()
        for value in PLANTED.values():
            assert value.encode() not in data, f"planted value found in {path}"
