"""The f-DP one-run audit (Mahloujifar, Melis & Chaudhuri, "Auditing f-Differential Privacy in One Run",
ICML 2025, PMLR 267), and the choice of the abstention threshold among several candidates.

Steinke, Nasr & Jagielski (2023) turn the canary guesses into an ε lower bound by comparing them with
ε-randomised response and charging δ separately (:func:`govern.audits.canaries.epsilon_lower_bound`).
Mahloujifar et al. bound the number of correct guesses directly from the mechanism's whole *trade-off
function* f (the best type-II error at each type-I error): an auditor that makes ``r`` guesses on ``m``
canaries can be right ``v`` times with probability at most τ under f-DP only if a recursion over
``v, v−1, …, 0`` stays below ``r/m`` (their Algorithm for reconstruction with abstention; alphabet size
2 for membership). Using the whole curve instead of one (ε, δ) point is what makes it tighter.

Which curve: govern audits against the **(ε, δ)-DP trade-off function itself**,
``f_{ε,δ}(x) = max(0, 1 − δ − e^ε x, e^{−ε}(1 − δ − x))``, so "f-DP rejected" reads directly as "the
model is not (ε, δ)-DP" at the run's own δ, the same statement the Steinke bound makes and the one the
accountant's ε is compared with. (The paper's headline numbers use the Gaussian-DP family and convert
μ to ε; that conversion assumes the mechanism's curve is Gaussian-shaped, an assumption a gate that
blocks on a violation should not rest on. Xiang et al. 2025, "Tight Privacy Audit in One Run", claim
tighter bounds still, by modelling the release of only the highest-scoring guesses with order statistics;
govern does not compute it: no reference implementation or checkable numbers were available — the README
says why in full.)

The recursion follows the paper's reference implementation as shipped in Meta's PrivacyGuard
(``privacy_guard/analysis/mia/fdp_analysis_node.py``), written here against govern's own inputs; given
Google DeepMind's ``jax_privacy`` threshold search and Gaussian-DP curve it reproduces that library's
published one-run numbers (tests/audits/test_fdp_audit.py).

Several abstention thresholds: the auditor may try several guess counts and keep the largest bound;
each test then runs at ``1 − (1 − confidence) / N`` (Bonferroni over the N tests whose maximum is
reported), so the maximum holds at ``confidence``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: Identifiers of the two bounds, as written in the evidence, and the policy's short names for them.
STEINKE = "steinke-nasr-jagielski-2023"
FDP = "mahloujifar-melis-chaudhuri-2025"
METHODS = {"steinke": STEINKE, "fdp": FDP}


def approx_dp_inverse_blow_up(epsilon: float, delta: float) -> Callable[[float], float]:
    """The inverse of ``x ↦ 1 − f_{ε,δ}(x)``: the smallest type-I error at which an (ε, δ)-DP test can
    reach power ``y``, i.e. ``max(0, (y − δ)e^{−ε}, 1 − δ − e^{ε}(1 − y))``."""
    e_pos, e_neg = math.exp(min(epsilon, 700.0)), math.exp(-epsilon)

    def inverse(y: float) -> float:
        return max(0.0, (y - delta) * e_neg, 1.0 - delta - e_pos * (1.0 - y))

    return inverse


def fdp_consistent(inverse_blow_up: Callable[[float], float], m: int, r: int, v: int, tau: float,
                   alphabet: int = 2) -> bool:
    """True when ``v`` correct out of ``r`` guesses on ``m`` canaries is *not* rejected at level ``tau``
    for a mechanism whose trade-off function has the given inverse blow-up (the paper's test; False
    means "this mechanism is not f-DP", with error probability ≤ ``tau``)."""
    if not (0 <= v <= r <= m) or r == 0:
        raise ValueError(f"need 0 ≤ v ≤ r ≤ m and r > 0, got v={v}, r={r}, m={m}")
    scaled = tau * r / m
    h = scaled * (r - v) / r
    rr = scaled * v / r
    for i in range(v - 1, -1, -1):
        h_next = max(h, (alphabet - 1) * inverse_blow_up(rr))
        rr = rr + (i / (r - i)) * (h_next - h)
        h = h_next
    return rr + h <= r / m


def fdp_epsilon_lower_bound(m: int, r: int, v: int, *, delta: float = 0.0, confidence: float = 0.95,
                            epsilon_max: float = 100.0) -> float:
    """The largest ε for which (ε, δ)-DP is rejected by the f-DP audit at ``confidence`` (bisection to
    1e-6); 0 when even ε = 0 is not rejected."""
    if not (0 < confidence < 1):
        raise ValueError("confidence must be in (0, 1)")
    if r == 0:
        return 0.0
    tau = 1.0 - confidence

    def rejected(eps: float) -> bool:
        return not fdp_consistent(approx_dp_inverse_blow_up(eps, delta), m, r, v, tau)

    if not rejected(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    while rejected(hi):
        lo, hi = hi, 2 * hi
        if hi > epsilon_max:
            return epsilon_max
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        if rejected(mid):
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class BoundCandidate:
    """One (method, abstention threshold) test and its bound, at the Bonferroni-corrected confidence."""

    method: str
    guess_fraction: float
    guesses: int
    correct: int
    confidence: float
    epsilon_lower_bound: float


def candidate_bounds(scores: np.ndarray, inserted: np.ndarray, *, guess_fractions: Sequence[float],
                     methods: Sequence[str], confidence: float, delta: float) -> list[BoundCandidate]:
    """Every requested bound at every candidate abstention threshold, each at the Bonferroni-corrected
    confidence ``1 − (1 − confidence) / N`` so that their maximum holds at ``confidence``."""
    from govern.audits.canaries import epsilon_lower_bound, guess_membership

    fractions = list(dict.fromkeys(float(f) for f in guess_fractions))
    wanted = list(dict.fromkeys(methods))
    n_tests = len(fractions) * len(wanted)
    if n_tests == 0:
        raise ValueError("need at least one guess fraction and one method")
    per_test = confidence if n_tests == 1 else 1.0 - (1.0 - confidence) / n_tests
    m = len(scores)
    out: list[BoundCandidate] = []
    for fraction in fractions:
        g = guess_membership(scores, inserted, fraction)
        for method in wanted:
            if method == STEINKE:
                bound = epsilon_lower_bound(m, g.guesses, g.correct, delta=delta, confidence=per_test)
            elif method == FDP:
                bound = fdp_epsilon_lower_bound(m, g.guesses, g.correct, delta=delta, confidence=per_test)
            else:
                raise ValueError(f"unknown ε lower-bound method '{method}'")
            out.append(BoundCandidate(method=method, guess_fraction=fraction, guesses=g.guesses,
                                      correct=g.correct, confidence=per_test, epsilon_lower_bound=bound))
    return out
