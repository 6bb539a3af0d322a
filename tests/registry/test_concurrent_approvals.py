"""Four approvers press "approve" on the same model version at the same moment, in four processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from govern.lineage import LineageStore
from govern.registry import register_run
from tests.registry.conftest import record_run
from tests.registry.workers import approve_once


def _race(url: str, ref: str, users: list[str]) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(users)), ctx.Queue()
    procs = [ctx.Process(target=approve_once, args=(url, ref, user, barrier, results)) for user in users]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=180) for _ in users]
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * len(users), outcomes
    return outcomes


def test_four_concurrent_approvals_record_exactly_one_transition_and_the_log_verifies(db_url: str,
                                                                                     tmp_path: Path) -> None:
    run = record_run(db_url, tmp_path, by="alice", sign=False)
    with LineageStore.open(db_url) as store:
        ref = register_run(store, run.run_id).ref

    # Bob in two windows, Carol and Dave: one approval moves the version, each person's is recorded once.
    outcomes = _race(db_url, ref, ["bob", "bob", "carol", "dave"])
    assert sorted(o[:7] for _, o in outcomes) == ["ok", "ok", "ok", "refused"], outcomes
    assert [u for u, o in outcomes if o.startswith("refused")] == ["bob"]

    with LineageStore.open(db_url, read_only=True) as store:
        version = store.model_versions(run_id=run.run_id)[0]
        assert version.status == "approved"
        assert [(a.from_status, a.to_status) for a in version.actions].count(("candidate", "approved")) == 1
        assert len(version.actions) == 3 and sorted(version.approvers) == ["bob", "carol", "dave"]
        report = store.verify_chain()
        assert report.ok, report.problems
