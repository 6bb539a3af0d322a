"""Policies that cannot hang, hide a value or name a check that never runs.

A CEL rule is bounded (cost budget + wall-clock backstop): a rule that exceeds it is an ``error`` that
blocks, and the run or check is recorded — never left ``running``. Duplicate YAML keys, impossible
fairness limits and misspelled entity names are load errors naming the line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from govern.config import load_run_config
from govern.data.stage import DataStage
from govern.errors import ConfigError, PolicyError
from govern.lineage import LineageStore
from govern.pipeline import Pipeline
from govern.policy import evaluate, lint_policy, load_policy
from govern.policy.cel import evaluate_expression
from govern.policy.entities import KNOWN_ENTITIES, NER_ENTITIES, PATTERN_ENTITIES
from govern.policy.schema import Policy
from tests.spine.helpers import policy_doc, write_project
from tests.spine.stages import EvidenceStage, training_evidence

HUNDRED = "[" + ",".join(str(i) for i in range(100)) + "]"
TEN = "[" + ",".join(str(i) for i in range(10)) + "]"
#: 100³ = 10⁶ inner evaluations: over two minutes in cel-python without a bound.
NESTED_ALL = f"{HUNDRED}.all(a, {HUNDRED}.all(b, {HUNDRED}.all(c, a + b + c >= 0)))"
#: five levels of map: 10⁵ leaves at ten elements, 10¹⁰ at a hundred.
FIVE_MAPS = (f"{HUNDRED}.map(a, {HUNDRED}.map(b, {HUNDRED}.map(c, {HUNDRED}.map(d, {HUNDRED}.map(e, "
             "a + b + c + d + e))))).size() > 0")


def _store() -> LineageStore:
    return LineageStore.open(os.environ["GOVERN_DB_URL"])


def _bomb_rule(expression: str, **extra: object) -> dict[str, object]:
    return {"id": "bomb", "expression": expression, "message": "never shown", **extra}


# --------------------------------------------------------------------------------------- CEL budget
@pytest.mark.timeout(30)
@pytest.mark.parametrize("expression", [NESTED_ALL, FIVE_MAPS], ids=["nested-all", "five-level-map"])
def test_expensive_rule_is_stopped_as_an_error_that_blocks(expression: str) -> None:
    policy = Policy.model_validate(policy_doc(rules=[_bomb_rule(expression)]))
    started = time.monotonic()
    decision = evaluate(policy, {"run": {"run_id": "r"}}, final=False)
    assert time.monotonic() - started < 10
    (rule,) = [r for r in decision.results if r.rule_id == "bomb"]
    assert rule.status == "error" and decision.decision == "block"
    assert "exceeded its evaluation budget" in rule.message and "max_cost" in rule.message


@pytest.mark.timeout(30)
def test_a_doubling_reduce_is_stopped_by_its_size_before_it_fills_memory() -> None:
    # 100 doublings would be a list of 2¹⁰⁰ elements; the size charge stops it after ~18.
    started = time.monotonic()
    outcome = evaluate_expression(f"{HUNDRED}.reduce(r, i, [0], r + r).size() > 0", {})
    assert outcome.exceeded is not None and time.monotonic() - started < 5


def test_budget_is_deterministic_and_configurable_per_policy_and_per_rule() -> None:
    heavy = f"{TEN}.all(a, {TEN}.all(b, {TEN}.all(c, a + b + c >= 0)))"  # 10³ leaves
    first = evaluate_expression(heavy, {})
    assert first.value is True and first.cost == evaluate_expression(heavy, {}).cost  # same cost every time
    tight = Policy.model_validate(policy_doc(rule_limits={"max_cost": 1000}, rules=[_bomb_rule(heavy)]))
    (r,) = evaluate(tight, {}).results
    assert r.status == "error" and "over the budget of 1,000" in r.message
    raised = Policy.model_validate(policy_doc(rule_limits={"max_cost": 1000},
                                              rules=[_bomb_rule(heavy, max_cost=first.cost + 1)]))
    assert [x.status for x in evaluate(raised, {}).results] == ["pass"]
    # the wall-clock backstop alone also stops a rule (a budget too large to matter, 0.2 s)
    slow = Policy.model_validate(policy_doc(rules=[_bomb_rule(NESTED_ALL, max_cost=100_000_000, timeout_s=0.2)]))
    started = time.monotonic()
    (t,) = evaluate(slow, {}).results
    assert t.status == "error" and "0.2 s timeout" in t.message and time.monotonic() - started < 3


def test_an_exceeded_warn_rule_is_an_error_of_its_own_severity() -> None:
    policy = Policy.model_validate(policy_doc(rule_limits={"max_cost": 1000},
                                              rules=[_bomb_rule(NESTED_ALL, severity="warn")]))
    decision = evaluate(policy, {})
    assert [r.status for r in decision.results] == ["error"] and decision.decision == "warn"


def test_shipped_rules_cost_far_below_the_default_budget() -> None:
    # the strict policy's rule over a full-length (500-point) training curve
    loaded = load_policy("strict")
    curve = [{"step": i, "loss": 1.0 / (i + 1), "epsilon": 0.01 * i} for i in range(500)]
    for rule in loaded.policy.rules:
        outcome = evaluate_expression(rule.expression, {"training": {"curve": curve}})
        assert outcome.value is True and outcome.cost < loaded.policy.rule_limits.max_cost / 100


@pytest.mark.timeout(30)
def test_nested_all_bomb_in_govern_check_blocks_and_the_check_is_recorded(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir)
    with _store() as store:
        outcome = Pipeline(store, stages=[DataStage(), EvidenceStage("training", training_evidence())]).start(cfg)
    assert outcome.decision == "pass"
    bomb = workdir / "bomb.yaml"
    bomb.write_text(yaml.safe_dump(policy_doc(rules=[_bomb_rule(NESTED_ALL, requires=["training"])])))
    started = time.monotonic()
    code, out, _ = govern_cli("check", "latest", "--policy", str(bomb), "--format", "json")
    assert time.monotonic() - started < 20
    assert code == 1
    result = json.loads(out)
    (rule,) = [r for r in result["results"] if r["rule_id"] == "bomb"]
    assert result["decision"] == "block" and rule["status"] == "error"
    assert "exceeded its evaluation budget" in rule["message"]
    with _store() as store:
        (decision,) = [d for d in store.decisions(outcome.run_id) if d.kind == "check"]
        assert decision.decision == "block"
        assert store.get_run(outcome.run_id).status == "completed"  # a check never rewrites the run
        assert store.verify_chain().ok


@pytest.mark.timeout(30)
def test_five_level_map_blocks_govern_run_at_its_first_gate_and_the_run_is_recorded(workdir: Path,  # type: ignore[no-untyped-def]
                                                                                    govern_cli) -> None:
    # the real `govern run` with its real stages: the bomb has no `requires`, so the gate after the
    # data stage evaluates it; it must block there instead of hanging with the run left `running`.
    cfg = write_project(workdir, policy=policy_doc(rules=[_bomb_rule(FIVE_MAPS)]))
    started = time.monotonic()
    code, out, err = govern_cli("run", str(cfg))
    assert time.monotonic() - started < 25
    assert code == 1, err
    assert "exceeded its evaluation budget" in out
    with _store() as store:
        (run,) = store.list_runs()
        assert run.status == "blocked" and run.decision == "block"
        (gate,) = store.decisions(run.id)
        assert gate.kind == "gate" and gate.decision == "block"
        assert store.verify_chain().ok
    code, out, _ = govern_cli("runs", "show", "latest", "--format", "json")
    shown = json.loads(out)
    assert [s["stage"] for s in shown["stages"]] == ["data"], "no stage may run after the blocking gate"
    (bomb,) = [r for r in shown["decision"]["results"] if r["rule_id"] == "bomb"]
    assert bomb["status"] == "error"


@pytest.mark.timeout(30)
def test_pipeline_gate_with_a_bomb_blocks_before_training(workdir: Path) -> None:
    cfg = write_project(workdir, policy=policy_doc(rules=[_bomb_rule(NESTED_ALL)]))
    training = EvidenceStage("training", training_evidence())
    with _store() as store:
        outcome = Pipeline(store, stages=[DataStage(), training]).start(cfg)
        assert outcome.status == "blocked" and training.runs == 0
        (bomb,) = [r for r in outcome.results if r["rule_id"] == "bomb"]
        assert bomb["status"] == "error"
        assert store.get_run(outcome.run_id).status == "blocked"


# ------------------------------------------------------------------------------------ duplicate keys
def test_duplicate_key_in_a_run_config_names_file_line_and_key(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir)
    text = cfg.read_text() + "training:\n  epochs: 1\n  batch_size: 8\n  epochs: 30\n"
    cfg.write_text(text)
    lines = text.splitlines()
    first, second = (i + 1 for i, t in enumerate(lines) if t.startswith("  epochs:"))
    with pytest.raises(ConfigError) as exc:
        load_run_config(cfg)
    assert str(cfg) in str(exc.value)
    assert f"line {second}, training.epochs: duplicate key 'epochs' (first at line {first}" in str(exc.value)
    # through `govern run`: exit 2 and the run is recorded as failed
    code, _, err = govern_cli("run", str(cfg))
    assert code == 2 and "duplicate key 'epochs'" in err
    with _store() as store:
        (run,) = store.list_runs()
        assert run.status == "failed" and "duplicate key" in (run.error or "")


def test_duplicate_key_in_a_policy_is_an_error_even_deep_and_in_flow_style(tmp_path: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "p.yaml"
    path.write_text(
        "apiVersion: govern.dev/v1\nkind: Policy\nmetadata: {name: x, version: '1'}\n"
        "privacy:\n  max_epsilon: 1.0\n  max_epsilon: 8.0\n"                # lines 5, 6
        "membership:\n  max_tpr_at_fpr:\n    - {fpr: 0.01, max_tpr: 0.05, fpr: 0.5}\n"   # line 9
    )
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    message = str(exc.value)
    assert "line 6, privacy.max_epsilon: duplicate key 'max_epsilon' (first at line 5" in message
    assert "line 9, membership.max_tpr_at_fpr.0.fpr: duplicate key 'fpr'" in message
    code, _, err = govern_cli("policy", "lint", str(path))
    assert code == 2 and "line 6" in err and "duplicate key 'max_epsilon'" in err


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    # `<<` is YAML's own override mechanism: the explicit key after a merge wins, by design.
    path = tmp_path / "p.yaml"
    path.write_text(
        "apiVersion: govern.dev/v1\nkind: Policy\nmetadata: {name: x, version: '1'}\n"
        "privacy:\n  <<: {max_epsilon: 4.0, max_delta: 1.0e-6}\n  max_epsilon: 3.0\n"
    )
    assert load_policy(path).policy.privacy.max_epsilon == 3.0


# ------------------------------------------------------------------------------ thresholds and names
def test_lint_rejects_thresholds_that_can_never_pass_or_never_fail_naming_the_line(tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                                     govern_cli) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "apiVersion: govern.dev/v1\nkind: Policy\nmetadata: {name: x, version: '1'}\n"
        "fairness:\n  max_difference:\n"
        "    equalized_odds_difference: -0.5\n"      # line 6: never passes
        "    accuracy_difference: 1.5\n"             # line 7: never fails
        "  min_ratio:\n"
        "    demographic_parity_ratio: 5.0\n"        # line 9: never passes
        "    equalized_odds_ratio: 0\n"              # line 10: never fails
    )
    code, _, err = govern_cli("policy", "lint", str(path))
    assert code == 2
    assert "line 6, fairness.max_difference.equalized_odds_difference: -0.5 can never pass" in err
    assert "line 7, fairness.max_difference.accuracy_difference: 1.5 can never fail" in err
    assert "line 9, fairness.min_ratio.demographic_parity_ratio: 5 can never pass" in err
    assert "line 10, fairness.min_ratio.equalized_odds_ratio: 0 can never fail" in err
    # loading for a run rejects them too (a run under such a policy could only block after training)
    with pytest.raises(PolicyError, match="can never pass"):
        load_policy(path)


def test_lint_names_the_line_of_a_misspelled_entity_and_suggests_the_right_one(tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                                govern_cli) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "apiVersion: govern.dev/v1\nkind: Policy\nmetadata: {name: x, version: '1'}\n"
        "pii:\n  entities:\n    EMAIL_ADDRESS: redact\n    US_SNN: block\n"     # line 7
        "  context_words:\n    PHONE_NUMBR: [tel]\n"                            # line 9
        "  custom_recognizers:\n    - {name: emp, entity: EMPLOYEE_ID, deny_list: [E-1]}\n"
    )
    code, _, err = govern_cli("policy", "lint", str(path))
    assert code == 2
    assert "line 7, pii.entities.US_SNN: unknown entity 'US_SNN'" in err and "did you mean 'US_SSN'?" in err
    assert "line 9, pii.context_words.PHONE_NUMBR" in err and "did you mean 'PHONE_NUMBER'?" in err
    assert "EMPLOYEE_ID" in err, "the custom entity is not listed in pii.entities: the schema error names it"
    path.write_text(path.read_text().replace("US_SNN", "US_SSN").replace("PHONE_NUMBR", "PHONE_NUMBER")
                    .replace("    US_SSN: block\n", "    US_SSN: block\n    EMPLOYEE_ID: block\n    PERSON: allow\n"))
    loaded, _ = lint_policy(path)  # custom entities and NER names (the config may pick spacy) are valid
    assert {"EMPLOYEE_ID", "PERSON", "US_SSN"} <= set(loaded.policy.pii.entities)


def test_a_misspelled_entity_fails_govern_run_before_any_stage(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir, policy=policy_doc(pii={"entities": {"US_SNN": "block"}}))
    code, _, err = govern_cli("run", str(cfg))
    assert code == 2 and "did you mean 'US_SSN'?" in err
    with _store() as store:
        (run,) = store.list_runs()
        assert run.status == "failed"


def test_known_entity_names_match_the_registry_govern_builds() -> None:
    from govern.pii.analyzer import build_analyzer
    from govern.policy.schema import PIIPolicy

    analyzer = build_analyzer(PIIPolicy(entities={e: "redact" for e in sorted(PATTERN_ENTITIES)}), engine="patterns")
    supported = {e for r in analyzer.engine.registry.recognizers for e in r.supported_entities}
    assert supported == PATTERN_ENTITIES
    assert KNOWN_ENTITIES == PATTERN_ENTITIES | NER_ENTITIES
