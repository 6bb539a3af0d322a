"""govern's public Python API. The CLI is a thin layer over these functions; so can your own tooling be.

Every function that records something opens the lineage DB itself (``db_url`` or ``GOVERN_DB_URL`` or
``.govern/lineage.db``) and closes it before returning, so they are safe to call from scripts and CI jobs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from govern.config import RunConfig, load_run_config
from govern.errors import GovernError, NotFoundError
from govern.lineage import LineageStore
from govern.lineage.records import ChainReport, DecisionRecord, PolicyRef, RunRecord, StageRecord
from govern.pipeline import PipelineListener, RunOutcome, run_pipeline, waiver_targets
from govern.policy import LoadedPolicy, PolicyDecision, WaiverRef, evaluate, load_policy, policy_from_document
from govern.stage import Progress


@contextmanager
def open_store(db_url: str | None = None) -> Iterator[LineageStore]:
    store = LineageStore.open(db_url)
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


# ----------------------------------------------------------------------------------------------- runs
@dataclass
class RunDetails:
    run: RunRecord
    stages: list[StageRecord]
    decision: DecisionRecord | None
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    waivers: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run.model_dump(mode="json", exclude={"policy_document"}),
            "stages": [s.model_dump(mode="json", exclude={"evidence"}) for s in self.stages],
            "decision": self.decision.model_dump(mode="json") if self.decision else None,
            "artifacts": self.artifacts,
            "waivers": self.waivers,
        }


def list_runs(*, db_url: str | None = None, limit: int = 50, status: str | None = None,
              kind: str | None = None) -> list[RunRecord]:
    with open_store(db_url) as store:
        return store.list_runs(limit=limit, status=status, kind=kind)


def show_run(run_id: str, *, db_url: str | None = None) -> RunDetails:
    with open_store(db_url) as store:
        record = store.get_run(run_id)
        evidence = store.evidence(record.id)
        targets = waiver_targets(record.id, evidence)
        return RunDetails(
            run=record,
            stages=store.stage_executions(record.id),
            decision=_latest_decision(store, record.id),
            artifacts=[a.model_dump(mode="json") for a in store.artifacts(record.id)],
            waivers=[w.model_dump(mode="json") for w in store.waivers(targets=targets)],
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
        if policy is not None:
            loaded = load_policy(policy)
        elif record.policy_document is not None:
            loaded = policy_from_document(record.policy_document, record.policy_digest or "",
                                          source=f"stored policy of {record.id}")
        else:
            raise GovernError(f"run {record.id} has no policy recorded (it failed before loading one); pass --policy")
        document: dict[str, Any] = dict(store.evidence(record.id))
        document.setdefault("run", {"run_id": record.id, "name": record.name, "task": (record.config or {}).get(
            "task", ""), "config_digest": record.config_digest or ""})
        ledger = _ledger_document(store, loaded, record.id, document)
        if ledger is not None:
            document["ledger"] = ledger
        waivers = [WaiverRef(id=w.id, target=w.target, rule_id=w.rule_id, by=w.by, reason=w.reason, until=w.until)
                   for w in store.waivers(targets=waiver_targets(record.id, document))]
        decision = evaluate(loaded.policy, document, waivers=waivers, final=True)
        if record.status in ("failed", "running") and decision.decision != "block":
            # Evidence of an unfinished run is incomplete; never let it pass a gate.
            decision.decision = "block"
        store.record_decision(record.id, kind="check", decision=decision.decision,
                              policy=PolicyRef(name=loaded.name, version=loaded.version, digest=loaded.digest,
                                               document=loaded.document),
                              results=[r.model_dump(mode="json") for r in decision.results])
        return CheckOutcome(run_id=record.id, decision=decision, policy=loaded, run_status=record.status)


def _ledger_document(store: LineageStore, loaded: LoadedPolicy, run_id: str, document: dict[str, Any]
                     ) -> list[dict[str, Any]] | None:
    from govern.evidence import Evidence
    from govern.pipeline import ledger_evidence

    try:
        evidence = Evidence.model_validate({k: v for k, v in document.items() if k in Evidence.model_fields})
    except Exception:  # noqa: BLE001 - evidence written by an older govern: no ledger rather than a crash
        return None
    entries = ledger_evidence(store, loaded, run_id, evidence)
    return [e.model_dump(mode="json") for e in entries] if entries is not None else None


# --------------------------------------------------------------------------------------------- waive
def waive(target: str, rule_id: str, *, by: str, reason: str, until: date, db_url: str | None = None) -> int:
    """Record a waiver of ``rule_id`` for a run (id or ``latest``) or a data set (content fingerprint)."""
    if not by.strip() or not reason.strip():
        raise GovernError("a waiver needs who (--by) and why (--reason)")
    if until < date.today():
        raise GovernError(f"--until {until.isoformat()} is in the past: a waiver must expire in the future")
    with open_store(db_url) as store:
        if not target.startswith("sha256:"):
            try:
                target = store.get_run(target).id
            except NotFoundError:
                raise GovernError(
                    f"'{target}' is neither a run id nor a data-set fingerprint (sha256:...)") from None
        return store.add_waiver(target=target, rule_id=rule_id, by=by, reason=reason, until=until)


# ------------------------------------------------------------------------------------------- lineage
def lineage_verify(*, db_url: str | None = None) -> ChainReport:
    with open_store(db_url) as store:
        return store.verify_chain()
