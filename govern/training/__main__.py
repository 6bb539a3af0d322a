"""``python -m govern.training SPEC.json [EVIDENCE.json]``: one training run from a spec file.

What ``torchrun --nproc_per_node N -m govern.training spec.json`` launches for multi-process DP
training, and what the kill-and-resume test runs in a subprocess. Rank 0 writes the evidence JSON
(default: ``<output_dir>/evidence.json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from govern.errors import GovernError
from govern.training.trainer import TrainingSpec, train


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: python -m govern.training SPEC.json [EVIDENCE.json]\n")
        return 2
    spec = TrainingSpec.model_validate_json(Path(argv[0]).read_text())
    try:
        outcome = train(spec)
    except GovernError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    if outcome.rank == 0:
        target = Path(argv[1]) if len(argv) > 1 else Path(spec.output_dir) / "evidence.json"
        target.write_text(json.dumps(outcome.evidence.model_dump(mode="json"), indent=1))
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
