"""The example GitHub Actions workflow only uses govern commands and options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml
from typer.testing import CliRunner

from govern.cli import app

WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "ci" / "govern-gate.yml"


def test_example_workflow_calls_existing_govern_commands_and_options() -> None:
    doc = yaml.safe_load(WORKFLOW.read_text())
    steps = doc["jobs"]["gate"]["steps"]
    commands = [line.strip() for s in steps for line in str(s.get("run", "")).splitlines()
                if line.strip().startswith("govern ")]
    assert {c.split()[1] for c in commands} >= {"scan", "run", "check", "report"}
    runner = CliRunner()
    for command in commands:
        words = shlex.split(command.split(" >>")[0])
        verb = words[1]
        help_text = runner.invoke(app, [verb, "--help"], terminal_width=200).output
        for option in (w.split("=")[0] for w in words[2:] if w.startswith("--")):
            assert re.search(rf"{re.escape(option)}\b", help_text), f"`govern {verb}` has no option {option}"
