"""The command line behaves like a Unix tool: `-` is stdout, a closed pipe is not a policy block, unknown
choices are refused, and every check a user relies on (waiver ids, rule paths, config preflight) speaks up
before the hour of training instead of after it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from govern.policy.engine import builtin_rule_ids, evaluate, is_known_rule_id
from govern.policy.schema import Policy
from tests.spine.helpers import write_project
from tests.spine.test_config_and_policy import _doc

ROOT = Path(__file__).resolve().parents[2]
UNTIL = (date.today() + timedelta(days=30)).isoformat()


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a real `govern` process that imports this checkout, with its own DB."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", NO_COLOR="1",
               GOVERN_DB_URL=f"sqlite:///{tmp / 'lineage.db'}", GOVERN_WITNESS_DIR=str(tmp / "witness"))
    env.update(extra)
    return env


def _govern(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from govern.cli import main; sys.argv[0] = 'govern'; main()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=tmp, env=_env(tmp, **env), capture_output=True,
                          text=True, timeout=300)


def _pii_file(path: Path, n: int = 40) -> Path:
    rows = [{"id": i, "text": f"order {i}: write to customer{i}@example.org"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _evidence_file(path: Path, **kwargs: float) -> Path:
    path.write_text(json.dumps(_doc(**kwargs)))
    return path


# ------------------------------------------------------------------------------------------ --out -
def test_out_dash_writes_the_scan_report_to_stdout_not_to_a_file_named_dash(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    data = _pii_file(workdir / "tickets.jsonl")
    code, out, _ = govern_cli("scan", str(data), "--format", "json", "--out", "-", "--workers", "1")
    assert code == 0
    assert json.loads(out)["evidence"]["records_scanned"] == 40
    assert not (workdir / "-").exists()


def test_out_dash_writes_the_report_to_stdout_and_sign_refuses_it(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    fp = "sha256:" + "ab" * 32  # a waiver creates the lineage DB the ledger is read from
    assert govern_cli("waive", fp, "privacy.max_total_epsilon_per_dataset", "--by", "dpo", "--reason", "ok",
                      "--until", UNTIL)[0] == 0
    code, out, err = govern_cli("report", "--since", "2020-01-01", "--format", "json", "--out", "-")
    assert code == 0, err
    assert isinstance(json.loads(out), dict) and "wrote" not in out
    model = workdir / "model.bin"
    model.write_bytes(b"weights")
    code, _, err = govern_cli("sign", str(model), "--key", str(workdir / "k.pem"), "--out", "-")
    assert code == 2 and "--out -" in err
    assert not (workdir / "-").exists()


# ------------------------------------------------------------------------------------- broken pipe
def test_a_reader_that_stops_early_gives_the_pipe_status_not_blocked(tmp_path: Path) -> None:
    data = _pii_file(tmp_path / "tickets.jsonl")
    cmd = (f"set -o pipefail; {sys.executable} -c 'import sys; from govern.cli import main; main()' "
           f"scan {data} --format json --workers 1 | head -n 0")
    piped = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                           timeout=300)
    assert piped.returncode == 141, piped.stderr
    assert "Traceback" not in piped.stderr and "BrokenPipeError" not in piped.stderr
    # the rich table path too: the reader is gone before the first row is written
    code = "import sys; from govern.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "scan", str(data), "--workers", "1"], cwd=tmp_path,
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------------------- choices
def test_unknown_choices_are_refused_and_help_lists_them(govern_cli) -> None:  # type: ignore[no-untyped-def]
    for args in (["runs", "list", "--status", "bogus"], ["runs", "list", "--format", "yaml"],
                 ["report", "latest", "--format", "yaml"], ["scan", "x.jsonl", "--format", "yaml"],
                 ["runs", "list", "--kind", "training"], ["scan", "x.jsonl", "--engine", "regex"]):
        code, _, err = govern_cli(*args)
        assert code == 2, args
        assert "is not one of" in err, args
    code, out, _ = govern_cli("runs", "list", "--help")
    assert code == 0 and "running|completed|blocked|failed" in out.replace(" ", "").replace("\n", "")
    # the values that worked before still work
    code, out, _ = govern_cli("privacy", "plan", "-n", "1000", "-b", "10", "--epochs", "1", "--sigma", "1",
                              "--format", "json")
    assert code == 0 and json.loads(out)["rows"]


# ------------------------------------------------------------------------------------------- waive
def test_waive_names_the_run_and_refuses_rule_ids_no_policy_produces(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    data = _pii_file(workdir / "tickets.jsonl")
    govern_cli("scan", str(data), "--workers", "1", "--policy", "strict")
    code, out, _ = govern_cli("runs", "list", "--format", "json")
    run_id = json.loads(out)[0]["id"]
    who = ["--by", "dpo@example.org", "--reason", "synthetic addresses", "--until", UNTIL]
    code, _, err = govern_cli("waive", "latest", "pii.blocked_entitys", *who)
    assert code == 2
    assert "pii.blocked_entitys" in err and "did you mean 'pii.blocked_entities'" in err
    code, out, _ = govern_cli("waive", "latest", "pii.blocked_entities", *who)
    assert code == 0 and f"for {run_id} " in out and "latest" not in out
    # the run's own policy (strict) has a custom rule: it can be waived on this run
    code, _, _ = govern_cli("waive", run_id, "strict.curve-recorded", *who)
    assert code == 0


def test_data_set_waivers_accept_builtin_families_and_custom_rules_of_a_named_policy(
        workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    fp = "sha256:" + "ab" * 32
    who = ["--by", "dpo@example.org", "--reason", "budget reviewed", "--until", UNTIL]
    assert govern_cli("waive", fp, f"privacy.max_total_epsilon_per_dataset[{fp[:19]}]", *who)[0] == 0
    assert govern_cli("waive", fp, "membership.max_tpr_at_fpr", *who)[0] == 0
    code, _, err = govern_cli("waive", fp, "team.no-test-data", *who)
    assert code == 2 and "--policy" in err
    policy = workdir / "team.yaml"
    policy.write_text(yaml.safe_dump({
        "apiVersion": "govern.dev/v1", "kind": "Policy", "metadata": {"name": "team", "version": "1"},
        "rules": [{"id": "team.no-test-data", "expression": "evidence.data.train_rows > 0", "message": "m",
                   "requires": ["data"]}]}))
    assert govern_cli("waive", fp, "team.no-test-data", "--policy", str(policy), *who)[0] == 0


def test_every_rule_id_the_engine_produces_is_a_known_rule_id() -> None:
    """A policy with every built-in limit set, on evidence with every section: each id it yields is known."""
    policy = Policy.model_validate({
        "apiVersion": "govern.dev/v1", "kind": "Policy", "metadata": {"name": "all", "version": "1"},
        "data": {"max_near_duplicate_fraction": 0.1},
        "privacy": {"max_total_epsilon_per_dataset": 10},
        "membership": {"max_auc": 0.6, "max_tpr_at_fpr": [{"fpr": 0.01, "max_tpr": 0.05}],
                       "canaries": {"enabled": True}},
        "memorization": {"max_extraction_rate": 0.1, "max_pii_regurgitation_rate": 0.05},
        "fairness": {"max_difference": {"demographic_parity_difference": 0.1}, "min_ratio": {"equalized_odds_ratio": 0.8},
                     "min_worst_group_accuracy": 0.5},
        "evaluation": {"min_accuracy": 0.5, "min_macro_f1": 0.5, "max_ece": 0.2, "max_perplexity": 50},
        "signing": {"required": True}})
    doc = _doc()
    doc["membership"]["canaries"] = {"epsilon_lower_bound": 0.5}
    side = {"records": 10, "exact_matches": 1, "exact_match_rate": 0.1}
    doc["membership"].update(task="causal-lm", extraction={"prefix_tokens": 16, "members": side, "nonmembers": side,
                                                           "excess_exact_match_rate": 0.0},
                             pii_regurgitation={"inserted": 10, "inserted_reproduced": 0, "inserted_rate": 0.0,
                                                "held_out": 10, "held_out_reproduced": 0})
    doc.update(
        data={"train_rows": 10, "eval_rows": 5, "leakage": {"exact_duplicates": 0, "near_fraction": 0.0, "threshold": 0.9}},
        pii={"blocked": {"EMAIL_ADDRESS": 1}},
        evaluation={"accuracy": 0.9, "macro_f1": 0.9, "ece": 0.1, "perplexity": 10},
        fairness={"disparities": [{"metric": "demographic_parity_difference", "value": 0.2, "attribute": "a"},
                                  {"metric": "equalized_odds_ratio", "value": 0.7, "attribute": "a"}],
                  "groups": [{"attribute": "a", "group": "x", "metrics": {"accuracy": {"value": 0.8}}}],
                  "insufficient_groups": ["a=y"]},
        signing={"signed": True, "method": "key"},
        ledger=[{"dataset_fingerprint": "sha256:" + "cd" * 32, "total_epsilon": 12, "runs": 2, "accountant": "rdp"}])
    produced = {r.rule_id for r in evaluate(policy, doc).results}
    assert len(produced) >= 20
    unknown = sorted(r for r in produced if not is_known_rule_id(r))
    assert unknown == [], f"rule ids missing from builtin_rule_ids(): {unknown}"
    assert "privacy.max_total_epsilon_per_dataset" in builtin_rule_ids()


# ------------------------------------------------------------------------------------- policy lint
def test_lint_refuses_a_cel_rule_naming_a_field_the_evidence_lacks(tmp_path: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "typo.yaml"
    policy.write_text(
        "apiVersion: govern.dev/v1\nkind: Policy\nmetadata: {name: typo, version: '1'}\nrules:\n"
        "  - id: eps-cap\n    requires: [training]\n    message: too much\n"
        "    expression: evidence.training.epsilom.rdp < 5.0\n"
        "  - id: attacks\n    requires: [membership]\n    message: leaks\n"
        "    expression: evidence.membership.attacks.all(a, a.aucc < 0.6)\n")
    code, _, err = govern_cli("policy", "lint", str(policy))
    assert code == 2
    assert "line 8, rules.0.expression (rule 'eps-cap')" in err
    assert "evidence.training.epsilom" in err and "did you mean 'epsilon'" in err
    assert "evidence.membership.attacks[].aucc" in err and "did you mean 'auc'" in err
    assert "govern policy schema --evidence" in err
    # the paths that exist lint clean (free-keyed maps such as epsilon.<accountant> included)
    policy.write_text(policy.read_text().replace("epsilom", "epsilon").replace("aucc", "auc"))
    assert govern_cli("policy", "lint", str(policy))[0] == 0
    code, out, _ = govern_cli("policy", "schema", "--evidence")
    assert code == 0 and "TrainingEvidence" in json.loads(out)["$defs"]


def test_an_unknown_policy_field_points_to_the_policy_schema(tmp_path: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "p.yaml"
    policy.write_text("apiVersion: govern.dev/v1\nkind: Policy\nmetadata: {name: p, version: '1'}\n"
                      "privacy: {max_epsilom: 3}\n")
    code, _, err = govern_cli("policy", "lint", str(policy))
    assert code == 2 and "privacy.max_epsilom" in err
    assert "see `govern policy schema`" in err and "config schema" not in err


# --------------------------------------------------------------------------------- config validate
def test_config_validate_refuses_a_missing_train_file_and_a_policy_that_blocks_the_config(
        workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir, policy="strict",
                        extra={"training": {"dp": {"target_epsilon": 7.5}}, "base_model": {"package": "no_such_model_pkg"}})
    (workdir / "train.jsonl").unlink()
    code, _, err = govern_cli("config", "validate", str(cfg))
    assert code == 2
    assert "data.train: file not found" in err
    assert "training.dp.target_epsilon: 7.5 is above policy 'strict' 1.0.0's privacy.max_epsilon 3" in err
    assert "signing.method: none, but policy 'strict'" in err
    assert "warning:" in err and "package 'no_such_model_pkg' is not installed" in err


def test_config_validate_warns_but_passes_when_only_this_machine_lacks_something(
        workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir, extra={"base_model": {"package": "no_such_model_pkg"},
                                        "audits": {"membership": {"enabled": False}}})
    code, out, err = govern_cli("config", "validate", str(cfg))
    assert code == 0 and "ok" in out and "2 warning(s)" in " ".join(out.split()), err
    assert "package 'no_such_model_pkg' is not installed" in err
    assert "audits.membership.enabled: false, so policy 'default' 1.0.0's membership limits are never checked" in err


# ------------------------------------------------------------------------------------- policy test
def test_policy_test_evaluates_a_policy_on_an_evidence_document(tmp_path: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    ok = _evidence_file(tmp_path / "dp-5.json", eps=5.0)
    over = _evidence_file(tmp_path / "dp-9.json", eps=9.5)
    code, out, _ = govern_cli("policy", "test", "default", str(ok))
    assert code == 0 and "privacy.max_epsilon" in out and "decision: pass" in out
    code, out, _ = govern_cli("policy", "test", "default", str(over))
    assert code == 1 and "decision: block" in out
    # --expect turns a block into the passing outcome of a test that expects it
    assert govern_cli("policy", "test", "default", str(over), "--expect", "block")[0] == 0
    assert govern_cli("policy", "test", "default", str(ok), "--expect", "block")[0] == 1
    code, out, _ = govern_cli("policy", "test", "default", str(over), "--format", "json")
    assert json.loads(out)["decision"] == "block"


def test_policy_test_names_what_is_wrong_with_the_evidence_document(tmp_path: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    doc = _doc()
    doc["training"]["epsilom"] = doc["training"].pop("epsilon")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    code, _, err = govern_cli("policy", "test", "default", str(bad))
    assert code == 2 and "bad.json" in err and "training.epsilom" in err
    bad.write_text("{not json")
    code, _, err = govern_cli("policy", "test", "default", str(bad))
    assert code == 2 and "line 1, column 2" in err
    code, _, err = govern_cli("policy", "test", "default", str(tmp_path / "missing.json"))
    assert code == 2 and "evidence file not found" in err


# -------------------------------------------------------------------------------- version, -q, -v
def test_version_quiet_and_verbose(tmp_path: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    from importlib.metadata import version

    code, out, _ = govern_cli("--version")
    assert code == 0 and out == f"govern {version('govern')}\n"
    evidence = _evidence_file(tmp_path / "e.json", eps=9.5)
    code, out, err = govern_cli("-q", "policy", "test", "default", str(evidence))
    assert code == 1 and out.strip() == "decision: block" and err == ""
    code, out, _ = govern_cli("policy", "test", "default", str(evidence))
    assert "privacy.max_epsilon" in out  # not quiet again: the setting does not leak between invocations
    code, _, err = govern_cli("-v", "policy", "test", "default", str(evidence))
    assert code == 1 and "DEBUG govern: govern -v policy test" in err
    code, _, err = govern_cli("-q", "-v", "policy", "lint", "default")
    assert code == 2


# --------------------------------------------------------------------------------------- 80 columns
@pytest.mark.parametrize("args", [
    ("--help",), ("scan", "--help"), ("policy", "test", "--help"),
    ("policy", "test", "strict", "EVIDENCE"), ("scan", "DATA", "--workers", "1", "--policy", "strict"),
    ("runs", "list"), ("runs", "show", "latest"), ("check", "latest", "--policy", "strict"),
    ("privacy", "plan", "-n", "10000", "-b", "64", "--epochs", "3", "--epsilon", "8"),
])
def test_output_fits_80_columns(tmp_path: Path, args: tuple[str, ...]) -> None:
    data = _pii_file(tmp_path / "tickets-with-a-long-name.jsonl", n=5)
    evidence = _evidence_file(tmp_path / "e.json", eps=9.5)
    if args[0] in ("runs", "check"):
        assert _govern(tmp_path, "scan", str(data), "--workers", "1", "--policy", "strict").returncode == 1
    argv = [str(data) if a == "DATA" else str(evidence) if a == "EVIDENCE" else a for a in args]
    result = _govern(tmp_path, *argv, COLUMNS="80")
    assert result.returncode in (0, 1), result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) > 2
    too_long = [line for line in lines if len(line) > 80]
    assert too_long == [], "\n".join(too_long)
    if args == ("runs", "list"):  # folded to fit, not squeezed to "bl…": run id and status stay whole
        assert "run-" in result.stdout and "blocked/block" in result.stdout
