"""The policy's approval: section: shipped policies state it, lint says when it weakens approval, and a
bad value is a clear error naming the file, line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from govern.policy import load_policy


def test_shipped_policies_state_their_approval_rules() -> None:
    assert load_policy("default").policy.approval.distinct_approver is True
    assert load_policy("strict").policy.approval.approvals_to_deploy == 2
    dev = load_policy("dev").policy.approval
    assert (dev.distinct_approver, dev.require_signature) == (False, False)


def test_lint_notes_a_policy_without_four_eyes_and_rejects_a_bad_value(govern_cli: Any, tmp_path: Path) -> None:
    code, out, _ = govern_cli("policy", "lint", "dev")
    assert code == 0 and "approval.distinct_approver is false" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: govern.dev/v1\nkind: Policy\nmetadata: {name: bad, version: '1'}\n"
                   "approval:\n  approvals_to_deploy: 0\n")
    code, out, err = govern_cli("policy", "lint", str(bad))
    assert code == 2
    assert "bad.yaml" in err and "line 5" in err and "approval.approvals_to_deploy" in err
