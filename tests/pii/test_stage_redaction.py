"""The pii stage in a run: evidence, findings, redacted copies training reads, and nothing planted left."""

from __future__ import annotations

import json
from pathlib import Path

from govern.config import RunConfig
from govern.data.io import read_records
from govern.data.stage import DataStage
from govern.evidence import Evidence
from govern.pii import PIIKey, load_or_create_key
from govern.pii.redact import PseudonymTable
from govern.pii.stage import PIIStage
from govern.stage import StageContext
from tests.pii.conftest import PLANTED, make_policy, planted_records, write_jsonl


def _context(tmp_path: Path, policy, **data) -> StageContext:
    records = planted_records()
    train = write_jsonl(tmp_path / "train.jsonl", records)
    eval_ = write_jsonl(tmp_path / "eval.jsonl", [
        {"id": "e1", "text": f"Mail {PLANTED['EMAIL_ADDRESS']} again, or {PLANTED['EMAIL_ADDRESS']}.", "label": "pos"},
        {"id": "e2", "text": "Mail other.person@example.net instead.", "label": "neg"},
    ])
    config = RunConfig.model_validate({"data": {"train": str(train), "eval": str(eval_), **data}})
    ctx = StageContext(run_id="run-test", config=config, run_dir=tmp_path / "run", policy=policy, evidence=Evidence(),
                       db_url=f"sqlite:///{tmp_path / 'lineage.db'}")
    ctx.outputs["data"] = DataStage().run(ctx).outputs
    return ctx


def test_redacted_copy_holds_no_planted_value_and_is_what_training_reads(tmp_path: Path) -> None:
    ctx = _context(tmp_path, make_policy())
    stage = PIIStage()
    result = stage.run(ctx)
    ev = result.evidence
    assert ev.redacted and ev.redaction_mode == "entity_type" and set(ev.redacted_files) == {"train", "eval"}
    assert ev.by_entity["EMAIL_ADDRESS"] == 1 + 3  # train 1, eval 3
    assert ev.hmac_key_id == load_or_create_key(ctx.db_url).key_id
    ctx.outputs["pii"] = result.outputs
    paths = ctx.data_paths()
    assert paths.train_path.endswith("train.redacted.jsonl") and paths.format == "jsonl"
    for role in ("train", "eval"):
        text = Path(getattr(paths, f"{role}_path")).read_text(encoding="utf-8")
        for value in PLANTED.values():
            assert value not in text
        assert getattr(paths, f"{role}_fingerprint") != getattr(ctx.outputs["data"], f"{role}_fingerprint")
    redacted = read_records(Path(paths.train_path))
    assert redacted[0]["text"] == "I paid with <CREDIT_CARD> yesterday."
    assert [r["id"] for r in redacted] == [r["id"] for r in planted_records()]  # untouched fields stay
    assert {a.name for a in result.artifacts} == {"train.redacted", "eval.redacted"}
    assert all(a.dataset_fingerprint for a in result.artifacts)
    rows = result.pii_findings
    assert rows and all(r.record_id for r in rows) and {r.dataset for r in rows} == {"train", "eval"}
    # the stored rows carry no value
    dumped = json.dumps([r.model_dump() for r in rows]) + ev.model_dump_json()
    for value in PLANTED.values():
        assert value not in dumped


def test_pseudonyms_are_consistent_within_the_data_set(tmp_path: Path) -> None:
    ctx = _context(tmp_path, make_policy(redaction="pseudonym"))
    result = PIIStage().run(ctx)
    eval_text = [r["text"] for r in read_records(Path(result.outputs.eval_path))]
    train_text = Path(result.outputs.train_path).read_text(encoding="utf-8")
    assert eval_text[0] == "Mail <EMAIL_ADDRESS_1> again, or <EMAIL_ADDRESS_1>."   # same value, same token
    assert eval_text[1] == "Mail <EMAIL_ADDRESS_2> instead."                     # another value, another token
    assert "<EMAIL_ADDRESS_1>" in train_text                                      # shared across train/eval


def test_nothing_to_redact_passes_the_data_stage_files_through(tmp_path: Path) -> None:
    ctx = _context(tmp_path, make_policy(entities={"CREDIT_CARD": "allow", "US_SSN": "block"}))
    result = PIIStage().run(ctx)
    assert result.outputs.train_path == ctx.outputs["data"].train_path
    assert not result.evidence.redacted and result.artifacts == []
    assert result.evidence.blocked == {"US_SSN": 1}
    assert {r.action for r in result.pii_findings} == {"allow", "block"}


def test_scan_columns_and_id_column_handling(tmp_path: Path) -> None:
    ctx = _context(tmp_path, make_policy(redaction="entity_type"), scan_columns=["id"])
    result = PIIStage().run(ctx)
    assert result.pii_findings == []  # only the (clean) id column was scanned
    (tmp_path / "x").mkdir()
    ctx2 = _context(tmp_path / "x", make_policy())
    assert PIIStage().input_digest(ctx) != PIIStage().input_digest(ctx2)


def test_id_that_is_personal_data_is_not_stored_and_stays_unique(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", [
        {"id": "a@example.org", "text": "hello", "label": "x"}, {"id": "b@example.org", "text": "hi", "label": "y"}])
    eval_ = write_jsonl(tmp_path / "eval.jsonl", [{"id": "e", "text": "hey", "label": "x"}])
    config = RunConfig.model_validate({"data": {"train": str(train), "eval": str(eval_)}})
    ctx = StageContext(run_id="r", config=config, run_dir=tmp_path / "run", policy=make_policy(), evidence=Evidence(),
                       db_url=f"sqlite:///{tmp_path / 'lineage.db'}")
    ctx.outputs["data"] = DataStage().run(ctx).outputs
    result = PIIStage().run(ctx)
    assert [r.record_id for r in result.pii_findings] == [None, None]
    ids = [r["id"] for r in read_records(Path(result.outputs.train_path))]
    assert ids == ["<EMAIL_ADDRESS_1>", "<EMAIL_ADDRESS_2>"]


def test_pseudonym_table_keys_by_hmac(key: PIIKey) -> None:
    table = PseudonymTable(key)
    assert table.token("EMAIL_ADDRESS", "A@x.org") == table.token("EMAIL_ADDRESS", "a@x.org") == "<EMAIL_ADDRESS_1>"
    assert all("x.org" not in k for k in table._numbers["EMAIL_ADDRESS"])
