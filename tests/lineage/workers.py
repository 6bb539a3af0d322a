"""Worker processes for the concurrency tests (a module of its own so `spawn` children import little)."""

from __future__ import annotations

from typing import Any

RUNS_PER_WORKER = 6
STAGES = ("data", "pii", "training")
#: run.created + (started + finished) per stage + artifacts + decision + status
EVENTS_PER_RUN = 1 + 2 * len(STAGES) + 1 + 1 + 1


def write_runs(url: str, worker: int, barrier: Any) -> None:
    """Open the (possibly not yet created) DB at the same moment as the other workers, then write runs."""
    from govern.lineage import LineageStore, PolicyRef
    from govern.stage import ArtifactOut

    barrier.wait(timeout=120)
    store = LineageStore.open(url)
    policy = PolicyRef(name="default", version="1", digest="sha256:p", document={})
    try:
        for i in range(RUNS_PER_WORKER):
            run_id = store.create_run(name=f"w{worker}-r{i}", config={"worker": worker, "i": i})
            for stage in STAGES:
                exe = store.start_stage(run_id, stage, f"sha256:{worker}-{i}-{stage}")
                store.finish_stage(exe, "completed", evidence={"worker": worker, "i": i, "stage": stage})
            store.add_artifacts(run_id, None, [ArtifactOut(
                name="adapter", kind="adapter", path="/x", sha256=f"m-{worker}-{i}", size_bytes=1)])
            store.record_decision(run_id, kind="final", decision="pass", policy=policy, results=[
                {"rule_id": "r", "severity": "block", "status": "pass", "message": "ok"}])
            store.set_run_status(run_id, "completed", decision="pass")
    finally:
        store.close()
