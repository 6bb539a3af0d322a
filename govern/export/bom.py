"""A CycloneDX 1.6 ML-BOM of a governed run: the model, what it was built from, and what govern measured.

Built with ``cyclonedx-python-lib`` (components, hashes, dependencies, metadata) and validated by that
library's own JSON-schema validator before it is written. The library's object model has no ``modelCard``
yet (its ``Component.model_card`` is a stub), so the model card is added to the model component of the
library's JSON output and the *whole* document is then validated against the CycloneDX 1.6 schema the
library ships: a card that does not fit the specification is an error here, not a surprise for a
consumer.

Digests are the lineage DB's: the model component's SHA-256 is the artifacts table's digest of the model
folder (a tree digest: sha256 over sorted relative paths and file digests, named in a property), the data
sets' are their files' digests, the base model's the one recorded when it was loaded. No record text and
no PII value: the PII treatment appears as counts by entity type.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from govern.documents.gpai_form import documentation_of, trained_model_artifact
from govern.errors import GovernError
from govern.report.data import ReportData, epsilon_of

if TYPE_CHECKING:
    from govern.lineage.store import LineageStore
    from govern.stage import ArtifactOut

#: Keys of the recorded versions that are not Python distributions (no purl).
_NOT_PACKAGES = {"python", "platform", "cuda", "device", "govern"}


class BOMUnavailableError(GovernError):
    """cyclonedx-python-lib is not installed."""


def _hex(digest: str | None) -> str | None:
    """The 64 hex digits CycloneDX wants, from govern's ``sha256:…`` or bare digests."""
    if not digest:
        return None
    value = digest.removeprefix("sha256:")
    return value if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else None


def build_cyclonedx(data: ReportData) -> dict[str, Any]:
    """The run's ML-BOM as a JSON document (validated); raises :class:`GovernError` when it cannot be built."""
    try:
        from cyclonedx.model import HashAlgorithm, HashType, Property
        from cyclonedx.model.bom import Bom
        from cyclonedx.model.component import Component, ComponentType
        from cyclonedx.output.json import JsonV1Dot6
        from packageurl import PackageURL
    except ImportError as exc:
        raise BOMUnavailableError(f"the CycloneDX export needs cyclonedx-python-lib ({exc}): "
                                  "pip install 'govern[bom]'") from None

    model = trained_model_artifact(data)
    if model is None:
        raise GovernError(f"run {data.run.id} recorded no trained model: there is nothing to describe in a BOM")
    t = data.training
    doc = documentation_of(data)

    def sha(digest: str | None) -> list[HashType]:
        value = _hex(digest)
        return [HashType(alg=HashAlgorithm.SHA_256, content=value)] if value else []

    def props(**values: object) -> list[Property]:
        return [Property(name=f"govern:{k}", value=str(v)) for k, v in values.items() if v not in (None, "")]

    root = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL, name=data.run.name, bom_ref="model",
        version=doc.model_version or data.run.id, hashes=sha(model[1]),
        description=f"{t.method if t else 'fine-tuned'} fine-tune governed by govern (run {data.run.id})",
        properties=props(run_id=data.run.id, decision=data.run.decision, status=data.run.status,
                         policy=f"{data.policy.name} {data.policy.version}" if data.policy else None,
                         policy_digest=data.policy.digest if data.policy else None,
                         digest_method="tree sha256 (sorted relative path and file sha256)",
                         artifact=model[0]))
    bom = Bom()
    bom.metadata.component = root
    base: dict[str, Any] = dict(t.base_model) if t is not None else dict(data.reproducibility.base_model)
    base_component = None
    if base.get("name"):
        base_component = Component(
            type=ComponentType.MACHINE_LEARNING_MODEL, name=str(base["name"]), bom_ref="base-model",
            hashes=sha(base.get("digest")), description=f"base model; source: {base.get('source') or 'unknown'}",
            properties=props(source=base.get("source"), licence=base.get("licence"), package=base.get("package"),
                             gguf_file=base.get("gguf_file")))
        bom.components.add(base_component)
    datasets = []
    if data.data is not None:
        for f in data.data.files:
            component = Component(type=ComponentType.DATA, name=f.path.rsplit("/", 1)[-1], bom_ref=f"dataset:{f.role}",
                                  hashes=sha(f.sha256),
                                  properties=props(role=f.role, records=f.rows, size_bytes=f.size_bytes,
                                                   fingerprint=f.fingerprint, format=f.format))
            bom.components.add(component)
            datasets.append(component)
    libraries = []
    for name, version in sorted((data.reproducibility.versions or {}).items()):
        if name.lower() in _NOT_PACKAGES or not isinstance(version, str) or not version:
            continue
        lib = Component(type=ComponentType.LIBRARY, name=name, version=version, bom_ref=f"pypi:{name}",
                        purl=PackageURL(type="pypi", name=name.lower(), version=version))
        bom.components.add(lib)
        libraries.append(lib)
    bom.register_dependency(root, [c for c in (base_component, *libraries) if c is not None])

    document: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    document["metadata"]["component"]["modelCard"] = _model_card(data, [c.bom_ref.value or "" for c in datasets])
    document["metadata"]["properties"] = [{"name": "govern:generator", "value": data.generator},
                                          {"name": "govern:db", "value": data.db}]
    validate_cyclonedx(document)
    return document


def validate_cyclonedx(document: dict[str, Any]) -> None:
    """Validate against the CycloneDX 1.6 JSON schema shipped with cyclonedx-python-lib; raise on the first error."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))
    if error is not None:
        raise GovernError(f"the CycloneDX BOM does not validate against the 1.6 schema: {error}")


def _model_card(data: ReportData, dataset_refs: list[str]) -> dict[str, Any]:
    t, e, m, fa = data.training, data.evaluation, data.membership, data.fairness
    doc = documentation_of(data)
    base = dict(t.base_model) if t is not None else {}
    task = (t.task if t is not None else None) or (e.task if e is not None else None) or "classification"
    parameters: dict[str, Any] = {"approach": {"type": "supervised"}, "task": task,
                                  "datasets": [{"ref": r} for r in dataset_refs],
                                  "inputs": [{"format": "text"}],
                                  "outputs": [{"format": "class label" if task == "classification" else "text"}]}
    if base.get("model_type"):
        parameters["architectureFamily"] = str(base["model_type"])
    if base.get("architecture"):
        parameters["modelArchitecture"] = str(base["architecture"])

    def metric(kind: str, value: float | None, slice_: str | None = None, low: float | None = None,
               high: float | None = None) -> dict[str, Any] | None:
        if value is None:
            return None
        out: dict[str, Any] = {"type": kind, "value": f"{value:.6g}"}
        if slice_:
            out["slice"] = slice_
        if low is not None and high is not None:
            out["confidenceInterval"] = {"lowerBound": f"{low:.6g}", "upperBound": f"{high:.6g}"}
        return out

    metrics: list[dict[str, Any] | None] = []
    if e is not None:
        metrics += [metric("accuracy", e.accuracy, "evaluation set"), metric("macro F1", e.macro_f1, "evaluation set"),
                    metric("expected calibration error", e.ece, "evaluation set"),
                    metric("perplexity", e.perplexity, "evaluation set")]
    if m is not None:
        for a in m.attacks:
            metrics.append(metric(f"membership-inference AUC ({a.name} attack)", a.auc, "members vs non-members",
                                  a.auc_ci_low, a.auc_ci_high))
    if t is not None and t.dp_enabled:
        eps = epsilon_of(t)
        metrics.append(metric(f"differential privacy epsilon ({t.accountant} accountant)", eps,
                              f"delta = {t.delta:.3g}" if t.delta is not None else None))
    if fa is not None:
        for d in fa.disparities:
            metrics.append(metric(d.metric, d.value, f"sensitive attribute {d.attribute}", d.ci_low, d.ci_high))
    card: dict[str, Any] = {"bom-ref": "model-card", "modelParameters": parameters,
                            "quantitativeAnalysis": {"performanceMetrics": [x for x in metrics if x is not None]}}
    considerations: dict[str, Any] = {}
    if doc.intended_use:
        considerations["useCases"] = [doc.intended_use]
    if doc.limitations:
        considerations["technicalLimitations"] = [doc.limitations]
    risks = []
    ps = data.pii_summary
    if ps.scanned:
        counts = ", ".join(f"{k} {v}" for k, v in ps.by_entity.items()) or "none"
        risks.append({"name": f"personal data in training data (found by type: {counts})",
                      "mitigationStrategy": f"redacted ({ps.redaction_mode}) before training" if ps.redacted
                      else "scanned; the policy allowed training without redaction"})
    if t is not None:
        risks.append({"name": "memorisation of training records",
                      "mitigationStrategy": f"DP-SGD, epsilon {epsilon_of(t):.3g}, delta {t.delta:.3g}"
                      if t.dp_enabled and epsilon_of(t) is not None and t.delta is not None
                      else "none: trained without differential privacy"})
    if risks:
        considerations["ethicalConsiderations"] = risks
    if fa is not None and fa.disparities:
        considerations["fairnessAssessments"] = [
            {"groupAtRisk": f"groups of {d.attribute}", "harms": f"{d.metric} = {d.value:.3g}"
             + (f" (lowest: {d.min_group}, highest: {d.max_group})" if d.min_group and d.max_group else "")}
            for d in fa.disparities if d.value is not None]
    if considerations:
        card["considerations"] = considerations
    if t is not None:
        hyper = {"method": t.method, "epochs": t.epochs, "steps": t.steps, "batch_size": t.batch_size,
                 "learning_rate": t.learning_rate, "max_length": t.max_length, "seed": t.seed,
                 "noise_multiplier": t.noise_multiplier, "max_grad_norm": t.max_grad_norm,
                 "sample_rate": t.sample_rate, "lora_r": t.lora.get("r"), "lora_alpha": t.lora.get("alpha"),
                 "trainable_params": t.trainable_params, "total_params": t.total_params}
        card["properties"] = [{"name": f"govern:hyperparameter:{k}", "value": str(v)}
                              for k, v in hyper.items() if v is not None]
        if t.compute is not None:
            card["properties"].append({"name": "govern:training_flops", "value": f"{t.compute.flops:.6g}"})
            if t.compute.base_compute_ratio is not None:
                card["properties"].append({"name": "govern:base_compute_ratio",
                                           "value": f"{t.compute.base_compute_ratio:.6g}"})
    return card


def write_bom(store: LineageStore, run_id: str, fmt: str = "cyclonedx", out_dir: str | Path = "reports", *,
              record: bool = True) -> tuple[Path, ArtifactOut | None]:
    """Write ``<out_dir>/<run_id>.bom.cdx.json`` from the DB; with ``record``, add it to the run's artifacts."""
    from govern.documents import verified_report_data
    from govern.stage import artifact_for

    if fmt != "cyclonedx":
        raise GovernError(f"unknown BOM format '{fmt}' (this version writes cyclonedx; SPDX 3.0 is not done yet)")
    data = verified_report_data(store, run_id)
    document = build_cyclonedx(data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{data.run.id}.bom.cdx.json"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    artifact = None
    if record:
        artifact = artifact_for(path.resolve(), "bom.cdx.json", "report")
        store.add_artifacts(data.run.id, None, [artifact])
    return path, artifact
