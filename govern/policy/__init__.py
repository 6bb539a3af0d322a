"""The policy engine: versioned policy files, built-in checks per concern, CEL rules, waivers."""

from govern.policy.engine import BUILTIN_CHECKS, PolicyDecision, RuleResult, WaiverRef, evaluate
from govern.policy.loader import (
    LoadedPolicy,
    lint_policy,
    load_policy,
    policy_from_document,
    policy_json_schema,
    shipped_policies,
)
from govern.policy.schema import Policy

__all__ = [
    "BUILTIN_CHECKS",
    "LoadedPolicy",
    "Policy",
    "PolicyDecision",
    "RuleResult",
    "WaiverRef",
    "evaluate",
    "lint_policy",
    "load_policy",
    "policy_from_document",
    "policy_json_schema",
    "shipped_policies",
]
