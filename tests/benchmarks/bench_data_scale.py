"""Benchmark: the data stage at scale — time and peak memory per million records, at two sizes.

    .venv/bin/python tests/benchmarks/bench_data_scale.py [--sizes 250000 500000] [--eval-fraction 0.1 | --eval-size N]

For each size N a synthetic corpus (N train records, N × eval-fraction eval records, short support-style
texts with some eval texts copied or lightly edited from train) is written, and a fresh Python process
runs exactly the data stage's work on it (validation and fingerprint of both files, label check, the
train/eval leakage check) and reports wall time and its own peak RSS. A fresh process per size, so one
size's peak does not hide the next's.

Baseline, measured in the same run on the same files: reading them with ``json.loads`` line by line
(the least any loader must do) — the ratio says what validation, fingerprints and leakage cost on top.
Linear time shows as a flat s/M across sizes; bounded memory as a peak that does not grow with N (the
eval file is held and indexed, so with ``--eval-size`` fixed the peak must stay flat as N grows).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WORDS = ["order", "parcel", "refund", "invoice", "delivery", "courier", "account", "password", "login", "card", "charge", "late", "broken", "damaged", "missing", "address", "update", "cancel", "subscription", "plan", "upgrade", "screen", "battery", "app", "crash", "error", "please", "thanks", "help", "today", "yesterday", "week", "again", "still", "never", "arrived", "wrong", "size", "colour"]


def write_corpus(folder: Path, n_train: int, n_eval: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    intents = ["delivery", "billing", "account", "technical"]
    kept: list[str] = []
    with open(folder / "train.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n_train):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24))) + f" ref {i}"
            if i % 1000 == 0:
                kept.append(text)
            fh.write(json.dumps({"id": f"t{i}", "text": text, "intent": intents[i % 4]}) + "\n")
    with open(folder / "eval.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n_eval):
            if i % 50 == 0 and kept:  # an exact copy of a train text
                text = kept[(i // 50) % len(kept)]
            elif i % 50 == 1 and kept:  # a near copy: one word appended
                text = kept[(i // 50) % len(kept)] + " please"
            else:
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 24))) + f" case {i}"
            fh.write(json.dumps({"id": f"e{i}", "text": text, "intent": intents[i % 4]}) + "\n")


#: run in a fresh interpreter: the data stage's work on one corpus, then time and peak RSS as JSON.
#: argv[3] "stage": what DataStage.run does (training file streamed, streamed leakage index);
#: "in-memory": the previous path (every record held, check_leakage over lists) — the baseline.
STAGE = r"""
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
folder, mode = Path(sys.argv[1]), sys.argv[3]
from govern.config import DataConfig, RunConfig
from govern.data.leakage import check_leakage
from govern.data.validate import check_label_sets, load_dataset
cfg = DataConfig(train=folder / "train.jsonl", eval=folder / "eval.jsonl", label_column="intent")
start = time.perf_counter()
if mode == "stage":
    from govern.data.stage import DataStage
    from govern.evidence import Evidence
    from govern.policy import load_policy
    from govern.stage import StageContext
    config = RunConfig(data=cfg)
    ctx = StageContext(run_id="bench", config=config, run_dir=folder / "run", policy=load_policy("default").policy,
                       evidence=Evidence())
    leak = DataStage().run(ctx).evidence.leakage
else:
    train = load_dataset(folder / "train.jsonl", cfg, "train", "classification")
    eval_ = load_dataset(folder / "eval.jsonl", cfg, "eval", "classification")
    check_label_sets(train, eval_, cfg)
    leak = check_leakage(train.texts(cfg), train.ids, eval_.texts(cfg), eval_.ids, threshold=0.9)
took = time.perf_counter() - start
print(json.dumps({"seconds": took, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "exact": leak.exact_duplicates, "near": leak.near_duplicates}))
"""

BASELINE = r"""
import json, resource, sys, time
from pathlib import Path
folder = Path(sys.argv[1])
start = time.perf_counter()
n = 0
for name in ("train.jsonl", "eval.jsonl"):
    with open(folder / name, encoding="utf-8") as fh:
        for line in fh:
            json.loads(line); n += 1
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(program: str, folder: Path, *args: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", program, str(folder), str(ROOT), *args], capture_output=True,
                          text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 500_000])
    parser.add_argument("--eval-fraction", type=float, default=0.1)
    parser.add_argument("--eval-size", type=int, default=None,
                        help="a fixed number of eval records at every size (instead of --eval-fraction): "
                             "shows how memory follows the training corpus alone")
    parser.add_argument("--in-memory-up-to", type=int, default=500_000,
                        help="run the in-memory baseline only up to this size (it needs ~8 GB per million)")
    args = parser.parse_args()
    print(f"{'train':>10} {'eval':>8} {'MB':>5} {'stage s':>8} {'s/M rec':>8} {'peak MB':>8} {'MB/M rec':>9} "
          f"{'json s':>7} {'x json':>6} {'in-mem s':>8} {'in-mem MB':>9} {'MB ratio':>8} {'exact':>6} {'near':>6}")
    for n in args.sizes:
        n_eval = args.eval_size or max(1, int(n * args.eval_fraction))
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_corpus(folder, n, n_eval)
            size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
            base = _run(BASELINE, folder)
            stage = _run(STAGE, folder, "stage")
            memory = _run(STAGE, folder, "in-memory") if n <= args.in_memory_up_to else None
        if memory is not None:  # the same evidence either way
            assert (memory["exact"], memory["near"]) == (stage["exact"], stage["near"]), (memory, stage)
        per_m = 1e6 / (n + n_eval)
        mem_s = f"{memory['seconds']:>8.1f} {memory['peak_mb']:>9.0f} {memory['peak_mb'] / stage['peak_mb']:>8.1f}" \
            if memory else f"{'-':>8} {'-':>9} {'-':>8}"
        print(f"{n:>10,} {n_eval:>8,} {size_mb:>5.0f} {stage['seconds']:>8.1f} {stage['seconds'] * per_m:>8.1f} "
              f"{stage['peak_mb']:>8.0f} {stage['peak_mb'] * per_m:>9.0f} {base['seconds']:>7.1f} "
              f"{stage['seconds'] / base['seconds']:>6.1f} {mem_s} {int(stage['exact']):>6} {int(stage['near']):>6}",
              flush=True)


if __name__ == "__main__":
    main()
