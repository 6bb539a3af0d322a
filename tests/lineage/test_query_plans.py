"""The queries behind `runs list`, the console's Runs page filters, `latest` and a model's ancestry use indexes, so they stay fast at 100k
runs (measured in tests/benchmarks/bench_lineage.py). A dropped index or a query that stops using it
fails here, on SQLite's own query planner."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from govern.lineage import LineageStore
from govern.stage import ArtifactOut


def _plan(store: LineageStore, captured: tuple[str, tuple[object, ...]]) -> str:
    sql, params = captured
    with store.engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()
    return " | ".join(str(r[-1]) for r in rows)


def _captured_sql(store: LineageStore, call: Callable[[], object]) -> list[tuple[str, tuple[object, ...]]]:
    """The SELECTs (with their parameters) a store call runs."""
    statements: list[tuple[str, tuple[object, ...]]] = []

    def capture(conn: object, cursor: object, statement: str, parameters: Any, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, tuple(parameters)))

    engines = {store.engine, store._read_engine}  # reads run on the read engine
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", capture)
    return statements


def test_runs_list_latest_and_ancestry_use_indexes(tmp_path: Path) -> None:
    with LineageStore.open(f"sqlite:///{tmp_path / 'l.db'}") as store:
        run_id = store.create_run(name="a")
        plan = _plan(store, _captured_sql(store, lambda: store.list_runs(limit=50))[-1])
        assert "ix_runs_started_at_id" in plan and "TEMP B-TREE" not in plan, plan

        plan = _plan(store, _captured_sql(store, lambda: store.get_run("latest"))[-1])
        assert "ix_runs_started_at_id" in plan and "TEMP B-TREE" not in plan, plan

        status_plan = _plan(store, _captured_sql(store, lambda: store.list_runs(status="failed"))[-1])
        assert "ix_runs_status_started_at" in status_plan and "TEMP B-TREE" not in status_plan

        store.add_artifacts(run_id, None, [ArtifactOut(name="m", kind="adapter", path="/m", sha256="abc",
                                                       size_bytes=1)])
        ancestry_sql = _captured_sql(store, lambda: store.ancestry("abc"))
        artifact_lookup = next(c for c in ancestry_sql if "WHERE artifacts.sha256 = ?" in c[0])
        assert "ix_artifacts_sha256" in _plan(store, artifact_lookup)
        by_run = next(c for c in ancestry_sql if "WHERE artifacts.run_id = ?" in c[0])
        assert "ix_artifacts_run_id" in _plan(store, by_run)
        stages = next(c for c in ancestry_sql if "WHERE stage_executions.run_id = ?" in c[0])
        assert "ix_stage_executions_run_id_stage" in _plan(store, stages)


def test_the_runs_page_decision_and_date_filters_use_indexes(tmp_path: Path) -> None:
    """The console's Runs page runs a page query and a count for each filter; at 100k runs neither may scan the
    table or sort it (tests/benchmarks/bench_console.py measures the page)."""
    since, before = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    with LineageStore.open(f"sqlite:///{tmp_path / 'l.db'}") as store:
        store.create_run(name="a")
        for filters, index in (({"decision": "block"}, "ix_runs_decision_started_at"),
                               ({"since": since, "before": before}, "ix_runs_started_at_id"),
                               ({"decision": "warn", "since": since, "before": before}, "ix_runs_decision_started_at"),
                               ({"before": before}, "ix_runs_started_at_id")):
            page = _plan(store, _captured_sql(store, lambda f=filters: store.list_runs(limit=50, offset=1950, **f))[-1])
            assert f"USING INDEX {index}" in page and "TEMP B-TREE" not in page, (filters, page)
            count = _plan(store, _captured_sql(store, lambda f=filters: store.count_runs(**f))[-1])
            assert f"USING COVERING INDEX {index}" in count, (filters, count)
        date_range = _plan(store, _captured_sql(store, lambda: store.list_runs(since=since, before=before))[-1])
        assert "started_at>? AND started_at<?" in date_range, date_range  # a range on the index, not a filter
