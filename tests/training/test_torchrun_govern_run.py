"""`govern run` under torchrun: rank 0 governs and records one run; both ranks train with DPDDP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
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


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), children first."""
    found: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in map(int, children.read_text().split()):
                found += [child, *_descendants(child)]
    return found


def test_govern_run_killed_under_torchrun_resumes_on_both_ranks_to_the_uninterrupted_epsilon(
        tiny_bert: Path, tmp_path: Path) -> None:
    """kill -9 of the whole torchrun job after a checkpoint, then ``govern run --resume`` under torchrun:
    rank 0 verifies the recorded checkpoint, both ranks resume from its bytes (resume_on_every_rank), and
    the run ends with the steps and ε of an uninterrupted run (its own reference, run alike)."""
    from govern.lineage import LineageStore

    def project(name: str) -> Path:
        root = tmp_path / name
        root.mkdir()
        cfg = _project(root, tiny_bert)
        doc = yaml.safe_load(cfg.read_text())
        doc["training"].update({"epochs": 4, "checkpoint_every": 2})
        cfg.write_text(yaml.safe_dump(doc))
        return cfg

    reference_cfg = project("reference")
    done = _torchrun(reference_cfg, reference_cfg.parent / "lineage.db", "29575")
    assert done.returncode == 0, done.stderr[-4000:]
    with LineageStore.open(f"sqlite:///{reference_cfg.parent / 'lineage.db'}") as store:
        (ref_run,) = store.list_runs()
        reference = store.evidence(ref_run.id)["training"]

    cfg = project("killed")
    db = cfg.parent / "lineage.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GOVERN_DB_URL": f"sqlite:///{db}"}
    job = subprocess.Popen([str(TORCHRUN), "--nproc_per_node", "2", "--master_port", "29577",
                            str(Path(sys.executable).with_name("govern")), "run", str(cfg)], env=env, cwd=cfg.parent,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and job.poll() is None:
            if any(cfg.parent.rglob("checkpoints/step-*[0-9]")):
                break
            time.sleep(0.05)
        assert job.poll() is None, "the run ended before its first checkpoint"
    finally:
        # torchrun starts each rank in a session of its own: kill the ranks and torchrun, unannounced
        ranks = _descendants(job.pid)
        for pid in [*ranks, job.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        job.wait(timeout=30)
        gone_by = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in ranks) and time.monotonic() < gone_by:
            time.sleep(0.05)
    assert ranks and not any(Path(f"/proc/{pid}").exists() for pid in ranks)
    with LineageStore.open(f"sqlite:///{db}") as store:
        (killed,) = store.list_runs()
        # the newest checkpoint the audit chain records (a kill between recording and renaming one still counts)
        interrupted_at = max(e.payload["step"] for e in store.events(killed.id) if e.kind == "checkpoint.saved")
    assert killed.status == "running" and 0 < interrupted_at < reference["steps"]

    def resume(port: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--master_port", port,
                               str(Path(sys.executable).with_name("govern")), "run", str(cfg), "--resume", killed.id],
                              env=env, cwd=cfg.parent, capture_output=True, text=True, timeout=400)

    # A recorded checkpoint edited before the resume: rank 0 refuses, and so does the other rank (no hang)
    (newest,) = [p for p in cfg.parent.rglob(f"checkpoints/step-{interrupted_at:07d}") if p.is_dir()]
    weights = newest / "trainable.safetensors"
    kept = weights.read_bytes()
    weights.write_bytes(kept[:-1] + bytes([kept[-1] ^ 1]))
    refused = resume("29581")
    assert refused.returncode != 0 and "a file was edited, added or removed" in refused.stderr
    assert "rank 0 refused to resume" in refused.stderr  # the other rank stopped with rank 0's reason
    with LineageStore.open(f"sqlite:///{db}") as store:
        assert store.get_run(killed.id).status == "failed"
    weights.write_bytes(kept)

    resumed = resume("29579")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    with LineageStore.open(f"sqlite:///{db}") as store:
        run = store.get_run(killed.id)
        assert run.status == "completed", run.error
        training = store.evidence(run.id)["training"]
    assert training["world_size"] == 2 and training["resumed_from_step"] == interrupted_at
    assert training["steps"] == reference["steps"] == 20
    assert training["accountant_history"] == reference["accountant_history"]
    assert training["epsilon"] == reference["epsilon"]
