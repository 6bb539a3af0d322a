"""What `govern scan` shows the world: SARIF that validates, JSON and tables — none holding a value —
and exit codes 0 clean / 1 blocked / 2 error."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from govern.cli import app
from govern.pii import report_json, scan_paths, to_sarif
from tests.pii.conftest import PLANTED, make_policy, planted_records, write_jsonl

SCHEMA = json.loads((Path(__file__).parent / "sarif_2_1_0_subset.schema.json").read_text(encoding="utf-8"))


def _assert_no_planted_value(text: str) -> None:
    for entity, value in PLANTED.items():
        assert value not in text, f"{entity} value leaked"
        assert value.replace(" ", "") not in text or entity == "IP_ADDRESS"


def test_sarif_validates_and_locates_by_line(workdir: Path, key) -> None:
    data = workdir / "data"
    data.mkdir()
    path = write_jsonl(data / "train.jsonl", planted_records())
    report = scan_paths([path], make_policy(), key=key)
    sarif = to_sarif(report)
    jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER).validate(sarif)
    run = sarif["runs"][0]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert {r["ruleId"] for r in run["results"]} <= set(rule_ids)
    assert sorted(r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in run["results"]) == \
        [1, 2, 3, 4, 5, 6]
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]} == \
        {"data/train.jsonl"}
    assert {r["level"] for r in run["results"]} == {"warning"}
    _assert_no_planted_value(json.dumps(sarif))
    _assert_no_planted_value(json.dumps(report_json(report)))


def test_sarif_for_parquet_uses_logical_locations(workdir: Path, key) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(planted_records()), workdir / "t.parquet")
    report = scan_paths([workdir / "t.parquet"], make_policy(), key=key)
    sarif = to_sarif(report)
    jsonschema.Draft7Validator(SCHEMA).validate(sarif)
    assert len(report.findings) == len(PLANTED)
    assert all(f.line is None and f.record_id.startswith("row ") for f in report.findings)


def test_cli_exit_codes_and_outputs_hold_no_values(workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    dirty = write_jsonl(workdir / "dirty.jsonl", planted_records())
    clean = write_jsonl(workdir / "clean.jsonl", [{"text": "nothing personal here"}] * 3)
    policy = workdir / "block.yaml"
    policy.write_text("apiVersion: govern.dev/v1\nkind: Policy\nmetadata: {name: b, version: '1'}\n"
                      "pii:\n  entities: {US_SSN: block, EMAIL_ADDRESS: redact, CREDIT_CARD: redact,"
                      " IBAN_CODE: redact, PHONE_NUMBER: redact, IP_ADDRESS: allow}\n", encoding="utf-8")

    r = runner.invoke(app, ["scan", str(clean), "--policy", str(policy)])
    assert r.exit_code == 0, r.output
    outputs = []
    for fmt in ("table", "json", "sarif"):
        r = runner.invoke(app, ["scan", str(dirty), "--policy", str(policy), "--format", fmt])
        assert r.exit_code == 1, r.output
        outputs.append(r.stdout)
    out_file = workdir / "scan.sarif"
    r = runner.invoke(app, ["scan", str(dirty), "--policy", str(policy), "-f", "sarif", "--out", str(out_file)])
    assert r.exit_code == 1
    jsonschema.Draft7Validator(SCHEMA).validate(json.loads(out_file.read_text(encoding="utf-8")))
    document = json.loads(outputs[1])
    assert document["blocked"] is True and document["evidence"]["blocked"] == {"US_SSN": 1}
    assert "US_SSN" in outputs[0]

    # errors go through the console script's handler: message on stderr, exit code 2
    done = subprocess.run([str(Path(sys.executable).parent / "govern"), "scan", str(workdir / "missing.jsonl")],
                          capture_output=True, text=True, timeout=120, cwd=workdir)
    assert done.returncode == 2 and "missing.jsonl: file not found" in done.stderr
    for text in [*outputs, out_file.read_text(encoding="utf-8"), caplog.text]:
        _assert_no_planted_value(text)
    # nothing written under the working directory (key, caches) may hold a value either
    for p in workdir.rglob("*"):
        if p.is_file() and p not in (dirty,):
            _assert_no_planted_value(p.read_bytes().decode("utf-8", "replace"))
