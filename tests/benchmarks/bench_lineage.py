"""Benchmark: the lineage DB with 100k runs (each with stages, evidence and artifacts) on SQLite.

Times ``runs list`` (``list_runs(limit=50)``) and a model's full ancestry query (``ancestry(sha256)``),
median of several repetitions, against two baselines measured in the same run:
- the same queries on a small 1k-run DB (how much the 100x larger DB costs), and
- a plain primary-key lookup (``get_run(id)``) on the 100k DB (the floor of any store call).

Target: < 50 ms for both queries at 100k runs.

    .venv/bin/python tests/benchmarks/bench_lineage.py [--runs 100000] [--repeat 25] [--url URL]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from govern.lineage import LineageStore, PolicyRef  # noqa: E402
from govern.lineage.models import Artifact, EvidenceRow, Run, StageExecution  # noqa: E402
from govern.stage import ArtifactOut  # noqa: E402

POLICY = PolicyRef(name="default", version="1.0.0", digest="sha256:" + "ab" * 32,
                   document={"privacy": {"max_epsilon": 8.0}})
CHUNK = 5000


def _training_evidence(i: int) -> dict[str, Any]:
    return {"dp_enabled": True, "non_private": False, "accountant": "rdp",
            "epsilon": {"rdp": 7.99, "dp_accounting_pld": 6.6}, "delta": 1e-5, "noise_multiplier": 0.62,
            "sample_rate": 0.0625, "steps": 16 + i % 7, "epochs": 1.0, "n_train": 4000, "batch_size": 64,
            "method": "lora", "trainable_params": 147_456, "total_params": 22_713_216, "device": "cpu",
            "duration_s": 120.0, "seed": i, "curve": [{"step": s, "loss": 1.0 / (s + 1)} for s in range(8)]}


def seed_runs(store: LineageStore, n: int) -> None:
    """Bulk-insert ``n`` synthetic completed runs (2 stages, training evidence, 2 artifacts each)."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    statuses = ("completed", "completed", "completed", "failed", "blocked")
    exe_id = 0
    with store.engine.begin() as conn:
        exe_id = conn.execute(sa.select(sa.func.coalesce(sa.func.max(StageExecution.id), 0))).scalar_one()
    for offset in range(0, n, CHUNK):
        runs, stages, evidence, artifacts = [], [], [], []
        for i in range(offset, min(n, offset + CHUNK)):
            started = start + timedelta(seconds=37 * i)
            run_id = f"run-{started:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
            runs.append({"id": run_id, "name": f"bench-{i}", "kind": "run", "status": statuses[i % 5],
                         "decision": "pass", "started_at": started, "ended_at": started + timedelta(minutes=3),
                         "config": {"task": "classification", "i": i}, "config_digest": f"sha256:c{i}",
                         "policy_name": POLICY.name, "policy_version": POLICY.version,
                         "policy_digest": POLICY.digest, "policy_document": POLICY.document})
            for stage in ("data", "training"):
                exe_id += 1
                stages.append({"id": exe_id, "run_id": run_id, "stage": stage, "input_digest": f"sha256:{i}",
                               "status": "completed", "started_at": started, "ended_at": started})
            evidence.append({"run_id": run_id, "execution_id": exe_id, "stage": "training",
                             "document": _training_evidence(i), "created_at": started})
            artifacts.append({"run_id": run_id, "execution_id": exe_id - 1, "name": "train", "kind": "dataset",
                              "path": "/data/train.jsonl", "sha256": f"d{i % 50:063d}", "size_bytes": 10_000,
                              "role": "input", "dataset_fingerprint": f"fp{i % 50}", "rows": 4000,
                              "created_at": started})
            artifacts.append({"run_id": run_id, "execution_id": exe_id, "name": "adapter", "kind": "adapter",
                              "path": f"/runs/{run_id}/adapter", "sha256": f"{i:064x}", "size_bytes": 600_000,
                              "role": "output", "dataset_fingerprint": None, "rows": None,
                              "created_at": started})
        with store.engine.begin() as conn:
            conn.execute(sa.insert(Run), runs)
            conn.execute(sa.insert(StageExecution), stages)
            conn.execute(sa.insert(EvidenceRow), evidence)
            conn.execute(sa.insert(Artifact), artifacts)


def governed_model(store: LineageStore) -> str:
    """A model written through the store API with full provenance: parent runs, base model, datasets,
    stages, evidence, decision, signature. Returns its sha256."""
    grandparent = store.create_run(name="gp", policy=POLICY)
    parent = store.create_run(name="p", parent_run_id=grandparent, policy=POLICY)
    run_id = store.create_run(name="target", parent_run_id=parent, policy=POLICY, config_digest="sha256:cfg")
    store.link_base_model(run_id, store.upsert_base_model(name="all-MiniLM-L6-v2", path="/m", digest="sha256:b"))
    model_sha = secrets.token_hex(32)
    for stage in ("data", "pii", "training", "evaluation", "membership", "fairness", "sign"):
        exe = store.start_stage(run_id, stage, f"sha256:{stage}")
        store.finish_stage(exe, "completed", evidence=_training_evidence(1) if stage == "training" else {"ok": 1})
    store.add_artifacts(run_id, None, [
        ArtifactOut(name="train", kind="dataset", path="/d/train.jsonl", sha256="d" * 64, size_bytes=1, role="input",
                    dataset_fingerprint="fp-target-train", rows=4000),
        ArtifactOut(name="eval", kind="dataset", path="/d/eval.jsonl", sha256="e" * 64, size_bytes=1, role="input",
                    dataset_fingerprint="fp-target-eval", rows=500),
        ArtifactOut(name="adapter", kind="adapter", path="/runs/t/adapter", sha256=model_sha, size_bytes=1)])
    store.add_signature(run_id, subject="adapter", subject_digest=model_sha, method="key", bundle_path="/s",
                        signer="k")
    store.record_decision(run_id, kind="final", decision="pass", policy=POLICY, results=[])
    store.set_run_status(run_id, "completed", decision="pass")
    return model_sha


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm caches and the connection pool
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def measure(store: LineageStore, model_sha: str, repeat: int) -> dict[str, float]:
    some_id = store.list_runs(limit=1, offset=store.count_runs() // 2)[0].id
    graph = store.ancestry(model_sha)
    assert len(graph.parents) == 2 and len(graph.datasets) == 2 and graph.base_model is not None
    assert len(store.list_runs(limit=50)) == 50 or store.count_runs() < 50
    return {
        "list_runs(limit=50)": median_ms(lambda: store.list_runs(limit=50), repeat),
        "ancestry(model)": median_ms(lambda: store.ancestry(model_sha), repeat),
        "get_run(id) [pk lookup]": median_ms(lambda: store.get_run(some_id), repeat),
        "list_runs(status=failed)": median_ms(lambda: store.list_runs(limit=50, status="failed"), repeat),
        "get_run('latest')": median_ms(lambda: store.get_run("latest"), repeat),
        "count_runs()": median_ms(store.count_runs, repeat),
    }


def build(url: str, n: int) -> tuple[LineageStore, str, float]:
    store = LineageStore.open(url)
    t = time.perf_counter()
    seed_runs(store, n)
    seconds = time.perf_counter() - t
    return store, governed_model(store), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--baseline-runs", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--url", help="lineage DB URL for the large DB (default: a temp SQLite file)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-lineage-") as tmp:
        small, small_sha, _ = build(f"sqlite:///{Path(tmp) / 'small.db'}", args.baseline_runs)
        large_url = args.url or f"sqlite:///{Path(tmp) / 'large.db'}"
        large, large_sha, seed_s = build(large_url, args.runs)
        print(f"backend: {large.backend}; seeded {args.runs:,} runs "
              f"(2 stages, training evidence, 2 artifacts each) in {seed_s:.1f} s "
              f"({args.runs / seed_s:,.0f} runs/s)")
        small_ms = measure(small, small_sha, args.repeat)
        large_ms = measure(large, large_sha, args.repeat)
        pk_ms = large_ms["get_run(id) [pk lookup]"]
        print(f"\nmedian of {args.repeat} (ms)     {args.baseline_runs:>8,} runs {args.runs:>10,} runs   "
              "x small DB   x pk lookup")
        for name in large_ms:
            print(f"{name:<27} {small_ms[name]:>13.2f} {large_ms[name]:>15.2f} "
                  f"{large_ms[name] / small_ms[name]:>12.2f} {large_ms[name] / pk_ms:>13.2f}")
        verdict = all(large_ms[k] < 50 for k in ("list_runs(limit=50)", "ancestry(model)"))
        print(f"\ntarget < 50 ms for list_runs and ancestry at {args.runs:,} runs: "
              f"{'MET' if verdict else 'NOT MET'}")
        small.close()
        large.close()


if __name__ == "__main__":
    main()
