"""Benchmark: the data stage's work (validation + fingerprint, leakage check) on 50k train / 10k eval rows.

    .venv/bin/python tests/benchmarks/bench_data.py [--train 50000] [--eval 10000]

Baselines measured in the same run:
* reading both files with ``json.loads`` line by line (the least any loader must do);
* MinHash signatures with ``datasketch.MinHash.bulk`` (one numpy operation per record), against
  govern's vectorised ``minhashes`` (identical signatures).
The data is the quickstart's support messages (realistic lengths and vocabulary).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

from datasketch import MinHash

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from govern.config import DataConfig  # noqa: E402
from govern.data.leakage import check_leakage, minhashes, normalise_text, shingles  # noqa: E402
from govern.data.validate import load_dataset  # noqa: E402
from tests.benchmarks._common import int_options  # noqa: E402


def _generator():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("quickstart_generate", ROOT / "examples/quickstart/generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def write_messages(folder: Path, n_train: int, n_eval: int) -> None:
    """Quickstart-style messages without the generator's uniqueness rule (its templates have only a
    few thousand distinct bodies per intent), so some eval rows do repeat train rows, as in real data."""
    generator = _generator()
    factory = generator.MessageFactory(7)
    rng = factory.rng
    for name, n in (("train", n_train), ("eval", n_eval)):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for i in range(n):
                intent = generator.INTENTS[i % len(generator.INTENTS)]
                variety = rng.choice(generator.LANGUAGE_VARIETIES)
                sentences, _ = factory.message(intent, variety)
                fh.write(json.dumps({"id": f"{name}-{i}", "text": " ".join(sentences), "intent": intent,
                                     "age_band": rng.choice(generator.AGE_BANDS),
                                     "region": rng.choice(generator.REGIONS), "language_variety": variety}) + "\n")


def timed(fn):  # noqa: ANN001, ANN201
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    args = int_options(train=50_000, eval=10_000)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _, gen_s = timed(lambda: write_messages(folder, args.train, args.eval))
        cfg = DataConfig(train=folder / "train.jsonl", eval=folder / "eval.jsonl", label_column="intent",
                         sensitive_columns=["age_band", "region", "language_variety"])
        size_mb = sum((folder / n).stat().st_size for n in ("train.jsonl", "eval.jsonl")) / 1e6

        def baseline_read() -> int:
            n = 0
            for name in ("train.jsonl", "eval.jsonl"):
                with open(folder / name, encoding="utf-8") as fh:
                    for line in fh:
                        json.loads(line)
                        n += 1
            return n

        rows, read_s = timed(baseline_read)
        (train, eval_), load_s = timed(lambda: (load_dataset(cfg.train, cfg, "train", "classification"),
                                                load_dataset(cfg.eval, cfg, "eval", "classification")))
        leakage, leak_s = timed(lambda: check_leakage(train.texts(cfg), train.ids, eval_.texts(cfg), eval_.ids,
                                                      threshold=cfg.near_duplicate_threshold))

        sets = [shingles(normalise_text(t)) for t in train.texts(cfg) + eval_.texts(cfg)]
        _, bulk_s = timed(lambda: MinHash.bulk(sets, num_perm=128, seed=1))
        _, ours_s = timed(lambda: minhashes(sets))

    total = load_s + leak_s
    print(f"data: {args.train:,} train + {args.eval:,} eval rows, {size_mb:.1f} MB JSONL (generated in {gen_s:.1f} s)")
    print(f"  baseline  json.loads of every line          {read_s:7.2f} s  ({rows / read_s:,.0f} rows/s)")
    print(f"  load      validate + sha256 + fingerprint   {load_s:7.2f} s  ({rows / load_s:,.0f} rows/s)"
          f"  = {load_s / read_s:.1f}x baseline")
    print(f"  leakage   exact + MinHash LSH (128 perm)    {leak_s:7.2f} s  ({rows / leak_s:,.0f} rows/s)"
          f"  exact={leakage.exact_duplicates} near={leakage.near_duplicates}")
    print(f"  stage total                                 {total:7.2f} s  = {total / read_s:.1f}x baseline")
    print(f"  minhash   datasketch MinHash.bulk           {bulk_s:7.2f} s")
    print(f"  minhash   govern vectorised (same values)   {ours_s:7.2f} s  = {bulk_s / ours_s:.1f}x faster")


if __name__ == "__main__":
    main()
