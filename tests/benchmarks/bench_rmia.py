"""Benchmark: what offline RMIA costs, relative to LiRA and to training, on the LiRA tests' tiny BERT world.

    .venv/bin/python tests/benchmarks/bench_rmia.py [--k 4]

Runs the real canary → training → membership stages (as `govern run` chains them) three times on the
same data and recipe (non-private, 160 + 160 records):

* LiRA with ``k`` reference models (the baseline);
* LiRA with ``k`` models plus RMIA, which reuses them: the difference is RMIA's own cost;
* RMIA alone with 1 and with 2 reference models of its own.

Prints each stage's time over the target's training time (``RATIO …/training``) and RMIA's extra
time over LiRA's stage (``RATIO rmia-shared-extra/lira-stage``). The statistics alone (no models) are
timed too, on 20,000 simulated records, against LiRA's.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")


def main() -> None:
    import numpy as np
    import torch

    from govern.audits.lira import balanced_inclusion, offline_lira_scores
    from govern.audits.rmia import rmia_scores, tune_offline_a
    from govern.policy.schema import LiraPolicy, MembershipPolicy, RmiaPolicy
    from tests.audits.test_lira import _run, build_world

    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)

    # Statistics only: 10,000 members and 10,000 non-members, k reference models.
    rng = np.random.default_rng(0)
    n, k = 10_000, args.k
    target = rng.normal(0, 2, 2 * n)
    refs = target + rng.normal(0, 0.4, (k, 2 * n))
    out = np.ones((k, 2 * n), dtype=bool)
    out[:, n:] = ~balanced_inclusion(n, k, 0)
    start = time.perf_counter()
    offline_lira_scores(target, refs, out)
    t_lira_stats = time.perf_counter() - start
    start = time.perf_counter()
    probs = 1 / (1 + np.exp(-refs))
    a = tune_offline_a(probs[:, n:], ~out[:, n:])
    rmia_scores(1 / (1 + np.exp(-target)), probs, out, np.arange(n, 2 * n), a=a if a is not None else 0.3)
    t_rmia_stats = time.perf_counter() - start
    print(f"statistics on {2 * n} records, k = {k}: LiRA {t_lira_stats * 1e3:.1f} ms, RMIA (tuning a on 11 "
          f"values included) {t_rmia_stats * 1e3:.1f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        world = build_world(Path(tmp))
        runs = {
            "lira": MembershipPolicy(max_auc=0.6, lira=LiraPolicy(enabled=True, reference_models=k)),
            "lira+rmia": MembershipPolicy(max_auc=0.6, lira=LiraPolicy(enabled=True, reference_models=k),
                                          rmia=RmiaPolicy(enabled=True)),
            "rmia-1": MembershipPolicy(max_auc=0.6, rmia=RmiaPolicy(enabled=True, reference_models=1)),
            "rmia-2": MembershipPolicy(max_auc=0.6, rmia=RmiaPolicy(enabled=True, reference_models=2)),
        }
        stage: dict[str, float] = {}
        training: list[float] = []
        for name, policy in runs.items():
            run = _run(world, dp=False, membership=policy, name=name)
            stage[name] = run.evidence.duration_s
            training.append(run.training.duration_s)
            aucs = ", ".join(f"{a.name} {a.auc:.3f}" for a in run.evidence.attacks)
            print(f"{name}: membership stage {stage[name]:.1f} s, target training {training[-1]:.1f} s ({aucs})")
        train_s = float(np.median(training))
        for name in runs:
            print(f"RATIO {name}-stage/training = {stage[name] / train_s:.2f}")
        extra = stage["lira+rmia"] - stage["lira"]
        print(f"RATIO rmia-shared-extra/lira-stage = {extra / stage['lira']:.3f} (noise: two runs of the same "
              f"reference training)")


if __name__ == "__main__":
    main()
