"""The AI bill of materials of a governed run: the model, what it was built from, and what govern measured.

Two formats from one view model (:class:`BOMFacts`, built from :class:`~govern.report.data.ReportData`,
so from the lineage DB alone): a **CycloneDX 1.6 ML-BOM** (here) and an **SPDX 3.0.1** document with the
AI and Dataset profiles (:mod:`govern.export.spdx`). Both list the same digests, which are the lineage DB's
and the SLSA provenance's.

The CycloneDX BOM is built with ``cyclonedx-python-lib`` (components, hashes, dependencies, metadata) and
validated by that library's own JSON-schema validator before it is written. The library's object model has
no ``modelCard`` yet (its ``Component.model_card`` is a stub), so the model card is added to the model
component of the library's JSON output and the *whole* document is then validated against the CycloneDX
1.6 schema the library ships: a card that does not fit the specification is an error here, not a surprise
for a consumer.

Digests are the lineage DB's: the model's SHA-256 is the artifacts table's digest of the model folder (a
tree digest: sha256 over sorted relative paths and file digests, named in a property), the data sets' are
their files' digests (the redacted copies the model was trained on included), the base model's the one
recorded when it was loaded. No record text and no PII value: the PII treatment appears as counts by
entity type.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from govern.config import DocumentationConfig
from govern.documents.gpai_form import documentation_of, trained_model_artifact
from govern.errors import GovernError
from govern.evidence import FileRecord
from govern.report.data import ReportData, epsilon_of

if TYPE_CHECKING:
    from govern.lineage.store import LineageStore
    from govern.stage import ArtifactOut

#: What ``govern export bom --format`` writes, and the file name suffix of each.
BOM_FORMATS: dict[str, str] = {"cyclonedx": "bom.cdx.json", "spdx": "bom.spdx.json"}

#: Keys of the recorded versions that are not Python distributions (no purl).
_NOT_PACKAGES = {"python", "platform", "cuda", "device", "govern"}


class BOMUnavailableError(GovernError):
    """cyclonedx-python-lib is not installed."""


def hex_sha256(digest: str | None) -> str | None:
    """The 64 hex digits CycloneDX and SPDX want, from govern's ``sha256:…`` or bare digests."""
    if not digest:
        return None
    value = digest.removeprefix("sha256:")
    return value if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else None


PersonalData = Literal["yes", "no", "unknown"]


class BOMDataset(BaseModel):
    """One data set the model was trained or tested on: an original file or its redacted copy."""

    ref: str = Field(description="dataset:<role>, or dataset:<role>.redacted for the PII stage's copy.")
    role: str
    name: str
    sha256: str | None = Field(default=None, description="Digest of the file's bytes, as recorded.")
    size_bytes: int | None = None
    rows: int | None = None
    fingerprint: str | None = Field(default=None, description="Format-independent content fingerprint.")
    format: str | None = None
    redacted_from: str | None = Field(default=None, description="ref of the original of a redacted copy.")
    redaction_mode: str | None = None
    personal_data: PersonalData = Field(
        description="What the PII scan says of this file: yes (found and left in), no (none found, or all of "
                    "it redacted in this copy), unknown (not scanned). Bounded by the scanner's recall.")
    licence: str | None = None
    description: str | None = None


class BOMMetric(BaseModel):
    kind: str
    value: float
    slice: str | None = None
    low: float | None = None
    high: float | None = None


class BOMFacts(BaseModel):
    """What both BOM formats say about a run: one gathering from the report data, two renderings."""

    run_id: str
    name: str
    version: str
    description: str
    model_artifact: str
    model_sha256: str = Field(description="The artifacts table's (tree) sha256 of the model training wrote.")
    base_model: dict[str, Any] = Field(default_factory=dict)
    datasets: list[BOMDataset] = Field(default_factory=list)
    libraries: list[tuple[str, str]] = Field(default_factory=list, description="(distribution, version).")
    metrics: list[BOMMetric] = Field(default_factory=list)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    task: str = "classification"
    built_at: datetime | None = Field(default=None, description="When the training stage ended.")
    documentation: DocumentationConfig = Field(default_factory=DocumentationConfig)

    def trained_on(self) -> list[BOMDataset]:
        """The training data as the model saw it: the redacted copy where the PII stage made one."""
        copies = {d.redacted_from for d in self.datasets if d.redacted_from}
        return [d for d in self.datasets if d.role == "train" and d.ref not in copies]

    def tested_on(self) -> list[BOMDataset]:
        copies = {d.redacted_from for d in self.datasets if d.redacted_from}
        return [d for d in self.datasets if d.role != "train" and d.ref not in copies]


def bom_facts(data: ReportData) -> BOMFacts:
    """Gather the BOM's facts from the report data; a run without a trained model has no BOM."""
    model = trained_model_artifact(data)
    if model is None:
        raise GovernError(f"run {data.run.id} recorded no trained model: there is nothing to describe in a BOM")
    t, e = data.training, data.evaluation
    doc = documentation_of(data)
    task = (t.task if t is not None else None) or (e.task if e is not None else None) or "classification"
    training_end = next((s.ended_at for s in reversed(data.stages) if s.stage == "training"
                         and s.status == "completed"), None)
    return BOMFacts(
        run_id=data.run.id, name=data.run.name, version=doc.model_version or data.run.id,
        description=f"{t.method if t else 'fine-tuned'} fine-tune governed by govern (run {data.run.id})",
        model_artifact=model[0], model_sha256=model[1],
        base_model=dict(t.base_model) if t is not None else dict(data.reproducibility.base_model),
        datasets=_datasets(data, doc), libraries=_libraries(data), metrics=_metrics(data),
        hyperparameters=_hyperparameters(data), task=task, built_at=training_end, documentation=doc)


def _datasets(data: ReportData, doc: DocumentationConfig) -> list[BOMDataset]:
    ps = data.pii_summary

    def mine(dataset: str, f: FileRecord) -> bool:
        # The pii stage names a data set by its role, a standalone scan by its (display) path.
        return dataset in (f.role, f.path) or f.path.endswith("/" + dataset)

    def personal(f: FileRecord, redacted: bool) -> PersonalData:
        if not ps.scanned:
            return "unknown"
        rows = [r for r in ps.rows if mine(r.dataset, f) and (not redacted or r.action == "allow")]
        return "yes" if sum(r.findings for r in rows) else "no"

    out: list[BOMDataset] = []
    files = data.data.files if data.data is not None else []
    for f in files:
        about = doc.datasets.get(f.role)
        out.append(BOMDataset(ref=f"dataset:{f.role}", role=f.role, name=f.path.rsplit("/", 1)[-1], sha256=f.sha256,
                              size_bytes=f.size_bytes, rows=f.rows, fingerprint=f.fingerprint, format=f.format,
                              personal_data=personal(f, False), licence=about.licence if about else None,
                              description=about.description if about else None))
    # The copies the PII stage wrote, which the model was trained on: digests from its evidence (the
    # artifacts table's, which the SLSA provenance lists too), sizes and rows from the artifacts table.
    redacted = data.pii.redacted_files if data.pii is not None else {}
    by_digest = {a.sha256: a for a in data.artifacts if a.kind == "dataset"}
    for f in files:
        if f.role not in redacted:
            continue
        copy = by_digest.get(redacted[f.role])
        original = next(d for d in out if d.ref == f"dataset:{f.role}")
        out.append(BOMDataset(
            ref=f"dataset:{f.role}.redacted", role=f.role, sha256=redacted[f.role],
            name=copy.path.rsplit("/", 1)[-1] if copy is not None else f"{f.role}.redacted",
            size_bytes=copy.size_bytes if copy is not None else None, rows=copy.rows if copy is not None else None,
            fingerprint=copy.dataset_fingerprint if copy is not None else None, format=f.format,
            redacted_from=original.ref, redaction_mode=ps.redaction_mode, personal_data=personal(f, True),
            licence=original.licence))
    return out


def _libraries(data: ReportData) -> list[tuple[str, str]]:
    return [(name, version) for name, version in sorted((data.reproducibility.versions or {}).items())
            if name.lower() not in _NOT_PACKAGES and isinstance(version, str) and version]


def _metrics(data: ReportData) -> list[BOMMetric]:
    """The audits' figures: task metrics, membership AUC, the accountant's ε, fairness disparities."""
    t, e, m, fa = data.training, data.evaluation, data.membership, data.fairness
    out: list[BOMMetric] = []

    def add(kind: str, value: float | None, slice_: str | None = None, low: float | None = None,
            high: float | None = None) -> None:
        if value is not None:
            both = low is not None and high is not None
            out.append(BOMMetric(kind=kind, value=value, slice=slice_, low=low if both else None,
                                 high=high if both else None))

    if e is not None:
        add("accuracy", e.accuracy, "evaluation set")
        add("macro F1", e.macro_f1, "evaluation set")
        add("expected calibration error", e.ece, "evaluation set")
        add("perplexity", e.perplexity, "evaluation set")
    if m is not None:
        for a in m.attacks:
            add(f"membership-inference AUC ({a.name} attack)", a.auc, "members vs non-members", a.auc_ci_low,
                a.auc_ci_high)
    if t is not None and t.dp_enabled:
        add(f"differential privacy epsilon ({t.accountant} accountant)", epsilon_of(t),
            f"delta = {t.delta:.3g}" if t.delta is not None else None)
    if fa is not None:
        for d in fa.disparities:
            add(d.metric, d.value, f"sensitive attribute {d.attribute}", d.ci_low, d.ci_high)
    return out


def _hyperparameters(data: ReportData) -> dict[str, Any]:
    t = data.training
    if t is None:
        return {}
    hyper = {"method": t.method, "epochs": t.epochs, "steps": t.steps, "batch_size": t.batch_size,
             "learning_rate": t.learning_rate, "max_length": t.max_length, "seed": t.seed,
             "noise_multiplier": t.noise_multiplier, "max_grad_norm": t.max_grad_norm,
             "sample_rate": t.sample_rate, "lora_r": t.lora.get("r"), "lora_alpha": t.lora.get("alpha"),
             "trainable_params": t.trainable_params, "total_params": t.total_params}
    return {k: v for k, v in hyper.items() if v is not None}


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

    facts = bom_facts(data)

    def sha(digest: str | None) -> list[HashType]:
        value = hex_sha256(digest)
        return [HashType(alg=HashAlgorithm.SHA_256, content=value)] if value else []

    def props(**values: object) -> list[Property]:
        return [Property(name=f"govern:{k}", value=str(v)) for k, v in values.items() if v not in (None, "")]

    root = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL, name=facts.name, bom_ref="model", version=facts.version,
        hashes=sha(facts.model_sha256), description=facts.description,
        properties=props(run_id=data.run.id, decision=data.run.decision, status=data.run.status,
                         policy=f"{data.policy.name} {data.policy.version}" if data.policy else None,
                         policy_digest=data.policy.digest if data.policy else None,
                         digest_method="tree sha256 (sorted relative path and file sha256)",
                         artifact=facts.model_artifact))
    bom = Bom()
    bom.metadata.component = root
    base = facts.base_model
    base_component = None
    if base.get("name"):
        base_component = Component(
            type=ComponentType.MACHINE_LEARNING_MODEL, name=str(base["name"]), bom_ref="base-model",
            hashes=sha(base.get("digest")), description=f"base model; source: {base.get('source') or 'unknown'}",
            properties=props(source=base.get("source"), licence=base.get("licence"), package=base.get("package"),
                             gguf_file=base.get("gguf_file")))
        bom.components.add(base_component)
    datasets = []
    for d in facts.datasets:
        component = Component(type=ComponentType.DATA, name=d.name, bom_ref=d.ref, hashes=sha(d.sha256),
                              properties=props(role=d.role, records=d.rows, size_bytes=d.size_bytes,
                                               fingerprint=d.fingerprint, format=d.format,
                                               redacted_from=d.redacted_from, redaction_mode=d.redaction_mode))
        bom.components.add(component)
        datasets.append(component)
    libraries = []
    for name, version in facts.libraries:
        lib = Component(type=ComponentType.LIBRARY, name=name, version=version, bom_ref=f"pypi:{name}",
                        purl=PackageURL(type="pypi", name=name.lower(), version=version))
        bom.components.add(lib)
        libraries.append(lib)
    bom.register_dependency(root, [c for c in (base_component, *libraries) if c is not None])

    document: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    document["metadata"]["component"]["modelCard"] = _model_card(data, facts, [c.bom_ref.value or "" for c in datasets])
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


def _model_card(data: ReportData, facts: BOMFacts, dataset_refs: list[str]) -> dict[str, Any]:
    t, fa = data.training, data.fairness
    doc = facts.documentation
    base = facts.base_model if t is not None else {}
    task = facts.task
    parameters: dict[str, Any] = {"approach": {"type": "supervised"}, "task": task,
                                  "datasets": [{"ref": r} for r in dataset_refs],
                                  "inputs": [{"format": "text"}],
                                  "outputs": [{"format": "class label" if task == "classification" else "text"}]}
    if base.get("model_type"):
        parameters["architectureFamily"] = str(base["model_type"])
    if base.get("architecture"):
        parameters["modelArchitecture"] = str(base["architecture"])

    def metric(m: BOMMetric) -> dict[str, Any]:
        out: dict[str, Any] = {"type": m.kind, "value": f"{m.value:.6g}"}
        if m.slice:
            out["slice"] = m.slice
        if m.low is not None and m.high is not None:
            out["confidenceInterval"] = {"lowerBound": f"{m.low:.6g}", "upperBound": f"{m.high:.6g}"}
        return out

    metrics = [metric(m) for m in facts.metrics]
    card: dict[str, Any] = {"bom-ref": "model-card", "modelParameters": parameters,
                            "quantitativeAnalysis": {"performanceMetrics": metrics}}
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
        card["properties"] = [{"name": f"govern:hyperparameter:{k}", "value": str(v)}
                              for k, v in facts.hyperparameters.items()]
        if t.compute is not None:
            card["properties"].append({"name": "govern:training_flops", "value": f"{t.compute.flops:.6g}"})
            if t.compute.base_compute_ratio is not None:
                card["properties"].append({"name": "govern:base_compute_ratio",
                                           "value": f"{t.compute.base_compute_ratio:.6g}"})
    return card


def build_bom(data: ReportData, fmt: str) -> dict[str, Any]:
    """The run's BOM in ``fmt`` (``cyclonedx`` or ``spdx``), validated against its format's schema."""
    if fmt == "cyclonedx":
        return build_cyclonedx(data)
    if fmt == "spdx":
        from govern.export.spdx import build_spdx

        return build_spdx(data)
    raise GovernError(f"unknown BOM format '{fmt}' (choose one of {', '.join(BOM_FORMATS)})")


def write_bom(store: LineageStore, run_id: str, fmt: str = "cyclonedx", out_dir: str | Path = "reports", *,
              record: bool = True) -> tuple[Path, ArtifactOut | None]:
    """Write ``<out_dir>/<run_id>.bom.cdx.json`` (CycloneDX) or ``.bom.spdx.json`` (SPDX 3.0.1 JSON-LD) from the
    DB; with ``record``, add it to the run's artifacts."""
    from govern.documents import save_run_file, verified_report_data

    if fmt not in BOM_FORMATS:
        raise GovernError(f"unknown BOM format '{fmt}' (choose one of {', '.join(BOM_FORMATS)})")
    data = verified_report_data(store, run_id)
    document = build_bom(data, fmt)
    return save_run_file(store, data.run.id, out_dir, BOM_FORMATS[fmt],
                         (json.dumps(document, indent=2) + "\n").encode("utf-8"), record=record)


def cyclonedx_of_run(db_url: str, run_id: str) -> dict[str, Any]:
    """The run's CycloneDX BOM from the lineage DB as it stands (the signing stage attests it mid-run: every
    stage before signing is recorded by then). Read-only; a broken record gets no BOM."""
    from contextlib import closing

    from govern.documents import verified_report_data
    from govern.lineage.store import LineageStore

    with closing(LineageStore.open(db_url, read_only=True)) as store:
        return build_cyclonedx(verified_report_data(store, run_id))


class BOMDigests(BaseModel):
    """The digests a CycloneDX BOM claims, read back from its JSON (``govern verify`` checks them)."""

    run_id: str | None = None
    model: str | None = None
    base_model: str | None = None
    datasets: dict[str, str | None] = Field(default_factory=dict, description="bom-ref → sha256 (hex).")


def cyclonedx_digests(document: dict[str, Any]) -> BOMDigests:
    """What :func:`build_cyclonedx` put in a BOM, without cyclonedx-python-lib (a verifier may not have it).

    Reads any JSON: a field of the wrong shape reads as absent, which the checks then report."""

    def mapping(value: Any) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    def items(value: Any) -> list[dict[str, Any]]:
        return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    def sha(component: dict[str, Any]) -> str | None:
        return next((text(h.get("content")) for h in items(component.get("hashes")) if h.get("alg") == "SHA-256"),
                    None)

    model = mapping(mapping(document.get("metadata")).get("component"))
    props = {p.get("name"): p.get("value") for p in items(model.get("properties"))}
    components = items(document.get("components"))
    base = next((c for c in components if c.get("bom-ref") == "base-model"), None)
    return BOMDigests(run_id=text(props.get("govern:run_id")), model=sha(model),
                      base_model=sha(base) if base is not None else None,
                      datasets={str(c.get("bom-ref")): sha(c) for c in components
                                if str(c.get("bom-ref", "")).startswith("dataset:")})
