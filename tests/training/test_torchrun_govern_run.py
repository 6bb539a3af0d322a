"""`govern run` under torchrun: rank 0 governs and records one run; both ranks train with DPDDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.spine.helpers import policy_doc
from tests.training.conftest import sentiment_records, write_jsonl

TORCHRUN = Path(sys.executable).with_name("torchrun")


def _project(root: Path, tiny_bert: Path, *, ssn: bool = False) -> Path:
    train = sentiment_records(200, seed=1, prefix="t")
    if ssn:
        train[3]["text"] += " ssn 388-40-1362"
    write_jsonl(root / "train.jsonl", train)
    write_jsonl(root / "eval.jsonl", sentiment_records(60, seed=2, prefix="e"))
    (root / "policy.yaml").write_text(yaml.safe_dump(policy_doc(
        privacy={"max_epsilon": 50, "max_delta": 1e-3}, data={"max_near_duplicate_fraction": None,
                                                            "max_exact_leakage": None})))
    config = {"name": "ddp", "task": "classification", "base_model": {"path": str(tiny_bert)},
              "data": {"train": "train.jsonl", "eval": "eval.jsonl", "label_column": "label"},
              "training": {"epochs": 1, "batch_size": 40, "max_physical_batch_size": 16, "max_length": 16,
                           "dp": {"noise_multiplier": 1.2}},
              "audits": {"membership": {"max_records": 30, "bootstrap": 10}},
              "policy": "policy.yaml"}
    (root / "govern.yaml").write_text(yaml.safe_dump(config))
    return root / "govern.yaml"


def _torchrun(cfg: Path, db: Path, port: str) -> subprocess.CompletedProcess[str]:
    if not TORCHRUN.exists():
        pytest.fail("torchrun is installed with torch; it is missing next to the interpreter")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GOVERN_DB_URL": f"sqlite:///{db}"}
    return subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--master_port", port,
                           str(Path(sys.executable).with_name("govern")), "run", str(cfg), "--format", "json"],
                          env=env, cwd=cfg.parent, capture_output=True, text=True, timeout=400)


def test_govern_run_under_torchrun_records_one_run_with_global_batch_accounting(tiny_bert: Path,
                                                                                  tmp_path: Path) -> None:
    cfg = _project(tmp_path, tiny_bert)
    result = _torchrun(cfg, tmp_path / "lineage.db", "29531")
    assert result.returncode == 0, result.stderr[-4000:]
    from govern.lineage import LineageStore

    with LineageStore.open(f"sqlite:///{tmp_path / 'lineage.db'}") as store:
        (run,) = store.list_runs()  # one run, not one per rank
        assert run.status == "completed", run.error
        training = store.evidence(run.id)["training"]
    assert training["world_size"] == 2
    assert training["sample_rate"] == pytest.approx(40 / 200) and training["steps"] == 5


def test_a_blocked_run_under_torchrun_releases_the_other_rank(tiny_bert: Path, tmp_path: Path) -> None:
    cfg = _project(tmp_path, tiny_bert, ssn=True)
    doc = yaml.safe_load((tmp_path / "policy.yaml").read_text())
    doc["pii"] = {"entities": {"US_SSN": "block"}}
    (tmp_path / "policy.yaml").write_text(json.dumps(doc))
    result = _torchrun(cfg, tmp_path / "lineage.db", "29533")
    assert result.returncode == 1, result.stderr[-4000:]  # blocked, and nobody hangs
