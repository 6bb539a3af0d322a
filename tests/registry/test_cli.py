"""`govern model …` as a release manager and a deploy pipeline use it: approve as a named user, gate a
deployment on `model status` (exit 0 / 1 / 2), and find every action in the run's report JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.registry.conftest import record_run


def test_the_deploy_gate_refuses_an_unapproved_model_and_passes_it_once_approved_and_deployed(
        govern_cli: Any, sqlite_db: str, tmp_path: Path) -> None:
    run = record_run(sqlite_db, tmp_path, by="alice")
    db = ["--db", sqlite_db]

    code, out, _ = govern_cli("model", "status", "--path", str(run.model_dir), "--require", "approved", *db)
    assert code == 1 and "unregistered" in out and "does not meet" in out

    code, out, err = govern_cli("--actor", "alice", "model", "approve", run.run_id, "--reason", "mine", *db)
    assert code == 1 and "four eyes" in err
    code, out, err = govern_cli("--actor", "bob", "model", "approve", run.run_id, "--reason", "audits ok", *db)
    assert code == 0, err
    assert "support-intent@v1 approved by bob: now approved" in out

    code, out, _ = govern_cli("model", "status", "--path", str(run.model_dir), "--require", "approved", *db)
    assert code == 0 and "meets --require approved" in out
    code, out, _ = govern_cli("model", "status", "--path", str(run.model_dir), "--require", "deployed",
                              "--format", "json", *db)
    answer = json.loads(out)
    assert code == 1 and answer["status"] == "approved" and answer["meets"] is False
    digest = answer["digest"]

    code, out, err = govern_cli("--actor", "bob", "model", "promote", "support-intent@v1", "--reason", "release 1",
                                *db)
    assert code == 0, err
    code, out, _ = govern_cli("model", "status", "--digest", digest, "--require", "deployed", *db)
    assert code == 0

    code, out, err = govern_cli("model", "status", "--digest", "sha256:not-hex", *db)
    assert code == 2 and "is not a sha256 digest" in err
    code, out, err = govern_cli("model", "approve", "nosuch@v9", "--reason", "x", *db)
    assert code == 2 and "no model version nosuch@v9" in err

    code, out, _ = govern_cli("model", "list", "--format", "json", *db)
    listed = json.loads(out)
    assert [(v["ref"], v["status"], v["approvers"]) for v in listed] == [("support-intent@v1", "deployed", ["bob"])]

    code, out, err = govern_cli("report", run.run_id, "--format", "json", "--out", "-", *db)
    assert code == 0, err
    report = json.loads(out)
    assert report["registry"][0]["status"] == "deployed"
    assert [(a["action"], a["actor"], a["reason"]) for a in report["registry"][0]["actions"]] == \
        [("approve", "bob", "audits ok"), ("promote", "bob", "release 1")]
    assert [a["action"] for a in report["actions"] if a["action"] in ("registered", "approved", "promoted")] == \
        ["registered", "approved", "promoted"]

    code, out, err = govern_cli("--actor", "carol", "model", "revoke", "--dataset", "sha256:" + "d" * 64,
                                "--reason", "erasure request", *db)
    assert code == 0 and "support-intent@v1 revoked: now revoked" in out, err
    code, out, _ = govern_cli("model", "status", "--digest", digest, "--require", "approved", *db)
    assert code == 1 and "revoked" in out
    code, out, _ = govern_cli("lineage", "verify", *db)
    assert code == 0, out
