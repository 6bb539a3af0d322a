"""The f-DP one-run audit (Mahloujifar, Melis & Chaudhuri 2025) and the choice among abstention
thresholds: no bound from chance guessing, the bound holds for a mechanism of known ε, it is at least
Steinke et al.'s where the paper says it gains (δ charged per canary is not negligible, or every guess
right), the Bonferroni-corrected maximum over several thresholds is what the evidence gates, and both
bounds reproduce Google's jax_privacy auditing module's published numbers."""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist

import numpy as np
import pytest
from scipy import optimize, stats

from govern.audits.canaries import audit_canaries, dp_audit_p_value, epsilon_lower_bound
from govern.audits.fdp_audit import (
    FDP,
    STEINKE,
    approx_dp_inverse_blow_up,
    candidate_bounds,
    fdp_consistent,
    fdp_epsilon_lower_bound,
)


def test_the_inverse_blow_up_is_the_smallest_type_one_error_reaching_a_power() -> None:
    g = approx_dp_inverse_blow_up(math.log(3), 0.01)
    # f_{ε,δ}(x) = max(0, 1 − δ − e^ε x, e^−ε (1 − δ − x)); power 1 − f(x) at x = g(y) equals y.
    for y in (0.05, 0.3, 0.6, 0.95):
        x = g(y)
        power = 1 - max(0.0, 1 - 0.01 - 3 * x, (1 - 0.01 - x) / 3)
        assert power == pytest.approx(y, abs=1e-12)
    assert g(0.005) == 0.0  # δ alone reaches that power at no type-I error
    assert approx_dp_inverse_blow_up(0.0, 0.0)(0.4) == pytest.approx(0.4)  # perfect privacy: power = FPR


def test_no_bound_from_guesses_no_better_than_chance() -> None:
    for v in (50, 55):
        assert fdp_epsilon_lower_bound(200, 100, v) == 0.0
    assert fdp_epsilon_lower_bound(200, 0, 0) == 0.0
    assert fdp_consistent(approx_dp_inverse_blow_up(0.0, 0.0), 200, 100, 50, 0.05)


def test_fdp_bound_holds_for_randomised_response_with_a_known_epsilon() -> None:
    # Each guess right with probability e^ε/(1+e^ε): the 95 % bound may exceed ε in ~5 % of audits
    # (as the Steinke test allows: ≤ 25 of 300), and is far from vacuous when ε is large.
    rng = np.random.default_rng(7)
    for true_eps in (0.5, 2.0):
        q = 1 / (1 + math.exp(-true_eps))
        bounds = [fdp_epsilon_lower_bound(400, 200, int(rng.binomial(200, q)), delta=1e-5) for _ in range(300)]
        assert sum(b > true_eps for b in bounds) <= 25
        if true_eps == 2.0:
            assert np.median(bounds) > 1.2


@pytest.mark.parametrize("delta", [1e-4, 1e-3])
def test_fdp_is_at_least_steinke_where_the_delta_term_matters(delta: float) -> None:
    for r in (20, 60, 200):
        for accuracy in (0.8, 0.9, 1.0):
            v = round(accuracy * r)
            assert fdp_epsilon_lower_bound(1000, r, v, delta=delta) >= epsilon_lower_bound(1000, r, v, delta=delta) - 1e-6


def test_fdp_is_at_least_steinke_when_every_guess_is_right_and_close_to_it_otherwise() -> None:
    for m, delta in ((200, 0.0), (200, 1e-5), (1000, 1e-5)):
        for r in (20, 60, 200):
            steinke, fdp = epsilon_lower_bound(m, r, r, delta=delta), fdp_epsilon_lower_bound(m, r, r, delta=delta)
            assert fdp >= steinke - 1e-6
            v = round(0.9 * r)
            assert fdp_epsilon_lower_bound(m, r, v, delta=delta) == pytest.approx(
                epsilon_lower_bound(m, r, v, delta=delta), rel=0.03)


def test_several_thresholds_are_tried_at_a_bonferroni_corrected_confidence_and_the_largest_is_gated() -> None:
    rng = np.random.default_rng(3)
    inserted = rng.random(400) < 0.5
    scores = inserted * 1.5 + rng.normal(0, 1, 400)
    candidates = candidate_bounds(scores, inserted, guess_fractions=[0.1, 0.3, 0.3, 0.8], methods=[STEINKE, FDP],
                                  confidence=0.95, delta=1e-5)
    assert len(candidates) == 6 and all(c.confidence == pytest.approx(1 - 0.05 / 6) for c in candidates)
    one = [c for c in candidates if c.method == STEINKE and c.guess_fraction == 0.3][0]
    assert one.epsilon_lower_bound == pytest.approx(
        epsilon_lower_bound(400, one.guesses, one.correct, delta=1e-5, confidence=1 - 0.05 / 6))
    audit = audit_canaries(scores, inserted, guess_fraction=0.1, guess_fractions=[0.3, 0.8], bounds=["steinke", "fdp"],
                           confidence=0.95, delta=1e-5, attack="loss", accountant_epsilon=0.01)
    best = max(audit.bounds, key=lambda b: b.epsilon_lower_bound)
    assert audit.epsilon_lower_bound == best.epsilon_lower_bound > 0.01 and audit.violation
    assert (audit.method, audit.guesses, audit.correct) == (best.method, best.guesses, best.correct)
    # The defaults are the one Steinke bound at one threshold, at the stated confidence, as before.
    single = audit_canaries(scores, inserted, guess_fraction=0.3, confidence=0.95, delta=1e-5, attack="loss",
                            accountant_epsilon=None)
    assert [b.method for b in single.bounds] == [STEINKE] and single.method == STEINKE
    assert single.epsilon_lower_bound == epsilon_lower_bound(400, single.guesses, single.correct, delta=1e-5)


# --- Cross-check against a published implementation -------------------------------------------------
# Google DeepMind's jax_privacy (jax_privacy/auditing.py, tests/auditing_test.py,
# ``test_epsilon_one_run_close``) publishes the one-run bounds for 10 000 IN and 10 000 OUT canaries whose
# scores are deterministic N(shift, 1) and N(0, 1) quantiles, at significance 0.05, δ = 1e-6, guessing "in"
# above a threshold chosen among all thresholds on the ROC curve's Pareto frontier with a Bonferroni
# correction over them. Their f-DP numbers audit the Gaussian-DP curve that is (ε, δ)-DP; govern gates on
# the (ε, δ)-DP curve itself, so the cross-check hands govern's recursion (``fdp_consistent``) their curve.
# The threshold enumeration below is theirs, rewritten with numpy; every bound at a threshold is govern's.

_JAX_PRIVACY_PUBLISHED = {  # shift → (Steinke et al. ε, f-DP ε)
    1: (1.13346, 2.164749),
    2: (2.311945, 4.7218075),
    4: (4.395568, 9.133752),
}
_NORMAL = NormalDist()


def _deterministic_normal(mu: float, n: int) -> np.ndarray:
    return np.asarray(stats.norm.ppf(np.linspace(0, 1, n, endpoint=False) + 1 / (2 * n))) + mu


def _pareto_frontier(points: np.ndarray) -> np.ndarray:
    """Indices of the ROC points not weakly dominated by a chord between their neighbours (jax_privacy's)."""
    idx = np.arange(points.shape[0])
    while len(idx) > 2:
        d = np.diff(points[idx], axis=0)
        dominated = d[:-1, 1] * d[1:, 0] - d[1:, 1] * d[:-1, 0] <= 0
        if not dominated.any():
            break
        idx = idx[np.r_[True, ~dominated, True]]
    return idx


def _gaussian_dp_inverse_blow_up(epsilon: float, delta: float) -> Callable[[float], float]:
    """The inverse blow-up of μ-GDP for the Gaussian mechanism that is exactly (ε, δ)-DP: σ from the analytic
    Gaussian mechanism (Balle & Wang 2018), δ = Φ(1/2σ − εσ) − e^ε Φ(−1/2σ − εσ), then μ = 1/σ."""
    def gap(s: float) -> float:
        return (_NORMAL.cdf(-epsilon * s + 1 / (2 * s)) - math.exp(epsilon) * _NORMAL.cdf(-epsilon * s - 1 / (2 * s))
                - delta)

    mu = 1 / float(optimize.brentq(gap, 1e-4, 1e9, xtol=1e-12, rtol=1e-14))

    def inverse(y: float) -> float:
        return 0.0 if y <= 0 else 1.0 if y >= 1 else _NORMAL.cdf(_NORMAL.inv_cdf(y) - mu)

    return inverse


def _gdp_epsilon_lower_bound(m: int, r: int, v: int, delta: float, level: float) -> float:
    def rejected(eps: float) -> bool:
        return not fdp_consistent(_gaussian_dp_inverse_blow_up(eps, delta), m, r, v, level)

    if not rejected(1e-9):
        return 0.0
    lo, hi = 0.0, 1.0
    while rejected(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-7:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rejected(mid) else (lo, mid)
    return lo


@pytest.mark.parametrize("shift", sorted(_JAX_PRIVACY_PUBLISHED))
def test_bounds_match_jax_privacys_published_one_run_audits(shift: int) -> None:
    n, delta, significance = 10_000, 1e-6, 0.05
    ins, outs = _deterministic_normal(shift, n), _deterministic_normal(0, n)
    thresholds = np.concatenate((np.union1d(ins, outs), [np.inf]))
    fn = np.searchsorted(np.sort(ins), thresholds, side="left")
    tn = np.searchsorted(np.sort(outs), thresholds, side="left")
    keep = _pareto_frontier(np.stack([fn, tn], axis=1))
    tp, fp = n - fn[keep], n - tn[keep]
    level = significance / len(keep)  # Bonferroni over the thresholds
    guesses = tp + fp
    # Their search order (decreasing Clopper-Pearson lower bound on precision) and pruning: a threshold is
    # skipped when its raw precision, or the best bound so far, already says it cannot do better.
    precision_lb = 1 - np.where(fp < guesses, stats.beta.ppf(1 - level, fp + 1, np.maximum(guesses - fp, 1)), 1.0)
    order = np.argsort(-precision_lb)
    for use_fdp, published in zip((False, True), _JAX_PRIVACY_PUBLISHED[shift], strict=True):
        best, best_q = 0.0, 0.5
        for i in order:
            r, v = int(guesses[i]), int(tp[i])
            if r == 0 or v / r <= best_q:
                continue
            if use_fdp:
                if best > 0 and fdp_consistent(_gaussian_dp_inverse_blow_up(best, delta), 2 * n, r, v, level):
                    continue
                bound = _gdp_epsilon_lower_bound(2 * n, r, v, delta, level)
            else:
                if dp_audit_p_value(2 * n, r, v, best, delta) >= level:
                    continue
                bound = epsilon_lower_bound(2 * n, r, v, delta=delta, confidence=1 - level)
            if bound > best:
                best, best_q = bound, 1 / (1 + math.exp(-bound))
        assert best == pytest.approx(published, rel=1e-5), ("f-DP" if use_fdp else "Steinke", shift)
