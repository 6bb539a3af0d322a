"""Run configs and policies: precise errors, CEL rules, waivers, pass/warn/block."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from govern.config import load_run_config
from govern.errors import ConfigError, PolicyError
from govern.policy import WaiverRef, evaluate, lint_policy, load_policy, policy_json_schema
from govern.policy.schema import Policy
from tests.spine.helpers import policy_doc, write_project


def test_unknown_field_error_names_file_line_and_field_path(tmp_path: Path) -> None:
    cfg = write_project(tmp_path)
    text = cfg.read_text() + "training:\n  epochz: 3\n"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_run_config(cfg)
    message = str(exc.value)
    line = text.splitlines().index("  epochz: 3") + 1
    assert str(cfg) in message
    assert f"line {line}, training.epochz: unknown field" in message


def test_wrong_type_and_out_of_range_values_are_explained(tmp_path: Path) -> None:
    cfg = write_project(tmp_path, extra={"training": {"dp": {"target_epsilon": -1, "delta": 2}, "batch_size": "x"}})
    with pytest.raises(ConfigError) as exc:
        load_run_config(cfg)
    message = str(exc.value)
    assert "training.dp.target_epsilon: Input should be greater than 0" in message
    assert "training.dp.delta: Input should be less than 1" in message
    assert "training.batch_size: Input should be a valid integer" in message


def test_missing_required_section_and_yaml_syntax_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "govern.yaml"
    cfg.write_text("name: x\n")
    with pytest.raises(ConfigError, match=r"data: required field is missing"):
        load_run_config(cfg)
    cfg.write_text("name: x\ndata: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: YAML syntax error"):
        load_run_config(cfg)
    with pytest.raises(ConfigError, match="file not found"):
        load_run_config(tmp_path / "nope.yaml")
    # a key given twice is an error (YAML would silently keep the last value)
    cfg.write_text("name: x\nname: y\n")
    with pytest.raises(ConfigError, match=r"line 2, name: duplicate key 'name' \(first at line 1"):
        load_run_config(cfg)


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write_project(tmp_path / "proj")
    monkeypatch.chdir(tmp_path)
    config = load_run_config(cfg)
    assert config.data.train == (tmp_path / "proj" / "train.jsonl").resolve()
    assert config.digest().startswith("sha256:")


def test_config_validate_cli_exit_codes(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir)
    code, out, _ = govern_cli("config", "validate", str(cfg))
    assert code == 0 and "policy default 1.0.0" in out
    cfg.write_text(cfg.read_text().replace("task: classification", "task: regression"))
    code, _, err = govern_cli("config", "validate", str(cfg))
    assert code == 2
    assert "govern.yaml" in err and "task: Input should be 'classification' or 'causal-lm'" in err


# ------------------------------------------------------------------------------------------ policy
def _doc(eps: float = 5.0, dp: bool = True, auc: float = 0.52) -> dict:
    return {
        "training": {"dp_enabled": dp, "non_private": not dp, "epsilon": {"rdp": eps, "prv": eps * 0.9},
                     "delta": 1e-6, "n_train": 10_000, "steps": 100, "epochs": 1.0, "batch_size": 64,
                     "method": "lora", "trainable_params": 1, "total_params": 2, "device": "cpu",
                     "duration_s": 1.0, "seed": 0, "curve": []},
        "membership": {"n_members": 100, "n_nonmembers": 100, "seed": 0, "max_auc": auc,
                       "attacks": [{"name": "reference", "auc": auc,
                                    "tpr_at_fpr": [{"fpr": 0.01, "tpr": 0.02}]}]},
    }


def test_shipped_policies_lint_clean_and_have_digests() -> None:
    for name in ("default", "strict", "dev"):
        loaded, _notes = lint_policy(name)
        assert loaded.digest.startswith("sha256:") and len(loaded.digest) == 71
        assert loaded.policy.metadata.name == name


def test_pass_warn_and_block() -> None:
    policy = Policy.model_validate(policy_doc(privacy={"max_epsilon": 8, "max_delta": 1e-5},
                                              membership={"max_auc": 0.6, "severity": "warn"}))
    assert evaluate(policy, _doc()).decision == "pass"
    warn = evaluate(policy, _doc(auc=0.7))
    assert warn.decision == "warn"
    assert [r.rule_id for r in warn.results if r.status == "fail"] == ["membership.max_auc"]
    block = evaluate(policy, _doc(eps=9.5))
    assert block.decision == "block"
    (failed,) = block.blocking
    assert failed.rule_id == "privacy.max_epsilon" and failed.observed == 9.5 and failed.threshold == 8
    assert "ε = 9.5" in failed.message


def test_gate_on_the_policys_accountant_not_the_config() -> None:
    policy = Policy.model_validate(policy_doc(privacy={"max_epsilon": 5.0, "accountant": "prv"}))
    # rdp says 5.5 (over), prv says 4.95 (under): the policy names prv, so it passes
    assert evaluate(policy, _doc(eps=5.5)).decision == "pass"


def test_non_private_training_blocks_unless_the_policy_allows_it() -> None:
    strict = Policy.model_validate(policy_doc())
    dev = Policy.model_validate(policy_doc(privacy={"require_dp": False}))
    assert evaluate(strict, _doc(dp=False)).decision == "block"
    result = evaluate(dev, _doc(dp=False))
    assert result.decision == "pass"
    (r,) = [r for r in result.results if r.rule_id == "privacy.require_dp"]
    assert "WITHOUT differential privacy" in r.message


def test_cel_rules_pass_fail_skip_and_fail_closed() -> None:
    policy = Policy.model_validate(policy_doc(rules=[
        {"id": "eps-under-6", "expression": "evidence.training.epsilon.rdp < 6.0", "message": "ε too high",
         "requires": ["training"]},
        {"id": "fair", "expression": "evidence.fairness.insufficient_groups.size() == 0", "message": "x",
         "severity": "warn"},
    ]))
    ok = evaluate(policy, _doc(eps=5.0), final=False)
    by_id = {r.rule_id: r for r in ok.results}
    assert by_id["eps-under-6"].status == "pass"
    assert by_id["fair"].status == "skipped"  # fairness evidence not there yet mid-run
    assert evaluate(policy, _doc(eps=7.0), final=False).decision == "block"
    final = evaluate(policy, _doc(eps=5.0), final=True)
    assert {r.rule_id: r.status for r in final.results}["fair"] == "error"
    assert final.decision == "warn"  # the unevaluable rule is a warn-severity rule


def test_cel_syntax_error_names_rule_and_line(tmp_path: Path) -> None:
    doc = policy_doc(rules=[{"id": "broken", "expression": "evidence.training.epsilon.rdp <", "message": "m"}])
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    text = path.read_text().splitlines()
    line = next(i for i, t in enumerate(text, 1) if "expression" in t)
    assert f"line {line}, rules.0.expression (rule 'broken'): CEL syntax error" in str(exc.value)


def test_policy_schema_errors_and_unknown_names(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy_doc(privacy={"max_epsilon": "lots"}, fairnes={})))
    with pytest.raises(PolicyError) as exc:
        load_policy(path)
    assert "privacy.max_epsilon: Input should be a valid number" in str(exc.value)
    assert "fairnes: unknown field" in str(exc.value)
    path.write_text(yaml.safe_dump(policy_doc(fairness={"min_ratio": {"demographic_parity_ratio": 5.0}}),
                                   sort_keys=False))
    with pytest.raises(PolicyError, match=r"line \d+, fairness.min_ratio.demographic_parity_ratio: 5 can never pass"):
        load_policy(path)
    with pytest.raises(PolicyError, match="shipped: default, dev, strict"):
        load_policy("nonexistent")
    assert policy_json_schema()["properties"]["apiVersion"]


def test_valid_waiver_downgrades_a_block_and_an_expired_one_does_not() -> None:
    policy = Policy.model_validate(policy_doc(privacy={"max_epsilon": 8}))
    today = date(2026, 11, 25)
    valid = WaiverRef(id=1, target="run-x", rule_id="privacy.max_epsilon", by="dpo@example.com",
                      reason="approved exception", until=today + timedelta(days=30))
    expired = valid.model_copy(update={"id": 2, "until": today - timedelta(days=1)})
    waived = evaluate(policy, _doc(eps=9), waivers=[valid], today=today)
    assert waived.decision == "warn"
    (r,) = [r for r in waived.results if r.rule_id == "privacy.max_epsilon"]
    assert r.status == "waived" and r.waiver_id == 1 and "WAIVED by dpo@example.com" in r.message
    still = evaluate(policy, _doc(eps=9), waivers=[expired], today=today)
    assert still.decision == "block"
    assert "expired on 2026-11-24" in still.blocking[0].message
    # a waiver for another rule does nothing
    other = valid.model_copy(update={"rule_id": "membership.max_auc"})
    assert evaluate(policy, _doc(eps=9), waivers=[other], today=today).decision == "block"


def test_policy_lint_and_schema_cli(govern_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = govern_cli("policy", "lint", "default", "dev")
    assert code == 0 and "privacy.require_dp is false" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: govern.dev/v1\nkind: Policy\nmetadata: {name: x}\n")
    code, _, err = govern_cli("policy", "lint", str(bad))
    assert code == 2 and "metadata.version: required field is missing" in err
    code, out, _ = govern_cli("policy", "schema")
    assert code == 0 and '"apiVersion"' in out
