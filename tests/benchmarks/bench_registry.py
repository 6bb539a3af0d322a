"""Benchmark: the deploy gate (`govern model status --digest … --require approved`) and an approval, in a DB
holding many registered model versions.

The gate verifies the record of the model's run before answering (fail closed), so its baseline, measured
in the same run, is `verify_run` alone on that run: the ratio is what the registry lookup adds. An approval
(policy checks, compare-and-set, one committed event) is compared with appending one plain audit event.

    .venv/bin/python tests/benchmarks/bench_registry.py [--versions 2000] [--repeat 20]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from govern.actor import Actor  # noqa: E402
from govern.gate import policy_ref  # noqa: E402
from govern.lineage import LineageStore  # noqa: E402
from govern.policy import load_policy  # noqa: E402
from govern.registry import approve, model_status  # noqa: E402
from govern.stage import ArtifactOut  # noqa: E402
from tests.benchmarks._common import int_options  # noqa: E402


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))]


def main() -> None:
    args = int_options(versions=2000, repeat=20)
    policy = policy_ref(load_policy("dev"))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'lineage.db'}"
        store = LineageStore.open(url, actor=Actor(source="explicit", name="trainer"))
        start = time.perf_counter()
        runs = []
        for i in range(args.versions):
            run_id = store.create_run(name=f"model-{i % 50}", policy=policy)
            store.add_artifacts(run_id, None, [ArtifactOut(name="adapter", kind="adapter", path=f"/m/{i}",
                                                           sha256=f"{i:064x}", size_bytes=1)])
            store.record_decision(run_id, kind="final", decision="pass", policy=policy, results=[])
            store.set_run_status(run_id, "completed", decision="pass")
            store.register_model_version(model=f"model-{i % 50}", run_id=run_id, digest=f"{i:064x}", path=f"/m/{i}",
                                         initiator="trainer", initiator_source="explicit")
            runs.append(run_id)
        print(f"seeded {args.versions} runs and model versions in {time.perf_counter() - start:.1f} s")
        store.close()

        approver = LineageStore.open(url, actor=Actor(source="explicit", name="officer"))
        target = runs[len(runs) // 2]
        digest = f"{len(runs) // 2:064x}"
        base_med, base_p95 = _timed(lambda: approver.verify_run(target), args.repeat)
        gate_med, gate_p95 = _timed(lambda: model_status(approver, digest=digest, require="approved"), args.repeat)
        print(f"gate  (model status --require approved): median {gate_med * 1e3:.1f} ms, p95 {gate_p95 * 1e3:.1f} ms")
        print(f"base  (verify_run alone):                median {base_med * 1e3:.1f} ms, p95 {base_p95 * 1e3:.1f} ms")
        print(f"ratio gate / verify_run: {gate_med / base_med:.2f}x")

        pending = iter(runs[: args.repeat])
        ev_med, _ = _timed(lambda: approver.append_event("bench.plain", run_id=target, payload={"x": 1}), args.repeat)
        ap_med, ap_p95 = _timed(lambda: approve(approver, next(pending), reason="bench", policy="dev"), args.repeat)
        print(f"approve: median {ap_med * 1e3:.1f} ms, p95 {ap_p95 * 1e3:.1f} ms; plain event {ev_med * 1e3:.1f} ms; "
              f"ratio {ap_med / ev_med:.1f}x")
        approver.close()


if __name__ == "__main__":
    main()
