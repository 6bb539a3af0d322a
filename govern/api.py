"""govern's public Python API. The CLI is a thin layer over these functions; so can your own tooling be.

Every function that records something opens the lineage DB itself (``db_url`` or ``GOVERN_DB_URL`` or
``.govern/lineage.db``) and closes it before returning, so they are safe to call from scripts and CI jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from govern.actor import Actor
from govern.config import RunConfig, load_run_config
from govern.errors import GovernError, NotFoundError, RecordIntegrityError
from govern.gate import decide, policy_ref, run_waiver_targets, settle, stored_document
from govern.lineage import LineageStore
from govern.lineage.records import (
    AncestryGraph,
    ChainReport,
    DecisionRecord,
    RunRecord,
    StageRecord,
    WaiverRecord,
)
from govern.pipeline import PipelineListener, RunOutcome, run_pipeline
from govern.policy import LoadedPolicy, PolicyDecision, evaluate, load_policy, policy_from_document
from govern.stage import Progress


@contextmanager
def open_store(db_url: str | None = None, *, actor: Actor | None = None) -> Iterator[LineageStore]:
    store = LineageStore.open(db_url, actor=actor)
    try:
        yield store
    finally:
        store.close()


# ------------------------------------------------------------------------------------------------ run
def run(config_path: str | Path, *, db_url: str | None = None, resume: str | None = None,
        progress: Progress | None = None, listener: PipelineListener | None = None) -> RunOutcome:
    """Run the governed fine-tune described by ``config_path`` (or resume run ``resume``)."""
    return run_pipeline(config_path, db_url=db_url, resume=resume, progress=progress, listener=listener)


def validate_config(path: str | Path) -> tuple[RunConfig, LoadedPolicy]:
    """Validate a run config and the policy it names; raises ConfigError/PolicyError with precise messages."""
    config = load_run_config(path)
    return config, load_policy(config.policy)


def check_config(path: str | Path, config: RunConfig, policy: LoadedPolicy) -> Any:
    """Beyond the schema: missing data files or base model, settings the policy would block
    (:class:`govern.preflight.ConfigChecks`: errors and warnings)."""
    from govern.preflight import check_config as _check_config

    return _check_config(path, config, policy)


@dataclass
class PolicyTestOutcome:
    policy: LoadedPolicy
    decision: PolicyDecision


def policy_test(policy: str | Path, evidence: str | Path) -> PolicyTestOutcome:
    """Evaluate ``policy`` on an evidence document (JSON): the final decision, no waivers, nothing recorded."""
    from govern.policy.loader import lint_policy, load_evidence_document

    loaded, _notes = lint_policy(policy)
    return PolicyTestOutcome(policy=loaded, decision=evaluate(loaded.policy, load_evidence_document(evidence)))


# ----------------------------------------------------------------------------------------------- runs
@dataclass
class RunDetails:
    run: RunRecord
    stages: list[StageRecord]
    decision: DecisionRecord | None
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    waivers: list[dict[str, Any]] = field(default_factory=list)
    #: Where the run's model came from (its run's inputs, data sets, base model, policy, parent runs).
    ancestry: AncestryGraph | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run.model_dump(mode="json", exclude={"policy_document", "policy_source"}),
            "stages": [s.model_dump(mode="json", exclude={"evidence"}) for s in self.stages],
            "decision": self.decision.model_dump(mode="json") if self.decision else None,
            "artifacts": self.artifacts,
            "waivers": self.waivers,
            "ancestry": self.ancestry.model_dump(mode="json", exclude={"run", "stages", "policy"})
            if self.ancestry else None,
        }


def list_runs(*, db_url: str | None = None, limit: int = 50, status: str | None = None,
              kind: str | None = None) -> list[RunRecord]:
    with closing(LineageStore.open(db_url, read_only=True)) as store:
        return store.list_runs(limit=limit, status=status, kind=kind)


def shown_status(record: RunRecord) -> str:
    """The run's status as a reader should see it: a run the DB says is ``running`` whose process is gone
    (killed: nothing was left to record the end) is ``interrupted``, which ``govern run --resume`` continues.
    Where this machine cannot tell (the run folder is elsewhere), the recorded status stands."""
    from govern.runlock import process_alive

    gone = (record.status == "running" and record.kind == "run" and record.run_dir is not None
            and process_alive(Path(record.run_dir)) is False)
    return "interrupted" if gone else record.status


def show_run(run_id: str, *, db_url: str | None = None) -> RunDetails:
    with closing(LineageStore.open(db_url, read_only=True)) as store:
        record = store.get_run(run_id)
        evidence = store.evidence(record.id)
        targets = run_waiver_targets(store, record.id, evidence)
        artifacts = store.artifacts(record.id)
        model = next((a for a in reversed(artifacts) if a.role == "output" and a.kind in ("model", "adapter")), None)
        return RunDetails(
            run=record,
            stages=store.stage_executions(record.id),
            decision=_latest_decision(store, record.id),
            artifacts=[a.model_dump(mode="json") for a in artifacts],
            waivers=[w.model_dump(mode="json") for w in store.waivers(targets=targets)],
            ancestry=store.ancestry(model.sha256) if model is not None else None,
        )


def _latest_decision(store: LineageStore, run_id: str) -> DecisionRecord | None:
    decisions = store.decisions(run_id)
    return decisions[-1] if decisions else None


# ---------------------------------------------------------------------------------------------- check
@dataclass
class CheckOutcome:
    run_id: str
    decision: PolicyDecision
    policy: LoadedPolicy
    run_status: str
    #: why the run failed, as recorded (None when it did not fail)
    run_error: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.decision.decision == "block" else 0


def check(run_id: str, *, policy: str | Path | None = None, db_url: str | None = None) -> CheckOutcome:
    """Re-evaluate a run's stored evidence under its own policy or ``policy`` (e.g. a newer one).

    A run that did not complete cannot pass: its missing evidence makes the final evaluation fail closed,
    and a failed run is reported as such (exit code 2 in the CLI).
    """
    with open_store(db_url) as store:
        record = store.get_run(run_id)
        require_intact(store, record.id)
        if policy is not None:
            loaded = load_policy(policy)
        elif record.policy_document is not None:
            loaded = policy_from_document(record.policy_document, record.policy_digest or "",
                                          source=f"stored policy of {record.id}", text=record.policy_source)
        else:
            raise GovernError(f"run {record.id} has no policy recorded (it failed before loading one); pass --policy")
        # Evidence of an unfinished run is incomplete; never let it pass a gate.
        decision = decide(store, record.id, loaded, stored_document(store, record, loaded), final=True,
                          kind="check", incomplete=record.status in ("failed", "running"))
        _witness(store, "check", record.id)
        return CheckOutcome(run_id=record.id, decision=decision, policy=loaded, run_status=record.status,
                            run_error=record.error)


def require_intact(store: LineageStore, run_id: str) -> None:
    """Fail closed: raise :class:`RecordIntegrityError` (exit 2) when any row judging ``run_id`` reads, or
    the chain under it, does not match what govern recorded."""
    report = store.verify_run(run_id)
    if not report.ok:
        raise RecordIntegrityError(f"run {run_id}", report.problems)


# --------------------------------------------------------------------------------------------- waive
@dataclass
class WaiverOutcome:
    id: int
    #: The run id (``latest`` resolved) or data-set fingerprint the waiver was recorded for.
    target: str
    rule_id: str


def waive(target: str, rule_id: str, *, by: str, reason: str, until: date, db_url: str | None = None,
          policy: str | Path | None = None, actor: Actor | None = None) -> WaiverOutcome:
    """Record a waiver of ``rule_id`` for a run (id or ``latest``) or a data set (content fingerprint).

    The rule must be one some policy can produce: a built-in rule, or a custom rule of the run's policy,
    of a decision recorded for the run (``govern check --policy``), of ``policy``, or (for a data set,
    which has no policy of its own) of a shipped policy. A misspelt id would otherwise be recorded and
    waive nothing, and the block it was meant for would stay. ``actor``: whom the audit event names (the
    console's logged-in user; default the process's identity)."""
    if not by.strip() or not reason.strip():
        raise GovernError("a waiver needs who (--by) and why (--reason)")
    if until < date.today():
        raise GovernError(f"--until {until.isoformat()} is in the past: a waiver must expire in the future")
    with open_store(db_url, actor=actor) as store:
        custom: set[str] = set(_custom_rule_ids(load_policy(policy).document)) if policy is not None else set()
        if not target.startswith("sha256:"):
            try:
                record = store.get_run(target)
            except NotFoundError:
                raise GovernError(
                    f"'{target}' is neither a run id nor a data-set fingerprint (sha256:...)") from None
            target = record.id
            custom |= set(_custom_rule_ids(record.policy_document))
            custom |= {r.rule_id for d in store.decisions(target) for r in d.results}
        else:
            from govern.policy import shipped_policies

            for name in shipped_policies():
                custom |= set(_custom_rule_ids(load_policy(name).document))
        _require_known_rule(rule_id, custom, run_target=target.startswith("run-"), policy_given=policy is not None)
        waiver_id = store.add_waiver(target=target, rule_id=rule_id, by=by, reason=reason, until=until)
        _witness(store, "waiver", target if target.startswith("run-") else None)
        return WaiverOutcome(id=waiver_id, target=target, rule_id=rule_id)


def end_waiver(waiver_id: int, *, by: str, reason: str, db_url: str | None = None,
               actor: Actor | None = None) -> WaiverRecord:
    """End waiver ``waiver_id`` now, before its expiry: from today on its rule blocks again (``govern check``
    and every later gate see it ended). The grant stays on record; the end is recorded beside it."""
    if not by.strip() or not reason.strip():
        raise GovernError("ending a waiver needs who (--by) and why (--reason)")
    with open_store(db_url, actor=actor) as store:
        ended = store.end_waiver(waiver_id, by=by, reason=reason)
        _witness(store, "waiver", ended.target if ended.target.startswith("run-") else None)
        return ended


def _custom_rule_ids(document: dict[str, Any] | None) -> list[str]:
    rules = (document or {}).get("rules") or []
    return [str(r["id"]) for r in rules if isinstance(r, dict) and "id" in r]


def _require_known_rule(rule_id: str, custom: set[str], *, run_target: bool, policy_given: bool) -> None:
    import difflib

    from govern.policy.engine import builtin_rule_ids, is_known_rule_id

    if is_known_rule_id(rule_id, custom):
        return
    close = difflib.get_close_matches(rule_id, sorted(builtin_rule_ids() | custom), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    whose = "the run's policy" if run_target else "a shipped policy"
    more = "" if policy_given else " (a custom rule of another policy: name it with --policy)"
    raise GovernError(f"no policy produces a rule '{rule_id}': {hint}it is neither a built-in rule nor a custom rule "
                      f"of {whose}{more}; the rule ids are in the decision table of `govern check`")


def _witness(store: LineageStore, reason: str, run_id: str | None) -> None:
    from govern.lineage.witness import emit_witness, witness_key

    emit_witness(store, reason, run_id=run_id, sign_key=witness_key())


# ------------------------------------------------------------------------------------------- reports
@dataclass
class ReportOutcome:
    path: Path
    run_id: str | None
    #: Integrity problems of the record the report shows (a run report only); the report states them first.
    problems: list[str] = field(default_factory=list)
    signed: Any = None


def report(run_id: str | None, fmt: str, out: str | Path = "reports", *, since: str | None = None,
           policy: str | Path | None = None, sign_key: Path | None = None, db_url: str | None = None) -> ReportOutcome:
    """Write a run's report (``run_id``, or ``latest``) or, with ``since`` (YYYY-MM-DD), the privacy ledger.

    Reads the DB read-only unless the report is signed (the signature is recorded)."""
    from govern.report import build_report_data, write_ledger, write_report_data

    if (run_id is None) == (since is None):
        raise GovernError("give a RUN_ID (or 'latest') for a run report, or --since YYYY-MM-DD for the ledger")
    with closing(LineageStore.open(db_url, read_only=sign_key is None)) as store:
        problems: list[str] = []
        if since is not None:
            try:
                since_day = date.fromisoformat(since)
            except ValueError:
                raise GovernError(f"--since '{since}' is not a date (expected YYYY-MM-DD)") from None
            accountant, cap = "rdp", None
            if policy is not None:
                privacy = load_policy(policy).policy.privacy
                accountant, cap = privacy.accountant, privacy.max_total_epsilon_per_dataset
            path = write_ledger(store, since_day, fmt, out, accountant=accountant, cap=cap)
            record_run = None
        else:
            data = build_report_data(store, run_id or "latest")
            path = write_report_data(data, fmt, out)
            record_run = data.run.id
            problems = list(data.chain.problems) if data.chain is not None else []
        signed = None
        if sign_key is not None:
            from govern.report.signing import sign_report

            signed = sign_report(path, sign_key, store=store, run_id=record_run)
        return ReportOutcome(path=path, run_id=record_run, problems=problems, signed=signed)


@dataclass
class DocumentOutcome:
    path: Path
    run_id: str
    kind: str
    sha256: str | None
    to_be_completed: list[str] = field(default_factory=list)
    signed: Any = None


def docs(run_id: str, kind: str, fmt: str, out: str | Path = "reports", *, sign_key: Path | None = None,
         record: bool = True, db_url: str | None = None) -> DocumentOutcome:
    """``govern docs``: draft an EU AI Act document for a run from the lineage DB alone, record it as an
    artifact of the run (with its digest) and, with ``sign_key``, sign it like a report."""
    from govern.documents import write_document

    with closing(LineageStore.open(db_url, read_only=not record and sign_key is None)) as store:
        path, document, artifact = write_document(store, run_id, kind, fmt, out, record=record)
        signed = None
        if sign_key is not None:
            from govern.report.signing import sign_report

            signed = sign_report(path, sign_key, store=store, run_id=document.run_id)
        return DocumentOutcome(path=path, run_id=document.run_id, kind=kind,
                               sha256=artifact.sha256 if artifact is not None else None,
                               to_be_completed=document.to_be_completed, signed=signed)


def export_bom(run_id: str, fmt: str = "cyclonedx", out: str | Path = "reports", *, sign_key: Path | None = None,
               record: bool = True, db_url: str | None = None) -> DocumentOutcome:
    """``govern export bom``: the run's AI bill of materials (a CycloneDX 1.6 ML-BOM, or an SPDX 3.0.1 document
    with the AI and Dataset profiles), validated, recorded as an artifact with its digest and, with
    ``sign_key``, signed like a report."""
    from govern.export.bom import write_bom

    with closing(LineageStore.open(db_url, read_only=not record and sign_key is None)) as store:
        path, artifact = write_bom(store, run_id, fmt, out, record=record)
        run = store.get_run(run_id).id
        signed = None
        if sign_key is not None:
            from govern.report.signing import sign_report

            signed = sign_report(path, sign_key, store=store, run_id=run)
        return DocumentOutcome(path=path, run_id=run, kind=f"bom-{fmt}",
                               sha256=artifact.sha256 if artifact is not None else None, signed=signed)


def export_openlineage(run_id: str, *, url: str | None = None, file: str | None = None, console: bool = False,
                       db_url: str | None = None) -> tuple[str, int, list[str]]:
    """``govern export openlineage``: send a run's OpenLineage events (START and its end) from the DB alone.
    Returns (run id, events sent, problems); the outcome is recorded in the run's audit log, never raised."""
    from govern.documents import verified_report_data
    from govern.export.openlineage import client_for, emit_run

    with closing(LineageStore.open(db_url)) as store:
        data = verified_report_data(store, run_id)
        sent, problems = emit_run(store, data, client_for(url, file, console))
        return data.run.id, sent, problems


def export_mlflow(run_id: str, tracking_uri: str | None = None, *, registry_uri: str | None = None,
                  experiment: str = "govern", db_url: str | None = None) -> tuple[str, Any]:
    """``govern export mlflow``: log a run (params, metrics, tags, artifacts) to MLflow from the DB alone;
    register a model version only when the decision passed. Default URI: MLFLOW_TRACKING_URI."""
    import os

    from govern.documents import verified_report_data
    from govern.export.mlflow import export_run

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise GovernError("give --tracking-uri (e.g. sqlite:///mlflow.db) or set MLFLOW_TRACKING_URI")
    with closing(LineageStore.open(db_url)) as store:
        data = verified_report_data(store, run_id)
        return data.run.id, export_run(store, data, uri, registry_uri=registry_uri, experiment=experiment)


# ------------------------------------------------------------------------------------------- lineage
def lineage_verify(*, db_url: str | None = None, witnesses: list[str] | None = None,
                   witness_key: Path | None = None) -> ChainReport:
    """The whole DB's integrity: the chain, every committed row and, with ``witnesses``, that the DB still
    extends every witnessed chain head (what catches a deleted tail or a re-hashed chain)."""
    with closing(LineageStore.open(db_url, read_only=True)) as store:
        report = store.verify_chain()
        if witnesses:
            from govern.lineage.witness import verify_witnesses

            checks = verify_witnesses(store, witnesses, public_key=witness_key)
            report.problems.extend(p for c in checks for p in c.problems)
            report.notes.extend(n for c in checks for n in c.notes)
            report.witnesses = sum(c.statements for c in checks)
            report.ok = not report.problems
        return report


# ------------------------------------------------------------------------- standalone, recorded verbs
@dataclass
class StandaloneOutcome:
    """A standalone audit/scan recorded in the lineage DB as its own run (kind scan/audit-*/sign)."""

    run_id: str
    evidence: Any
    decision: str
    results: list[dict[str, Any]]

    @property
    def exit_code(self) -> int:
        return 1 if self.decision == "block" else 0


def _record_standalone(store: LineageStore, *, kind: str, name: str, stage: str, loaded: LoadedPolicy | None,
                       inputs: dict[str, Any], compute: Any, artifacts: Any = None) -> StandaloneOutcome:
    """Create the run, run ``compute()`` as its one stage, gate its evidence, record everything.

    Failures are recorded (run ``failed``, stage ``failed``) and re-raised, like a governed run.
    """
    from govern.stage import digest_of

    run_id = store.create_run(name=name, kind=kind, config=inputs, config_digest=digest_of(inputs),
                              policy=policy_ref(loaded) if loaded else None)
    exec_id = store.start_stage(run_id, stage, digest_of(inputs))
    try:
        evidence = compute()
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, GovernError) else f"internal error {type(exc).__name__}"
        store.finish_stage(exec_id, "failed", error=reason)
        store.set_run_status(run_id, "failed", error=reason)
        raise
    evidence_json = evidence.model_dump(mode="json")
    if artifacts is not None:
        store.add_artifacts(run_id, exec_id, artifacts(evidence))
    store.finish_stage(exec_id, "completed", evidence=evidence_json)
    if loaded is None:
        store.set_run_status(run_id, "completed")
        return StandaloneOutcome(run_id=run_id, evidence=evidence, decision="pass", results=[])
    # Only the checks whose evidence exists apply (final=False): a fairness audit is not judged on signing.
    # Waivers: of this run, or of a data set it read (the fingerprints of its input artifacts).
    decision = decide(store, run_id, loaded, {stage: evidence_json}, final=False, kind="final", drop_skipped=True)
    results = [r.model_dump(mode="json") for r in decision.results]
    settle(store, run_id, decision.decision)
    return StandaloneOutcome(run_id=run_id, evidence=evidence, decision=decision.decision, results=results)


def _input_artifact(path: Path, name: str, kind: str, data_format: str | None = None) -> Any:
    """An input of a standalone audit; with ``data_format``, a data set recorded with its content
    fingerprint, so a waiver of that data set applies here as in a governed run (:mod:`govern.gate`)."""
    from govern.stage import artifact_for

    if data_format is None:
        return artifact_for(path, name, kind, role="input")  # type: ignore[arg-type]  # callers pass literal ArtifactKind values
    return artifact_for(path, name, kind, role="input",  # type: ignore[arg-type]  # as above
                        dataset_fingerprint=_content_fingerprint(path, data_format))


def _content_fingerprint(path: Path, data_format: str = "auto") -> str | None:
    """The data set's content fingerprint (as ``evidence.data.files[].fingerprint``), or None when the file
    does not read as records: then only a waiver of the run applies, never a wider one by mistake."""
    from govern.data.validate import fingerprint_file
    from govern.errors import DataError

    try:
        return fingerprint_file(Path(path), data_format)
    except (DataError, ValueError, OSError):
        return None


def audit_fairness_recorded(*, predictions: Path, label: str, pred: str, sensitive: list[str],
                            policy: str | Path | None = None, positive_label: str | None = None,
                            bootstrap: int = 1000, seed: int = 0, intersections: bool = True,
                            max_intersection_size: int | None = 2, db_url: str | None = None) -> StandaloneOutcome:
    """``govern audit fairness``: Fairlearn metrics of predictions made elsewhere, gated and recorded."""
    from govern.audits.fairness import audit_fairness

    loaded = load_policy(policy or "default")
    inputs = {"predictions": str(Path(predictions).resolve()), "label": label, "pred": pred,
              "sensitive": sensitive, "positive_label": positive_label, "bootstrap": bootstrap, "seed": seed,
              "intersections": intersections, "max_intersection_size": max_intersection_size}
    with open_store(db_url) as store:
        return _record_standalone(
            store, kind="audit-fairness", name=f"fairness:{Path(predictions).name}", stage="fairness", loaded=loaded,
            inputs=inputs,
            compute=lambda: audit_fairness(Path(predictions), label, pred, sensitive, loaded.policy,
                                           positive_label=positive_label, bootstrap=bootstrap, seed=seed,
                                           intersections=intersections,
                                           max_intersection_size=max_intersection_size),
            artifacts=lambda ev: [_input_artifact(Path(predictions), "predictions", "predictions", "auto")])


def audit_membership_recorded(*, model: Path, base: Path | None, members: Path, nonmembers: Path,
                              policy: str | Path | None = None, db_url: str | None = None,
                              **kwargs: Any) -> StandaloneOutcome:
    """``govern audit membership``: attack a model trained elsewhere, gate and record the result."""
    from govern.audits.membership import audit_membership

    loaded = load_policy(policy or "default")
    data_format = str(kwargs.get("data_format") or "auto")
    inputs = {"model": str(Path(model).resolve()), "base": str(base) if base else None,
              "members": str(Path(members).resolve()), "nonmembers": str(Path(nonmembers).resolve()),
              **{k: v for k, v in kwargs.items() if isinstance(v, str | int | float | bool | type(None))},
              **{k: v.model_dump(mode="json") for k, v in kwargs.items() if isinstance(v, BaseModel)}}
    with open_store(db_url) as store:
        return _record_standalone(
            store, kind="audit-membership", name=f"membership:{Path(model).name}", stage="membership",
            loaded=loaded, inputs=inputs,
            compute=lambda: audit_membership(model, base, members, nonmembers, loaded.policy.membership, **kwargs),
            artifacts=lambda ev: [_input_artifact(Path(model), "model", "model"),
                                  _input_artifact(Path(members), "members", "dataset", data_format),
                                  _input_artifact(Path(nonmembers), "nonmembers", "dataset", data_format)])


def sign_recorded(path: str | Path, method: str, *, db_url: str | None = None, **kwargs: Any) -> tuple[str, Any]:
    """``govern sign``: sign any model directory or file and record it (run kind ``sign``)."""
    from govern.signing.signing import sign_artifact
    from govern.stage import ArtifactOut

    target = Path(path)
    inputs = {"path": str(target.resolve()), "method": method}
    holder: dict[str, Any] = {}

    def compute() -> Any:
        from govern.evidence import SigningEvidence

        result = sign_artifact(target, method, **kwargs)  # type: ignore[arg-type]  # its SignerConfig validates the method
        holder["result"] = result
        return SigningEvidence(method=result.method, signed=True, bundle=result.bundle_path, signer=result.signer,
                               files=len(result.files), manifest_digest=result.manifest_digest,
                               model_digest=result.model_digest)

    def artifacts(evidence: Any) -> list[ArtifactOut]:
        result = holder["result"]
        bundle = Path(result.bundle_path)
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) if target.is_dir() else \
            target.stat().st_size
        return [ArtifactOut(name=target.name, kind="model", path=str(target.resolve()), sha256=result.model_digest,
                            size_bytes=size, role="input"),
                _bundle_artifact(bundle)]

    with open_store(db_url) as store:
        outcome = _record_standalone(store, kind="sign", name=f"sign:{target.name}", stage="signing", loaded=None,
                                     inputs=inputs, compute=compute, artifacts=artifacts)
        store.add_signature(outcome.run_id, **holder["result"].signature_record("model"))
        _witness(store, "signature", outcome.run_id)
        return outcome.run_id, holder["result"]


def _bundle_artifact(bundle: Path) -> Any:
    from govern.stage import artifact_for

    return artifact_for(bundle, bundle.name, "bundle")


def scan(paths: list[Path], *, policy: str | Path = "default", engine: str | None = None,
         progress: Progress | None = None, workers: int | None = None, db_url: str | None = None,
         max_record_bytes: int | None = None, record: bool = True,
         fingerprint_key: Any = None, ray_address: str | None = None,
         quality_sample: Path | None = None) -> tuple[str | None, Any]:
    """``govern scan``: PII scan of data files, gated by the policy and recorded (run kind ``scan``).

    Returns (run id, :class:`govern.pii.ScanReport`). The keyed hashes use the key that belongs to the
    lineage DB, so a value found here correlates with the same value found in any governed run.
    ``record=False`` (``--no-record``, the pre-commit hook) opens no DB and writes no key file: the
    hashes use a key that lives in memory for this scan only, and the run id is None.
    ``fingerprint_key`` (a :class:`govern.pii.PIIKey`): the key for stable SARIF fingerprints.
    ``ray_address``: scan on that Ray cluster (``local``: one started here) instead of the local pool.
    ``quality_sample`` (``--quality``): a labeled sample to score the scan on (precision, recall, F2).
    """
    from govern.config import DEFAULT_MAX_RECORD_BYTES
    from govern.data.io import safe_resolve
    from govern.pii import load_or_create_key, scan_paths
    from govern.stage import ArtifactOut

    loaded = load_policy(policy)
    holder: dict[str, Any] = {}
    limit = max_record_bytes or DEFAULT_MAX_RECORD_BYTES
    # safe_resolve: a path that cannot be resolved (a symlink loop) is reported by the scan, recorded failed.
    inputs = {"paths": [str(safe_resolve(Path(p))) for p in paths], "engine": engine, "max_record_bytes": limit}
    if not record:
        from govern.pii.keys import ephemeral_key

        return None, scan_paths(paths, loaded.policy, engine, progress, ephemeral_key(), workers=workers,
                                policy_file=loaded.path, max_record_bytes=limit, fingerprint_key=fingerprint_key,
                                ray_address=ray_address, quality_sample=quality_sample)
    with open_store(db_url) as store:
        key = load_or_create_key(store.url)

        def compute() -> Any:
            report = scan_paths(paths, loaded.policy, engine, progress, key, workers=workers,
                                policy_file=loaded.path, max_record_bytes=limit, fingerprint_key=fingerprint_key,
                                ray_address=ray_address, quality_sample=quality_sample)
            holder["report"] = report
            return report.evidence

        def artifacts(_evidence: Any) -> list[ArtifactOut]:
            return [ArtifactOut(name=f.display_path, kind="dataset", path=f.path, sha256=f.sha256,
                                size_bytes=Path(f.path).stat().st_size, role="input", rows=f.records_total,
                                dataset_fingerprint=_content_fingerprint(Path(f.path), f.format))
                    for f in holder["report"].files]

        outcome = _record_standalone(store, kind="scan", name=f"scan:{len(paths)} file(s)", stage="pii",
                                     loaded=loaded, inputs=inputs, compute=compute, artifacts=artifacts)
        report = holder["report"]
        if report.findings:
            store.add_pii_findings(outcome.run_id, report.findings)
        return outcome.run_id, report


def verify_recorded(path: str | Path, signature: str | Path, trust: Any, *, provenance: list[Path] | None = None,
                    db_url: str | None = None, run_id: str | None = None, record: bool = True
                    ) -> tuple[str | None, Any]:
    """``govern verify``: check files, signer, provenance (and, with ``db_url``, the lineage DB), then record
    the verification itself as a run of kind ``verify`` — so the DB shows who checked what, and the result.

    Returns (verification run id or None when ``record`` is false, :class:`VerificationReport`). A failed
    verification is recorded as ``blocked`` with decision ``block``; it is a result, not an error.
    """
    from govern.signing.verifying import verify
    from govern.stage import digest_of

    report = verify(Path(path), Path(signature), trust, provenance=list(provenance or []), db_url=db_url,
                    run_id=run_id)
    if not record:
        return None, report
    inputs = {"path": str(Path(path).resolve()), "signature": str(Path(signature).resolve()),
              "trust": trust.model_dump(mode="json"), "provenance": [str(p) for p in provenance or []],
              "checked_run": run_id}
    with open_store(db_url) as store:
        verification_id = store.create_run(name=f"verify:{Path(path).name}", kind="verify", config=inputs,
                                           config_digest=digest_of(inputs))
        exec_id = store.start_stage(verification_id, "verification", digest_of(inputs))
        store.finish_stage(exec_id, "completed", evidence=report.model_dump(mode="json"))
        settle(store, verification_id, "pass" if report.verified else "block")
        if report.run_id:
            try:
                checked = store.get_run(report.run_id).id
            except NotFoundError:
                checked = None
            if checked is not None:
                # On the checked run's own record too, so its report says who verified it.
                store.append_event("run.verified", run_id=checked, payload={
                    "verification_run_id": verification_id, "verified": report.verified})
    return verification_id, report
