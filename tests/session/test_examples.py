"""examples/own-loop/train.py and examples/hf-trainer/train.py — the scripts a user copies — run as a user
runs them (their own process) and end in a governed, recorded run: on a slice of the quickstart data with
its planted PII, few DP steps."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from govern.lineage import LineageStore
from tests.conftest import PROJECT_ROOT

EXAMPLES = PROJECT_ROOT / "examples"
QUICKSTART = PROJECT_ROOT / "examples" / "quickstart"


def _head(src: Path, dst: Path, n: int) -> None:
    dst.write_text("".join(src.read_text().splitlines(keepends=True)[:n]))


@pytest.mark.slow
@pytest.mark.parametrize("example", ["own-loop", "hf-trainer"])
def test_the_example_runs_and_is_recorded(workdir: Path, example: str) -> None:
    proj = workdir / example
    shutil.copytree(EXAMPLES / example, proj)
    _head(QUICKSTART / "train.jsonl", proj / "train.jsonl", 300)
    _head(QUICKSTART / "eval.jsonl", proj / "eval.jsonl", 150)
    config = yaml.safe_load((proj / "govern.yaml").read_text())
    config["data"].update({"train": "train.jsonl", "eval": "eval.jsonl"})
    config["training"].update({"max_steps": 3, "max_length": 32, "batch_size": 32})
    config["audits"] = {"membership": {"max_records": 50, "bootstrap": 0},
                        "fairness": {"bootstrap": 0, "intersections": False}}
    policy = yaml.safe_load((PROJECT_ROOT / "policies" / "default.yaml").read_text())
    policy["evaluation"]["min_accuracy"] = None  # three steps cannot learn the task: this is about governance
    policy["fairness"]["max_difference"] = {}
    policy["fairness"]["min_ratio"] = {}
    policy["membership"]["max_auc"] = None  # an AUC over 50 + 50 records is mostly noise
    (proj / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    config["policy"] = "policy.yaml"
    (proj / "govern.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    extra = ["--max-steps", "3"] if example == "hf-trainer" else []  # the Trainer's plan is its own arguments
    done = subprocess.run([sys.executable, str(proj / "train.py"), str(proj / "govern.yaml"), *extra], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "completed" in done.stdout
    summary = [line for line in done.stdout.splitlines() if line.startswith("run ")][-1]  # the Trainer logs too
    run_id = summary.split()[1].rstrip(":")
    with LineageStore.open() as store:
        assert store.get_run(run_id).status == "completed"
        evidence = store.evidence(run_id)
    training = evidence["training"]
    assert training["loop"] == "session" and training["steps"] == 3 and training["integrity"]["violations"] == 0
    assert evidence["pii"]["redacted"] and evidence["fairness"]["groups"]
