"""In a run, the signing stage attaches the run's CycloneDX ML-BOM as a third attestation, and `govern verify`
checks it like the other two: its signature, its subjects against the model files, its model digest, and
(with the lineage DB) that the data sets and base model it lists are the ones the run recorded.

One real governed run for the module (data with planted PII → pii, which redacts e-mail addresses and
keeps IP addresses under the dev policy → DP-LoRA training of a tiny random BERT for two steps → signing
with a generated key), then the compliance officer's side."""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from govern.lineage import LineageStore
from tests.conftest import skip_or_fail
from tests.training.conftest import build_tiny_bert, sentiment_records

PLANTED = ["ada.planted@example.org", "198.51.100.23"]
STAGES = ["govern.data.stage:DataStage", "govern.pii.stage:PIIStage", "govern.training.stage:TrainingStage",
          "govern.signing.stage:SigningStage"]
CYCLONEDX_BOM = "https://cyclonedx.org/bom"


@dataclass
class SignedRun:
    url: str
    run_id: str
    root: Path
    verify_command: str
    bundles: dict[str, Path]


def _statement(bundle: Path) -> dict[str, Any]:
    return json.loads(base64.b64decode(json.loads(bundle.read_text())["dsseEnvelope"]["payload"]))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedRun]:
    import importlib.util

    import torch

    from govern.pipeline import Pipeline, load_stage
    from govern.signing.keys import generate_key_pair

    if importlib.util.find_spec("cyclonedx") is None:
        skip_or_fail("needs cyclonedx-python-lib (pip install 'govern[bom]')")
    root = tmp_path_factory.mktemp("bom-run")
    base = build_tiny_bert(root / "tiny-bert")
    generate_key_pair(root / "keys")
    train = sentiment_records(48, seed=1, prefix="t")
    train[2]["text"] += f" mail {PLANTED[0]}"
    train[5]["text"] += f" from {PLANTED[1]}"
    for name, rows in (("train.jsonl", train), ("eval.jsonl", sentiment_records(24, seed=2, prefix="e"))):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {
        "name": "bom-attestation", "task": "classification", "output_dir": str(root / "runs"),
        "base_model": {"path": str(base), "name": "tiny-bert"},
        "data": {"train": "train.jsonl", "eval": "eval.jsonl", "text_column": "text", "label_column": "label",
                 "id_column": "id"},
        "pii": {"workers": 1},
        "training": {"max_steps": 2, "batch_size": 48, "max_physical_batch_size": 48, "max_length": 16,
                     "dp": {"noise_multiplier": 1.0}},
        "signing": {"method": "key", "private_key": "keys/signing-key.pem", "attest_bom": True},
        "policy": "dev",
    }
    (root / "govern.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    url = f"sqlite:///{root / 'lineage.db'}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with LineageStore.open(url) as store:
            outcome = Pipeline(store, stages=[load_stage(s) for s in STAGES]).start(root / "govern.yaml")
            assert outcome.status == "completed", outcome.error
            signing = store.completed_stage(outcome.run_id, "signing")
    finally:
        torch.set_num_threads(threads)
    assert signing is not None and signing.outputs and signing.evidence
    bundles = {stem: Path(b) for stem, b in zip(("slsa", "audit", "bom"), signing.evidence["provenance_bundles"],
                                                strict=True)}
    yield SignedRun(url=url, run_id=outcome.run_id, root=root, verify_command=signing.outputs["verify_command"],
                    bundles=bundles)


def _verify(govern_cli: Any, command: str, **replace: Path) -> Any:
    """The run's printed verify command, with some bundles swapped for others, not recorded."""
    args = shlex.split(command)[2:]
    for old, new in replace.items():
        args = [str(new) if a == old else a for a in args]
    return govern_cli("verify", *args, "--no-record")


def test_signing_attests_the_bom_with_the_digests_of_the_db_and_the_provenance(signed_run: SignedRun) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    with LineageStore.open(signed_run.url, read_only=True) as store:
        evidence = store.evidence(signed_run.run_id)
        artifacts = store.artifacts(signed_run.run_id)
        signatures = store.signatures(signed_run.run_id)
        base = store.base_model(store.get_run(signed_run.run_id).base_model_id or 0)
    assert evidence["signing"]["attestations"] == ["https://slsa.dev/provenance/v1", "https://govern.dev/audit/v1",
                                                   CYCLONEDX_BOM]
    assert [s.kind for s in signatures] == ["model", "provenance", "audit", "bom"]
    bom_file = next(a for a in artifacts if a.name == "bom.cdx.json")
    assert bom_file.sha256 == hashlib.sha256(Path(bom_file.path).read_bytes()).hexdigest()
    assert any(a.name == "provenance.bom.sigstore.json" for a in artifacts)

    slsa, bom = _statement(signed_run.bundles["slsa"]), _statement(signed_run.bundles["bom"])
    assert bom["predicateType"] == CYCLONEDX_BOM and bom["subject"] == slsa["subject"]  # every model file
    document = bom["predicate"]
    assert document == json.loads(Path(bom_file.path).read_text())
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document)) is None
    model = document["metadata"]["component"]
    adapter = next(a for a in artifacts if a.kind == "adapter")
    assert model["hashes"] == [{"alg": "SHA-256", "content": evidence["signing"]["model_digest"]}]
    assert adapter.sha256 == evidence["signing"]["model_digest"]
    # The data sets — originals and the PII stage's redacted copies — carry the artifacts table's digests,
    # which are the SLSA provenance's resolved dependencies too.
    components = {c["bom-ref"]: c["hashes"][0]["content"] for c in document["components"]
                  if c["bom-ref"].startswith("dataset:")}
    assert set(components) == {"dataset:train", "dataset:eval", "dataset:train.redacted", "dataset:eval.redacted"}
    recorded = {a.sha256 for a in artifacts if a.kind == "dataset"}
    provenance = {d["digest"]["sha256"] for d in slsa["predicate"]["buildDefinition"]["resolvedDependencies"]
                  if d["annotations"]["kind"] == "dataset"}
    assert set(components.values()) == recorded == provenance
    base_component = next(c for c in document["components"] if c["bom-ref"] == "base-model")
    assert base_component["hashes"][0]["content"] == base.digest.removeprefix("sha256:")
    blob = Path(bom_file.path).read_text() + signed_run.bundles["bom"].read_text()
    for value in PLANTED:
        assert value not in blob


def test_printed_verify_command_checks_the_bom_like_the_other_attestations(signed_run: SignedRun,
                                                                          govern_cli: Any) -> None:
    assert str(signed_run.bundles["bom"]) in shlex.split(signed_run.verify_command)
    ok = _verify(govern_cli, signed_run.verify_command)
    assert ok.code == 0, ok.out + ok.err
    assert f"provenance {signed_run.bundles['bom'].name}: {CYCLONEDX_BOM} statement signed by" in ok.out
    assert "the BOM describes this model" in ok.out
    assert f"lineage: the BOM's 4 data-set digests and base model match run {signed_run.run_id}'s record" in ok.out


def test_a_bom_bundle_whose_payload_was_edited_fails_verification(signed_run: SignedRun, govern_cli: Any,
                                                                 tmp_path: Path) -> None:
    bundle = json.loads(signed_run.bundles["bom"].read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    train = next(c for c in statement["predicate"]["components"] if c["bom-ref"] == "dataset:train")
    train["hashes"][0]["content"] = "0" * 64  # another training set than the one the run used
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    tampered = tmp_path / signed_run.bundles["bom"].name
    tampered.write_text(json.dumps(bundle))
    out = _verify(govern_cli, signed_run.verify_command, **{str(signed_run.bundles["bom"]): tampered})
    assert out.code == 1
    assert (f"✗ provenance {tampered.name}: the signature does not verify with "
            in out.out) and "the signed statement was altered or another key signed it" in out.out
    assert "VERIFICATION FAILED" in out.out


def test_a_validly_signed_bom_that_contradicts_the_db_fails_verification(signed_run: SignedRun, govern_cli: Any,
                                                                        tmp_path: Path) -> None:
    """Signed by the run's own key, but not what the run recorded: the signature alone cannot catch it."""
    from govern.signing.provenance import sign_statement
    from govern.signing.signing import SignerConfig

    statement = _statement(signed_run.bundles["bom"])
    components = statement["predicate"]["components"]
    train = next(c for c in components if c["bom-ref"] == "dataset:train")
    real = train["hashes"][0]["content"]
    train["hashes"][0]["content"] = "ab" * 32
    forged = tmp_path / "provenance.bom.sigstore.json"
    sign_statement(statement, SignerConfig(method="key", private_key=signed_run.root / "keys" / "signing-key.pem"),
                   forged)
    out = _verify(govern_cli, signed_run.verify_command, **{str(signed_run.bundles["bom"]): forged})
    assert out.code == 1
    assert f"✓ provenance {forged.name}: {CYCLONEDX_BOM} statement signed by" in out.out
    assert (f"✗ lineage: the BOM's data set 'train' has sha256 abababababab…, which run {signed_run.run_id} "
            "does not record") in out.out
    assert f"✗ lineage: data set 'train' (sha256 {real[:12]}…) of run {signed_run.run_id} is not in the BOM" in out.out


def test_spdx_of_the_run_lists_the_redacted_copies_it_was_trained_on(signed_run: SignedRun, govern_cli: Any,
                                                                    tmp_path: Path) -> None:
    code = govern_cli("export", "bom", signed_run.run_id, "--format", "spdx", "--out", str(tmp_path),
                      "--db", signed_run.url)
    assert code.code == 0, code.err
    document = json.loads((tmp_path / f"{signed_run.run_id}.bom.spdx.json").read_text())
    datasets = {e["spdxId"].rsplit("/", 1)[-1]: e for e in document["@graph"] if e["type"] == "dataset_DatasetPackage"}
    slsa = _statement(signed_run.bundles["slsa"])
    provenance = {d["name"]: d["digest"]["sha256"] for d in slsa["predicate"]["buildDefinition"]["resolvedDependencies"]
                  if d["annotations"]["kind"] == "dataset"}
    assert {k: e["verifiedUsing"][0]["hashValue"] for k, e in datasets.items()} == provenance
    relations = [(r["from"], r["relationshipType"], r["to"]) for r in document["@graph"] if r["type"] == "Relationship"]
    model = next(e["spdxId"] for e in document["@graph"] if e["type"] == "ai_AIPackage"
                 and e["spdxId"].endswith("/model"))
    assert (model, "trainedOn", [datasets["train.redacted"]["spdxId"]]) in relations
    assert (datasets["train.redacted"]["spdxId"], "descendantOf", [datasets["train"]["spdxId"]]) in relations
    # The dev policy redacts e-mail addresses but keeps IP addresses: the redacted copy still holds personal data.
    assert datasets["train"]["dataset_hasSensitivePersonalInformation"] == "yes"
    assert datasets["train.redacted"]["dataset_hasSensitivePersonalInformation"] == "yes"
    assert datasets["train.redacted"]["dataset_anonymizationMethodUsed"] == ["PII redaction (entity_type)"]
    assert datasets["eval"]["dataset_hasSensitivePersonalInformation"] == "no"
