"""The console without a browser: `--read-only` serves pages but no actions, and the JSON API's deploy gate
gives the same answer as `govern model status` (one implementation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from govern.lineage import LineageStore
from govern.registry import approve, register_after_run
from tests.registry.conftest import as_user, record_run


def test_read_only_console_serves_pages_offers_no_action_and_refuses_posts(console_client: Any, sqlite_db: str,
                                                                          tmp_path: Path) -> None:
    run = record_run(sqlite_db, tmp_path, by="alice")
    with LineageStore.open(sqlite_db) as store:
        register_after_run(store, run.run_id)
    client = console_client(sqlite_db, read_only=True)
    runs = client.get("/runs")
    assert runs.status_code == 200 and run.run_id in runs.text
    assert "default-src 'none'" in runs.headers["content-security-policy"]
    version = client.get("/models/support-intent/v1")
    assert version.status_code == 200 and "candidate" in version.text and "<form method=\"post\" action=\"/models" \
        not in version.text
    assert client.post("/models/support-intent/v1/approve", data={"reason": "x"}).status_code == 403
    with LineageStore.open(sqlite_db, read_only=True) as store:
        assert store.model_versions()[0].status == "candidate"


def test_the_api_deploy_gate_gives_the_same_answer_as_the_cli(console_client: Any, govern_cli: Any, sqlite_db: str,
                                                              tmp_path: Path) -> None:
    run = record_run(sqlite_db, tmp_path, by="alice")
    with as_user(sqlite_db, "bob") as store:
        digest = "sha256:" + approve(store, run.run_id, reason="ok").digest
    client = console_client(sqlite_db, read_only=True)
    for require in ("approved", "deployed"):
        api = client.get("/api/v1/model-status", params={"digest": digest, "require": require})
        code, out, _ = govern_cli("model", "status", "--digest", digest, "--require", require, "--format", "json",
                                  "--db", sqlite_db)
        assert api.status_code == 200 and api.json() == json.loads(out)
        assert code == (0 if api.json()["meets"] else 1)
    assert client.get("/api/v1/model-status", params={"digest": "nope"}).status_code == 400
    assert [m["ref"] for m in client.get("/api/v1/models").json()] == ["support-intent@v1"]
    assert [r["id"] for r in client.get("/api/v1/runs").json()] == [run.run_id]
