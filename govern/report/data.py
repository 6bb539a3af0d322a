"""ReportData: everything a run's report shows, assembled from the lineage DB alone.

Reports are views of the DB, never of the run directory: a compliance officer must be able to
regenerate a report years later, after the run's files are gone. :func:`build_report_data` therefore
reads only :class:`~govern.lineage.store.LineageStore` methods, and every renderer (HTML, PDF,
Markdown, JSON) consumes the :class:`ReportData` it returns. The JSON rendering *is*
``ReportData.model_dump_json()``, so this module is also the JSON report's schema
(``govern/report/report.schema.json``).

PII: the DB holds entity types, locations and keyed hashes of findings, never the matched text; the
report goes one step further and shows only counts (by data set, field, entity type and action).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from govern.decisions import RuleResult
from govern.evidence import (
    EVIDENCE_MODELS,
    DataEvidence,
    EvaluationEvidence,
    FairnessEvidence,
    LedgerEntry,
    MembershipEvidence,
    PIIEvidence,
    SigningEvidence,
    TrainingEvidence,
)
from govern.lineage.records import (
    ArtifactCore,
    DatasetCore,
    DecisionCore,
    PolicyRef,
    RunCore,
    SignatureCore,
    StageCore,
    WaiverRecord,
)
from govern.report.compliance import compliance_sections, profile_controls

if TYPE_CHECKING:  # the store imports SQLAlchemy; keep `import govern.report` light
    from govern.lineage.store import LineageStore

REPORT_SCHEMA_VERSION: Final = "govern.report/v1"

#: The stages whose evidence a report renders, in pipeline order (canaries ride in membership).
STAGE_ORDER: tuple[str, ...] = ("data", "pii", "training", "evaluation", "membership", "fairness", "signing")



class ReportModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The report's sections extend the lineage records' shared fields (govern.lineage.records' *Core classes),
# adding only what the report derives; ``extra="forbid"`` comes from ReportModel.
class RunInfo(RunCore, ReportModel):
    duration_s: float | None = None
    error: str | None = None
    config_digest: str | None = None
    config_path: str | None = None
    run_dir: str | None = Field(default=None, description="Where the run wrote files (it may no longer exist).")
    parent_run_id: str | None = None


class ModelInfo(ReportModel):
    """The model under review, as an auditor asks first: what it started from and what it is for."""

    base_model: str | None = Field(default=None, description="The base model's name.")
    source: str | None = Field(default=None, description="Where the base model comes from (its card or package).")
    licence: str | None = Field(default=None, description="The base model's licence, as its own files state it.")
    package: str | None = None
    digest: str | None = Field(default=None, description="sha256 of the base model's files as loaded.")
    intended_use: str | None = None
    limitations: str | None = None
    out_of_scope_use: str | None = None


class PolicyInfo(PolicyRef, ReportModel):
    source_matches_digest: bool | None = Field(
        default=None, description="sha256 of the recorded source equals the policy digest (None: no source).")


class DecisionInfo(DecisionCore, ReportModel):
    results: list[RuleResult] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(_outcome(r) for r in self.results)
        return {k: c.get(k, 0) for k in ("blocking", "warning", "waived", "passed", "skipped", "error", "info")}


def _outcome(r: RuleResult) -> str:
    """One word for how a rule result affects the decision."""
    if r.status == "fail":
        return {"block": "blocking", "warn": "warning"}.get(r.severity, "info")
    return {"pass": "passed", "waived": "waived", "skipped": "skipped", "error": "error"}.get(r.status, r.status)


class WaiverInfo(WaiverRecord):
    active: bool = Field(description="Still valid on the day the report was generated.")
    applied_to: list[str] = Field(default_factory=list, description="Rule ids of this run it waived.")


class StageInfo(StageCore, ReportModel):
    duration_s: float | None = None
    input_digest: str
    error: str | None = None
    model_digest: str | None = Field(
        default=None, description="Tree sha256 of the model folder this execution wrote (training), judged "
                                  "(evaluation, membership, fairness) or signed (signing), as its evidence names it.")


#: Stages whose evidence is about one trained model, and what they did with it.
MODEL_STAGES: dict[str, str] = {"training": "wrote", "evaluation": "judged", "membership": "judged",
                                "fairness": "judged", "signing": "signed"}


class ArtifactInfo(ArtifactCore, ReportModel):
    stage: str | None = None
    dataset_fingerprint: str | None = None
    rows: int | None = None


class DatasetInfo(DatasetCore, ReportModel):
    pass


class PIICountRow(ReportModel):
    dataset: str
    field: str
    entity_type: str
    action: str
    findings: int
    records: int


class PIISummary(ReportModel):
    """Counts only. Source: the stored findings table (what was actually found) cross-checked with
    the PII stage's evidence counts."""

    scanned: bool
    engine: str | None = None
    records_total: int | None = None
    records_scanned: int | None = None
    sampled: bool = False
    records_affected: int | None = None
    findings_total: int = 0
    rows: list[PIICountRow] = Field(default_factory=list)
    by_entity: dict[str, int] = Field(default_factory=dict)
    by_action: dict[str, int] = Field(default_factory=dict)
    redacted: bool = False
    redaction_mode: str | None = None
    stored_findings: int = Field(default=0, description="Rows in the findings table for this run.")
    detection_quality: str = Field(default="", description="Recall/precision on the policy's labeled sample, or "
                                   "that detection quality was not measured.")


class PrivacySummary(ReportModel):
    dp_enabled: bool
    accountant: str | None = None
    epsilon: float | None = Field(default=None, description="ε under the accountant used in training.")
    epsilon_by_accountant: dict[str, float] = Field(default_factory=dict)
    delta: float | None = Field(default=None, description="δ the ε holds at.")
    noise_multiplier: float | None = Field(default=None, description="σ, as read from the DP optimizer's record.")
    sample_rate: float | None = Field(default=None, description="q: Poisson sampling rate of a logical batch.")
    steps: int | None = Field(default=None, description="Steps the accountant composed (not the steps planned).")
    epochs: float | None = None
    max_grad_norm: float | None = None
    n_train: int | None = None
    batch_size: int | None = None
    explanation: str


class SignatureInfo(SignatureCore, ReportModel):
    verify_command: str


class EventInfo(ReportModel):
    id: int
    created_at: datetime
    kind: str
    hash: str
    actor: str | None = Field(default=None, description="Who the event was recorded for (CI identity, OS user "
                                                         "or --actor); absent on events of older govern versions.")


class ActorAction(ReportModel):
    """Who ran, checked, waived, signed or verified the run, from the audit events (hash-chained)."""

    action: Literal["ran", "checked", "waived", "signed", "verified", "finished", "registered", "approved",
                    "promoted", "deprecated", "revoked", "rolled back"]
    actor: str
    at: datetime
    event_id: int
    detail: str = ""


class ModelVersionInfo(ReportModel):
    """The registry's record of the model this run produced: its version, status and every lifecycle action."""

    ref: str = Field(description="NAME@vN")
    digest: str
    status: str = Field(description="candidate, approved, deployed, deprecated or revoked.")
    initiator: str = Field(description="Who ran the training (four eyes: not an approver).")
    approvers: list[str] = Field(default_factory=list)
    actions: list[dict[str, Any]] = Field(default_factory=list,
                                          description="action, from_status, to_status, actor, reason, created_at.")


class ChainInfo(ReportModel):
    ok: bool
    events: int
    head_hash: str
    problems: list[str] = Field(default_factory=list)


class GraphNode(ReportModel):
    id: str
    kind: Literal["run", "parent_run", "stage", "artifact", "dataset", "base_model", "signature", "policy"]
    label: str
    detail: str | None = None


class GraphEdge(ReportModel):
    source: str
    target: str
    relation: str


class LineageGraph(ReportModel):
    nodes: list[GraphNode] = Field(default_factory=list)
    edges: list[GraphEdge] = Field(default_factory=list)


class ParentRun(ReportModel):
    id: str
    name: str
    status: str
    decision: str | None = None
    started_at: datetime


class Reproducibility(ReportModel):
    seeds: dict[str, int] = Field(default_factory=dict)
    config: dict[str, Any] | None = None
    config_digest: str | None = None
    code_revision: str | None = None
    versions: dict[str, Any] = Field(default_factory=dict)
    base_model: dict[str, Any] = Field(default_factory=dict)
    stage_input_digests: dict[str, str] = Field(default_factory=dict)
    device: str | None = None


class ComplianceRow(ReportModel):
    section: str
    annex_iv: list[str]
    nist_ai_rmf: list[str]
    nist_ai_600_1: list[str] = Field(default_factory=list, description="NIST AI 600-1 (Generative AI profile) "
                                                                       "risks and the RMF actions covering them.")
    iso_42001: list[str] = Field(default_factory=list, description="ISO/IEC 42001:2023 Annex A controls.")
    evidence_present: bool


class ReportData(ReportModel):
    """One run's report: the JSON rendering is this model; HTML, PDF and Markdown render it."""

    schema_version: Literal["govern.report/v1"] = REPORT_SCHEMA_VERSION
    generated_at: datetime
    generator: str = Field(description="govern version that generated the report.")
    db: str = Field(description="The lineage DB the report was generated from (password masked).")
    run: RunInfo
    model: ModelInfo = Field(default_factory=ModelInfo)
    policy: PolicyInfo | None = None
    decision: DecisionInfo | None = Field(default=None, description="The final decision (else the latest).")
    decisions: list[DecisionInfo] = Field(default_factory=list, description="Every decision, oldest first.")
    waivers: list[WaiverInfo] = Field(default_factory=list,
                                      description="Waivers recorded for this run or one of its data sets' fingerprints.")
    stages: list[StageInfo] = Field(default_factory=list, description="Every stage execution, in the order run.")
    artifacts: list[ArtifactInfo] = Field(default_factory=list,
                                          description="Files and folders the run read and wrote, with their digests.")
    datasets: list[DatasetInfo] = Field(default_factory=list, description="The data sets the run read or wrote (its redacted "
                                                                           "copies), by fingerprint.")
    data: DataEvidence | None = None
    pii: PIIEvidence | None = None
    pii_summary: PIISummary
    training: TrainingEvidence | None = None
    privacy: PrivacySummary | None = None
    ledger: list[LedgerEntry] = Field(default_factory=list)
    evaluation: EvaluationEvidence | None = None
    membership: MembershipEvidence | None = None
    memorization_explanation: list[str] = Field(
        default_factory=list, description="Plain-language sentences on what a causal LM reproduces verbatim "
                                          "(extraction of training records, planted PII canaries).")
    fairness: FairnessEvidence | None = None
    signing: SigningEvidence | None = None
    other_evidence: dict[str, Any] = Field(
        default_factory=dict, description="Evidence under keys this report version does not render."
    )
    evidence_problems: list[str] = Field(default_factory=list)
    signatures: list[SignatureInfo] = Field(default_factory=list)
    lineage: LineageGraph = Field(default_factory=LineageGraph)
    parents: list[ParentRun] = Field(default_factory=list)
    events: list[EventInfo] = Field(default_factory=list)
    actions: list[ActorAction] = Field(default_factory=list, description="Who did what to this run.")
    registry: list[ModelVersionInfo] = Field(default_factory=list,
                                             description="Model versions of this run in the registry.")
    chain: ChainInfo | None = None
    reproducibility: Reproducibility
    compliance: list[ComplianceRow] = Field(default_factory=list)

    def stage_status(self, stage: str) -> str:
        """completed / failed / blocked / skipped, or 'not run' when the stage never started."""
        statuses = [s.status for s in self.stages if s.stage == stage]
        return statuses[-1] if statuses else "not run"

    def absent_reason(self, stage: str) -> str:
        """Why a section has nothing to show, in words a reader can act on."""
        status = self.stage_status(stage)
        if status == "not run":
            return f"The {stage} stage did not run in this run, so it produced no evidence."
        if status == "skipped":
            return f"The {stage} stage was skipped (switched off in the run config), so it produced no evidence."
        if status in ("failed", "blocked"):
            return f"The {stage} stage {status} before producing evidence."
        return f"The {stage} stage recorded no evidence."

    def judged_model_digests(self) -> dict[str, str | None]:
        """Stage → digest of the model its evidence in this report is about (the latest completed execution)."""
        out: dict[str, str | None] = {}
        for s in self.stages:
            if s.stage in MODEL_STAGES and s.status == "completed":
                out[s.stage] = s.model_digest
        return out

    def model_digest_problems(self) -> list[str]:
        """Audits or a signature about a model other than the one training wrote (or naming none): each one
        means that number is not evidence about the model this report is for."""
        digests = self.judged_model_digests()
        trained = digests.get("training")
        if trained is None:
            return []
        problems = []
        for stage, digest in digests.items():
            if stage == "training":
                continue
            if digest is None:
                problems.append(f"{stage}: its evidence names no model digest (recorded by an older govern)")
            elif digest != trained:
                problems.append(f"{stage}: {MODEL_STAGES[stage]} model {digest[:16]}…, not the model training "
                                f"wrote ({trained[:16]}…)")
        return problems


# ------------------------------------------------------------------------------------------ assembly
def build_report_data(store: LineageStore, run_id: str, *, now: datetime | None = None) -> ReportData:
    """Assemble a run's :class:`ReportData` from the lineage DB (``run_id`` may be ``latest``).

    Reads nothing from the run directory, so it works after that directory is deleted.
    """
    now = now or datetime.now(UTC)
    run = store.get_run(run_id)
    executions = store.stage_executions(run.id)
    evidence = store.evidence(run.id)
    decisions = [_decision_info(d) for d in store.decisions(run.id)]
    decisions.sort(key=lambda d: (d.created_at, d.id))
    final = _final_decision(decisions)
    artifacts = store.artifacts(run.id)
    stage_of_execution = {e.id: e.stage for e in executions}

    typed: dict[str, Any] = {}
    other: dict[str, Any] = {}
    problems: list[str] = []
    for key, doc in evidence.items():
        model = EVIDENCE_MODELS.get(key) if key in STAGE_ORDER else None
        if model is None:
            other[key] = doc
            continue
        try:
            typed[key] = model.model_validate(doc)
        except ValidationError as exc:
            # Keep the stored document visible rather than dropping it: the report must not hide evidence.
            other[key] = doc
            problems.append(f"{key}: stored evidence does not match this version's model ({exc.error_count()} errors)")

    run_fingerprints = {a.dataset_fingerprint for a in artifacts if a.dataset_fingerprint}
    dataset_fingerprints = sorted(run_fingerprints)
    datasets = [
        DatasetInfo.model_validate(d)  # from the record's attributes: the DatasetCore fields
        for d in store.datasets()
        if d.fingerprint in run_fingerprints
    ]

    applied: dict[int, list[str]] = {}
    for d in decisions:
        for r in d.results:
            if r.waiver_id is not None:
                applied.setdefault(r.waiver_id, [])
                if r.rule_id not in applied[r.waiver_id]:
                    applied[r.waiver_id].append(r.rule_id)
    waivers = [
        WaiverInfo(
            **w.model_dump(), active=w.active_on(now.date()), applied_to=applied.get(w.id, []),
        )
        for w in store.waivers(targets=[run.id, *dataset_fingerprints])
    ]

    training: TrainingEvidence | None = typed.get("training")
    signing: SigningEvidence | None = typed.get("signing")
    signing_outputs = next((e.outputs for e in reversed(executions) if e.stage == "signing" and e.outputs), None)
    signatures = [
        SignatureInfo(
            id=s.id, kind=s.kind, subject=s.subject, subject_digest=s.subject_digest, method=s.method,
            bundle_path=s.bundle_path, signer=s.signer, created_at=s.created_at,
            verify_command=verify_command(s.subject, s.bundle_path, s.method, signing_outputs),
        )
        for s in store.signatures(run.id)
    ]

    parents = _parents(store, run.parent_run_id)
    base_model: dict[str, Any] = {}
    if run.base_model_id is not None:
        bm = store.base_model(run.base_model_id)
        base_model = {"name": bm.name, "path": bm.path, "digest": bm.digest}
    elif training is not None and training.base_model:
        base_model = dict(training.base_model)

    records = store.events(run.id)
    events = [EventInfo(id=e.id, created_at=e.created_at, kind=e.kind, hash=e.hash, actor=_actor_of(e.payload))
              for e in records]
    actions = [a for a in (_action_of(e.id, e.created_at, e.kind, e.payload) for e in records) if a is not None]
    # The rows this report shows, and the chain under them: a broken record is said on the first screen.
    chain_report = store.verify_run(run.id)
    chain = ChainInfo(ok=chain_report.ok, events=chain_report.events, head_hash=chain_report.head_hash,
                      problems=list(chain_report.problems))

    stages = [
        StageInfo(
            stage=e.stage, status=e.status, started_at=e.started_at, ended_at=e.ended_at,
            duration_s=_seconds(e.started_at, e.ended_at), input_digest=e.input_digest, error=e.error,
            model_digest=_model_digest_of(e.stage, e.evidence, e.outputs),
        )
        for e in executions
    ]
    artifact_infos = [
        ArtifactInfo(
            id=a.id, name=a.name, kind=a.kind, role=a.role, path=a.path, sha256=a.sha256, size_bytes=a.size_bytes,
            stage=stage_of_execution.get(a.execution_id) if a.execution_id is not None else None,
            dataset_fingerprint=a.dataset_fingerprint, rows=a.rows,
        )
        for a in artifacts
    ]

    policy = None
    if (ref := run.policy) is not None:
        matches = (None if ref.source is None else
                   "sha256:" + hashlib.sha256(ref.source.encode("utf-8")).hexdigest() == run.policy_digest)
        policy = PolicyInfo(**ref.model_dump(), source_matches_digest=matches)
    elif final is not None:
        policy = PolicyInfo(name=final.policy_name, version=final.policy_version, digest=final.policy_digest)

    ledger_doc = other.get("ledger")
    ledger = []
    if isinstance(ledger_doc, list):
        for entry in ledger_doc:
            try:
                ledger.append(LedgerEntry.model_validate(entry))
            except ValidationError:
                problems.append("ledger: an entry does not match this version's model")

    data = ReportData(
        generated_at=now,
        generator=f"govern {_govern_version()}",
        db=store.display_url,
        run=RunInfo(
            id=run.id, name=run.name, kind=run.kind, status=run.status, decision=run.decision,
            started_at=run.started_at, ended_at=run.ended_at, duration_s=_seconds(run.started_at, run.ended_at),
            error=run.error, config_digest=run.config_digest, config_path=run.config_path, run_dir=run.run_dir,
            parent_run_id=run.parent_run_id,
        ),
        policy=policy,
        decision=final,
        decisions=decisions,
        waivers=waivers,
        stages=stages,
        artifacts=artifact_infos,
        datasets=datasets,
        data=typed.get("data"),
        pii=typed.get("pii"),
        pii_summary=_pii_summary(typed.get("pii"), store.pii_findings(run.id)),
        training=training,
        privacy=_privacy_summary(training),
        ledger=ledger,
        evaluation=typed.get("evaluation"),
        membership=typed.get("membership"),
        memorization_explanation=explain_memorization(typed.get("membership")),
        fairness=typed.get("fairness"),
        signing=signing,
        other_evidence={k: v for k, v in other.items() if k != "ledger" or not ledger},
        evidence_problems=problems,
        signatures=signatures,
        lineage=_lineage_graph(run.id, run.name, executions, artifact_infos, datasets, base_model, parents,
                               signatures, policy),
        parents=parents,
        events=events,
        actions=actions,
        registry=[ModelVersionInfo(ref=v.ref, digest=f"sha256:{v.digest}", status=v.status, initiator=v.initiator,
                                   approvers=v.approvers,
                                   actions=[a.model_dump(mode="json", include={"action", "from_status", "to_status",
                                                                              "actor", "reason", "created_at"})
                                            for a in v.actions])
                  for v in store.model_versions(run_id=run.id)],
        chain=chain,
        reproducibility=_reproducibility(run, typed, executions, base_model),
        model=_model_info(run.config or {}, dict(training.base_model) if training is not None else base_model),
    )
    data.compliance = [ComplianceRow(section=s, annex_iv=a, nist_ai_rmf=n, nist_ai_600_1=profile_controls(s)[0],
                                     iso_42001=profile_controls(s)[1], evidence_present=p)
                       for s, a, n, p in compliance_sections(_sections_with_evidence(data))]
    return data


def _sections_with_evidence(data: ReportData) -> dict[str, bool]:
    return {
        "Decision and findings": data.decision is not None,
        "Policy": data.policy is not None,
        "Waivers": bool(data.waivers),
        "Data provenance": data.data is not None,
        "PII summary": data.pii_summary.scanned,
        "Privacy guarantee": data.privacy is not None,
        "Membership inference": data.membership is not None,
        "Fairness": data.fairness is not None,
        "Task metrics and calibration": data.evaluation is not None,
        "Training curves": data.training is not None and bool(data.training.curve),
        "Signatures and provenance": bool(data.signatures) or data.signing is not None,
        "Lineage graph": bool(data.lineage.nodes),
        "Reproducibility record": data.reproducibility.config is not None or bool(data.reproducibility.seeds),
        "Audit-event log": bool(data.events),
    }


def _model_info(config: dict[str, Any], base_model: dict[str, Any]) -> ModelInfo:
    documentation = config.get("documentation") or {}

    def text(source: dict[str, Any], key: str) -> str | None:
        value = source.get(key)
        return str(value) if value not in (None, "") else None

    return ModelInfo(base_model=text(base_model, "name"), source=text(base_model, "source"),
                     licence=text(base_model, "licence"), package=text(base_model, "package"),
                     digest=text(base_model, "digest"), intended_use=text(documentation, "intended_use"),
                     limitations=text(documentation, "limitations"),
                     out_of_scope_use=text(documentation, "out_of_scope_use"))


def _actor_of(payload: dict[str, Any]) -> str | None:
    from govern.actor import Actor

    raw = payload.get("actor")
    if not isinstance(raw, dict):
        return None
    try:
        return Actor.model_validate(raw).display()
    except ValueError:
        return None


def _action_of(event_id: int, at: datetime, kind: str, payload: dict[str, Any]) -> ActorAction | None:
    """The accountable action an event records, if it is one a compliance officer asks "who?" about."""
    actor = _actor_of(payload)
    if actor is None:
        return None
    action: str | None = None
    detail = ""
    if kind == "run.created":
        action = "ran"
    elif kind == "decision.recorded":
        action = "checked" if payload.get("kind") == "check" else None
        detail = f"decision {payload.get('decision')}"
    elif kind == "waiver.added":
        action, detail = "waived", f"{payload.get('rule_id')} until {payload.get('until')} (by {payload.get('by')})"
    elif kind == "signature.added":
        action, detail = "signed", f"{payload.get('kind')} with {payload.get('method')}"
    elif kind == "run.verified":
        action = "verified"
        detail = f"{'verified' if payload.get('verified') else 'FAILED'} in {payload.get('verification_run_id')}"
    elif kind.startswith("model.") and kind != "model.created":
        # The registry's lifecycle actions on this run's model (reasons are in model_actions, not the log).
        action = {"model.registered": "registered", "model.approved": "approved", "model.promoted": "promoted",
                  "model.deprecated": "deprecated", "model.revoked": "revoked",
                  "model.rollback": "rolled back"}.get(kind)
        steps = payload.get("steps") or []
        detail = ", ".join(f"{st.get('from')} → {st.get('to')}" for st in steps if isinstance(st, dict)) or \
            f"{payload.get('model')} v{payload.get('version')}"
    elif kind == "run.status" and payload.get("status") in ("completed", "blocked", "failed"):
        action, detail = "finished", f"{payload.get('status')}"
    if action is None:
        return None
    return ActorAction(action=action, actor=actor, at=at, event_id=event_id, detail=detail)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


def _decision_info(d: Any) -> DecisionInfo:
    return DecisionInfo(
        id=d.id, kind=d.kind, decision=d.decision, created_at=d.created_at, policy_name=d.policy_name,
        policy_version=d.policy_version, policy_digest=d.policy_digest,
        results=[
            RuleResult.model_validate(r.model_dump(include=set(RuleResult.model_fields))) for r in d.results
        ],
    )


def _final_decision(decisions: list[DecisionInfo]) -> DecisionInfo | None:
    """The run's verdict: its final decision, else (a run that stopped at a gate) the latest one."""
    finals = [d for d in decisions if d.kind == "final"]
    if finals:
        return finals[-1]
    return decisions[-1] if decisions else None


def _parents(store: LineageStore, parent_run_id: str | None) -> list[ParentRun]:
    """The chain of parent runs, newest first (stops at a cycle or a parent missing from the DB)."""
    from govern.errors import NotFoundError

    parents: list[ParentRun] = []
    seen: set[str] = set()
    while parent_run_id is not None and parent_run_id not in seen:
        seen.add(parent_run_id)
        try:
            p = store.get_run(parent_run_id)
        except NotFoundError:
            break
        parents.append(ParentRun(id=p.id, name=p.name, status=p.status, decision=p.decision, started_at=p.started_at))
        parent_run_id = p.parent_run_id
    return parents


def _govern_version() -> str:
    from govern.versions import govern_version

    return govern_version()


def _pii_summary(evidence: PIIEvidence | None, findings: list[Any]) -> PIISummary:
    """Aggregate stored findings into counts; never touches anything but types, fields and actions."""
    rows: dict[tuple[str, str, str, str], list[Any]] = {}
    for f in findings:
        rows.setdefault((f.dataset, f.field, f.entity_type, f.action), []).append(f)
    count_rows: list[PIICountRow] = []
    for (dataset, field, entity, action), fs in sorted(rows.items()):
        records = {(x.file, x.record_id if x.record_id is not None else x.line) for x in fs}
        count_rows.append(PIICountRow(dataset=dataset, field=field, entity_type=entity, action=action,
                                      findings=len(fs), records=len(records)))
    if not count_rows and evidence is not None:
        # Findings table empty (e.g. a DB pruned of findings): fall back to the stage's own counts.
        count_rows = [
            PIICountRow(dataset=c.dataset, field=c.field, entity_type=c.entity_type, action=c.action,
                        findings=c.count, records=c.records)
            for c in evidence.counts
        ]
    by_entity: Counter[str] = Counter()
    by_action: Counter[str] = Counter()
    for r in count_rows:
        by_entity[r.entity_type] += r.findings
        by_action[r.action] += r.findings
    return PIISummary(
        scanned=evidence is not None,
        engine=f"{evidence.engine} {evidence.engine_version}" if evidence else None,
        records_total=evidence.records_total if evidence else None,
        records_scanned=evidence.records_scanned if evidence else None,
        sampled=evidence.sampled if evidence else False,
        records_affected=evidence.records_affected if evidence else None,
        findings_total=sum(r.findings for r in count_rows),
        rows=count_rows,
        by_entity=dict(sorted(by_entity.items())),
        by_action=dict(sorted(by_action.items())),
        redacted=evidence.redacted if evidence else False,
        redaction_mode=evidence.redaction_mode if evidence else None,
        stored_findings=len(findings),
        detection_quality=_detection_quality(evidence),
    )


def _detection_quality(evidence: PIIEvidence | None) -> str:
    """One line from the PII stage's quality evidence (counts and rates only)."""
    from govern.pii.quality import NOT_MEASURED

    quality = evidence.quality if evidence is not None else None
    if quality is None or not quality.measured:
        return NOT_MEASURED
    parts = []
    for q in quality.entities:
        if q.recall is None:
            parts.append(f"{q.entity_type}: no gold spans")
            continue
        precision = "n/a" if q.precision is None else f"{q.precision:.3f}"
        parts.append(f"{q.entity_type} recall {q.recall:.3f} [{q.recall_ci_low:.3f}, {q.recall_ci_high:.3f}], "
                     f"precision {precision} ({q.true_positives}/{q.gold})")
    return (f"on {quality.sample_file} ({quality.records} labeled records, {quality.ci_method} "
            f"{quality.confidence:.0%}): " + "; ".join(parts))


def epsilon_of(training: TrainingEvidence) -> float | None:
    """The ε the run's accountant computed (never a config value). Falls back to the largest recorded
    ε when the accountant's own key is missing: the pessimistic choice."""
    if not training.epsilon:
        return None
    if training.accountant and training.accountant in training.epsilon:
        return training.epsilon[training.accountant]
    return max(training.epsilon.values())


def _privacy_summary(training: TrainingEvidence | None) -> PrivacySummary | None:
    if training is None:
        return None
    eps = epsilon_of(training) if training.dp_enabled else None
    return PrivacySummary(
        dp_enabled=training.dp_enabled,
        accountant=training.accountant,
        epsilon=eps,
        epsilon_by_accountant=dict(training.epsilon),
        delta=training.delta,
        noise_multiplier=training.noise_multiplier,
        sample_rate=training.sample_rate,
        steps=training.steps,
        epochs=training.epochs,
        max_grad_norm=training.max_grad_norm,
        n_train=training.n_train,
        batch_size=training.batch_size,
        explanation=explain_epsilon(training.dp_enabled, eps, training.delta, training.n_train),
    )


def explain_epsilon(dp_enabled: bool, epsilon: float | None, delta: float | None, n_train: int | None) -> str:
    """A plain-language sentence of what the guarantee means for one person in the training data."""
    if not dp_enabled or epsilon is None:
        return ("This model was trained WITHOUT differential privacy: there is no formal bound on how much it "
                "can reveal about any one training record.")
    factor = math.exp(epsilon)
    factor_text = f"{factor:,.1f}" if factor < 1e6 else f"{factor:.2e}"
    delta_text = f"{delta:.0e}" if delta is not None else "an unstated δ"
    n_text = f" of the {n_train:,} training records" if n_train else ""
    return (
        f"With ε = {epsilon:.2f} and δ = {delta_text}: for any one person's record{n_text}, anything an attacker "
        f"could conclude from this model is at most {factor_text}× (e^ε) more likely than if that record had "
        f"been left out, except with probability at most δ. Smaller ε is stronger; ε ≤ 1 is strong, ε around 8 "
        "is a common practical ceiling, and much larger values give little formal protection."
    )


def explain_memorization(membership: MembershipEvidence | None) -> list[str]:
    """Plain-language sentences on what the model reproduced verbatim, for a reader who is not a specialist."""
    if membership is None:
        return []
    sentences: list[str] = []
    x = membership.extraction
    if x is not None and x.members.records:
        seen, unseen = x.members, x.nonmembers
        sentence = (f"Given the first {x.prefix_tokens} tokens of each of {seen.records:,} training records, the "
                    f"model continued {seen.exact_matches:,} of them ({seen.exact_match_rate:.0%}) word for word for "
                    f"up to {x.suffix_tokens} more tokens; it did the same for {unseen.exact_matches:,} of "
                    f"{unseen.records:,} similar records it never saw ({unseen.exact_match_rate:.0%}). ")
        if x.excess_exact_match_rate > 0:
            sentence += (f"The difference, {x.excess_exact_match_rate * 100:.0f} percentage points, is how much of its "
                         "training text it gives back verbatim to someone who knows how a record begins.")
        else:
            sentence += "It repeats its training records no more often than text it never saw."
        sentences.append(sentence)
    r = membership.pii_regurgitation
    if r is not None and r.inserted:
        sentence = (f"Made-up personal data (e-mail addresses, phone and card numbers) was planted in {r.inserted:,} "
                    f"training records; given the words before each, the model wrote out {r.inserted_reproduced:,} "
                    f"of them exactly ({r.inserted_rate:.0%}), against {r.held_out_reproduced:,} of {r.held_out:,} "
                    f"made-up values it was never shown (what chance produces). ")
        sentence += ("Real personal data in the training set, next to text an attacker can guess, is at the same risk."
                     if r.inserted_reproduced else "It reproduced none of the planted personal data.")
        sentences.append(sentence)
    return sentences


def verify_command(subject: str, bundle_path: str, method: str, outputs: dict[str, Any] | None) -> str:
    """The exact ``govern verify`` command for a signature (the signing stage's own, when it recorded one)."""
    from govern.signing.commands import verify_command as build

    if outputs:
        recorded = outputs.get("verify_command")
        if isinstance(recorded, str) and recorded and bundle_path in recorded:
            return recorded
    trust: list[str] = []
    if method == "key":
        public_key = (outputs or {}).get("public_key")
        trust = ["--key", _shell_quote(public_key) if isinstance(public_key, str) else "<public-key.pem>"]
    elif method == "certificate":
        # Whom to trust is the verifier's choice, not the signer's: the CA chain they trust.
        chain = (outputs or {}).get("certificate_chain")
        trust = ["--cert-chain", _shell_quote(chain) if isinstance(chain, str) else "<trusted-ca-chain.pem>"]
    elif method == "sigstore":
        trust = ["--identity", "<signer identity>", "--issuer", "<OIDC issuer>"]
    return build(subject, bundle_path, trust)


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _reproducibility(run: Any, typed: dict[str, Any], executions: list[Any],
                     base_model: dict[str, Any]) -> Reproducibility:
    seeds: dict[str, int] = {}
    for key in ("training", "membership", "fairness"):
        ev = typed.get(key)
        if ev is not None and getattr(ev, "seed", None) is not None:
            seeds[key] = ev.seed
    config = run.config or {}
    for section, sub in (("config.training", "training"),):
        value = (config.get(sub) or {}).get("seed") if isinstance(config.get(sub), dict) else None
        if isinstance(value, int) and section not in seeds:
            seeds[section] = value
    versions: dict[str, Any] = dict(run.versions or {})
    training = typed.get("training")
    if training is not None:
        for k, v in training.versions.items():
            versions.setdefault(k, v)
    digests: dict[str, str] = {}
    for e in executions:
        digests[e.stage] = e.input_digest
    return Reproducibility(
        seeds=seeds, config=run.config, config_digest=run.config_digest, code_revision=run.code_revision,
        versions=versions, base_model=base_model, stage_input_digests=digests,
        device=training.device if training is not None else None,
    )


def _lineage_graph(run_id: str, run_name: str, executions: list[Any], artifacts: list[ArtifactInfo],
                   datasets: list[DatasetInfo], base_model: dict[str, Any], parents: list[ParentRun],
                   signatures: list[SignatureInfo], policy: PolicyInfo | None) -> LineageGraph:
    """Run → stages (in order) → artifacts; data sets and the base model feed in; signatures attach to
    the artifacts they cover; parent runs precede the run."""
    g = LineageGraph()
    run_node = f"run:{run_id}"
    g.nodes.append(GraphNode(id=run_node, kind="run", label=run_name, detail=run_id))
    for p in parents:
        g.nodes.append(GraphNode(id=f"run:{p.id}", kind="parent_run", label=p.name, detail=p.id))
        g.edges.append(GraphEdge(source=f"run:{p.id}", target=run_node, relation="parent of"))
    if policy is not None:
        g.nodes.append(GraphNode(id="policy", kind="policy", label=f"{policy.name} {policy.version}",
                                 detail=policy.digest))
        g.edges.append(GraphEdge(source="policy", target=run_node, relation="governs"))
    seen_stage: dict[str, str] = {}
    previous: str | None = None
    for e in executions:
        node = f"stage:{e.stage}"
        if e.stage not in seen_stage:
            g.nodes.append(GraphNode(id=node, kind="stage", label=e.stage, detail=e.status))
            g.edges.append(GraphEdge(source=run_node, target=node, relation="ran"))
            if previous is not None:
                g.edges.append(GraphEdge(source=previous, target=node, relation="then"))
            previous = node
        seen_stage[e.stage] = node
    fp_nodes: set[str] = set()
    for d in datasets:
        node = f"dataset:{d.fingerprint}"
        fp_nodes.add(node)
        g.nodes.append(GraphNode(id=node, kind="dataset", label=d.name, detail=d.fingerprint))
    for a in artifacts:
        node = f"artifact:{a.id}"
        g.nodes.append(GraphNode(id=node, kind="artifact", label=f"{a.name} ({a.kind})", detail=a.sha256))
        stage_node = seen_stage.get(a.stage) if a.stage else None
        anchor = stage_node or run_node
        if a.role == "input":
            g.edges.append(GraphEdge(source=node, target=anchor, relation="input to"))
        else:
            g.edges.append(GraphEdge(source=anchor, target=node, relation="produced"))
        if a.dataset_fingerprint and f"dataset:{a.dataset_fingerprint}" in fp_nodes:
            g.edges.append(GraphEdge(source=f"dataset:{a.dataset_fingerprint}", target=node, relation="content of"))
    if base_model:
        g.nodes.append(GraphNode(id="base_model", kind="base_model", label=str(base_model.get("name", "base model")),
                                 detail=str(base_model.get("digest", ""))))
        target = seen_stage.get("training", run_node)
        g.edges.append(GraphEdge(source="base_model", target=target, relation="fine-tuned by"))
    by_digest = {a.sha256: f"artifact:{a.id}" for a in artifacts}
    for s in signatures:
        node = f"signature:{s.id}"
        g.nodes.append(GraphNode(id=node, kind="signature", label=f"{s.kind} signature ({s.method})",
                                 detail=s.bundle_path))
        g.edges.append(GraphEdge(source=node, target=by_digest.get(s.subject_digest, run_node), relation="signs"))
    return g


def _model_digest_of(stage: str, evidence: dict[str, Any] | None, outputs: dict[str, Any] | None) -> str | None:
    """The model digest a stage execution's evidence names (its outputs for stages that record it there)."""
    if stage not in MODEL_STAGES:
        return None
    for doc in (evidence, outputs):
        value = (doc or {}).get("model_digest")
        if isinstance(value, str) and value:
            return value
    return None
