"""Resume never reuses a result computed on another model.

A governed run is killed after its audits; the user resumes it. Every stage that consumes the trained
model (evaluation, membership, fairness, the model card, signing) keys its reuse on the model's bytes on
disk, so evidence computed on one model is never carried over to another, and every audit names the
digest of the model it judged — in the lineage DB and in the report.

Real stages end to end (data, DP-LoRA training on a tiny random BERT, evaluation, membership, fairness,
model card, signing with a generated key); a few optimizer steps, so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from govern.errors import GovernError
from govern.lineage import LineageStore
from govern.pipeline import Pipeline, RunOutcome, load_stage
from govern.stage import Stage, StageContext, tree_sha256
from tests.training.conftest import build_tiny_bert, sentiment_records

JUDGES = ("evaluation", "membership", "fairness")
STAGES = ["govern.data.stage:DataStage", "govern.training.stage:TrainingStage",
          "govern.audits.stages:EvaluationStage", "govern.audits.membership:MembershipStage",
          "govern.audits.stages:FairnessStage", "govern.report.model_card:ModelCardStage",
          "govern.signing.stage:SigningStage"]


class Killed(Exception):
    """Stands in for the process being killed after a stage (the run is left unfinished)."""


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("base") / "tiny-bert")


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _records(n: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    rows = sentiment_records(n, seed=seed, prefix=prefix)
    return [{**r, "region": "north" if i % 3 else "south"} for i, r in enumerate(rows)]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _project(root: Path, base: Path) -> Path:
    from govern.signing.keys import generate_key_pair

    generate_key_pair(root / "keys")
    _write_jsonl(root / "train.jsonl", _records(48, 1, "t"))  # one batch: every step sees every record
    _write_jsonl(root / "eval.jsonl", _records(40, 2, "e"))
    config = {
        "name": "resume-digests", "task": "classification",
        "base_model": {"path": str(base), "name": "tiny-bert"},
        "data": {"train": "train.jsonl", "eval": "eval.jsonl", "text_column": "text", "label_column": "label",
                 "id_column": "id", "sensitive_columns": ["region"]},
        "training": {"max_steps": 2, "batch_size": 48, "max_physical_batch_size": 48, "max_length": 16,
                     "checkpoint_every": 1, "dp": {"noise_multiplier": 1.0}},
        "audits": {"membership": {"max_records": 20, "bootstrap": 0},
                   "fairness": {"bootstrap": 0, "intersections": False}},
        "signing": {"method": "key", "private_key": "keys/signing-key.pem"},
        "policy": "dev",
    }
    path = root / "govern.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _stages() -> list[Stage]:
    return [load_stage(spec) for spec in STAGES]


def _run(config: Path, *, kill_after: str | None = None) -> str:
    """Start a run; with ``kill_after``, the process "dies" right after that stage completes."""

    def done(stage: str) -> None:
        if stage == kill_after:
            raise Killed(stage)

    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        pipeline = Pipeline(store, stages=_stages(), on_stage_done=done)
        try:
            outcome = pipeline.start(config)
        except Killed:
            assert pipeline.run_id is not None
            return pipeline.run_id
    assert outcome.status == "completed", outcome.error
    return outcome.run_id


def _resume(run_id: str) -> RunOutcome:
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        return Pipeline(store, stages=_stages()).resume(run_id)


def _statuses(outcome: RunOutcome) -> dict[str, str]:
    return {s.name: s.status for s in outcome.stages}


def _evidence(run_id: str) -> dict[str, dict[str, Any]]:
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        return store.evidence(run_id)


def _model_dir(run_id: str) -> Path:
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        training = store.completed_stage(run_id, "training")
    assert training is not None and training.outputs
    return Path(training.outputs["model_dir"])


def _change_one_training_record(config: Path) -> None:
    train = config.parent / "train.jsonl"
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    rows[3]["text"] += " great"
    _write_jsonl(train, rows)


def test_resume_with_nothing_changed_reuses_every_judgement_and_each_names_the_model(
        workdir: Path, base_model: Path) -> None:
    config = _project(workdir, base_model)
    run_id = _run(config, kill_after="model_card")  # killed before signing

    outcome = _resume(run_id)

    assert outcome.status == "completed", outcome.error
    assert _statuses(outcome) == {"data": "reused", "training": "reused", "evaluation": "reused",
                                  "membership": "reused", "fairness": "reused", "model_card": "reused",
                                  "signing": "completed"}
    model = tree_sha256(_model_dir(run_id))
    evidence = _evidence(run_id)
    assert evidence["training"]["model_digest"] == model
    for stage in (*JUDGES, "signing"):
        assert evidence[stage]["model_digest"] == model, stage
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        recorded = {a.kind: a.sha256 for a in store.artifacts(run_id) if a.role == "output"}
    assert recorded["adapter"] == model  # the same tree sha256 the artifacts table holds
    card = (_model_dir(run_id).parent / "MODEL_CARD.md").read_text()
    assert f"Model digest (tree sha256 of the model folder): `{model}`" in card

    # The report, from the DB alone, shows per stage the model it wrote, judged or signed.
    from govern.report import build_report_data, render_html, render_json, render_markdown

    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        report = build_report_data(store, run_id)
    assert report.judged_model_digests() == {s: model for s in ("training", *JUDGES, "signing")}
    assert report.model_digest_problems() == []
    assert f"| Model judged | evaluation, membership, fairness, signing: `{model[:16]}…`" in render_markdown(report)
    html = render_html(report)
    assert "Every audit and signature in this report is about the model training wrote" in html
    assert html.count(model) >= 3  # named in the membership, fairness and stage-execution sections
    stages = json.loads(render_json(report))["stages"]
    assert {s["stage"]: s["model_digest"] for s in stages if s["stage"] in ("evaluation", "fairness")} == {
        "evaluation": model, "fairness": model}

    # A record whose fairness evidence is about another model (e.g. written by an older govern that reused
    # it across a retrain) is called out on the report, not silently shown as this model's audit.
    other = report.model_copy(update={"stages": [
        s.model_copy(update={"model_digest": "0" * 64}) if s.stage == "fairness" else s for s in report.stages]})
    assert other.model_digest_problems() == [f"fairness: judged model {'0' * 16}…, not the model training wrote "
                                             f"({model[:16]}…)"]
    assert "not all evidence is about the model training wrote" in render_markdown(other)
    assert "Not all evidence is about the model training wrote" in render_html(other)


def test_a_changed_training_record_is_never_judged_with_the_old_model(workdir: Path, base_model: Path) -> None:
    config = _project(workdir, base_model)
    first = _run(config, kill_after="fairness")
    old_model = tree_sha256(_model_dir(first))
    _change_one_training_record(config)

    # The run's checkpoints were trained on the old data: continuing them would yield the old model under
    # evidence describing the new data, and training twice in one run would under-count its privacy spend.
    with pytest.raises(GovernError, match="different training set-up"):
        _resume(first)
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        assert store.get_run(first).status == "failed"
        statuses = [(e.stage, e.status) for e in store.stage_executions(first)]
    assert statuses[-1] == ("training", "failed")  # and nothing after it was reused onto the new data
    assert [s for s, st in statuses if st == "completed"].count("evaluation") == 1

    # A new run on the changed data: every audit judges the new model and says so.
    second = _run(config)
    new_model = tree_sha256(_model_dir(second))
    assert new_model != old_model
    evidence = _evidence(second)
    assert evidence["training"]["model_digest"] == new_model
    for stage in (*JUDGES, "signing"):
        assert evidence[stage]["model_digest"] == new_model, stage


def test_a_model_folder_replaced_between_kill_and_resume_is_not_judged(workdir: Path, base_model: Path) -> None:
    config = _project(workdir, base_model)
    run_id = _run(config, kill_after="evaluation")
    readme = _model_dir(run_id) / "README.md"
    readme.write_text(readme.read_text() + "\nswapped in after the run was killed\n")

    with pytest.raises(GovernError, match="changed after the training stage wrote it") as caught:
        _resume(run_id)

    assert tree_sha256(_model_dir(run_id)) in str(caught.value)  # names the bytes it found
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        executions = [(e.stage, e.status) for e in store.stage_executions(run_id)]
        assert store.get_run(run_id).status == "failed"
    # The old evaluation was not reused for the new bytes, and nothing judged them.
    assert executions[-1] == ("evaluation", "failed")
    assert ("membership", "completed") not in executions


def test_every_consumer_of_the_model_keys_its_reuse_on_the_model_bytes(workdir: Path, base_model: Path) -> None:
    from govern.config import load_run_config
    from govern.evidence import EVIDENCE_MODELS, Evidence
    from govern.policy import load_policy

    config_path = _project(workdir, base_model)
    run_id = _run(config_path, kill_after="fairness")
    config = load_run_config(config_path)
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        outputs = {s: store.completed_stage(run_id, s).outputs or {}  # type: ignore[union-attr]
                   for s in ("data", "training", "evaluation")}
        stored = store.evidence(run_id)
    evidence = Evidence(**{k: EVIDENCE_MODELS[k].model_validate(v) for k, v in stored.items() if k in EVIDENCE_MODELS})

    kinds = {stage.name: stage.outputs_model for stage in _stages()}

    def digests() -> dict[str, str]:
        ctx = StageContext(run_id=run_id, config=config, run_dir=_model_dir(run_id).parents[1],
                           policy=load_policy(config.policy).policy, evidence=evidence,
                           outputs={k: kinds[k].model_validate(v) for k, v in outputs.items()})
        return {stage.name: stage.input_digest(ctx) for stage in _stages()[2:]}

    before = digests()
    weights = next(_model_dir(run_id).glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the adapter
    weights.write_bytes(bytes(data))
    after = digests()
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"evaluation", "membership", "model_card", "signing"}
    # Fairness audits the evaluation's predictions: its digest follows the model evaluation judged.
    outputs["evaluation"]["model_digest"] = "another model"
    assert digests()["fairness"] != after["fairness"]
