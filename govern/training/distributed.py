"""``govern run`` under ``torchrun``: rank 0 governs, every rank trains.

Only rank 0 runs the governed pipeline (data, PII, audits, signing, lineage writes) — N copies writing N
runs to the lineage DB would be wrong. The other ranks wait for rank 0 to reach the training stage,
receive the exact training spec it built (redacted data paths, σ, seeds), train their shard under Opacus'
DPDDP, and exit. If rank 0's run ends without training (a PII block, a failure), it releases them with
``None`` so no process hangs.

:func:`share` is the one rank-0-to-all message, also what ``govern.session`` uses under ``torchrun``
(:mod:`govern.sessions`).
"""

from __future__ import annotations

import os
from typing import Any

_released = False


def world() -> tuple[int, int]:
    return int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))


def is_distributed() -> bool:
    return world()[0] > 1


def is_worker() -> bool:
    size, rank = world()
    return size > 1 and rank != 0


def _init() -> Any:
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist


def share(value: Any = None) -> Any:
    """Rank 0's ``value`` on every rank (the other ranks pass nothing and wait for it): one pickled object.

    Every rank must call it, in the same order (it is a collective)."""
    dist = _init()
    # Object broadcasts over NCCL need a CUDA tensor path; a gloo side group keeps this on the CPU.
    group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    box = [value if world()[1] == 0 else None]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def sum_over_ranks(values: list[int]) -> list[int]:
    """Each entry summed over all ranks (a collective, like :func:`share`)."""
    import torch

    dist = _init()
    group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    counts = torch.tensor(values, dtype=torch.long)  # a CPU tensor: the gloo group carries it
    dist.all_reduce(counts, group=group)
    return [int(v) for v in counts.tolist()]


def _broadcast(message: str | None) -> None:
    global _released
    share(message)
    _released = True


def share_spec(spec_json: str) -> None:
    """Rank 0: hand the training spec to the other ranks (called by the training stage)."""
    if is_distributed() and not _released:
        _broadcast(spec_json)


def release_workers() -> None:
    """Rank 0: the run ended without (more) training; let the waiting ranks exit."""
    if is_distributed() and not _released and world()[1] == 0:
        _broadcast(None)


def worker_main() -> int:
    """Ranks > 0: wait for the spec, train, exit with 0 (or govern's error code)."""
    from govern.errors import GovernError
    from govern.training.trainer import TrainingSpec, train

    dist = _init()
    spec: str | None = share()
    code = 0
    if spec is not None:
        try:
            train(TrainingSpec.model_validate_json(spec))
        except GovernError as exc:
            import sys

            sys.stderr.write(f"error (rank {world()[1]}): {exc}\n")
            code = exc.exit_code
    if dist.is_initialized():
        dist.destroy_process_group()
    return code
