"""Benchmark: what the CEL cost budget costs a normal rule, and how fast it stops a bomb.

Baseline (same run): cel-python's own interpreter evaluating the same compiled expression over the same
CEL values, without govern's budgeted evaluator. Also times the nested-`all` bomb the budget stops (it
would run for minutes unbounded).

    .venv/bin/python tests/benchmarks/bench_policy.py [--repeat 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import celpy

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from govern.policy.cel import cel_document, evaluate_expression  # noqa: E402

EVIDENCE = {
    "training": {"epsilon": {"rdp": 7.5, "prv": 7.1}, "n_train": 3000, "dp_enabled": True,
                 "curve": [{"step": s, "loss": 1.0 / (s + 1), "epsilon": s / 20} for s in range(141)]},
    "fairness": {"disparities": [{"metric": "equalized_odds_difference", "attribute": a, "value": 0.01 * i}
                                 for i, a in enumerate(["region", "age_band", "gender"] * 8)]},
    "big": list(range(100)),
}
RULES = {
    "threshold": "evidence.training.epsilon.rdp < 8.0 && evidence.training.n_train >= 1000",
    "all over the curve": "evidence.training.curve.all(p, p.loss >= 0.0)",
    "exists over disparities": "evidence.fairness.disparities.exists(d, d.value > 0.5)",
}
BOMB = "evidence.big.all(a, evidence.big.all(b, evidence.big.all(c, a + b + c >= 0)))"


def median_ms(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    cel_evidence = cel_document(EVIDENCE)
    plain_env = celpy.Environment()
    for name, expression in RULES.items():
        plain = plain_env.program(plain_env.compile(expression))
        assert bool(plain.evaluate({"evidence": cel_evidence})) == evaluate_expression(
            expression, cel_evidence=cel_evidence).value
        base = median_ms(lambda: plain.evaluate({"evidence": cel_evidence}), args.repeat)  # noqa: B023
        gov = median_ms(lambda: evaluate_expression(expression, cel_evidence=cel_evidence), args.repeat)  # noqa: B023
        print(f"{name:26s} budgeted {gov:.3f} ms  plain cel-python {base:.3f} ms  -> ratio {gov / base:.2f}x")
    started = time.perf_counter()
    outcome = evaluate_expression(BOMB, cel_evidence=cel_evidence)
    stopped = time.perf_counter() - started
    assert outcome.exceeded, "the bomb must be stopped"
    print(f"nested-all bomb (10^6 evaluations): stopped after {stopped:.2f} s ({outcome.exceeded})")


if __name__ == "__main__":
    main()
