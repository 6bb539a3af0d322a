"""Planning a DP budget: ε from σ and σ from ε under four accountants that must agree."""

from __future__ import annotations

import json
import math

import pytest

from govern.errors import ConfigError
from govern.training import accounting


def test_sample_rate_and_steps_match_opacus_poisson_loader() -> None:
    assert accounting.poisson_sample_rate(3000, 64) == pytest.approx(1 / 47)
    assert accounting.steps_per_epoch(1 / 47) == 47
    assert accounting.steps_for_epochs(2.5, 1 / 47) == round(2.5 * 47)
    assert accounting.default_delta(1000) == pytest.approx(1e-4) and accounting.default_delta(1000) < 1 / 1000


def test_epsilon_for_a_given_sigma_agrees_across_implementations() -> None:
    result = accounting.plan(sample_rate=0.01, steps=1000, delta=1e-5, noise_multiplier_value=1.0)
    eps = {row.accountant: row.epsilon for row in result.rows}
    assert set(eps) == set(accounting.ACCOUNTANTS)
    # Opacus RDP and dp-accounting RDP bound the same quantity: within 1 %.
    assert eps["dp_accounting_rdp"] == pytest.approx(eps["rdp"], rel=0.01)
    # PLD and PRV are tighter than RDP and close to each other.
    assert eps["dp_accounting_pld"] < eps["rdp"] and eps["prv"] < eps["rdp"]
    assert eps["prv"] == pytest.approx(eps["dp_accounting_pld"], rel=0.03)
    # More noise, less ε.
    assert accounting.epsilon(2.0, 0.01, 1000, 1e-5, "rdp") < eps["rdp"]


def test_sigma_for_a_target_epsilon_stays_on_the_private_side() -> None:
    result = accounting.plan(dataset_size=2000, batch_size=100, epochs=3, target_epsilon=4.0)
    assert result.delta == pytest.approx(1 / 20000)
    assert result.steps == 60
    for row in result.rows:
        assert row.epsilon <= 4.0 + 1e-9, row
        assert row.epsilon > 3.8, row  # not absurdly conservative either
        # recomputing ε at the solved σ gives the same value
        assert accounting.epsilon(row.noise_multiplier, result.sample_rate, 60, result.delta,
                                  row.accountant) == pytest.approx(row.epsilon, rel=1e-9)


def test_epsilon_from_history_composes_heterogeneous_steps() -> None:
    one = accounting.epsilon_from_history([(1.0, 0.02, 200)], 1e-5, "rdp")
    two = accounting.epsilon_from_history([(1.0, 0.02, 100), (1.0, 0.02, 100)], 1e-5, "rdp")
    assert one == pytest.approx(two, rel=1e-9)
    assert accounting.epsilon_from_history([], 1e-5, "dp_accounting_pld") == 0.0


@pytest.mark.parametrize("kwargs, expected", [
    ({"sample_rate": 0.01, "steps": 10, "delta": 1e-5}, "exactly one of --noise-multiplier or --target-epsilon"),
    ({"sample_rate": 0.01, "steps": 10, "delta": 1e-5, "noise_multiplier_value": 1.0, "target_epsilon": 1.0},
     "exactly one of --noise-multiplier"),
    ({"steps": 10, "delta": 1e-5, "noise_multiplier_value": 1.0}, "--sample-rate, or --dataset-size"),
    ({"sample_rate": 0.01, "delta": 1e-5, "noise_multiplier_value": 1.0}, "exactly one of --steps or --epochs"),
    ({"sample_rate": 0.01, "steps": 10, "noise_multiplier_value": 1.0}, "give --delta"),
    ({"sample_rate": 0.01, "steps": 10, "delta": 1e-5, "target_epsilon": -1.0}, "--target-epsilon must be > 0"),
    ({"sample_rate": 0.01, "steps": 10, "delta": 1.5, "noise_multiplier_value": 1.0}, "δ must be in (0, 1)"),
])
def test_bad_plan_inputs_are_clear_errors(kwargs: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        accounting.plan(**kwargs)
    assert expected in str(info.value)


def test_privacy_plan_cli_json_and_table() -> None:
    from typer.testing import CliRunner

    from govern.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["privacy", "plan", "--sample-rate", "0.01", "--steps", "500", "--delta", "1e-5",
                              "--noise-multiplier", "1.1", "--format", "json"])
    assert out.exit_code == 0, out.output
    document = json.loads(out.stdout)
    assert [r["accountant"] for r in document["rows"]] == list(accounting.ACCOUNTANTS)
    rdp = document["rows"][0]["epsilon"]
    assert math.isclose(rdp, accounting.epsilon(1.1, 0.01, 500, 1e-5, "rdp"), rel_tol=1e-12)

    table = runner.invoke(app, ["privacy", "plan", "-n", "1000", "-b", "50", "--epochs", "1", "--sigma", "1.0"])
    assert table.exit_code == 0, table.output
    assert "dp_accounting_pld" in table.stdout and "q = 0.05" in table.stdout

    bad = runner.invoke(app, ["privacy", "plan", "--sample-rate", "0.01", "--steps", "10", "--delta", "1e-5"])
    assert bad.exit_code != 0


@pytest.mark.parametrize("policy_name", ["default", "strict", "dev"])
def test_privacy_plan_default_delta_is_the_one_a_run_under_the_policy_would_use(policy_name: str) -> None:
    """1/(10·n) for n = 1,000 is 1e-4, which the default (1e-5) and strict (1e-6) policies block: the plan
    takes the policy's max_delta as the trainer does, says so, and the δ it plans at passes the policy."""
    from typer.testing import CliRunner

    from govern.cli import app
    from govern.policy import evaluate, load_policy

    loaded = load_policy(policy_name)
    max_delta = loaded.policy.privacy.max_delta
    assert max_delta is not None
    args = ["privacy", "plan", "-n", "1000", "-b", "50", "--epochs", "1", "--sigma", "1.0", "--format", "json"]
    out = CliRunner().invoke(app, [*args, "--policy", policy_name])
    assert out.exit_code == 0, out.output
    document = json.loads(out.stdout)
    run_delta = min(accounting.default_delta(1000), max_delta)  # the trainer's default δ under this policy
    assert document["delta"] == run_delta and document["policy"] == f"{loaded.name} {loaded.version}"
    assert ("max_delta" in document["delta_source"]) and (
        ("as a run uses it" in document["delta_source"]) == (max_delta < accounting.default_delta(1000)))
    assert math.isclose(document["rows"][0]["epsilon"], accounting.epsilon(1.0, 0.05, 20, run_delta, "rdp"),
                        rel_tol=1e-12)
    decision = evaluate(loaded.policy, {"training": {"dp_enabled": True, "non_private": False, "delta": document["delta"],
                                                     "n_train": 1000, "epsilon": {}}})
    statuses = {r.rule_id: r.status for r in decision.results}
    assert statuses["privacy.max_delta"] == "pass" and statuses.get("privacy.delta_below_inverse_n", "pass") == "pass"
    if policy_name == "default":  # the default policy is what a run without `policy:` uses, and so does plan
        assert json.loads(CliRunner().invoke(app, args).stdout)["delta"] == run_delta
    # a δ given above the cap is used as given, with the warning that the policy would fail it
    given = json.loads(CliRunner().invoke(app, [*args, "--policy", policy_name, "--delta", "0.01"]).stdout)
    assert given["delta"] == 0.01 and "privacy.max_delta would fail" in given["delta_source"]


def test_privacy_plan_table_says_which_delta_and_policy_it_used(govern_cli) -> None:  # type: ignore[no-untyped-def]
    plan = ["privacy", "plan", "-n", "1000", "-b", "50", "--epochs", "1", "--sigma", "1.0", "--policy"]
    code, out, _ = govern_cli(*plan, "strict")
    assert code == 0, out
    text = " ".join(out.split())
    assert "δ = 1e-06: the policy's max_delta, as a run uses it" in text and "(policy strict" in text
    code, out, err = govern_cli(*plan, "no-such-policy")
    assert code == 2 and "no-such-policy" in err + out and "Traceback" not in err + out
