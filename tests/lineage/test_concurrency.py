"""Eight processes writing to one lineage DB at once (opening it fresh at the same moment) lose nothing
and never fork the audit chain — on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing

import sqlalchemy as sa

from govern.lineage import LineageStore
from tests.lineage.workers import EVENTS_PER_RUN, RUNS_PER_WORKER, STAGES, write_runs

WORKERS = 8


def test_eight_processes_open_a_fresh_db_and_write_concurrently_without_loss(empty_db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    procs = [ctx.Process(target=write_runs, args=(empty_db_url, w, barrier)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * WORKERS

    store = LineageStore.open(empty_db_url)
    try:
        total_runs = WORKERS * RUNS_PER_WORKER
        assert store.count_runs() == total_runs
        assert store.count_runs(status="completed") == total_runs
        names = {r.name for r in store.list_runs(limit=1000)}
        assert names == {f"w{w}-r{i}" for w in range(WORKERS) for i in range(RUNS_PER_WORKER)}
        with store.engine.connect() as conn:
            count = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                     for t in ("stage_executions", "evidence", "artifacts", "decisions", "findings")}
        assert count == {"stage_executions": total_runs * len(STAGES), "evidence": total_runs * len(STAGES),
                         "artifacts": total_runs, "decisions": total_runs, "findings": total_runs}
        report = store.verify_chain()
        assert report.ok, report.problems
        assert report.events == total_runs * EVENTS_PER_RUN
        events = store.events()
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        # Each run's own events appear in the order it wrote them, even interleaved with the others'.
        run = store.list_runs(limit=1)[0]
        kinds = [e.kind for e in store.events(run.id)]
        assert kinds[0] == "run.created" and kinds[-1] == "run.status"
    finally:
        store.close()
