"""Generate the blocked-pii example: the quickstart's messages, with US social security numbers planted.

The default policy (and ``policy.yaml`` here) *blocks* ``US_SSN``: government identifiers must be removed
from the source data, not redacted on the way into training. So a governed run on this data stops at
the PII gate, before any training happens, and is recorded as blocked.

    python examples/blocked-pii/generate.py      # rewrites train.jsonl, eval.jsonl, planted_pii.json here
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
N_TRAIN = 300
N_EVAL = 100
SEED = 4242


def _quickstart_generator():  # the quickstart's generator is a script, not a package: load it by path
    spec = importlib.util.spec_from_file_location("quickstart_generate", HERE.parent / "quickstart" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def generate(out_dir: Path = HERE) -> dict[str, int]:
    quickstart = _quickstart_generator()
    return quickstart.generate(
        out_dir, n_train=N_TRAIN, n_eval=N_EVAL, seed=SEED, pii_fraction=0.05, pii_kinds=("US_SSN",),
        id_prefix="bp",
    )


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    counts = generate(out)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()), "->", out)
