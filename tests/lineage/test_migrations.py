"""Schema migrations: a fresh DB is created at head, reopening is a no-op, history starts at 0001, and the
models agree with what the migrations build (so a model change without a migration fails here)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import govern.lineage.store as store_module
from govern.lineage import LineageStore

TABLES = {"alembic_version", "artifacts", "audit_chain_head", "audit_events", "base_models", "datasets",
          "decisions", "evidence", "findings", "meta", "model_actions", "model_versions", "pii_findings",
          "registered_models", "runs", "signatures", "stage_executions", "waivers"}


def _config(url: str | None = None) -> Config:
    cfg = Config(stdout=io.StringIO())
    cfg.set_main_option("script_location", str(Path(store_module.__file__).parent / "migrations"))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def test_fresh_db_is_migrated_to_head_and_reopening_is_a_no_op(empty_db_url: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head == "0005"
    with caplog.at_level(logging.INFO, logger="alembic.runtime.migration"):
        store = LineageStore.open(empty_db_url)
    assert any("Running upgrade  -> 0001" in r.getMessage() for r in caplog.records)
    assert any("Running upgrade 0001 -> 0002" in r.getMessage() for r in caplog.records)
    assert any("Running upgrade 0002 -> 0003" in r.getMessage() for r in caplog.records)
    assert any("Running upgrade 0003 -> 0004" in r.getMessage() for r in caplog.records)
    assert any("Running upgrade 0004 -> 0005" in r.getMessage() for r in caplog.records)
    try:
        assert store.schema_revision() == head
        assert set(sa.inspect(store.engine).get_table_names()) == TABLES
        assert store.verify_chain().ok and store.verify_chain().events == 0
        store.create_run(name="kept")
    finally:
        store.close()

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="alembic.runtime.migration"):
        again = LineageStore.open(empty_db_url)
    try:
        assert not any("Running upgrade" in r.getMessage() for r in caplog.records)
        assert again.schema_revision() == head
        assert [r.name for r in again.list_runs()] == ["kept"]
        assert again.verify_chain().ok and again.verify_chain().events == 1
    finally:
        again.close()


def test_models_match_the_migrated_schema(empty_db_url: str) -> None:
    store = LineageStore.open(empty_db_url)
    try:
        with store.engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                     SQLModel.metadata)
        assert diffs == []
    finally:
        store.close()


def test_history_has_the_initial_revision_and_downgrade_upgrade_round_trips(tmp_path: Path) -> None:
    cfg = _config()
    command.history(cfg)
    history = cfg.stdout.getvalue()  # type: ignore[attr-defined]
    assert "<base> -> 0001, Initial lineage schema" in history
    assert "0001 -> 0002, Policy source text" in history
    assert "0002 -> 0003, Model registry" in history
    assert "0003 -> 0004, Ending a waiver early" in history
    assert "0004 -> 0005 (head), An index for the console's decision filter" in history

    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    LineageStore.open(url).close()
    command.downgrade(_config(url), "base")
    engine = sa.create_engine(url)
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()
    with LineageStore.open(url) as store:
        assert store.schema_revision() == "0005"
        assert store.verify_chain().ok


def test_a_db_at_0001_with_records_upgrades_in_place_and_still_verifies(tmp_path: Path) -> None:
    """Rows committed before 0002 added ``policy_source`` keep verifying: a commitment covers its own columns."""
    from govern.lineage import PolicyRef

    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    with LineageStore.open(url) as store:
        run_id = store.create_run(name="before", policy=PolicyRef(name="p", version="1", digest="sha256:x"))
        store.set_run_status(run_id, "completed", decision="pass")
    command.downgrade(_config(url), "0001")
    with LineageStore.open(url) as store:  # upgrades to head again
        assert store.schema_revision() == "0005"
        report = store.verify_chain()
        assert report.ok, report.problems
        assert store.get_run(run_id).policy_source is None


def test_a_db_of_the_current_release_upgrades_to_the_registry_and_its_new_rows_verify(tmp_path: Path) -> None:
    """A DB written by the release before the registry (at 0002, with runs and events) gains the registry
    tables in place; its old records still verify, and a model approved after the upgrade is committed to."""
    from govern.lineage import PolicyRef
    from govern.lineage.store import ModelStep

    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    with LineageStore.open(url) as store:
        run_id = store.create_run(name="before", policy=PolicyRef(name="p", version="1", digest="sha256:x"))
        store.set_run_status(run_id, "completed", decision="pass")
    command.downgrade(_config(url), "0002")
    engine = sa.create_engine(url)
    assert "model_versions" not in sa.inspect(engine).get_table_names()
    engine.dispose()
    with LineageStore.open(url) as store:
        assert store.schema_revision() == "0005"
        assert store.verify_chain().ok
        version = store.register_model_version(model="before", run_id=run_id, digest="ab" * 32, path="/m",
                                               initiator="alice", initiator_source="explicit")
        store.apply_model_steps("model.approved", [ModelStep(
            version_id=version.id, action="approve", expected_status="candidate", to_status="approved",
            reason="reviewed")])
        report = store.verify_chain()
        assert report.ok, report.problems
        assert [v.status for v in store.model_versions(model="before")] == ["approved"]


def test_a_db_with_waivers_at_0003_upgrades_and_a_waiver_ended_after_it_verifies(tmp_path: Path) -> None:
    """Waivers granted before 0004 keep verifying (their commitments cover the columns they had); ending one
    after the upgrade re-commits the row, and an edit of the end afterwards is named."""
    from datetime import date, timedelta

    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    with LineageStore.open(url) as store:
        run_id = store.create_run(name="before")
        waiver_id = store.add_waiver(target=run_id, rule_id="pii.blocked_entities", by="carol", reason="ok",
                                     until=date.today() + timedelta(days=5))
    command.downgrade(_config(url), "0003")
    with LineageStore.open(url) as store:
        assert store.schema_revision() == "0005"
        assert store.verify_run(run_id).ok
        ended = store.end_waiver(waiver_id, by="dana", reason="no longer true")
        assert ended.ended_by == "dana" and not ended.active_on(date.today())
        report = store.verify_run(run_id)
        assert report.ok, report.problems
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE waivers SET ended_at = NULL, ended_by = NULL"))
    engine.dispose()
    with LineageStore.open(url) as store:
        problems = store.verify_run(run_id).problems
        assert any("waivers row" in p and "ended_at" in p and "ended_by" in p for p in problems), problems


def test_a_db_at_0004_gains_the_decision_index_and_its_runs_still_verify(tmp_path: Path) -> None:
    """0005 only adds ``ix_runs_decision_started_at``: a DB of the release before it upgrades in place, the
    decision filter then reads the index, and the records written before still verify."""
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    with LineageStore.open(url) as store:
        run_id = store.create_run(name="before")
        store.set_run_status(run_id, "blocked", decision="block")
    command.downgrade(_config(url), "0004")
    engine = sa.create_engine(url)
    assert "ix_runs_decision_started_at" not in {i["name"] for i in sa.inspect(engine).get_indexes("runs")}
    engine.dispose()
    with LineageStore.open(url) as store:
        assert store.schema_revision() == "0005"
        assert "ix_runs_decision_started_at" in {i["name"] for i in sa.inspect(store.engine).get_indexes("runs")}
        assert [r.id for r in store.list_runs(decision="block")] == [run_id]
        assert store.count_runs(decision="pass") == 0
        assert store.verify_chain().ok
