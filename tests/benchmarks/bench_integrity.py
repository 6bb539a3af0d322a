"""Benchmark: what the provable record costs — row commitments on every write, the fail-closed check that
`govern check` / `report` / `verify --db` run before they read a run, and a whole-DB `lineage verify`.

Each run recorded here is what a governed run writes: a run, 8 stages with evidence, artifacts with two
data sets, 200 PII findings, gate and final decisions with 25 rule results, a signature, status changes.
Baselines measured in the same run:
- recording the same runs with row commitments switched off (what writes cost before this feature);
- reading what `govern check` reads for the run (run, evidence, decisions, waivers) without checking it.

    .venv/bin/python tests/benchmarks/bench_integrity.py [--runs 200] [--repeat 5]
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from govern.lineage import LineageStore, PolicyRef  # noqa: E402
from govern.stage import ArtifactOut, PIIFindingRow  # noqa: E402
from tests.benchmarks._common import int_options, median_time  # noqa: E402

POLICY = PolicyRef(name="default", version="1.0.0", digest="sha256:" + "ab" * 32,
                   document={"privacy": {"max_epsilon": 8.0}, "fairness": {"max_difference": {"x": 0.1}}})
STAGES = ["data", "pii", "canaries", "training", "evaluation", "membership", "fairness", "signing"]


def record_run(store: LineageStore, i: int) -> str:
    run_id = store.create_run(name=f"bench-{i}", config={"name": f"bench-{i}", "seed": i}, config_digest="sha256:c",
                              policy=POLICY, versions={"torch": "2.13.0"})
    store.set_run_dir(run_id, f"/runs/{run_id}")
    for stage in STAGES:
        execution = store.start_stage(run_id, stage, f"sha256:{stage}{i}")
        if stage == "data":
            store.add_artifacts(run_id, execution, [
                ArtifactOut(name=name, kind="dataset", path=f"/data/{name}-{i}.jsonl", sha256=f"{i:060d}{n:04d}",
                            size_bytes=1000, role="input", dataset_fingerprint=f"sha256:{i:060d}{n:04d}", rows=500)
                for n, name in enumerate(("train", "eval"))])
        if stage == "pii":
            store.add_pii_findings(run_id, [PIIFindingRow(
                dataset="train", file="/data/train.jsonl", record_id=None, line=k, field="text",
                entity_type="EMAIL_ADDRESS", start=3, end=20, score=0.95, recognizer="EmailRecognizer",
                value_hmac=f"{k:064x}", action="redact") for k in range(200)])
        store.finish_stage(execution, "completed",
                           evidence={"stage": stage, "values": [j * 0.5 for j in range(40)], "ok": True},
                           outputs={"path": f"/runs/{run_id}/{stage}"})
        results = [{"rule_id": f"{stage}.rule{k}", "severity": "block", "status": "pass", "message": "ok",
                    "observed": 0.1 * k, "threshold": 1.0} for k in range(3)]
        store.record_decision(run_id, kind="gate", decision="pass", policy=POLICY, results=results)
    store.add_signature(run_id, subject=f"/runs/{run_id}/adapter", subject_digest=f"sha256:{i:064d}", method="key",
                        bundle_path=f"/runs/{run_id}/adapter.sigstore.json", signer="key")
    store.record_decision(run_id, kind="final", decision="pass", policy=POLICY, results=[
        {"rule_id": f"rule{k}", "severity": "block", "status": "pass", "observed": k, "threshold": 30}
        for k in range(25)])
    store.set_run_status(run_id, "completed", decision="pass")
    return run_id


def main() -> None:
    args = int_options(__doc__, runs=200, repeat=5)
    with tempfile.TemporaryDirectory() as tmp:
        plain = LineageStore.open(f"sqlite:///{Path(tmp) / 'plain.db'}")
        plain.commit_rows = False
        started = time.perf_counter()
        for i in range(args.runs):
            record_run(plain, i)
        plain_s = time.perf_counter() - started
        plain.close()

        store = LineageStore.open(f"sqlite:///{Path(tmp) / 'committed.db'}")
        started = time.perf_counter()
        run_ids = [record_run(store, i) for i in range(args.runs)]
        committed_s = time.perf_counter() - started
        store.add_waiver(target=run_ids[-1], rule_id="fairness.x", by="b", reason="r", until=date.today() + timedelta(1))
        events = store.chain_head()[2]
        target = run_ids[len(run_ids) // 2]

        def read_for_check() -> None:
            store.get_run(target)
            store.evidence(target)
            store.decisions(target)
            store.waivers(targets=[target])

        read_s = median_time(read_for_check, args.repeat * 4)
        verify_run_s = median_time(lambda: store.verify_run(target), args.repeat)
        full_s = median_time(lambda: store.verify_chain(), max(1, args.repeat // 2))
        assert store.verify_run(target).ok
        store.close()

    print(f"recorded {args.runs} runs ({events} events, {events // args.runs} per run)")
    print(f"write: with row commitments {committed_s / args.runs * 1000:.1f} ms/run, "
          f"without {plain_s / args.runs * 1000:.1f} ms/run  -> ratio {committed_s / plain_s:.2f}x")
    print(f"check's fail-closed verify_run: {verify_run_s * 1000:.0f} ms; reading what check reads: "
          f"{read_s * 1000:.1f} ms  -> ratio {verify_run_s / read_s:.1f}x")
    print(f"whole-DB lineage verify: {full_s:.2f} s for {events} events ({full_s / events * 1e6:.0f} µs/event)")


if __name__ == "__main__":
    main()
