"""The model registry as a compliance officer uses it: four eyes, policy-gated approval, deployment,
rollback and revocation — every action recorded with who and why, and an edited approval caught."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from govern.errors import RecordIntegrityError
from govern.lineage import LineageStore
from govern.registry import ApprovalRefused, approve, model_status, promote, revoke_dataset, rollback
from tests.registry.conftest import DATASET, as_user, record_run


def test_the_initiator_cannot_approve_their_own_model_and_a_second_approver_can(db_url: str, tmp_path: Path) -> None:
    run = record_run(db_url, tmp_path, by="alice")
    with as_user(db_url, "alice") as store, pytest.raises(ApprovalRefused, match="four eyes"):
        approve(store, run.run_id, reason="looks fine to me")
    with as_user(db_url, "bob") as store:
        version = approve(store, run.run_id, reason="audits reviewed")
        assert version.status == "approved" and version.approvers == ["bob"]
        assert version.initiator == "alice"
        action = version.actions[-1]
        assert (action.actor, action.from_status, action.to_status, action.reason) == \
            ("bob", "candidate", "approved", "audits reviewed")
        assert action.details is not None and action.details["signature"]["verified"] is True
        events = [e for e in store.events(run.run_id) if e.kind == "model.approved"]
        assert len(events) == 1 and events[0].payload["actor"]["name"] == "bob"
        assert "audits reviewed" not in str(events[0].payload)  # free text stays out of the append-only log
        assert store.verify_chain().ok


def test_an_unsigned_or_tampered_model_is_refused_under_require_signature(sqlite_db: str, tmp_path: Path) -> None:
    unsigned = record_run(sqlite_db, tmp_path, by="alice", sign=False, seed=1)
    tampered = record_run(sqlite_db, tmp_path, by="alice", seed=2)
    (tampered.model_dir / "adapter_model.safetensors").write_bytes(b"swapped weights")
    with as_user(sqlite_db, "bob") as store:
        with pytest.raises(ApprovalRefused, match="not signed"):
            approve(store, unsigned.run_id, reason="ok")
        with pytest.raises(ApprovalRefused, match="changed since it was recorded"):
            approve(store, tampered.run_id, reason="ok")
        assert [v.status for v in store.model_versions()] == ["candidate", "candidate"]
        # the dev policy does not require signatures: the same unsigned model is approvable under it
        assert approve(store, unsigned.run_id, reason="experiment", policy="dev").status == "approved"


def test_a_blocked_run_or_a_waived_pass_cannot_be_approved_unless_the_policy_allows(sqlite_db: str,
                                                                                    tmp_path: Path) -> None:
    blocked = record_run(sqlite_db, tmp_path, by="alice", decision="block", seed=1)
    waived = record_run(sqlite_db, tmp_path, by="alice", waived=True, seed=2)
    with as_user(sqlite_db, "bob") as store:
        with pytest.raises(ApprovalRefused, match="decision 'block'"):
            approve(store, blocked.run_id, reason="ok")
        with pytest.raises(ApprovalRefused, match="waived rule"):
            approve(store, waived.run_id, reason="ok")
        assert approve(store, waived.run_id, reason="waiver accepted", policy="dev").status == "approved"


def test_deploying_needs_the_policys_approvals_and_rollback_restores_the_previous_version(
        db_url: str, tmp_path: Path) -> None:
    first = record_run(db_url, tmp_path, by="alice", seed=1, policy="strict")
    second = record_run(db_url, tmp_path, by="alice", seed=2, policy="strict")
    for run in (first, second):
        with as_user(db_url, "bob") as store:
            approve(store, run.run_id, reason="reviewed")
        with as_user(db_url, "bob") as store, pytest.raises(ApprovalRefused, match="2 distinct approvers"):
            promote(store, run.run_id, reason="ship it")
        with as_user(db_url, "carol") as store:
            assert approve(store, run.run_id, reason="second pair of eyes").approvers == ["bob", "carol"]
        with as_user(db_url, "carol") as store:
            promote(store, run.run_id, reason="release")
    with LineageStore.open(db_url) as store:
        assert {v.ref: v.status for v in store.model_versions()} == \
            {"support-intent@v2": "deployed", "support-intent@v1": "deprecated"}
    with as_user(db_url, "dave") as store:
        restored, rolled_back = rollback(store, "support-intent", reason="v2 misroutes refunds", revoke_current=True)
        assert (restored.ref, restored.status) == ("support-intent@v1", "deployed")
        assert (rolled_back.ref, rolled_back.status) == ("support-intent@v2", "revoked")
        assert rolled_back.actions[-1].reason == "v2 misroutes refunds" and rolled_back.actions[-1].actor == "dave"
        gate = model_status(store, path=second.model_dir, require="approved")
        assert (gate.status, gate.meets) == ("revoked", False)
        assert model_status(store, path=first.model_dir, require="deployed").meets is True
        assert store.verify_chain().ok


def test_revoking_a_data_set_marks_and_lists_every_model_trained_on_it(sqlite_db: str, tmp_path: Path) -> None:
    a = record_run(sqlite_db, tmp_path, by="alice", seed=1)
    b = record_run(sqlite_db, tmp_path, by="alice", seed=2, name="other-model")
    other = record_run(sqlite_db, tmp_path, by="alice", seed=3, dataset="sha256:" + "f" * 64)
    with as_user(sqlite_db, "bob") as store:
        approve(store, a.run_id, reason="ok")
        affected = revoke_dataset(store, DATASET, reason="erasure request #123")
        assert sorted(v.run_id for v in affected) == sorted([a.run_id, b.run_id])
        assert {v.status for v in affected} == {"revoked"}
        assert all(v.actions[-1].details == {"dataset": DATASET} for v in affected)
        assert [v.status for v in store.model_versions(run_id=other.run_id)] == []  # untouched, not registered
        assert store.verify_chain().ok


def test_an_approval_edited_in_the_db_is_caught_by_verify_and_the_gate_fails_closed(sqlite_db: str,
                                                                                    tmp_path: Path) -> None:
    run = record_run(sqlite_db, tmp_path, by="alice", sign=False)
    with as_user(sqlite_db, "bob") as store:
        version = approve(store, run.run_id, reason="ok", policy="dev")
    engine = sa.create_engine(sqlite_db)
    with engine.begin() as conn:  # an insider re-labels the approver and deploys the model by hand
        conn.execute(sa.text("UPDATE model_actions SET actor = 'ceo'"))
        conn.execute(sa.text("UPDATE model_versions SET status = 'deployed'"))
    engine.dispose()
    with LineageStore.open(sqlite_db, read_only=True) as store:
        problems = store.verify_chain().problems
        assert any("model_actions row" in p and "actor" in p for p in problems), problems
        assert any("model_versions row" in p and "status" in p for p in problems), problems
        with pytest.raises(RecordIntegrityError):
            model_status(store, digest=version.digest, require="deployed")
