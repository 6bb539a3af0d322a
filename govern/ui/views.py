"""View models of the console's record pages, assembled from the lineage store alone (no SQL here).

Why a module of its own: a page is a view of the record, like a report; keeping the assembly apart from the
routes keeps each page testable without a server and lets the JSON API hand out the same objects.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydantic import BaseModel, Field

from govern.lineage import LineageStore
from govern.lineage.records import DatasetRecord, ModelVersionRecord, RunRecord, WaiverRecord
from govern.report.ledger import DatasetBudget, dataset_budgets

#: The accountant a data set's ledger is composed under when none of its runs recorded one.
DEFAULT_ACCOUNTANT = "rdp"


class DatasetView(BaseModel):
    """One data set: what it is, what was found in it, who used it, what it cost in privacy, what waives it."""

    dataset: DatasetRecord
    runs: list[RunRecord] = Field(description="The page of runs that recorded it, newest first.")
    total_runs: int
    versions: list[ModelVersionRecord] = Field(description="Model versions trained by runs that recorded it.")
    pii_run: str | None = Field(default=None, description="The newest run that scanned it (its counts are shown).")
    pii_counts: dict[str, int] = Field(default_factory=dict, description="Entity type → findings in that scan.")
    scans: int = Field(default=0, description="Runs that scanned it for PII.")
    budget: DatasetBudget | None = Field(default=None, description="Its ε ledger (None: no training run on it).")
    waivers: list[WaiverRecord] = Field(default_factory=list)


def dataset_view(store: LineageStore, fingerprint: str, *, limit: int = 50, offset: int = 0) -> DatasetView:
    """The data set ``fingerprint`` (``sha256:…``) and everything recorded against it."""
    record = store.dataset(fingerprint)
    pii = store.dataset_pii_counts(record.fingerprint)
    # The newest scan is the one that describes the data as it is now; run ids sort by time.
    pii_run = max(pii) if pii else None
    ledger = store.privacy_ledger(record.fingerprint)
    accountant = next((r.accountant for r in reversed(ledger) if r.accountant), None) or DEFAULT_ACCOUNTANT
    budgets = dataset_budgets(ledger, accountant) if ledger else []
    return DatasetView(
        dataset=record,
        runs=store.list_runs(dataset=record.fingerprint, limit=limit, offset=offset),
        total_runs=store.count_runs(dataset=record.fingerprint),
        versions=store.model_versions(dataset=record.fingerprint),
        pii_run=pii_run, pii_counts=pii.get(pii_run, {}) if pii_run else {}, scans=len(pii),
        budget=budgets[0] if budgets else None,
        waivers=store.waivers(targets=[record.fingerprint]),
    )


class WaiversView(BaseModel):
    """Every recorded waiver, split by whether it still lets its rule pass today."""

    today: date
    active: list[WaiverRecord] = Field(default_factory=list)
    expired: list[WaiverRecord] = Field(default_factory=list)


def waivers_view(store: LineageStore, *, now: datetime | None = None) -> WaiversView:
    today = (now or datetime.now(UTC)).date()
    view = WaiversView(today=today)
    for w in sorted(store.waivers(), key=lambda w: w.id, reverse=True):
        (view.active if w.active_on(today) else view.expired).append(w)
    return view
