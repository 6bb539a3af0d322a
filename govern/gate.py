"""The one gate path: an evidence document, the waivers that apply to it and a policy → a decision, recorded.

A governed run (after each stage and at the end), ``govern check`` and every standalone audit or scan
decide here, so a waiver means the same thing wherever it is checked: it applies to the run itself or to
any data set the run used, named by its content fingerprint — a train or eval file of a governed run
(``evidence.data.files``) or a data file a standalone audit or scan read (its input artifacts). The
decision is recorded with the policy that made it; :meth:`LineageStore.record_decision` hash-chains it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from govern.evidence import Evidence, LedgerEntry
from govern.lineage import LineageStore
from govern.lineage.records import ArtifactRecord, PolicyRef, RunRecord
from govern.policy import LoadedPolicy, PolicyDecision, WaiverRef, evaluate

#: What a recorded decision was: a stage gate that blocked, a run's final decision, or ``govern check``.
DecisionKind = Literal["gate", "final", "check"]


def policy_ref(loaded: LoadedPolicy) -> PolicyRef:
    """What the lineage DB stores about the policy a decision was made under (the file as written too)."""
    return PolicyRef(name=loaded.name, version=loaded.version, digest=loaded.digest, document=loaded.document,
                     source=loaded.source)


def dataset_fingerprints(document: dict[str, Any], artifacts: Iterable[ArtifactRecord] = ()) -> list[str]:
    """Content fingerprints of the data sets a run used, in order, once each: the files of its data
    evidence, then the data sets it read as inputs (a standalone scan or audit has no data evidence; its
    input artifacts carry the fingerprint). A redacted copy the run wrote is an output, not a data set it
    was given, so a waiver of the copy does not cover the original."""
    found: list[str] = []
    for f in (document.get("data") or {}).get("files", []):
        if f.get("fingerprint"):
            found.append(f["fingerprint"])
    for a in artifacts:
        if a.role == "input" and a.dataset_fingerprint:
            found.append(a.dataset_fingerprint)
    return list(dict.fromkeys(found))


def waiver_targets(run_id: str, document: dict[str, Any], artifacts: Iterable[ArtifactRecord] = ()) -> list[str]:
    """A waiver applies to the run itself or to any data set it used (by content fingerprint)."""
    return [run_id, *dataset_fingerprints(document, artifacts)]


def run_waiver_targets(store: LineageStore, run_id: str, document: dict[str, Any]) -> list[str]:
    """:func:`waiver_targets` of a recorded run: its document and its recorded artifacts."""
    return waiver_targets(run_id, document, store.artifacts(run_id))


def waivers(store: LineageStore, targets: list[str]) -> list[WaiverRef]:
    """The recorded waivers for ``targets``, as the engine sees them (expired ones too: it names them)."""
    return [WaiverRef(**w.model_dump(include=set(WaiverRef.model_fields))) for w in store.waivers(targets=targets)]


def decide(store: LineageStore, run_id: str, loaded: LoadedPolicy, document: dict[str, Any], *, final: bool,
           kind: DecisionKind | None = None, incomplete: bool = False, drop_skipped: bool = False
           ) -> PolicyDecision:
    """Evaluate ``document`` under ``loaded`` with the waivers of the run and its data sets.

    ``final``: see :func:`govern.policy.evaluate` (False: only checks whose evidence exists apply).
    ``kind``: record the decision as this kind (None: evaluate only; a stage gate records on block).
    ``incomplete``: the run did not finish, so its evidence is incomplete: never let it pass.
    ``drop_skipped``: leave out rules that did not apply (a standalone audit is not judged on signing).
    """
    decision = evaluate(loaded.policy, document, waivers=waivers(store, run_waiver_targets(store, run_id, document)),
                        final=final)
    if incomplete and decision.decision != "block":
        decision.decision = "block"
    if drop_skipped:
        decision.results = [r for r in decision.results if r.status != "skipped"]
    if kind is not None:
        record(store, run_id, loaded, decision, kind=kind)
    return decision


def record(store: LineageStore, run_id: str, loaded: LoadedPolicy, decision: PolicyDecision, *,
           kind: DecisionKind) -> int:
    """Record ``decision`` (one finding per rule result) with the policy that made it; returns its id."""
    return store.record_decision(run_id, kind=kind, decision=decision.decision, policy=policy_ref(loaded),
                                 results=[r.model_dump(mode="json") for r in decision.results])


def settle(store: LineageStore, run_id: str, decision: str) -> str:
    """Close a run on its decision: ``blocked`` on block, else ``completed``; returns the status."""
    status = "blocked" if decision == "block" else "completed"
    store.set_run_status(run_id, status, decision=decision)
    return status


# --------------------------------------------------------------------------------- the evidence document
def ledger_evidence(store: LineageStore, policy: LoadedPolicy, run_id: str, evidence: Evidence
                    ) -> list[LedgerEntry] | None:
    """Privacy budget spent per training data set, including this run, composed under the gated accountant.

    Only computed when the policy caps it, because composition needs every earlier run's (q, σ, steps).
    """
    cap = policy.policy.privacy.max_total_epsilon_per_dataset
    if cap is None or evidence.training is None or not evidence.training.dp_enabled or evidence.data is None:
        return None
    from govern.privacy_ledger import compose_ledger, current_run_row, trained_on

    train_fps = [f.fingerprint for f in evidence.data.files if f.role == "train"]
    entries: list[LedgerEntry] = []
    for fp in train_fps:
        # Earlier runs that only evaluated on this file spent nothing on it.
        rows = [r for r in store.privacy_ledger(fp) if r.run_id != run_id and trained_on(r)]
        entries.append(compose_ledger(fp, rows, current_run_row(run_id, fp, evidence.training),
                                      policy.policy.privacy.accountant))
    return entries


def stored_document(store: LineageStore, record: RunRecord, loaded: LoadedPolicy) -> dict[str, Any]:
    """The evidence document of a recorded run, as its gates saw it: its stored evidence, the run section
    (rebuilt from the run record when a standalone record has none), and the privacy ledger under
    ``loaded`` (today's ledger: runs recorded since count)."""
    document: dict[str, Any] = dict(store.evidence(record.id))
    document.setdefault("run", {"run_id": record.id, "name": record.name, "task": (record.config or {}).get(
        "task", ""), "config_digest": record.config_digest or ""})
    ledger = _ledger_document(store, loaded, record.id, document)
    if ledger is not None:
        document["ledger"] = ledger
    return document


def _ledger_document(store: LineageStore, loaded: LoadedPolicy, run_id: str, document: dict[str, Any]
                     ) -> list[dict[str, Any]] | None:
    try:
        evidence = Evidence.model_validate({k: v for k, v in document.items() if k in Evidence.model_fields})
    except Exception:  # noqa: BLE001 - evidence written by an older govern: no ledger rather than a crash
        return None
    entries = ledger_evidence(store, loaded, run_id, evidence)
    return [e.model_dump(mode="json") for e in entries] if entries is not None else None
