"""Console actions over HTTP, each a form with a reason: roll back a deployed model, record and end a
waiver, revoke a data set. Each needs the session's CSRF token and an acting role (a refusal is an audit
event), and changes the record only through the registry and api functions the CLI uses."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from govern.gate import waivers
from govern.lineage import LineageStore
from govern.policy import evaluate, load_policy
from govern.registry import approve, model_status, promote
from govern.report import build_report_data, render_markdown
from tests.registry.conftest import as_user
from tests.ui.conftest import History


def _deploy_both(db: str) -> None:
    """v1 and v2 approved by bob; v1 deployed, then v2 (v1 deprecated)."""
    with as_user(db, "bob") as store:
        for ref in ("support-intent@v1", "support-intent@v2"):
            approve(store, ref, reason="audits reviewed")
            promote(store, ref, reason="release")


def _statuses(db: str) -> dict[str, str]:
    with LineageStore.open(db, read_only=True) as store:
        return {v.ref: v.status for v in store.model_versions()}


def _pii_rule_status(db: str, fingerprint: str) -> str:
    """What the gate decides for a run on this data set that found a blocked entity, with its waivers now."""
    with LineageStore.open(db, read_only=True) as store:
        decision = evaluate(load_policy("default").policy, {"pii": {"blocked": {"US_SSN": 1}}},
                            waivers=waivers(store, [fingerprint]), final=False)
    return next(r.status for r in decision.results if r.rule_id == "pii.blocked_entities")


def test_an_approver_rolls_back_the_deployed_model_in_the_console(console_client: Callable[..., Any],
                                                                   history: History) -> None:
    _deploy_both(history.db)
    assert _statuses(history.db) == {"support-intent@v2": "deployed", "support-intent@v1": "deprecated"}
    bob = console_client(history.db, "bob")
    page = bob.get("/models/support-intent/v2").text
    assert 'id="form-rollback"' in page and 'id="form-rollback"' not in bob.get("/models/support-intent/v1").text
    done = bob.post("/models/support-intent/rollback", data={"csrf": bob.csrf, "reason": "latency regression",
                                                             "revoke": "yes"})
    assert done.status_code == 200 and done.url.path == "/models/support-intent/v1"
    assert _statuses(history.db) == {"support-intent@v2": "revoked", "support-intent@v1": "deployed"}
    with LineageStore.open(history.db, read_only=True) as store:
        event = next(e for e in reversed(store.recent_events(limit=5)) if e.kind == "model.rollback")
        assert event.payload["actor"] == {"source": "console", "name": "bob", "context": {}}
        assert store.verify_chain().ok
    again = bob.post("/models/support-intent/rollback", data={"csrf": bob.csrf, "reason": "again"})
    assert again.status_code == 409 and "no earlier approved version" in again.text


def test_a_waiver_recorded_in_the_console_lets_the_rule_pass_until_it_is_ended(console_client: Callable[..., Any],
                                                                               history: History) -> None:
    ada = console_client(history.db, "ada")
    assert _pii_rule_status(history.db, history.fingerprint) == "fail"
    until = (date.today() + timedelta(days=30)).isoformat()
    form = {"csrf": ada.csrf, "target": history.fingerprint, "rule_id": "pii.blocked_entitys", "until": until,
            "reason": "test data, consented"}
    misspelt = ada.post("/waivers/new", data=form)
    assert misspelt.status_code == 400 and "did you mean &#39;pii.blocked_entities&#39;" in misspelt.text
    recorded = ada.post("/waivers/new", data={**form, "rule_id": "pii.blocked_entities"})
    assert recorded.status_code == 200 and recorded.url.path == "/waivers"
    with LineageStore.open(history.db, read_only=True) as store:
        (waiver,) = store.waivers()
    assert waiver.by == "ada" and waiver.until.isoformat() == until
    assert f'id="form-end-{waiver.id}"' in recorded.text.split('id="expired-waivers"')[0]
    assert _pii_rule_status(history.db, history.fingerprint) == "waived"

    ended = ada.post(f"/waivers/{waiver.id}/end", data={"csrf": ada.csrf, "reason": "consent withdrawn"})
    assert ended.status_code == 200
    expired_part = ended.text.split('id="expired-waivers"')[1]
    assert f'id="waiver-{waiver.id}"' in expired_part and "by ada" in expired_part and "consent withdrawn" in expired_part
    assert _pii_rule_status(history.db, history.fingerprint) == "fail"  # the block is back, today
    again = ada.post(f"/waivers/{waiver.id}/end", data={"csrf": ada.csrf, "reason": "twice"})
    assert again.status_code == 400 and "already ended" in again.text
    with LineageStore.open(history.db, read_only=True) as store:
        kinds = [(e.kind, e.payload["actor"]["name"]) for e in store.recent_events(limit=10)]
        assert ("waiver.added", "ada") in kinds and ("waiver.ended", "ada") in kinds
        report = store.verify_chain()
        assert report.ok, report.problems


def test_revoking_a_data_set_in_the_console_revokes_and_lists_every_model_trained_on_it(
        console_client: Callable[..., Any], history: History) -> None:
    bob = console_client(history.db, "bob")
    page = bob.post(f"/datasets/{history.fingerprint}/revoke", data={"csrf": bob.csrf, "reason": "erasure request"})
    assert page.status_code == 200
    assert "support-intent@v1" in page.text and "support-intent@v2" in page.text and "erasure request" in page.text
    assert _statuses(history.db) == {"support-intent@v2": "revoked", "support-intent@v1": "revoked"}
    with LineageStore.open(history.db, read_only=True) as store:
        for version in store.model_versions():
            assert model_status(store, digest=version.digest, require="registered").meets is False


def test_every_console_action_needs_the_csrf_token_an_acting_role_and_a_reason(console_client: Callable[..., Any],
                                                                               history: History) -> None:
    with LineageStore.open(history.db) as store:
        waiver = store.add_waiver(target=history.fingerprint, rule_id="pii.blocked_entities", by="carol",
                                  reason="kept", until=date.today() + timedelta(days=3))
    actions = {
        "/models/support-intent/v1/approve": {},
        "/models/support-intent/rollback": {},
        f"/datasets/{history.fingerprint}/revoke": {},
        "/waivers/new": {"target": history.fingerprint, "rule_id": "pii.blocked_entities",
                         "until": (date.today() + timedelta(days=3)).isoformat()},
        f"/waivers/{waiver}/end": {},
    }
    before = (_statuses(history.db), len(LineageStore.open(history.db, read_only=True).waivers()))
    vera, bob = console_client(history.db, "vera"), console_client(history.db, "bob")
    assert "<form" not in vera.get(f"/datasets/{history.fingerprint}").text.split("</header>")[1]
    assert 'id="form-waive"' not in vera.get("/waivers").text and 'class="action' not in vera.get("/waivers").text
    for path, extra in actions.items():
        assert vera.post(path, data={"csrf": vera.csrf, "reason": "r", **extra}).status_code == 403, path
        assert bob.post(path, data={"reason": "r", **extra}).status_code == 403, path  # no token
        assert bob.post(path, data={"csrf": vera.csrf, "reason": "r", **extra}).status_code == 403, path
        assert bob.post(path, data={"csrf": bob.csrf, "reason": "  ", **extra}).status_code == 400, path
    read_only = console_client(history.db, read_only=True)
    assert all(read_only.post(path, data={"reason": "r"}).status_code == 403 for path in actions)
    with LineageStore.open(history.db, read_only=True) as store:
        assert (_statuses(history.db), len(store.waivers())) == before
        denials = [e for e in store.recent_events(limit=50) if e.kind == "ui.denied"]
        assert sorted(e.payload["path"] for e in denials) == sorted(actions)
        assert {(e.payload["actor"]["name"], e.payload["role"]) for e in denials} == {("vera", "viewer")}


def test_the_cli_ends_a_waiver_through_the_same_api(govern_cli: Any, history: History) -> None:
    with LineageStore.open(history.db) as store:
        waiver = store.add_waiver(target=history.fingerprint, rule_id="pii.blocked_entities", by="carol",
                                  reason="kept", until=date.today() + timedelta(days=3))
    assert _pii_rule_status(history.db, history.fingerprint) == "waived"
    code, out, err = govern_cli("end-waiver", str(waiver), "--by", "dana", "--reason", "withdrawn", "--db", history.db)
    assert code == 0, err
    assert f"waiver #{waiver} (pii.blocked_entities for {history.fingerprint}) ended by dana" in out
    assert _pii_rule_status(history.db, history.fingerprint) == "fail"
    with LineageStore.open(history.db, read_only=True) as store:  # and the run's report says so
        report = build_report_data(store, history.runs[0])
    (shown,) = [w for w in report.waivers if w.id == waiver]
    assert not shown.active and shown.ended_by == "dana"
    assert f"| {waiver} | `pii.blocked_entities` | carol | kept |" in render_markdown(report)
    assert "ended " in render_markdown(report) and "by dana: withdrawn" in render_markdown(report)
    code, _, err = govern_cli("end-waiver", "999", "--by", "dana", "--reason", "x", "--db", history.db)
    assert code == 2 and "no waiver #999" in err
