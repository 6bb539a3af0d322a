"""The example GitHub Actions gate works as written: every govern command and option it calls exists,
govern comes from its repository with the constraints and a cache, the changed data files of every
format are scanned (none changed: a clean pass), and the policy is the base branch's, not the PR's."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from govern.cli import app

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "ci" / "govern-gate.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
#: `govern` as a command word (not `.govern-src`, `govern-out/` or `govern.yaml`)
INVOCATION = re.compile(r"(?<![\w./-])govern\s+(.+)")


def _steps() -> list[dict[str, Any]]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["gate"]["steps"]


def _step(name: str) -> dict[str, Any]:
    return next(s for s in _steps() if s.get("name", "").startswith(name))


def _invocations(script: str) -> list[list[str]]:
    """The words of every `govern ...` command in a shell script, up to the first shell operator."""
    found = []
    for line in script.splitlines():
        for match in INVOCATION.finditer(line.split("#", 1)[0] if not line.lstrip().startswith("echo") else ""):
            lexer = shlex.shlex(match.group(1), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = []
            for word in lexer:
                if word and set(word) <= set("();|&<>"):
                    break
                words.append(word)
            found.append(words)
    return found


def _help(words: list[str]) -> str:
    result = CliRunner().invoke(app, [*words, "--help"], terminal_width=200)
    assert result.exit_code == 0, f"`govern {' '.join(words)}` is not a command: {result.output}"
    return result.output


def _check_against_cli(words: list[str]) -> str:
    command = [words[0]]
    if "Commands" in _help(command) and len(words) > 1:  # a group: `govern lineage verify`
        command.append(words[1])
    help_text = _help(command)
    for option in (w.split("=")[0] for w in words[len(command):] if w.startswith("--")):
        assert re.search(rf"{re.escape(option)}\b", help_text), f"`govern {' '.join(command)}` has no option {option}"
    return " ".join(command)


def test_every_govern_command_the_workflow_and_the_hook_call_exists_with_its_options() -> None:
    calls = [words for step in _steps() for words in _invocations(str(step.get("run", "")))]
    hook = yaml.safe_load(HOOKS.read_text())[0]
    calls.append(shlex.split(hook["entry"])[1:])
    commands = {_check_against_cli(words) for words in calls}
    assert commands >= {"scan", "run", "check", "report", "lineage verify"}
    assert "--no-record" in hook["entry"]  # a hook writes no DB or key into the user's repository


def test_govern_is_installed_from_its_repository_with_the_constraints_and_cached() -> None:
    steps = _steps()
    source = next(s for s in steps if s.get("uses", "").startswith("actions/checkout")
                  and s.get("with", {}).get("repository") == "govern-dev/govern")
    folder = source["with"]["path"]
    install = _step("Install govern")["run"]
    pip = " ".join(line.strip().rstrip("\\") for line in install.splitlines() if "pip" in line or "--" in line)
    assert f"-c {folder}/constraints.txt" in pip and f"./{folder}[pdf]" in pip
    assert not re.search(r"pip install [^\n]*[\"' ]govern(\[|\s|$)", install)  # the index serves another package
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] in install  # the environment it installs into is the one cached
    assert f"hashFiles('{folder}/constraints.txt'" in cache["with"]["key"]
    assert _step("Install govern")["if"] == f"steps.{cache['id']}.outputs.cache-hit != 'true'"


def test_the_lineage_db_survives_between_runs_and_keys_never_enter_an_artifact() -> None:
    setup = _step("Lineage DB and keys")
    assert setup["env"]["DB_SECRET"] == "${{ secrets.GOVERN_DB_URL }}"
    carried = _step("Carried lineage DB")["run"]
    assert "--name govern-lineage" in carried and "exit 2" in carried  # no silent fresh ε ledger
    keep = _step("Keep the lineage DB of record")
    assert "github.event_name == 'push'" in keep["if"]  # a PR run never replaces the record
    uploaded = " ".join(str(s.get("with", {}).get("path", "")) for s in _steps()
                        if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "key" not in uploaded and "RUNNER_TEMP/pii-hmac.key" in setup["run"]


# ----------------------------------------------------------------- the steps' shell, run for real
def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _run_step(name: str, repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The step's script under bash as GitHub runs it (`bash --noprofile --norc -eo pipefail`)."""
    script = repo.parent / f"{name.split()[0]}.sh"
    script.write_text(_step(name)["run"])
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=300)


def _write_parquet(path: Path, rows: list[dict[str, str]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


BLOCK_EMAIL = ("apiVersion: govern.dev/v1\nkind: Policy\nmetadata: {name: gate, version: '1'}\n"
               "pii:\n  entities: {EMAIL_ADDRESS: block, US_SSN: block}\n")


@pytest.fixture
def pull_request(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A repository whose base branch `main` blocks e-mail addresses, and a PR branch that loosens that
    policy, adds a CSV and a Parquet file (in a sub-folder) with personal data, edits a JSONL file,
    deletes another and adds a clean one."""
    repo = tmp_path / "repo"
    (repo / "data" / "old").mkdir(parents=True)
    (repo / "policies").mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "ci@example.invalid")
    _git(repo, "config", "user.name", "ci")
    (repo / "policies" / "gate.yaml").write_text(BLOCK_EMAIL)
    (repo / "data" / "train.jsonl").write_text('{"text": "nothing personal"}\n')
    (repo / "data" / "old" / "gone.csv").write_text("text\nhello\n")
    (repo / "README.md").write_text("data\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    _git(repo, "update-ref", "refs/remotes/origin/main", "main")
    _git(repo, "checkout", "-qb", "pr")
    (repo / "policies" / "gate.yaml").write_text(BLOCK_EMAIL.replace("EMAIL_ADDRESS: block", "EMAIL_ADDRESS: allow"))
    (repo / "data" / "People.CSV").write_text("name,contact\nAda,ada.lovelace@example.org\n")
    (repo / "data" / "deep").mkdir()
    _write_parquet(repo / "data" / "deep" / "rows.parquet", [{"text": "mail grace@example.net today"}])
    (repo / "data" / "train.jsonl").write_text('{"text": "nothing personal"}\n{"text": "write to bob@example.com"}\n')
    (repo / "data" / "clean.jsonl").write_text('{"text": "still nothing"}\n')
    (repo / "data" / "old" / "gone.csv").unlink()
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "pr")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    env = {**os.environ, "RUNNER_TEMP": str(runner_temp), "GITHUB_ENV": str(runner_temp / "env"),
           "GITHUB_STEP_SUMMARY": str(runner_temp / "summary.md"), "GITHUB_WORKSPACE": str(repo),
           "BASE_REF": "main", "DIFF_BASE": "origin/main", "GATE_POLICY": "policies/gate.yaml", "POLICY_REF": "",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "GOVERN_DB_URL": f"sqlite:///{tmp_path / 'db' / 'lineage.db'}", "HF_HUB_OFFLINE": "1"}
    (repo / "govern-out").mkdir()
    return repo, env


def test_a_pr_is_judged_by_the_base_policy_on_every_changed_data_file(pull_request: tuple[Path, dict[str, str]]
                                                                       ) -> None:
    repo, env = pull_request
    policy = _run_step("Gating policy", repo, env)
    assert policy.returncode == 0, policy.stderr
    exported = dict(line.split("=", 1) for line in Path(env["GITHUB_ENV"]).read_text().splitlines())
    assert Path(exported["GATE_POLICY_FILE"]).read_text() == BLOCK_EMAIL  # the base's, not the PR's "allow"

    scan = _run_step("Scan the changed data files", repo, {**env, **exported})
    assert scan.returncode == 1, scan.stdout + scan.stderr  # blocked: the PR's loosened policy did not count
    sarif = json.loads((repo / "govern-out" / "pii.sarif").read_text())
    results = sarif["runs"][0]["results"]
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results} == \
        {"data/People.CSV", "data/deep/rows.parquet", "data/train.jsonl"}
    assert "clean.jsonl" in scan.stdout and "gone.csv" not in scan.stdout + scan.stderr
    assert not list(repo.glob(".govern*"))  # the DB and key live where GOVERN_DB_URL says


def test_a_pr_without_data_files_passes_the_scan_cleanly(pull_request: tuple[Path, dict[str, str]]) -> None:
    repo, env = pull_request
    _git(repo, "checkout", "-qb", "docs-only", "main")
    (repo / "README.md").write_text("better docs\n")
    _git(repo, "commit", "-qam", "docs")
    scan = _run_step("Scan the changed data files", repo, {**env, "GATE_POLICY_FILE": "default"})
    assert scan.returncode == 0, scan.stderr
    assert "nothing to scan" in scan.stdout and not (repo / "govern-out" / "pii.sarif").exists()
    assert "no data files changed" in Path(env["GITHUB_STEP_SUMMARY"]).read_text()
