"""The plain loop of tests/session/test_own_loop.py as a script for ``torchrun`` (every rank runs it).

    torchrun --nproc_per_node 2 ddp_user_script.py govern.yaml MARKER_DIR [--kill-at STEP]

Each rank writes ``MARKER_DIR/rank-R`` first thing inside the block (so a block must leave none) and
prints one ``result {...}`` line: what its session saw and a digest of its trained weights. ``--kill-at``:
rank 0 sends itself SIGKILL right after that optimizer step (torchrun then stops the other rank)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

import govern
from govern.errors import RunBlocked
from govern.training.private import unwrap
from tests.session.test_own_loop import user_loop


def weights_digest(model: Any) -> str:
    """sha256 over the trainable parameters' names and values (equal on every rank after DDP steps)."""
    digest = hashlib.sha256()
    for name, p in unwrap(model).named_parameters():
        if p.requires_grad:
            digest.update(name.encode() + p.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def main() -> int:
    config, markers = Path(sys.argv[1]), Path(sys.argv[2])
    kill_at = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--kill-at" else None
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    seen: dict[str, Any] = {"rank": rank}

    def after(model: Any) -> None:
        seen["weights"] = weights_digest(model)

    try:
        with govern.session(config) as run:
            (markers / f"rank-{rank}").write_text("the block ran")  # first thing inside the block
            print(f"run-id {run.run_id}", flush=True)
            seen.update(run_id=run.run_id, n=len(run.training_data()), world=run.world_size)

            def kill(model: Any, optimizer: Any, batch: Any) -> None:
                if kill_at is not None and rank == 0 and run.privacy_engine.accountant.history[-1][2] >= kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
            original = run.make_private

            def make_private(*args: Any, **kwargs: Any) -> Any:
                made = original(*args, **kwargs)
                seen.update(sigma=run.noise_multiplier, q=run.sample_rate, steps=run.planned_steps,
                            started_at=run.completed_steps)
                return made

            run.make_private = make_private  # type: ignore[method-assign]  # to read σ, q, steps after it
            outcome = user_loop(run, after=after, cheat=kill)
            seen.update(status=outcome.status, decision=outcome.decision, outcome_run=outcome.run_id)
    except RunBlocked as blocked:
        seen.update(blocked=blocked.gate, run_id=blocked.run_id)
        print("result " + json.dumps(seen), flush=True)
        return 3
    print("result " + json.dumps(seen), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
