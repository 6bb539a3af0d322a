"""The data stage as the pipeline sees it: evidence, artifacts, outputs, input digest, label checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from govern.config import RunConfig
from govern.data.io import write_records
from govern.data.stage import DataStage
from govern.errors import DataError
from govern.evidence import Evidence
from govern.policy.loader import load_policy
from govern.stage import Stage, StageContext


def records(n: int, prefix: str, labels: str = "ab") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "text": f"{prefix} message {i} about topic {i * 7 % 13} and more words {i}",
             "label": labels[i % len(labels)], "region": "ns"[i % 2]} for i in range(n)]


def context(tmp_path: Path, train: list[dict[str, Any]], eval_: list[dict[str, Any]], fmt: str = "jsonl",
            **data: Any) -> StageContext:
    write_records(tmp_path / f"train.{fmt}", train, fmt)
    write_records(tmp_path / f"eval.{fmt}", eval_, fmt)
    cfg = RunConfig.model_validate({
        "task": "classification",
        "data": {"train": f"train.{fmt}", "eval": f"eval.{fmt}", "label_column": "label",
                 "sensitive_columns": ["region"], **data},
    }, context={"base_dir": tmp_path})
    return StageContext(run_id="r1", config=cfg, run_dir=tmp_path / "run", policy=load_policy("default").policy,
                        evidence=Evidence())


def test_data_stage_satisfies_the_stage_protocol() -> None:
    assert isinstance(DataStage(), Stage)
    assert DataStage.name == "data"


def test_run_returns_evidence_artifacts_and_outputs(tmp_path: Path) -> None:
    train, eval_ = records(40, "t"), records(10, "e")
    eval_[3]["text"] = train[5]["text"].upper() + "!"  # an exact duplicate after normalisation
    ctx = context(tmp_path, train, eval_)
    stage = DataStage()
    assert stage.enabled(ctx)
    result = stage.run(ctx)

    evidence = result.evidence
    assert evidence.train_rows == 40 and evidence.eval_rows == 10
    assert evidence.labels == {"a": 20, "b": 20}
    assert evidence.sensitive_columns == ["region"]
    assert [f.role for f in evidence.files] == ["train", "eval"]
    assert evidence.leakage.exact_duplicates == 1
    assert evidence.leakage.example_pairs[0] == ("e3", "t5")

    train_art, eval_art = result.artifacts
    assert (train_art.name, train_art.kind, train_art.role, train_art.rows) == ("train", "dataset", "input", 40)
    assert train_art.dataset_fingerprint == evidence.files[0].fingerprint
    assert train_art.sha256 == evidence.files[0].sha256
    assert result.outputs.model_dump(mode="json") == {
        "train_path": str(tmp_path / "train.jsonl"), "eval_path": str(tmp_path / "eval.jsonl"), "format": "jsonl",
        "train_fingerprint": evidence.files[0].fingerprint, "eval_fingerprint": evidence.files[1].fingerprint,
        "label_names": ["a", "b"],
    }
    json.dumps(result.outputs.model_dump(mode="json"))  # stored in the lineage DB as JSON
    # the whole evidence document carries no record text
    assert "message" not in Evidence(data=evidence).model_dump_json()


def test_input_digest_follows_file_bytes_and_config(tmp_path: Path) -> None:
    ctx = context(tmp_path, records(20, "t"), records(6, "e"))
    stage = DataStage()
    first = stage.input_digest(ctx)
    assert stage.input_digest(ctx) == first
    with open(tmp_path / "eval.jsonl", "a") as fh:
        fh.write(json.dumps({"id": "extra", "text": "one more", "label": "a", "region": "n"}) + "\n")
    second = stage.input_digest(ctx)
    assert second != first
    ctx.config.data.near_duplicate_threshold = 0.8
    assert stage.input_digest(ctx) != second


def test_same_data_as_csv_gives_the_same_fingerprints(tmp_path: Path) -> None:
    train, eval_ = records(20, "t"), records(6, "e")
    (tmp_path / "j").mkdir()
    (tmp_path / "c").mkdir()
    jsonl = DataStage().run(context(tmp_path / "j", train, eval_))
    csv = DataStage().run(context(tmp_path / "c", train, eval_, fmt="csv"))
    assert jsonl.outputs.train_fingerprint == csv.outputs.train_fingerprint
    assert jsonl.outputs.eval_fingerprint == csv.outputs.eval_fingerprint
    assert csv.outputs.format == "csv"


def test_single_class_training_labels_are_refused(tmp_path: Path) -> None:
    ctx = context(tmp_path, records(20, "t", labels="a"), records(6, "e", labels="a"))
    with pytest.raises(DataError) as err:
        DataStage().run(ctx)
    assert err.value.field == "label" and "train.jsonl" in str(err.value)
    assert "1 distinct class(es); classification needs at least 2" in str(err.value)


def test_eval_label_unknown_to_training_names_the_eval_line(tmp_path: Path) -> None:
    eval_ = records(6, "e")
    eval_[4]["label"] = "zzz"
    with pytest.raises(DataError) as err:
        DataStage().run(context(tmp_path, records(20, "t"), eval_))
    assert (err.value.line, err.value.field) == (5, "label")
    assert "eval.jsonl" in str(err.value) and "zzz" not in str(err.value)


def test_train_and_eval_in_different_formats_are_refused(tmp_path: Path) -> None:
    write_records(tmp_path / "eval.csv", records(6, "e"), "csv")
    ctx = context(tmp_path, records(20, "t"), records(6, "e"), eval="eval.csv")
    with pytest.raises(DataError, match="the eval file is csv but the train file is jsonl"):
        DataStage().run(ctx)


def test_missing_eval_file_is_a_data_error_not_a_crash_in_the_digest(tmp_path: Path) -> None:
    ctx = context(tmp_path, records(20, "t"), records(6, "e"))
    (tmp_path / "eval.jsonl").unlink()
    assert DataStage().input_digest(ctx).startswith("sha256:")
    with pytest.raises(DataError, match="eval data file not found"):
        DataStage().run(ctx)


def test_quickstart_data_passes_the_data_gate_of_a_governed_run(workdir: Path) -> None:
    """Through the real pipeline and lineage DB: only the data stage, on the bundled quickstart."""
    import os

    from govern.lineage import LineageStore
    from govern.pipeline import Pipeline

    config = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "govern.yaml"
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        outcome = Pipeline(store, stages=[DataStage()]).start(config)
        data_rules = [r for r in outcome.results if r["rule_id"].startswith("data.")]
        assert outcome.status == "completed", outcome.error
        assert data_rules and all(r["status"] == "pass" for r in data_rules), data_rules
        evidence = store.evidence(outcome.run_id)["data"]
        assert evidence["train_rows"] == 3000 and evidence["leakage"]["exact_duplicates"] == 0
        datasets = [a for a in store.artifacts(outcome.run_id) if a.kind == "dataset"]
        assert sorted(a.name for a in datasets) == ["eval", "train"]
        assert {f["fingerprint"] for f in evidence["files"]} == {a.dataset_fingerprint for a in datasets}
