"""Benchmark: what governing a user's own DP loop costs per step — Opacus wired by hand vs the same
model/optimizer with govern's training-integrity tracker attached (what ``run.make_private`` adds).

    .venv/bin/python tests/benchmarks/bench_session.py [--batch 32] [--seq 48] [--steps 12]

Both are all-MiniLM-L6-v2 + LoRA r=8 (query/value) + a 5-class head through Opacus ``make_private``
(hooks mode, fixed batches). Steps are interleaved (by hand, tracked, by hand, ...) so background load
hits both alike. The tracker's cost: a copy/compare of the trainable weights around every optimizer
step and one extra per-sample norm pass for the clipped fraction. Prints the tracked/by-hand ratio
(goal ≤ 1.05).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks._common import int_options  # noqa: E402


def build(batch: int, seq: int, tracked: bool) -> tuple[Any, Any]:
    import torch

    from govern.config import DPSettings
    from govern.training.models import apply_lora, load_base_model
    from govern.training.private import IntegrityTracker, attach_opacus

    torch.manual_seed(0)
    model, _ = load_base_model(None, task="classification", label_names=[f"c{i}" for i in range(5)])
    model = apply_lora(model, task="classification", r=8, alpha=16, dropout=0.0, target_modules=None)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(batch * 4, seq,
                                                                                    dtype=torch.long)),
                                         batch_size=batch)
    dp = DPSettings(noise_multiplier=1.0, poisson_sampling=False)
    engine, model, opt, _, _ = attach_opacus(model, opt, loader, dp, 1.0)
    if tracked:
        IntegrityTracker(model, opt.original_optimizer, engine=engine, dp_optimizer=opt)
    return model, opt


def step(model: Any, opt: Any, ids: Any, mask: Any, labels: Any) -> float:
    import torch

    start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(ids, attention_mask=mask).logits, labels)
    loss.backward()
    opt.step()
    opt.zero_grad()
    return time.perf_counter() - start


def main() -> None:
    import torch

    args = int_options(batch=32, seq=48, steps=12)
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (args.batch, args.seq), generator=g)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 5, (args.batch,), generator=g)
    hand, tracked = build(args.batch, args.seq, False), build(args.batch, args.seq, True)
    for m, o in (hand, tracked):  # warm-up
        step(m, o, ids, mask, labels)
    times: dict[str, list[float]] = {"by hand": [], "tracked": []}
    for _ in range(args.steps):
        times["by hand"].append(step(*hand, ids, mask, labels))
        times["tracked"].append(step(*tracked, ids, mask, labels))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"MiniLM+LoRA DP step, batch {args.batch}, seq {args.seq}, {args.steps} steps each (median):")
    for k, v in med.items():
        print(f"  {k:8s} {v * 1000:8.1f} ms/step")
    print(f"ratio tracked / by hand: {med['tracked'] / med['by hand']:.3f} (goal <= 1.05)")


if __name__ == "__main__":
    main()
