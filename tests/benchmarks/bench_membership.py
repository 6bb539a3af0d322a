"""Benchmark: membership-audit time as a fraction of training time, for the quickstart (MiniLM DP-LoRA).

    .venv/bin/python tests/benchmarks/bench_membership.py [--short 4] [--long 16] [--max-records 500]

Training the whole quickstart takes minutes, so training is measured on the same data and settings
twice, for ``--short`` and ``--long`` optimizer steps; the difference gives the time per step and
the intercept the fixed cost (loading, Opacus set-up, export). The full run's time is then
``fixed + per_step · steps``, with ``steps = ⌈epochs · n_train / batch_size⌉`` as configured. The
audit is measured for real on the model trained for ``--long`` steps: ``max_records`` members and
non-members each (default 500, as in the quickstart), loss + reference-calibrated attacks, fine-tuned
and base model each loaded and run once over the 1,000 records, 200 bootstrap resamples.

Prints ``RATIO audit/training`` (goal ≤ 0.25 without LiRA) and, for transparency, the ratio to the
measured ``--long``-step training as well.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart" / "govern.yaml"


def train_for(steps: int, out: Path) -> tuple[float, object]:
    from govern.config import load_run_config
    from govern.training.trainer import DataFile, TrainingSpec, train

    cfg = load_run_config(QUICKSTART)
    training = cfg.training.model_copy(update={"max_steps": steps, "checkpoint_every": None})
    spec = TrainingSpec(
        task=cfg.task, base_model_path=str(cfg.base_model.path) if cfg.base_model.path else None,
        train_files=[DataFile(path=str(cfg.data.train), format="jsonl")],
        columns={"text": cfg.data.text_column, "label": cfg.data.label_column}, training=training,
        output_dir=str(out))
    start = time.perf_counter()
    outcome = train(spec)
    return time.perf_counter() - start, outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--short", type=int, default=4)
    parser.add_argument("--long", type=int, default=16)
    parser.add_argument("--max-records", type=int, default=500)
    args = parser.parse_args()

    import torch

    from govern.audits.membership import audit_membership
    from govern.config import load_run_config
    from govern.data.io import read_records
    from govern.policy.schema import MembershipPolicy

    cfg = load_run_config(QUICKSTART)
    with tempfile.TemporaryDirectory() as tmp:
        t_short, _ = train_for(args.short, Path(tmp) / "short")
        t_long, outcome = train_for(args.long, Path(tmp) / "long")
        per_step = (t_long - t_short) / (args.long - args.short)
        fixed = max(0.0, t_short - per_step * args.short)
        n_train = len(read_records(cfg.data.train))
        full_steps = math.ceil(cfg.training.epochs * n_train / cfg.training.batch_size)
        full_training = fixed + per_step * full_steps

        start = time.perf_counter()
        evidence = audit_membership(
            outcome.model_dir, outcome.base_model_path, cfg.data.train, cfg.data.eval,
            MembershipPolicy(attacks=["loss", "reference"]), task=cfg.task, text_column=cfg.data.text_column,
            label_column=cfg.data.label_column, id_column=cfg.data.id_column, gguf_file=outcome.gguf_file,
            max_records=args.max_records, max_length=cfg.training.max_length, bootstrap=200)
        t_audit = time.perf_counter() - start

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device={device} threads={torch.get_num_threads()} quickstart: MiniLM + LoRA r={cfg.training.lora.r}, "
          f"DP={cfg.training.dp.enabled}, n_train={n_train}, batch={cfg.training.batch_size}, "
          f"max_length={cfg.training.max_length}")
    print(f"training: {args.short} steps {t_short:.1f} s, {args.long} steps {t_long:.1f} s -> "
          f"{per_step:.2f} s/step + {fixed:.1f} s fixed")
    print(f"full quickstart training (estimated): {full_steps} steps = {full_training:.0f} s")
    print(f"audit: {evidence.n_members}+{evidence.n_nonmembers} records, attacks "
          f"{[a.name for a in evidence.attacks]} = {t_audit:.1f} s (AUCs "
          + ", ".join(f"{a.name} {a.auc:.3f}" for a in evidence.attacks) + ")")
    print(f"ratio audit / {args.long}-step training = {t_audit / t_long:.3f}")
    print(f"RATIO audit/training (full quickstart) = {t_audit / full_training:.3f} (goal <= 0.25 without LiRA)")


if __name__ == "__main__":
    main()
