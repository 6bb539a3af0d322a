"""Benchmark: ``govern scan --ray`` on this machine vs the local process pool, in the same run.

    .venv/bin/python tests/benchmarks/bench_pii_ray.py [--records 200000] [--shards 8] [--cpus N]

Short synthetic records (one in ten holds an e-mail, card, SSN or phone), patterns engine, written as
one JSONL file and as ``--shards`` shards of it. Measured: records/s of the local pool
(``scan_paths(..., workers=N)``) on the single file, and of the Ray path on the shards (a local Ray
started with ``num_cpus=N`` *before* timing: start-up is reported apart, since on a real cluster it is
paid once, not per scan). Findings must be identical (checked). The goal on one box is a ratio
Ray/local of at least 0.8: the cost of the engine when it has no more cores to spread over.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from govern.pii import PIIKey, scan_paths  # noqa: E402
from govern.pii.scanner import default_workers  # noqa: E402
from govern.policy import load_policy  # noqa: E402

WORDS = ["the", "order", "arrived", "late", "and", "the", "box", "was", "damaged", "please", "send", "a", "new", "one", "thanks"]


def _text(rng: random.Random, i: int) -> str:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16)))
    kind = i % 40
    if kind == 0:
        return f"{words} write to user{i}@example.org"
    if kind == 1:
        return f"{words} card 4111 1111 1111 1111"
    if kind == 2:
        return f"{words} ssn 536-22-{i % 9000 + 1000}"
    if kind == 3:
        return f"{words} call (415) 555-{i % 9000 + 1000}"
    return f"{words} ref {i}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=default_workers())
    args = parser.parse_args()
    rng = random.Random(5)
    policy = load_policy("default").policy
    key = PIIKey(key=bytes(range(32)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lines = [json.dumps({"id": i, "text": _text(rng, i)}) + "\n" for i in range(args.records)]
        single = folder / "all.jsonl"
        single.write_text("".join(lines), encoding="utf-8")
        shards = folder / "shards"
        shards.mkdir()
        size = -(-len(lines) // args.shards)
        for s in range(args.shards):
            (shards / f"part-{s:05d}.jsonl").write_text("".join(lines[s * size:(s + 1) * size]), encoding="utf-8")
        del lines

        began = time.perf_counter()
        local = scan_paths([single], policy, key=key, workers=args.cpus)
        local_s = time.perf_counter() - began
        # printed now: a run stopped during the Ray half still leaves the baseline
        print(f"local pool   {local_s:7.1f} s  {args.records / local_s:8.0f} records/s", flush=True)

        import ray

        began = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        startup_s = time.perf_counter() - began
        try:
            began = time.perf_counter()
            on_ray = scan_paths([shards], policy, key=key, ray_address="local", workers=args.cpus)
            ray_s = time.perf_counter() - began
        finally:
            ray.shutdown()

    def key_of(f):  # noqa: ANN001, ANN202
        return (f.entity_type, f.field, f.start, f.end, f.value_hmac, f.record_id)

    assert sorted(map(key_of, on_ray.findings)) == sorted(map(key_of, local.findings)), "findings differ"
    n = args.records
    print(f"{n:,} records, {len(local.findings):,} findings, {args.cpus} CPUs")
    print(f"Ray (shards) {ray_s:7.1f} s  {n / ray_s:8.0f} records/s   (+ {startup_s:.1f} s Ray start-up, not timed)")
    print(f"ratio Ray/local: {local_s / ray_s:.2f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
