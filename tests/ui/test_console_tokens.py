"""API tokens for CI: created, listed and revoked with `govern users token`, stored as a SHA-256 only, accepted
as `Authorization: Bearer` on /api/v1 (never on pages), bound to a role; the deploy gate over the API gives
the answer `govern model status` gives; the OpenAPI document is valid OpenAPI 3.1 and names every route."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from govern.lineage import LineageStore
from govern.registry import approve
from tests.conftest import skip_or_fail
from tests.registry.conftest import as_user
from tests.ui.conftest import History


def _create(govern_cli: Any, accounts: Path, name: str, role: str) -> str:
    code, out, err = govern_cli("users", "token", "create", name, "--role", role, "--accounts", str(accounts))
    assert code == 0, err
    token = out.strip()
    assert token.startswith("gvt_") and "not shown again" in err
    return token


def test_tokens_are_stored_hashed_bound_to_a_role_and_refused_once_revoked(
        govern_cli: Any, console_client: Callable[..., Any], accounts: Path, history: History) -> None:
    deploy = _create(govern_cli, accounts, "ci-deploy", "approver")
    reader = _create(govern_cli, accounts, "ci-read", "viewer")
    stored = accounts.read_text()
    assert deploy not in stored and reader not in stored and deploy.rsplit("_", 1)[1] not in stored
    code, out, _ = govern_cli("users", "token", "list", "--accounts", str(accounts))
    assert [line.split()[1:3] for line in out.strip().splitlines()] == [["ci-deploy", "approver"],
                                                                           ["ci-read", "viewer"]]
    assert deploy not in out

    client = console_client(history.db)  # no session: the token alone
    bearer = {"Authorization": f"Bearer {reader}"}
    assert client.get("/api/v1/runs").status_code == 401
    assert client.get("/api/v1/runs", headers={"Authorization": "Bearer gvt_000000000000_guess"}).status_code == 401
    assert client.get("/api/v1/runs", headers={"Authorization": f"Bearer {reader[:-1]}x"}).status_code == 401
    listed = client.get("/api/v1/runs", headers=bearer)
    assert listed.status_code == 200 and {r["id"] for r in listed.json()} >= set(history.runs)
    assert "set-cookie" not in listed.headers  # a token makes no session
    run = client.get(f"/api/v1/runs/{history.runs[0]}", headers=bearer).json()
    assert run["run"]["id"] == history.runs[0] and run["registry"][0]["ref"] == "support-intent@v1"
    decisions = client.get(f"/api/v1/runs/{history.runs[0]}/decisions", headers=bearer).json()
    assert [d["kind"] for d in decisions] == ["final"]
    page = client.get("/runs", headers=bearer, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login"  # pages never take a token

    # Role-bound: the viewer token may read but not act; the approver token acts, named on the audit event.
    body = {"reason": "release 7 passed staging"}
    denied = client.post("/api/v1/models/support-intent/v1/approve", headers=bearer, json=body)
    assert denied.status_code == 403
    acted = client.post("/api/v1/models/support-intent/v1/approve", headers={"Authorization": f"Bearer {deploy}"},
                        json=body)
    assert acted.status_code == 200, acted.text
    assert acted.json()["status"] == "approved" and acted.json()["approvers"] == ["ci-deploy"]
    bad = client.post("/api/v1/models/support-intent/v1/promote", headers={"Authorization": f"Bearer {deploy}"},
                      json={"reason": ""})
    assert bad.status_code == 400
    with LineageStore.open(history.db, read_only=True) as store:
        events = store.recent_events(limit=10)
        approved = next(e for e in events if e.kind == "model.approved")
        assert approved.payload["actor"] == {"source": "api-token", "name": "ci-deploy", "context": {}}
        assert any(e.kind == "ui.denied" and e.payload["actor"]["name"] == "ci-read" for e in events)

    # A session cookie does not act over the API (no CSRF token there), whatever its role.
    bob = console_client(history.db, "bob")
    assert bob.post("/api/v1/models/support-intent/v1/promote", json=body).status_code == 403
    assert bob.get("/api/v1/models").status_code == 200  # but it reads

    assert govern_cli("users", "token", "revoke", "ci-read", "--accounts", str(accounts))[0] == 0
    assert client.get("/api/v1/runs", headers=bearer).status_code == 401  # the running server sees it at once


def test_the_api_gate_and_the_cli_gate_agree_with_a_token(govern_cli: Any, console_client: Callable[..., Any],
                                                          accounts: Path, history: History) -> None:
    token = _create(govern_cli, accounts, "ci-gate", "viewer")
    client = console_client(history.db)
    with LineageStore.open(history.db, read_only=True) as store:
        v1, v2 = sorted(store.model_versions(), key=lambda v: v.version)
    with as_user(history.db, "bob") as store:
        approve(store, v1.ref, reason="ok")
    govern_cli("model", "revoke", v2.ref, "--reason", "bad data", "--db", history.db)
    for digest in (v1.digest, v2.digest, "f" * 64):
        for require in ("registered", "approved"):  # "deployed": tests/ui/test_console_api.py
            api = client.get("/api/v1/model-status", params={"digest": f"sha256:{digest}", "require": require},
                             headers={"Authorization": f"Bearer {token}"})
            code, out, _ = govern_cli("model", "status", "--digest", f"sha256:{digest}", "--require", require,
                                      "--format", "json", "--db", history.db)
            assert api.status_code == 200 and api.json() == json.loads(out), (digest, require)
            assert code == (0 if api.json()["meets"] else 1)


def test_the_openapi_document_is_valid_openapi_3_and_matches_the_routes(console_client: Callable[..., Any],
                                                                       history: History) -> None:
    try:
        from openapi_spec_validator import validate
    except ImportError:
        skip_or_fail("needs openapi-spec-validator (dev extra)")
    client = console_client(history.db)
    document = client.get("/api/v1/openapi.json").json()  # public: it holds no record
    validate(document)
    assert document["openapi"].startswith("3.1")
    api_routes = {r.path for r in client.app.routes if getattr(r, "path", "").startswith("/api/v1/")}
    assert {p.replace("{number}", "{number:int}") for p in document["paths"]} | {"/api/v1/openapi.json"} == api_routes
    status = document["components"]["schemas"]["ModelStatusAnswer"]
    assert {"digest", "status", "versions", "require", "meets"} <= set(status["properties"])
    assert {"ref", "approvers"} <= set(document["components"]["schemas"]["ModelVersionRecord"]["properties"])
