"""Finding and loading policy files: shipped names (``default``, ``strict``, ``dev``) or paths.

The digest recorded for a policy is the sha256 of the file's bytes, so a compliance officer can check
it with ``sha256sum`` against the file under version control.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from govern.errors import PolicyError
from govern.policy.cel import compile_rules
from govern.policy.entities import unknown_entity_problem
from govern.policy.schema import Policy
from govern.yamlio import line_of, read_yaml, validation_problems

#: Shipped policies live at the project's top level (``policies/``), next to the package.
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "policies"

#: Where an unknown policy field sends the author.
POLICY_SCHEMA_COMMAND = "govern policy schema"


@dataclass
class LoadedPolicy:
    policy: Policy
    path: str
    digest: str
    document: dict[str, Any] = field(default_factory=dict)
    #: The file as written (None when rebuilt from a stored document without its source).
    source: str | None = None
    #: ``metadata.name`` and ``metadata.version`` as written: with the digest, what a decision names as its
    #: policy (the digest, not these, proves which text applied).
    name: str = field(init=False)
    version: str = field(init=False)

    def __post_init__(self) -> None:
        self.name, self.version = self.policy.metadata.name, self.policy.metadata.version


def shipped_policies() -> list[str]:
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml")) if SHIPPED_DIR.is_dir() else []


def resolve_policy_path(ref: str | Path) -> Path:
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or len(p.parts) > 1 or p.exists():
        return p
    candidate = SHIPPED_DIR / f"{p.name}.yaml"
    if candidate.exists():
        return candidate
    names = ", ".join(shipped_policies()) or "none found"
    raise PolicyError(str(ref), [f"no such policy file, and not a shipped policy name (shipped: {names})"])


def load_policy(ref: str | Path) -> LoadedPolicy:
    """Load, validate and compile a policy; every problem names the file, line and field."""
    path = resolve_policy_path(ref)
    data, node = read_yaml(path, PolicyError)
    if data is None:
        raise PolicyError(path, ["file is empty"])
    if not isinstance(data, dict):
        raise PolicyError(path, ["expected a mapping at the top level"])
    from pydantic import ValidationError

    problems = entity_problems(data, node)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(path, validation_problems(exc, node, POLICY_SCHEMA_COMMAND) + problems) from None
    for index, rule, message in compile_rules(policy):
        line = line_of(node, ["rules", index, "expression"])
        where = f"line {line}, " if line else ""
        problems.append(f"{where}rules.{index}.expression (rule '{rule}'): {message}")
    if problems:
        raise PolicyError(path, problems)
    raw = path.read_bytes()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    return LoadedPolicy(policy=policy, path=str(path), digest=digest, document=data,
                        source=raw.decode("utf-8", errors="replace"))


def entity_problems(document: dict[str, Any], node: yaml.Node | None) -> list[str]:
    """Entity names no recognizer knows (a misspelling would otherwise fail only at scan time).

    Works on the raw document, so these problems are reported together with schema errors."""
    pii = document.get("pii")
    if not isinstance(pii, dict):
        return []
    recognizers = pii.get("custom_recognizers")
    custom = {str(c.get("entity")) for c in recognizers if isinstance(c, dict)} if isinstance(recognizers, list) else set()
    problems = []
    for section in ("entities", "ner_entities", "context_words"):
        names = pii.get(section)
        if not isinstance(names, dict):
            continue
        for name in names:
            problem = unknown_entity_problem(str(name), custom)
            if problem is not None:
                line = line_of(node, ["pii", section, str(name)])
                where = f"line {line}, " if line else ""
                problems.append(f"{where}pii.{section}.{name}: {problem}")
    return problems


def policy_from_document(document: dict[str, Any], digest: str, source: str = "<stored policy>",
                         text: str | None = None) -> LoadedPolicy:
    """Rebuild a policy stored in the lineage DB (for ``govern check`` without a file)."""
    from pydantic import ValidationError

    try:
        policy = Policy.model_validate(document)
    except ValidationError as exc:
        raise PolicyError(source, validation_problems(exc, None, POLICY_SCHEMA_COMMAND)) from None
    return LoadedPolicy(policy=policy, path=source, digest=digest, document=document, source=text)


def policy_json_schema() -> dict[str, Any]:
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "govern Policy (apiVersion govern.dev/v1)"
    return schema


def lint_policy(ref: str | Path) -> tuple[LoadedPolicy, list[str]]:
    """Load a policy (errors raise) and list advisories a reviewer should see."""
    loaded = load_policy(ref)
    p = loaded.policy
    path_problems = _rule_path_problems(loaded)
    if path_problems:
        raise PolicyError(loaded.path, path_problems)
    notes: list[str] = []
    if not p.privacy.require_dp:
        notes.append("privacy.require_dp is false: non-private training passes (development only)")
    if p.privacy.max_epsilon is None:
        notes.append("privacy.max_epsilon is unset: any ε passes")
    elif p.privacy.max_epsilon > 10:
        notes.append(f"privacy.max_epsilon {p.privacy.max_epsilon} is above 10: a weak guarantee")
    if p.membership.max_auc is None and not p.membership.max_tpr_at_fpr:
        notes.append("membership: no max_auc or max_tpr_at_fpr set: leakage is measured but never gated")
    mem = p.memorization
    if mem.max_extraction_rate is None and mem.max_pii_regurgitation_rate is None:
        notes.append("memorization: no max_extraction_rate or max_pii_regurgitation_rate set: what a causal LM "
                     "reproduces verbatim is measured but never gated")
    if mem.max_pii_regurgitation_rate is not None and p.membership.canaries.pii_pool_size == 0:
        notes.append("memorization.max_pii_regurgitation_rate is never checked: membership.canaries.pii_pool_size "
                     "is 0, so canary runs plant no PII canaries")
    if not p.fairness.max_difference and not p.fairness.min_ratio:
        notes.append("fairness: no limits set: disparities are measured but never gated")
    allowed = [e for e, a in p.pii.entities.items() if a == "allow"]
    if allowed:
        notes.append(f"pii: {', '.join(sorted(allowed))} allowed into training data")
    for limit in p.membership.max_tpr_at_fpr:
        if limit.max_tpr < limit.fpr:
            notes.append(f"membership.max_tpr_at_fpr: max_tpr {limit.max_tpr:g} is below its fpr {limit.fpr:g}: an "
                         "attack at chance level (TPR = FPR) already fails it, so even a model that leaks nothing "
                         "blocks about half the time")
    if not p.signing.required:
        notes.append("signing.required is false: unsigned models pass")
    if not p.approval.distinct_approver:
        notes.append("approval.distinct_approver is false: whoever trained a model may approve it (no four eyes)")
    if not p.approval.require_signature:
        notes.append("approval.require_signature is false: unsigned models can be approved")
    if p.approval.require_decision != "pass" or p.approval.allow_waived:
        notes.append(f"approval: require_decision {p.approval.require_decision}, allow_waived "
                     f"{str(p.approval.allow_waived).lower()}: models that did not cleanly pass can be approved")
    for r in p.rules:
        if not r.requires:
            notes.append(f"rule '{r.id}' has no `requires`: it is evaluated after every stage")
    return loaded, notes


def _rule_path_problems(loaded: LoadedPolicy) -> list[str]:
    """Evidence paths the custom rules name that the evidence schema does not have (file/line/rule each).

    An error, not an advisory: such a rule can never be evaluated, so at the final decision it is an
    ``error`` that blocks every run."""
    from govern.policy.paths import unknown_evidence_paths

    problems: list[str] = []
    node = None
    for index, rule in enumerate(loaded.policy.rules):
        unknown = unknown_evidence_paths(rule.expression)
        if unknown and node is None:
            node = read_yaml(Path(loaded.path), PolicyError)[1]
        for problem in unknown:
            line = line_of(node, ["rules", index, "expression"])
            where = f"line {line}, " if line else ""
            problems.append(f"{where}rules.{index}.expression (rule '{rule.id}'): {problem}")
    return problems


def load_evidence_document(path: str | Path) -> dict[str, Any]:
    """An evidence document from a JSON file (``govern policy test``), validated against the evidence models.

    Validated because the built-in checks read fields directly: a fixture with a misspelt or missing
    field must be an error naming it, not a test that passes because a check never ran."""
    import json

    from pydantic import ValidationError

    from govern.errors import GovernError
    from govern.evidence import Evidence
    from govern.yamlio import validation_problems

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GovernError(f"{p}: evidence file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GovernError(f"{p}: cannot read the evidence file ({type(exc).__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GovernError(f"{p}: not valid JSON — line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise GovernError(f"{p}: expected a JSON object with the evidence sections (data, pii, training, ...)")
    try:
        return Evidence.model_validate(data).document()
    except ValidationError as exc:
        lines = "\n".join(f"  - {problem}" for problem in
                          validation_problems(exc, None, "govern policy schema --evidence"))
        raise GovernError(f"{p}: not a valid evidence document\n{lines}") from None
