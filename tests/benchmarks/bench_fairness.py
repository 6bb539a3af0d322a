"""Benchmark: full evaluation (task metrics + fairness with 1,000 bootstrap resamples) on 100k predictions
with 3 sensitive columns (and their 4 intersections). Goal: under 10 s on 2 cores.

Baselines measured in the same run:
  * one plain Fairlearn ``MetricFrame`` pass over the raw rows (accuracy, selection rate, TPR, FPR; the
    3-column intersection) — what a single disaggregation costs without govern;
  * Fairlearn's own bootstrap (``MetricFrame(n_boot=...)``) on the same pass, timed for a few resamples
    and extrapolated to 1,000 — what the intervals would cost done the obvious way.

Run: ``.venv/bin/python tests/benchmarks/bench_fairness.py [--rows 100000] [--resamples 1000]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def make_predictions(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "sex": rng.choice(["F", "M", "X"], n, p=[0.49, 0.49, 0.02]),
        "age": rng.choice(["18-29", "30-44", "45-64", "65+"], n),
        "region": rng.choice(["north", "south", "east", "west", "centre"], n).astype(object),
    })
    frame.loc[rng.random(n) < 0.01, "region"] = None
    y = rng.integers(0, 2, n)
    logits = rng.normal(size=(n, 2)) + 1.5 * np.eye(2)[y] + np.where(frame["sex"] == "F", 0.3, 0.0)[:, None]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    frame["label"] = y
    frame["pred"] = proba.argmax(axis=1)
    return frame, proba


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--fairlearn-boot", type=int, default=5, help="Fairlearn n_boot to time and extrapolate.")
    args = parser.parse_args()

    from fairlearn.metrics import MetricFrame, false_positive_rate, selection_rate, true_positive_rate
    from sklearn.metrics import accuracy_score

    from govern.audits.fairness import compute_fairness, prepare_classification
    from govern.audits.metrics import classification_metrics

    frame, proba = make_predictions(args.rows)
    sensitive = ["sex", "age", "region"]
    print(f"{args.rows:,} predictions, sensitive columns {sensitive}, {args.resamples} resamples, "
          f"{os.cpu_count()} CPUs")

    started = time.perf_counter()
    metrics = classification_metrics(frame["label"].to_numpy(), proba, ["0", "1"])
    prep = prepare_classification(frame, label="label", pred="pred", sensitive=sensitive)
    evidence = compute_fairness(prep, min_group_size=30, intersections=True, max_intersection_size=None,
                                bootstrap=args.resamples, seed=0)
    govern_s = time.perf_counter() - started
    print(f"govern full evaluation: {govern_s:.2f} s  (accuracy {metrics.accuracy:.3f}, ECE {metrics.ece:.3f}; "
          f"{len(evidence.attributes)} attributes, {len(evidence.groups)} groups, "
          f"{len(evidence.disparities)} disparities, {len(evidence.insufficient_groups)} insufficient)")

    fns = {"accuracy": accuracy_score, "selection_rate": selection_rate,
           "true_positive_rate": true_positive_rate, "false_positive_rate": false_positive_rate}
    features = frame[sensitive].fillna("(missing)")
    started = time.perf_counter()
    MetricFrame(metrics=fns, y_true=frame["label"], y_pred=frame["pred"], sensitive_features=features)
    plain_s = time.perf_counter() - started
    print(f"baseline: one plain Fairlearn MetricFrame pass (raw rows, no CIs): {plain_s:.2f} s")

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MetricFrame(metrics=fns, y_true=frame["label"], y_pred=frame["pred"], sensitive_features=features,
                    n_boot=args.fairlearn_boot, ci_quantiles=[0.025, 0.975], random_state=0)
    boot_s = time.perf_counter() - started
    per_resample = max(boot_s - plain_s, 0.0) / args.fairlearn_boot
    extrapolated = plain_s + per_resample * args.resamples
    print(f"baseline: Fairlearn n_boot={args.fairlearn_boot}: {boot_s:.2f} s → ~{extrapolated:,.0f} s "
          f"extrapolated to {args.resamples} resamples (one attribute only)")

    print(f"ratio govern / plain MetricFrame pass: {govern_s / plain_s:.2f}x "
          f"(govern does 7 attributes + {args.resamples} resamples + task metrics)")
    print(f"speed-up vs Fairlearn's bootstrap (extrapolated): {extrapolated / govern_s:,.0f}x")
    print(f"goal < 10 s: {'met' if govern_s < 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
