"""The AI bill of materials, from the lineage DB alone, listing the lineage DB's own digests: a CycloneDX 1.6
ML-BOM validated by cyclonedx-python-lib, signed and verified like a report; and an SPDX 3.0.1 document
(AI and Dataset profiles) that passes the published SPDX 3.0.1 JSON schema committed with govern."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from govern.errors import GovernError
from govern.lineage import LineageStore
from tests.conftest import skip_or_fail
from tests.report.conftest import RecordedDB


@pytest.fixture
def needs_cyclonedx() -> None:
    """An optional extra: skipped where absent, a failure in CI (GOVERN_REQUIRE_ALL=1, which installs [dev])."""
    import importlib.util

    if importlib.util.find_spec("cyclonedx") is None:
        skip_or_fail("needs cyclonedx-python-lib (pip install 'govern[bom]')")


def _bom(govern_cli, recorded: RecordedDB, out: Path) -> tuple[Path, dict]:  # type: ignore[no-untyped-def, type-arg]
    code, stdout, stderr = govern_cli("export", "bom", recorded.run.run_id, "--out", str(out), "--db", recorded.url)
    assert code == 0, stderr
    path = out / f"{recorded.run.run_id}.bom.cdx.json"
    return path, json.loads(path.read_text())


@pytest.mark.usefixtures("needs_cyclonedx")
def test_bom_validates_and_lists_the_digests_of_the_artifacts_table(
        recorded: RecordedDB, govern_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    assert not recorded.run.run_dir.exists()  # from the DB alone
    path, bom = _bom(govern_cli, recorded, tmp_path)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(path.read_text()) is None
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    with LineageStore.open(recorded.url, read_only=True) as store:
        artifacts = store.artifacts(recorded.run.run_id)
        base = store.base_model(store.get_run(recorded.run.run_id).base_model_id or 0)
        training = store.evidence(recorded.run.run_id)["training"]
    model = bom["metadata"]["component"]
    adapter = next(a for a in artifacts if a.kind == "adapter")
    assert model["type"] == "machine-learning-model"
    assert model["hashes"] == [{"alg": "SHA-256", "content": adapter.sha256.removeprefix("sha256:")}]
    components = {c["bom-ref"]: c for c in bom["components"]}
    datasets = {a.name: a for a in artifacts if a.kind == "dataset"}
    for role in ("train", "eval"):
        component = components[f"dataset:{role}"]
        assert component["type"] == "data"
        assert component["hashes"][0]["content"] == datasets[f"{role}.jsonl"].sha256
        props = {p["name"]: p["value"] for p in component["properties"]}
        assert props["govern:fingerprint"] == datasets[f"{role}.jsonl"].dataset_fingerprint
    assert components["base-model"]["hashes"][0]["content"] == base.digest.removeprefix("sha256:")
    assert {"ref": "model", "dependsOn": sorted(["base-model", "pypi:opacus", "pypi:peft", "pypi:torch",
                                                 "pypi:transformers"])} in bom["dependencies"]
    assert components["pypi:torch"]["purl"] == "pkg:pypi/torch@2.13.0"
    # The model card: data sets by reference, the audits' numbers, the accountant's ε.
    card = model["modelCard"]
    assert sorted(d["ref"] for d in card["modelParameters"]["datasets"]) == ["dataset:eval", "dataset:train"]
    metrics = {m["type"]: m for m in card["quantitativeAnalysis"]["performanceMetrics"]}
    assert metrics["accuracy"]["value"] == "0.8125"
    assert float(metrics["differential privacy epsilon (rdp accountant)"]["value"]) == pytest.approx(
        recorded.run.epsilon, rel=1e-5)
    assert "membership-inference AUC (loss attack)" in metrics and "equalized_odds_difference" in metrics
    hyper = {p["name"]: p["value"] for p in card["properties"]}
    assert hyper["govern:hyperparameter:total_params"] == str(training["total_params"])
    for value in recorded.run.planted:
        assert value not in path.read_text()
    # Recorded as an artifact with the digest of the file written.
    with LineageStore.open(recorded.url, read_only=True) as store:
        recorded_bom = [a for a in store.artifacts(recorded.run.run_id) if a.name == "bom.cdx.json"]
    assert recorded_bom and recorded_bom[-1].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.usefixtures("needs_cyclonedx")
def test_a_model_card_outside_the_specification_is_refused() -> None:
    from govern.export.bom import validate_cyclonedx

    bad = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
           "metadata": {"component": {"type": "machine-learning-model", "name": "m",
                                      "modelCard": {"modelParameters": {"approach": {"type": "guesswork"}}}}}}
    with pytest.raises(GovernError, match="does not validate against the 1.6 schema"):
        validate_cyclonedx(bad)


@pytest.mark.usefixtures("needs_cyclonedx")
def test_signed_bom_verifies_and_a_tampered_one_fails(recorded: RecordedDB, govern_cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    from govern.signing.keys import generate_key_pair

    pair = generate_key_pair(workdir / "keys")
    code, out, err = govern_cli("export", "bom", recorded.run.run_id, "--db", recorded.url,
                                "--sign-key", str(pair.private_key))
    assert code == 0, err
    path = workdir / "reports" / f"{recorded.run.run_id}.bom.cdx.json"
    bundle = path.with_name(path.name + ".sigstore.json")
    verify = ("verify", str(path), "--signature", str(bundle), "--key", str(pair.public_key))
    assert govern_cli(*verify)[0] == 0
    bom = json.loads(path.read_text())
    bom["metadata"]["component"]["hashes"][0]["content"] = "0" * 64  # swap the model for another
    path.write_text(json.dumps(bom, indent=2) + "\n")
    assert govern_cli(*verify)[0] == 1


@pytest.mark.usefixtures("needs_cyclonedx")
def test_bom_to_stdout_and_an_unknown_format(recorded: RecordedDB, govern_cli) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = govern_cli("export", "bom", "latest", "--out", "-", "--db", recorded.url)
    assert code == 0 and json.loads(out)["metadata"]["component"]["name"] == "support-intents"
    code, _, err = govern_cli("export", "bom", recorded.run.run_id, "--format", "swid", "--db", recorded.url)
    assert code == 2 and "cyclonedx" in err and "spdx" in err


# ------------------------------------------------------------------------------------------------ SPDX
SPDX_SCHEMA = Path(__file__).parents[2] / "govern" / "export" / "schemas" / "spdx-3.0.1.schema.json"


def _by_type(document: dict, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in document["@graph"] if e["type"] == kind]


def _related(document: dict, source: str, kind: str) -> list[str]:  # type: ignore[type-arg]
    return [t for r in _by_type(document, "Relationship") if r["from"] == source and r["relationshipType"] == kind
            for t in r["to"]]


def test_committed_spdx_schema_is_the_published_file_named_in_its_note() -> None:
    note = (SPDX_SCHEMA.parent / "README.md").read_text()
    assert "https://spdx.org/schema/3.0.1/spdx-json-schema.json" in note
    assert hashlib.sha256(SPDX_SCHEMA.read_bytes()).hexdigest() in note
    schema = json.loads(SPDX_SCHEMA.read_text())
    assert schema["properties"]["@context"] == {"const": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"}
    assert {"ai_AIPackage", "dataset_DatasetPackage", "SpdxDocument"} <= schema["$defs"].keys()


def test_spdx_document_passes_the_published_schema_and_lists_the_db_digests(
        recorded: RecordedDB, govern_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import jsonschema

    assert not recorded.run.run_dir.exists() and not recorded.run.data_dir.exists()  # from the DB alone
    code, out, err = govern_cli("export", "bom", recorded.run.run_id, "--format", "spdx", "--out", str(tmp_path),
                                "--db", recorded.url)
    assert code == 0, err
    path = tmp_path / f"{recorded.run.run_id}.bom.spdx.json"
    text = path.read_text()
    document = json.loads(text)
    # The stock validator on the committed schema file, independent of govern's own validation.
    errors = list(jsonschema.Draft202012Validator(json.loads(SPDX_SCHEMA.read_text())).iter_errors(document))
    assert errors == []

    with LineageStore.open(recorded.url, read_only=True) as store:
        artifacts = store.artifacts(recorded.run.run_id)
        base = store.base_model(store.get_run(recorded.run.run_id).base_model_id or 0)

    def sha(element: dict) -> str:  # type: ignore[type-arg]
        (digest,) = element["verifiedUsing"]
        assert digest["algorithm"] == "sha256"
        return str(digest["hashValue"])

    spdx_doc = _by_type(document, "SpdxDocument")[0]
    assert {"ai", "dataset"} <= set(spdx_doc["profileConformance"])
    packages = {e["spdxId"].rsplit("/", 1)[-1]: e for e in _by_type(document, "ai_AIPackage")}
    model, base_model = packages["model"], packages["base-model"]
    assert spdx_doc["rootElement"] == [model["spdxId"]]
    adapter = next(a for a in artifacts if a.kind == "adapter")
    assert sha(model) == adapter.sha256.removeprefix("sha256:")
    assert sha(base_model) == base.digest.removeprefix("sha256:")
    assert base_model["spdxId"] in _related(document, model["spdxId"], "dependsOn")
    assert f"{recorded.run.epsilon:.6g}" in {m["value"] for m in model["ai_metric"]}
    assert model["ai_useSensitivePersonalInformation"] == "yes"  # the planted PII was found and not redacted
    datasets = {e["name"]: e for e in _by_type(document, "dataset_DatasetPackage")}
    recorded_datasets = {a.name: a for a in artifacts if a.kind == "dataset"}
    assert set(datasets) == set(recorded_datasets)
    for name, element in datasets.items():
        assert sha(element) == recorded_datasets[name].sha256
        assert element["dataset_datasetSize"] == recorded_datasets[name].size_bytes
    assert _related(document, model["spdxId"], "trainedOn") == [datasets["train.jsonl"]["spdxId"]]
    assert _related(document, model["spdxId"], "testedOn") == [datasets["eval.jsonl"]["spdxId"]]
    # Both profiles: exactly one declared and one concluded licence per AI and dataset package.
    for element in [*packages.values(), *datasets.values()]:
        for kind in ("hasDeclaredLicense", "hasConcludedLicense"):
            assert len([r for r in _by_type(document, "Relationship")
                        if r["from"] == element["spdxId"] and r["relationshipType"] == kind]) == 1
    for value in recorded.run.planted:
        assert value not in text
    with LineageStore.open(recorded.url, read_only=True) as store:
        recorded_bom = [a for a in store.artifacts(recorded.run.run_id) if a.name == "bom.spdx.json"]
    assert recorded_bom and recorded_bom[-1].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_spdx_document_outside_the_specification_is_refused() -> None:
    from govern.export.spdx import SPDX_CONTEXT, validate_spdx

    info = {"type": "CreationInfo", "@id": "_:c", "specVersion": "3.0.1", "created": "2026-01-01T00:00:00Z",
            "createdBy": ["https://example.org/agent"]}
    dataset = {"type": "dataset_DatasetPackage", "spdxId": "https://example.org/d", "creationInfo": "_:c",
               "name": "train.jsonl"}  # no dataset_datasetType, which the Dataset profile requires
    with pytest.raises(GovernError, match="does not validate against the 3.0.1 schema.*'dataset_datasetType' is a "
                                          "required property"):
        validate_spdx({"@context": SPDX_CONTEXT, "@graph": [info, dataset]})
