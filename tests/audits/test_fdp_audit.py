"""The f-DP one-run audit (Mahloujifar, Melis & Chaudhuri 2025) and the choice among abstention
thresholds: no bound from chance guessing, the bound holds for a mechanism of known ε, it is at least
Steinke et al.'s where the paper says it gains (δ charged per canary is not negligible, or every guess
right), and the Bonferroni-corrected maximum over several thresholds is what the evidence gates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from govern.audits.canaries import audit_canaries, epsilon_lower_bound
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
