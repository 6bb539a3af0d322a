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

``--lira K`` (default 4; 0 skips it) then runs the real membership *stage* twice on the same trained
model — without and with offline LiRA: K reference models trained as the full quickstart run trains
its model (its recipe, its 141 steps and its σ for ε = 7.5, from the training evidence the stage
reads) on halves of the 800 held-out records — and prints ``RATIO lira-audit/training`` and the stage
time with LiRA over the stage time without it.
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
    parser.add_argument("--lira", type=int, default=4, help="reference models (0: skip the LiRA measurement)")
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
        lira_times = (stage_with_and_without_lira(outcome, Path(tmp), args.lira, n_train, full_steps)
                      if args.lira else None)

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
    if lira_times is not None:
        plain, with_lira, aucs = lira_times
        print(f"membership stage: {plain:.1f} s without LiRA, {with_lira:.1f} s with {args.lira} reference models "
              f"(AUCs {aucs})")
        print(f"RATIO lira-stage/plain-stage = {with_lira / plain:.2f}")
        print(f"RATIO lira-audit/training (full quickstart) = {with_lira / full_training:.3f}")


def stage_with_and_without_lira(outcome: object, tmp: Path, k: int, n_train: int,
                                full_steps: int) -> tuple[float, float, str]:
    """The membership stage as `govern run` calls it, on the --long model, with the quickstart's full
    training recipe in spec.json and the full run's steps and σ in the training evidence, without and
    with LiRA."""
    from govern.audits.membership import MembershipStage
    from govern.config import load_run_config
    from govern.evidence import Evidence
    from govern.policy.schema import LiraPolicy, MembershipPolicy, Metadata, Policy
    from govern.stage import DataFiles, StageContext
    from govern.training import accounting
    from govern.training.stage import TrainingOutputs
    from govern.training.trainer import DataFile, TrainingSpec

    cfg = load_run_config(QUICKSTART)
    spec = TrainingSpec(
        task=cfg.task, base_model_path=str(outcome.base_model_path),  # type: ignore[attr-defined]
        train_files=[DataFile(path=str(cfg.data.train), format="jsonl")],
        columns={"text": cfg.data.text_column, "label": cfg.data.label_column},
        label_names=outcome.label_names, training=cfg.training, output_dir=str(tmp / "unused"))  # type: ignore[attr-defined]
    spec_path = tmp / "spec.json"
    spec_path.write_text(spec.model_dump_json())
    times: list[float] = []
    aucs = ""
    for lira in (False, True):
        policy = Policy(apiVersion="govern.dev/v1", kind="Policy", metadata=Metadata(name="bench", version="1"),
                        membership=MembershipPolicy(attacks=["loss", "reference"],
                                                    lira=LiraPolicy(enabled=lira, reference_models=max(k, 2))))
        ctx = StageContext(run_id=f"bench-{lira}", config=cfg, run_dir=tmp / f"run-{lira}", policy=policy,
                           evidence=Evidence())
        q = accounting.poisson_sample_rate(n_train, cfg.training.batch_size)
        sigma = accounting.noise_multiplier(cfg.training.dp.target_epsilon or 8.0, q, full_steps,
                                            min(accounting.default_delta(n_train), 1e-5), "rdp")
        ctx.evidence.training = outcome.evidence.model_copy(  # type: ignore[attr-defined]
            update={"steps": full_steps, "noise_multiplier": sigma})
        ctx.outputs["data"] = DataFiles(train_path=str(cfg.data.train), eval_path=str(cfg.data.eval), format="jsonl",
                                        train_fingerprint="fp-train", eval_fingerprint="fp-eval",
                                        label_names=outcome.label_names)  # type: ignore[attr-defined]
        ctx.outputs["training"] = TrainingOutputs(
            model_dir=str(outcome.model_dir), base_model_path=str(outcome.base_model_path),  # type: ignore[attr-defined]
            label_names=outcome.label_names, task=cfg.task,  # type: ignore[attr-defined]
            device=outcome.device, spec_path=str(spec_path))  # type: ignore[attr-defined]
        start = time.perf_counter()
        evidence = MembershipStage().run(ctx).evidence
        times.append(time.perf_counter() - start)
        aucs = ", ".join(f"{a.name} {a.auc:.3f}" for a in evidence.attacks)  # type: ignore[attr-defined]
    return times[0], times[1], aucs


if __name__ == "__main__":
    main()
