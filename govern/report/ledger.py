"""The privacy-budget ledger across runs (``govern report --since``): ε spent per data set.

The composition maths (each run rebuilt as steps × Poisson-subsampled Gaussian and composed with
dp-accounting, stated at the largest δ, ∞ for any non-private run) lives in :mod:`govern.privacy_ledger`,
shared with the pipeline's ``privacy.max_total_epsilon_per_dataset`` gate; this module assembles and
renders the cross-run report from the lineage DB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field

from govern.lineage.records import LedgerRow, WaiverRecord
from govern.privacy_ledger import (  # noqa: F401 - re-exported: the report's ledger uses the same maths
    PLD_DISCRETIZATION,
    AccountantName,
    DatasetRole,
    accountant_family,
    composed_epsilon,
    dataset_role,
    ledger_delta,
    recomposable,
    recorded_epsilon,
    trained_on,
)
from govern.report.data import ReportModel

if TYPE_CHECKING:
    from govern.lineage.store import LineageStore

# ----------------------------------------------------------------------------------------- reports
_INF_AS_STRING = ConfigDict(extra="forbid", ser_json_inf_nan="strings")  # JSON has no ∞: write "Infinity"


class LedgerRun(ReportModel):
    model_config = _INF_AS_STRING
    run_id: str
    epsilon: float | None = Field(description="This run's own ε under the ledger's accountant (as recorded).")
    delta: float | None
    noise_multiplier: float | None
    sample_rate: float | None
    steps: int | None
    dp_enabled: bool
    run_status: str
    started_at: datetime
    recomposed: bool = Field(description="True: entered the composition by its (q, σ, steps); false: by its ε.")
    role: DatasetRole = Field(default="unknown", description="What the data set was in this run (from its "
                              "artifact name): train, eval, canary or unknown.")
    charged: bool = Field(default=True, description="True: the run trained on the data set (or its role is "
                          "unknown), so its ε counts in the total; false: evaluation only, not charged.")


class DatasetBudget(ReportModel):
    model_config = _INF_AS_STRING
    dataset_fingerprint: str
    dataset_name: str | None = None
    runs: list[LedgerRun] = Field(description="Every run that recorded the data set; only charged ones count.")
    roles: list[DatasetRole] = Field(default_factory=list, description="The roles it played across its runs.")
    charged_runs: int = Field(default=0, description="Runs that trained on it: the ones composed into the total.")
    accountant: str
    delta: float
    total_epsilon: float = Field(description="Composed under the accountant at delta; inf without DP.")
    sum_of_epsilons: float = Field(description="Basic composition (Σε_i, at Σδ_i), shown for comparison.")
    sum_of_deltas: float
    cap: float | None = None
    over_cap: bool = False


class LedgerRunSummary(ReportModel):
    id: str
    name: str
    kind: str
    status: str
    decision: str | None
    started_at: datetime
    policy: str | None = None
    policy_digest: str | None = None
    blocking_rules: list[str] = Field(default_factory=list)


class LedgerWaiver(WaiverRecord):
    active: bool


class LedgerReport(ReportModel):
    """All runs since a date, their decisions, the waivers, and the privacy budget per data set."""

    schema_version: Literal["govern.ledger/v1"] = "govern.ledger/v1"
    generated_at: datetime
    since: date
    db: str
    accountant: str
    method: str = Field(description="How ε was composed, in words.")
    runs: list[LedgerRunSummary] = Field(default_factory=list)
    waivers: list[LedgerWaiver] = Field(default_factory=list)
    datasets: list[DatasetBudget] = Field(default_factory=list)


COMPOSITION_METHOD = (
    "Per data set, every DP training run is rebuilt as steps × PoissonSampled(q, Gaussian(σ)) from its recorded "
    "q, σ and steps and composed with dp-accounting ({family}); ε is read once at the ledger's δ (the largest δ of "
    "its runs). Runs without recorded q/σ/steps enter by basic composition; a run without DP makes the total "
    "infinite. All training runs count, whatever their final decision: a blocked model was still trained. A run "
    "is charged only to the data sets it trained on (train files, their redacted copies, canaries); evaluation "
    "data is listed with its role and ε 0."
)


def dataset_budgets(rows: Sequence[LedgerRow], accountant: str, cap: float | None = None) -> list[DatasetBudget]:
    by_dataset: dict[str, list[LedgerRow]] = {}
    for row in rows:
        runs = by_dataset.setdefault(row.dataset_fingerprint, [])
        if all(r.run_id != row.run_id for r in runs):
            runs.append(row)
    budgets = []
    for fingerprint, runs in by_dataset.items():
        charged = [r for r in runs if trained_on(r)]
        delta = ledger_delta(charged)
        total = composed_epsilon(charged, accountant, delta)
        eps = [recorded_epsilon(r, accountant) if r.dp_enabled else math.inf for r in runs]
        trained = [trained_on(r) for r in runs]
        names = [r.dataset_name for r in charged] or [r.dataset_name for r in runs]
        budgets.append(DatasetBudget(
            dataset_fingerprint=fingerprint, dataset_name=names[0],
            runs=[LedgerRun(run_id=r.run_id, epsilon=e if math.isfinite(e) else None, delta=r.delta,
                            noise_multiplier=r.noise_multiplier, sample_rate=r.sample_rate, steps=r.steps,
                            dp_enabled=r.dp_enabled, run_status=r.run_status, started_at=r.started_at,
                            recomposed=r.dp_enabled and recomposable(r), role=dataset_role(r.dataset_name),
                            charged=t)
                  for r, e, t in zip(runs, eps, trained, strict=True)],
            roles=sorted({dataset_role(r.dataset_name) for r in runs}), charged_runs=len(charged),
            accountant=accountant, delta=delta, total_epsilon=total,
            sum_of_epsilons=sum(e for e, t in zip(eps, trained, strict=True) if t),
            sum_of_deltas=sum(r.delta or 0.0 for r in charged), cap=cap,
            over_cap=cap is not None and not total <= cap,
        ))
    budgets.sort(key=lambda b: b.dataset_fingerprint)
    return budgets


def build_ledger(store: LineageStore, since: date, *, accountant: str = "rdp",
                 cap: float | None = None, now: datetime | None = None) -> LedgerReport:
    """Runs, decisions and waivers since ``since``, and every data set's all-time composed ε.

    The budget is all-time on purpose (spent privacy never comes back); ``since`` selects which
    runs, waivers and data sets (those touched since then) are listed.
    """
    accountant_family(accountant)
    now = now or datetime.now(UTC)
    since_dt = datetime(since.year, since.month, since.day, tzinfo=UTC)
    runs = []
    offset = 0
    while True:
        page = store.list_runs(limit=500, offset=offset, since=since_dt)
        runs.extend(page)
        if len(page) < 500:
            break
        offset += 500
    summaries = []
    for run in sorted(runs, key=lambda r: r.started_at):
        final = store.latest_decision(run.id, kind="final") or store.latest_decision(run.id)
        blocking = [r.rule_id for r in (final.results if final else [])
                    if r.status in ("fail", "error") and r.severity == "block"]
        summaries.append(LedgerRunSummary(
            id=run.id, name=run.name, kind=run.kind, status=run.status, decision=run.decision or (
                final.decision if final else None), started_at=run.started_at,
            policy=f"{run.policy_name} {run.policy_version}" if run.policy_name else None,
            policy_digest=run.policy_digest, blocking_rules=blocking))
    waivers = [LedgerWaiver(**w.model_dump(), active=w.active_on(now.date()))
               for w in store.waivers() if w.created_at >= since_dt or now.date() <= w.until]
    all_rows = store.privacy_ledger()
    touched = {r.dataset_fingerprint for r in all_rows if r.started_at >= since_dt}
    budgets = [b for b in dataset_budgets(all_rows, accountant, cap) if b.dataset_fingerprint in touched]
    return LedgerReport(
        generated_at=now, since=since, db=store.display_url, accountant=accountant,
        method=COMPOSITION_METHOD.format(family="RdpAccountant" if accountant_family(accountant) == "rdp"
                                         else f"PLDAccountant, discretisation {PLD_DISCRETIZATION}"),
        runs=summaries, waivers=waivers, datasets=budgets,
    )
