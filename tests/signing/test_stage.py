"""The signing stage inside a run: model + provenance + audit attestations signed, recorded in the lineage
DB, and the printed ``govern verify`` command is what a compliance officer runs to check all of it."""

from __future__ import annotations

import base64
import json
import os
import shlex
from pathlib import Path

import pytest

from govern.config import RunConfig
from govern.evidence import Evidence, PIIEvidence, TrainingEvidence
from govern.gate import policy_ref
from govern.lineage.store import LineageStore
from govern.policy import evaluate, load_policy
from govern.signing.keys import KeyPair
from govern.signing.stage import SigningStage
from govern.stage import GateSoFar, ModelFolder, StageContext, artifact_for


def _evidence() -> Evidence:
    return Evidence(
        training=TrainingEvidence(
            dp_enabled=True, non_private=False, accountant="rdp", epsilon={"rdp": 7.25, "prv": 6.9}, delta=1e-5,
            noise_multiplier=0.9, sample_rate=0.05, steps=40, epochs=2, max_grad_norm=1.0, n_train=800,
            batch_size=40, method="lora", trainable_params=1000, total_params=100000,
            base_model={"name": "tiny-bert", "path": "/models/tiny-bert", "digest": "sha256:" + "ef" * 32},
            device="cpu", duration_s=3.0, seed=0, versions={"torch": "2.13.0"},
        ),
        pii=PIIEvidence(engine="presidio-patterns", engine_version="2.2.366", entities=["EMAIL_ADDRESS"],
                        min_score=0.5, records_total=800, records_scanned=800, by_entity={"EMAIL_ADDRESS": 12},
                        records_affected=12, redacted=True, redaction_mode="entity_type",
                        redacted_files={"train": "aa" * 32}),
    )


@pytest.fixture
def signed_run(workdir: Path, model_dir: Path, keys: KeyPair):
    store = LineageStore.open(os.environ["GOVERN_DB_URL"])
    loaded = load_policy("default")
    ref = policy_ref(loaded)
    # No BOM attestation here: this DB records no training stage to build one from (test_bom_attestation
    # signs one in a real run).
    config = RunConfig.model_validate({"name": "demo", "data": {"train": "train.jsonl", "eval": "eval.jsonl"},
                                       "signing": {"method": "key", "private_key": str(keys.private_key),
                                                   "attest_bom": False}})
    run_id = store.create_run(name="demo", config=config.model_dump(mode="json"), policy=ref)
    ctx = StageContext(run_id=run_id, config=config, run_dir=workdir / "runs" / run_id, policy=loaded.policy,
                       evidence=_evidence(), outputs={"training": ModelFolder(model_dir=str(model_dir))},
                       gate=GateSoFar(decision="pass", policy_digest=loaded.digest), db_url=store.url)
    result = SigningStage().run(ctx)
    # What the pipeline records from the stage's result:
    store.add_artifacts(run_id, None, [artifact_for(model_dir, "model", "model"), *result.artifacts])
    for record in result.signatures:
        store.add_signature(run_id, **record.model_dump())
    store.record_decision(run_id, kind="final", decision="pass", policy=ref, results=[])
    store.set_run_status(run_id, "completed", decision="pass")
    yield store, run_id, result, ref
    store.close()


def test_stage_signs_model_and_attestations_outside_the_model(signed_run, model_dir: Path) -> None:
    _, run_id, result, _ = signed_run
    ev = result.evidence
    assert ev.signed and ev.method == "key" and ev.files == 3
    assert ev.attestations == ["https://slsa.dev/provenance/v1", "https://govern.dev/audit/v1"]
    for bundle in [ev.bundle, *ev.provenance_bundles]:
        assert Path(bundle).is_file() and not Path(bundle).resolve().is_relative_to(model_dir.resolve())
    assert {a.kind for a in result.artifacts} == {"bundle", "provenance"}
    assert [s.kind for s in result.signatures] == ["model", "provenance", "audit"]

    envelope = json.loads(Path(ev.provenance_bundles[1]).read_text())["dsseEnvelope"]
    audit = json.loads(base64.b64decode(envelope["payload"]))
    assert audit["predicate"]["runId"] == run_id
    assert audit["predicate"]["decision"] == "pass"
    assert audit["predicate"]["privacy"]["epsilon"] == {"rdp": 7.25, "prv": 6.9}
    assert audit["predicate"]["pii"]["byEntity"] == {"EMAIL_ADDRESS": 12}
    slsa = json.loads(base64.b64decode(json.loads(Path(ev.provenance_bundles[0]).read_text())["dsseEnvelope"]["payload"]))
    deps = {d["name"]: d for d in slsa["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["train.redacted"]["digest"] == {"sha256": "aa" * 32}
    assert deps["tiny-bert"]["digest"] == {"sha256": "ef" * 32}
    assert slsa["predicate"]["buildDefinition"]["externalParameters"]["policy"]["name"] == "default"


def test_policy_requiring_signing_passes_on_the_stage_evidence(signed_run) -> None:
    _, _, result, _ = signed_run
    policy = load_policy("default").policy.model_copy(deep=True)
    policy.signing.required = True
    policy.signing.methods = ["key"]
    doc = Evidence(signing=result.evidence).document()
    decision = evaluate(policy, doc, final=True)
    assert {r.rule_id: r.status for r in decision.results if r.rule_id.startswith("signing")} == {
        "signing.required": "pass", "signing.method": "pass"}
    policy.signing.methods = ["sigstore"]
    assert evaluate(policy, doc, final=True).decision == "block"


def test_printed_verify_command_checks_files_provenance_and_lineage(signed_run, model_dir: Path, govern_cli) -> None:
    store, run_id, result, policy_ref = signed_run
    command = shlex.split(result.outputs.verify_command)
    assert command[:3] == ["govern", "verify", str(model_dir)]
    ok = govern_cli(*command[1:])
    assert ok.code == 0, ok.out + ok.err
    assert f"lineage: run {run_id} records this model" in ok.out
    assert "lineage: decision 'pass' matches the audit attestation" in ok.out

    # A later decision in the DB that contradicts the signed attestation is caught.
    store.record_decision(run_id, kind="final", decision="block", policy=policy_ref, results=[])
    contradicted = govern_cli(*command[1:])
    assert contradicted.code == 1
    assert "lineage: decision 'block' but the audit attestation says 'pass'" in contradicted.out


def test_modified_model_fails_files_provenance_and_lineage(signed_run, model_dir: Path, govern_cli) -> None:
    _, run_id, result, _ = signed_run
    (model_dir / "tokenizer" / "vocab.txt").write_text("[PAD]\n")
    out = govern_cli(*shlex.split(result.outputs.verify_command)[1:])
    assert out.code == 1
    assert "changed: tokenizer/vocab.txt" in out.out
    assert "subject digest mismatch for 'tokenizer/vocab.txt'" in out.out
    assert f"lineage: run {run_id} records model digest(s)" in out.out


def test_stage_is_off_when_method_is_none(workdir: Path) -> None:
    config = RunConfig.model_validate({"data": {"train": "t.jsonl", "eval": "e.jsonl"}})
    ctx = StageContext(run_id="r", config=config, run_dir=workdir, policy=load_policy("default").policy,
                       evidence=Evidence())
    assert not SigningStage().enabled(ctx)


def test_stage_without_a_trained_model_is_a_stage_error(workdir: Path, keys: KeyPair) -> None:
    from govern.errors import StageError

    config = RunConfig.model_validate({"data": {"train": "t.jsonl", "eval": "e.jsonl"},
                                       "signing": {"method": "key", "private_key": str(keys.private_key)}})
    ctx = StageContext(run_id="r", config=config, run_dir=workdir, policy=load_policy("default").policy,
                       evidence=Evidence())
    with pytest.raises(StageError, match="no trained model to sign"):
        SigningStage().run(ctx)


@pytest.mark.parametrize("attest_bom", ["auto", True])
def test_bom_attestation_without_a_lineage_db(workdir: Path, model_dir: Path, keys: KeyPair, attest_bom: object) -> None:
    """auto: the other attestations are signed and the stage says why there is no BOM; true: a stage error."""
    from govern.errors import StageError

    config = RunConfig.model_validate({"name": "demo", "data": {"train": "t.jsonl", "eval": "e.jsonl"},
                                       "signing": {"method": "key", "private_key": str(keys.private_key),
                                                   "attest_bom": attest_bom}})
    ctx = StageContext(run_id="r", config=config, run_dir=workdir / "runs" / "r", policy=load_policy("default").policy,
                       evidence=_evidence(), outputs={"training": ModelFolder(model_dir=str(model_dir))})
    if attest_bom is True:
        with pytest.raises(StageError, match="signing.attest_bom is true, but the BOM cannot be attested: the stage "
                                             "runs without a lineage DB"):
            SigningStage().run(ctx)
        return
    result = SigningStage().run(ctx)
    assert result.evidence.attestations == ["https://slsa.dev/provenance/v1", "https://govern.dev/audit/v1"]
    assert result.outputs.warnings == ["no BOM attestation (signing.attest_bom: auto): the stage runs without a "
                                       "lineage DB, which the BOM is built from"]


def test_no_key_material_in_stage_outputs_or_db(signed_run, keys: KeyPair) -> None:
    store, run_id, result, _ = signed_run
    body = "".join(keys.private_key.read_text().splitlines()[1:-1])
    needles = [body[i:i + 24] for i in range(0, len(body) - 24, 24)]
    run_dir_text = "".join(p.read_text(errors="ignore") for p in Path(result.evidence.bundle).parent.rglob("*")
                           if p.is_file())
    db_text = json.dumps([e.model_dump(mode="json") for e in store.events(run_id)]) + json.dumps(
        [s.model_dump(mode="json") for s in store.signatures(run_id)])
    haystack = run_dir_text + db_text + result.outputs.model_dump_json() + json.dumps([s.model_dump() for s in result.signatures]) + result.evidence.model_dump_json()
    for needle in needles:
        assert needle not in haystack


def test_verify_against_a_missing_db_is_an_error_not_a_new_db(signed_run, workdir: Path, govern_cli) -> None:
    _, _, result, _ = signed_run
    command = shlex.split(result.outputs.verify_command)[1:]
    missing = workdir / "typo" / "lineage.db"
    command[command.index("--db") + 1] = f"sqlite:///{missing}"
    out = govern_cli(*command)
    assert out.code == 2 and "no lineage DB at" in out.err
    assert not missing.exists()
