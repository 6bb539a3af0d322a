"""Measured detection quality as evidence: a labeled sample of the user's own data, a recall floor.

A compliance officer names a labeled sample in the policy; the scan scores itself on it (precision,
recall, F2, Clopper-Pearson intervals), records that, and blocks below ``pii.quality.min_recall``.
Real Presidio, real spaCy; the sample's names are planted and grepped for in every output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from govern import api
from govern.cli import app
from govern.errors import DataError
from govern.pii.quality import load_quality_sample
from tests.conftest import require_fixture
from tests.pii.conftest import write_jsonl
from tests.pii.test_person_names import require_name_detector

#: Names planted in the samples: none may appear in any output.
FOUND = ["Aaliyah Vorster", "Tomasz Wojcik", "Ingrid Halvorsen", "Kwame Mensah", "Lucia Ferreira",
         "Priya Raghunathan", "Mateo Alvarez", "Yuki Tanabe", "Olusegun Adeyemi", "Hannah Kowalczyk"]
#: Lower-case single surnames without any cue: the detector is designed to leave these (precision).
MISSED = ["vorsterkamp", "wojcikowa", "halvorsenn", "mensahh", "ferreirinha", "raghunathann"]


def _sample(path: Path, names: list[str]) -> Path:
    records = []
    for name in names:
        text = f"Defendant {name}, aged 41, was charged with fraud."
        if name.islower():
            text = f"the report from {name} came late again"
        start = text.index(name)
        records.append({"text": text, "spans": [{"entity_type": "PERSON", "start": start, "end": start + len(name)}]})
    return write_jsonl(path, records)


def _policy(tmp_path: Path, sample: str | None, floor: float | None = 0.95) -> Path:
    quality = ""
    if sample is not None:
        quality = f"  quality:\n    sample: {sample}\n"
        if floor is not None:
            quality += f"    min_recall:\n      PERSON: {floor}\n"
    path = tmp_path / "policy.yaml"
    path.write_text("apiVersion: govern.dev/v1\nkind: Policy\nmetadata: {name: names, version: '1'}\n"
                    "pii:\n  engine: spacy\n  entities: {EMAIL_ADDRESS: redact}\n" + quality, encoding="utf-8")
    return path


def _data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "tickets.jsonl", [{"id": f"t{i}", "text": "The router reboots every night."}
                                                    for i in range(3)])


def _everything_written(tmp_path: Path) -> str:
    """Every byte the scan left behind: the lineage DB (and its WAL), plus any other file."""
    chunks = []
    db_url = os.environ["GOVERN_DB_URL"]
    roots = [tmp_path, Path(db_url.removeprefix("sqlite:///")).parent]
    for root in roots:
        for f in root.rglob("*"):
            if f.is_file() and not f.name.endswith((".jsonl", ".json")) or f.name.endswith(("-wal", ".db")):
                chunks.append(f.read_bytes().decode("utf-8", "replace"))
    return "\n".join(chunks)


def test_recall_below_the_floor_blocks_and_above_passes(tmp_path: Path) -> None:
    require_name_detector()
    good = _sample(tmp_path / "good.jsonl", FOUND)
    bad = _sample(tmp_path / "bad.jsonl", FOUND[:4] + MISSED)
    data = _data(tmp_path)

    run_id, report = api.scan([data], policy=_policy(tmp_path, good.name))
    quality = report.evidence.quality
    assert quality is not None and quality.measured and quality.records == len(FOUND)
    person = next(q for q in quality.entities if q.entity_type == "PERSON")
    assert person.recall == 1.0 and person.gold == len(FOUND)
    assert person.recall_ci_low is not None and 0.6 < person.recall_ci_low < 1.0 and person.recall_ci_high == 1.0
    assert person.precision_ci_low is not None and person.f2 is not None

    run_id_bad, report_bad = api.scan([data], policy=_policy(tmp_path, bad.name))
    person_bad = next(q for q in report_bad.evidence.quality.entities if q.entity_type == "PERSON")
    assert person_bad.recall is not None and person_bad.recall < 0.95
    assert person_bad.recall_ci_high is not None and person_bad.recall_ci_low is not None
    assert run_id is not None and run_id_bad is not None
    with api.open_store() as store:
        assert store.get_run(run_id).decision == "pass"
        assert store.get_run(run_id_bad).decision == "block"
    written = _everything_written(tmp_path) + json.dumps(report_bad.evidence.model_dump(mode="json"))
    assert "pii.quality.min_recall[PERSON]" in written
    for name in FOUND + MISSED:
        assert name not in written and name.split()[0] not in written


def test_a_floor_without_a_sample_blocks_and_says_quality_was_not_measured(tmp_path: Path) -> None:
    from govern.policy import load_policy
    from govern.policy.engine import evaluate

    policy = _policy(tmp_path, None)
    policy.write_text(policy.read_text() + "  quality:\n    min_recall: {PERSON: 0.9}\n", encoding="utf-8")
    loaded = load_policy(policy)
    doc = {"pii": {"blocked": {}, "quality": {"measured": False}}}
    results = [r for r in evaluate(loaded.policy, doc).results if r.rule_id.startswith("pii.quality")]
    assert [r.status for r in results] == ["fail"] and "not measured" in results[0].message


def test_scan_quality_prints_the_table_on_presidio_research_json(tmp_path: Path) -> None:
    require_name_detector()
    fixture = require_fixture("pii/generated_small.json")
    result = CliRunner().invoke(app, ["scan", str(_data(tmp_path)), "--engine", "spacy", "--no-record",
                                      "--quality", str(fixture)])
    assert result.exit_code == 0, result.output
    assert "Detection quality on generated_small.json (100 labeled records" in result.output
    row = next(line for line in result.output.splitlines() if "PERSON" in line)
    assert "[" in row and "55" in row  # 55 gold PERSON spans, with intervals
    values = {s["entity_value"] for item in json.loads(fixture.read_text()) for s in item["spans"]
              if s["entity_type"] == "PERSON"}
    assert not any(v in result.output for v in values if len(v) > 3)


def test_without_a_sample_the_scan_says_quality_was_not_measured(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["scan", str(_data(tmp_path)), "--no-record"])
    assert result.exit_code == 0, result.output
    assert "detection quality was not measured" in result.output


def test_a_bad_labeled_sample_names_the_file_line_and_field(tmp_path: Path, govern_cli) -> None:
    bad = tmp_path / "labeled.jsonl"
    bad.write_text('{"text": "Mr. Kwame Mensah", "spans": []}\n'
                   '{"text": "Mr. Kwame Mensah", "spans": [{"entity_type": "PERSON", "start": 4, "end": 99}]}\n',
                   encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_quality_sample(bad)
    message = str(info.value)
    assert "labeled.jsonl, line 2, field 'spans.0'" in message and "Kwame" not in message
    code, out, err = govern_cli("scan", str(_data(tmp_path)), "--no-record", "--quality", str(bad))
    assert code == 2 and "line 2, field 'spans.0'" in err and "Traceback" not in out + err and "Kwame" not in out + err


def test_a_changed_labeled_sample_is_scored_again_on_resume(tmp_path: Path) -> None:
    from govern.config import RunConfig
    from govern.data.stage import DataStage
    from govern.evidence import Evidence
    from govern.pii.stage import PIIStage
    from govern.policy import load_policy
    from govern.stage import StageContext

    sample = write_jsonl(tmp_path / "labeled.jsonl", [{"text": "mail a@example.org", "spans": [
        {"entity_type": "EMAIL_ADDRESS", "start": 5, "end": 18}]}])
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("apiVersion: govern.dev/v1\nkind: Policy\nmetadata: {name: q, version: '1'}\n"
                           "pii:\n  quality:\n    sample: labeled.jsonl\n    min_recall: {EMAIL_ADDRESS: 1.0}\n",
                           encoding="utf-8")
    data = write_jsonl(tmp_path / "train.jsonl", [{"id": f"t{i}", "text": "The router reboots.", "label": "ab"[i % 2]}
                                                  for i in range(3)])
    config = RunConfig.model_validate({"data": {"train": str(data), "eval": str(data)}, "policy": str(policy_file)})
    ctx = StageContext(run_id="r", config=config, run_dir=tmp_path / "run", policy=load_policy(policy_file).policy,
                       evidence=Evidence(), db_url=f"sqlite:///{tmp_path / 'lineage.db'}")
    ctx.outputs["data"] = DataStage().run(ctx).outputs
    result = PIIStage().run(ctx)
    quality = result.evidence.quality
    assert quality is not None and quality.measured and quality.entities[0].recall == 1.0
    before = PIIStage().input_digest(ctx)
    write_jsonl(sample, [{"text": "mail b@example.org", "spans": [{"entity_type": "EMAIL_ADDRESS", "start": 5, "end": 18}]}])
    assert PIIStage().input_digest(ctx) != before
