"""Run under ``torchrun --nproc_per_node 2``: both ranks agree on the checkpoint to resume from through
:func:`govern.training.checkpoints.resume_on_every_rank`, the one path the recipe, ``govern.session`` and
the Trainer take, and each writes ``OUT_DIR/rank-N.json``: what it got or the error it raised.

    torchrun --nproc_per_node 2 resume_ranks_script.py CHECKPOINT_FOLDER MODE OUT_DIR

MODE: ``same`` (nothing changes), ``edited`` (a file of the folder changes after rank 0 verified it, as a
node with its own copy or a write between the two reads would show it), ``missing`` (the folder is gone, as
on a node whose disk never had it), ``refused`` (rank 0 refuses), ``crash`` (rank 0 fails otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from govern.errors import StageError
from govern.stage import tree_sha256
from govern.training.checkpoints import Checkpoint, read_checkpoint, resume_on_every_rank


def main() -> None:
    folder, mode, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])

    def find() -> Checkpoint | None:  # what resumable_checkpoint does on rank 0: read, verify, hand back
        if mode == "refused":
            raise StageError("training", f"checkpoint {folder} refused: its files do not match the digest")
        if mode == "crash":
            raise PermissionError(13, "Permission denied")
        found = read_checkpoint(folder)
        found.digest = tree_sha256(folder)
        if mode == "edited":  # after rank 0 hashed it, before the other rank reads it
            (folder / "trainable.safetensors").write_bytes(b"other weights")
        if mode == "missing":
            shutil.rmtree(folder)
        return found

    try:
        found = resume_on_every_rank(find, rank, world)
        report = {"rank": rank, "step": found.step if found else None, "digest": found.digest if found else None}
    except Exception as exc:  # what each rank raised, for the test to compare
        report = {"rank": rank, "error": str(exc), "type": type(exc).__name__}
    (out / f"rank-{rank}.json").write_text(json.dumps(report), encoding="utf-8")
    import torch.distributed as dist

    dist.barrier()  # both ranks done before the group goes away
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
