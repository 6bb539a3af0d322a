"""Training checkpoints that let a killed run resume with exactly the privacy history it had.

A checkpoint ``checkpoints/step-N/`` holds the trainable weights (safetensors), the optimizer state,
every RNG state (torch, CUDA, numpy, random, the Poisson sampler's and the DP noise generator's), the
loader position (epoch, step in epoch) and Opacus' accountant history. It is written to a temporary
folder and renamed into place, so a kill during the write leaves the previous checkpoint intact and
never a half-written one that looks complete.

The accountant history is the privacy record: resuming loads it into the new ``PrivacyEngine`` so the
final ε covers every step taken in every attempt (never an ε that forgets the steps before the kill).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "state.json"
WEIGHTS_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"


@dataclass
class Checkpoint:
    path: Path
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def checkpoint_root(stage_dir: Path) -> Path:
    return stage_dir / "checkpoints"


def latest_checkpoint(stage_dir: Path) -> Checkpoint | None:
    """The complete checkpoint with the highest step, or None."""
    root = checkpoint_root(stage_dir)
    if not root.is_dir():
        return None
    best: Checkpoint | None = None
    for folder in root.glob("step-*"):
        state_file = folder / STATE_FILE
        if not state_file.is_file() or folder.name.endswith(".tmp"):
            continue
        state = json.loads(state_file.read_text())
        if best is None or int(state["step"]) > best.step:
            best = Checkpoint(folder, state)
    return best


def rng_state(extra_generators: dict[str, torch.Generator]) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "random": random.getstate(),
        "generators": {name: g.get_state() for name, g in extra_generators.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], extra_generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    for name, g in extra_generators.items():
        if name in state["generators"]:
            g.set_state(state["generators"][name])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters being trained (LoRA + head, or everything): all a resume needs of the model."""
    return {name: p.detach().to("cpu").contiguous().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(stage_dir: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], generators: dict[str, torch.Generator], keep: int = 2) -> Path:
    """Write ``step-N`` atomically and drop all but the newest ``keep`` checkpoints."""
    root = checkpoint_root(stage_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{int(state['step']):07d}"
    tmp = root / (final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(trainable_state(model), str(tmp / WEIGHTS_FILE))
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    torch.save(rng_state(generators), tmp / RNG_FILE)
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True))
    for f in tmp.iterdir():  # durable before it becomes visible
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    folders = sorted(p for p in root.glob("step-*") if not p.name.endswith(".tmp"))
    for old in folders[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_weights(checkpoint: Checkpoint, model: torch.nn.Module) -> None:
    """Load the trainable parameters in place (names must match: same base model and adapter)."""
    tensors = load_file(str(checkpoint.path / WEIGHTS_FILE))
    params = dict(model.named_parameters())
    missing = [n for n in tensors if n not in params]
    if missing:
        raise KeyError(f"checkpoint parameters not in the model: {missing[:5]}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(params[name].device))


def load_optimizer(checkpoint: Checkpoint, optimizer: torch.optim.Optimizer) -> None:
    optimizer.load_state_dict(torch.load(checkpoint.path / OPTIMIZER_FILE, weights_only=False))


def load_rng(checkpoint: Checkpoint, generators: dict[str, torch.Generator]) -> None:
    restore_rng(torch.load(checkpoint.path / RNG_FILE, weights_only=False), generators)
