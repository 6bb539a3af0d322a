"""Benchmark: what the verbatim-extraction and PII-regurgitation audits cost, relative to training.

    .venv/bin/python tests/benchmarks/bench_extraction.py [--train 400] [--words 40] [--epochs 3]

One governed run of the real pipeline (data, PII scan, canaries with the default 60 PII canaries,
govern's DP trainer at ε = 8, evaluation, membership) on the proof tests' tiny GPT-2 (a word-level
vocabulary, 1 layer, 64 wide), with the run config's default extraction settings: 100 members and
100 non-members, 16 prompt tokens, 32 decoded. Prints each audit's time over the same run's training
stage (``RATIO extraction/training``, ``RATIO pii-regurgitation/training``) and their share of the
membership stage they run in.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


def main() -> None:
    import numpy as np
    import torch
    import yaml

    from govern.lineage import LineageStore
    from tests.audits.conftest import build_word_gpt2, random_words
    from tests.audits.test_extraction import CONTEXT_WORDS, POLICY, PUNCTUATION, _govern_run

    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=400, help="training (and as many held-out) records")
    parser.add_argument("--words", type=int, default=40, help="words per record (one token each)")
    parser.add_argument("--epochs", type=float, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        vocabulary = random_words(rng, 500)
        max_length = args.words + 8
        build_word_gpt2(root / "base", [*vocabulary, *CONTEXT_WORDS], hidden=64, layers=1, max_len=max_length,
                        punctuation=PUNCTUATION)
        for split in ("train", "eval"):
            rows = [{"id": f"{split}-{i}", "text": " ".join(rng.choice(vocabulary, args.words))}
                    for i in range(args.train)]
            (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (root / "policy.yaml").write_text(yaml.safe_dump({
            **POLICY, "membership": {"canaries": {"enabled": True, "exposure_canaries": 0}},
            "memorization": {"max_extraction_rate": 0.1, "max_pii_regurgitation_rate": 0.05}}))
        (root / "bench.yaml").write_text(yaml.safe_dump({
            "name": "bench-extraction", "task": "causal-lm", "base_model": {"path": "base", "name": "tiny-gpt2"},
            "data": {"train": "train.jsonl", "eval": "eval.jsonl", "label_column": None},
            "training": {"method": "full", "epochs": args.epochs, "batch_size": 64, "max_length": max_length,
                         "checkpoint_every": None, "device": "cpu", "dp": {"target_epsilon": 8.0}},
            "audits": {"membership": {"bootstrap": 0}, "fairness": {"enabled": False}},
            "policy": "policy.yaml", "output_dir": "runs"}))
        db_url = f"sqlite:///{root / 'lineage.db'}"
        os.environ["GOVERN_DB_URL"] = db_url
        os.environ["GOVERN_WITNESS_DIR"] = str(root / "witness")
        run = _govern_run(root, "bench", db_url)
        with LineageStore.open(db_url) as store:
            training = store.evidence(run.run_id)["training"]
        x, r = run.evidence.extraction, run.evidence.pii_regurgitation
        assert x is not None and r is not None
        train_s, stage_s = float(training["duration_s"]), run.evidence.duration_s
        print(f"training: {training['steps']} DP steps, ε = {training['epsilon']['rdp']:.2f}, {train_s:.1f} s; "
              f"membership stage {stage_s:.1f} s (decision {run.decision})")
        print(f"extraction: {x.members.records} + {x.nonmembers.records} records, {x.prefix_tokens} tokens in, "
              f"{x.suffix_tokens} decoded: {x.duration_s:.2f} s (exact {x.members.exact_matches} vs "
              f"{x.nonmembers.exact_matches})")
        print(f"pii regurgitation: {r.pool_size} canaries ({r.inserted} inserted): {r.duration_s:.2f} s "
              f"(reproduced {r.inserted_reproduced} vs {r.held_out_reproduced})")
        print(f"RATIO extraction/training {x.duration_s / train_s:.3f}")
        print(f"RATIO pii-regurgitation/training {r.duration_s / train_s:.3f}")
        print(f"RATIO (extraction+pii)/membership-stage {(x.duration_s + r.duration_s) / stage_s:.3f}")


if __name__ == "__main__":
    main()
