"""Attack metrics: how well a membership score separates members from non-members.

ROC AUC with a bootstrap CI, and the **TPR at low FPR** (0.1 %, 1 % and any FPR the policy limits), as
Carlini et al. 2022 ("Membership Inference Attacks From First Principles") argue an attack must be
judged by how many members it identifies *confidently*. Every attack — loss, reference, Min-K%, zlib,
LiRA, RMIA — is judged by these same functions, so they are gated the same way.

TPR at FPR is measured at the ROC operating point with the largest empirical FPR ≤ the budget, with a
Clopper-Pearson interval on the TPR. The empirical FPR moves in steps of 1/n (n non-members): when the
budget allows no false positive at all, the number is the TPR at zero false positives, flagged
``resolvable: false`` and explained in ``notes`` — never passed off as a measurement at 0.1 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from govern.evidence import AttackResult, TprAtFpr

if TYPE_CHECKING:
    from govern.policy.schema import MembershipPolicy

#: FPR budgets always reported (Carlini et al. 2022); the policy may add more.
DEFAULT_FPRS: tuple[float, ...] = (0.001, 0.01)
ATTACK_DESCRIPTIONS = {
    "loss": "Loss threshold (Yeom et al. 2018): -loss of the fine-tuned model.",
    "reference": "Reference-calibrated: base-model loss minus fine-tuned loss on the same record.",
    "min_k": "Min-K% probability (Shi et al. 2023): mean log-prob of the k% least likely tokens.",
    "min_k_pp": "Min-K%++ (Zhang et al. 2024): Min-K% of token log-probs standardised by the model's own "
                "next-token distribution (mean and spread of log p).",
    "zlib": "zlib ratio (Carlini et al. 2021): -(log-perplexity / zlib-compressed length in bytes).",
    "lira": "Offline LiRA (Carlini et al. 2022): target confidence standardised against reference models "
            "trained without the record.",
    "rmia": "Offline RMIA (Zarifzadeh et al. 2024): share of population records whose likelihood ratio under the "
            "target versus reference models the record beats.",
}


def roc_points(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, tpr) of the rule "member iff score ≥ t" for every distinct score t, from (0, 0) to (1, 1)."""
    pos = np.asarray(member_scores, dtype=float)
    neg = np.asarray(nonmember_scores, dtype=float)
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    # count of scores ≥ t = n − (count < t)
    tp = len(pos) - np.searchsorted(pos_sorted, thresholds, side="left")
    fp = len(neg) - np.searchsorted(neg_sorted, thresholds, side="left")
    fpr = np.concatenate([[0.0], fp / len(neg)])
    tpr = np.concatenate([[0.0], tp / len(pos)])
    return fpr, tpr


def roc_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """P[score(member) > score(non-member)] + ½ P[tie] (Mann-Whitney U / (n·m))."""
    pos = np.asarray(member_scores, dtype=float)
    neg = np.asarray(nonmember_scores, dtype=float)
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def bootstrap_auc_ci(member_scores: np.ndarray, nonmember_scores: np.ndarray, *, resamples: int,
                     confidence: float = 0.95, seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of the AUC, resampling members and non-members separately."""
    if resamples <= 0:
        return None, None
    rng = np.random.default_rng(seed)
    pos = np.asarray(member_scores, dtype=float)
    neg = np.asarray(nonmember_scores, dtype=float)
    values = [roc_auc(rng.choice(pos, len(pos)), rng.choice(neg, len(neg))) for _ in range(resamples)]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial CI (Clopper & Pearson 1934)."""
    alpha = 1 - confidence
    low = 0.0 if successes == 0 else float(stats.beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return low, high


def tpr_at_fpr(member_scores: np.ndarray, nonmember_scores: np.ndarray, target_fpr: float,
               confidence: float = 0.95) -> TprAtFpr:
    """TPR at the ROC point with the largest empirical FPR ≤ ``target_fpr`` (the best threshold that
    respects the budget), with a Clopper-Pearson CI over the members. See the module docstring for
    what happens when the sample cannot resolve the budget."""
    pos = np.asarray(member_scores, dtype=float)
    neg = np.asarray(nonmember_scores, dtype=float)
    fpr, tpr = roc_points(pos, neg)
    admissible = fpr <= target_fpr + 1e-12
    best = int(np.flatnonzero(admissible)[np.argmax(tpr[admissible])])
    true_positives = int(round(tpr[best] * len(pos)))
    low, high = clopper_pearson(true_positives, len(pos), confidence)
    allowed = int(math.floor(target_fpr * len(neg) + 1e-9))
    return TprAtFpr(fpr=target_fpr, tpr=float(tpr[best]), ci_low=low, ci_high=high,
                    achieved_fpr=float(fpr[best]), max_false_positives=allowed, resolvable=allowed >= 1)


def downsample_roc(fpr: np.ndarray, tpr: np.ndarray, max_points: int = 100) -> list[tuple[float, float]]:
    """At most ``max_points`` ROC points for plotting, log-spaced in FPR (so the low-FPR region a
    log-log ROC plot shows stays detailed), each the best TPR at FPR ≤ the grid value."""
    if len(fpr) <= max_points:
        return [(float(f), float(t)) for f, t in zip(fpr, tpr, strict=True)]
    positive = fpr[fpr > 0]
    smallest = float(positive.min()) if len(positive) else 1.0
    grid = np.unique(np.concatenate([[0.0], np.geomspace(smallest, 1.0, max_points - 1)]))
    points: list[tuple[float, float]] = [(0.0, 0.0)]
    for g in grid:
        mask = fpr <= g + 1e-12
        i = int(np.flatnonzero(mask)[np.argmax(tpr[mask])])
        point = (float(fpr[i]), float(tpr[i]))
        if not points or point != points[-1]:
            points.append(point)
    if points[-1] != (1.0, 1.0):
        points.append((1.0, 1.0))
    return points


def evaluate_attack(name: str, member_scores: np.ndarray, nonmember_scores: np.ndarray, *,
                    fprs: Sequence[float] = DEFAULT_FPRS, bootstrap: int = 200, seed: int = 0,
                    confidence: float = 0.95) -> AttackResult:
    """All metrics of one attack from its member and non-member scores (higher = member)."""
    pos = np.asarray(member_scores, dtype=float)
    neg = np.asarray(nonmember_scores, dtype=float)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("an attack needs at least one member and one non-member score")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError(f"attack '{name}' produced non-finite scores")
    low, high = bootstrap_auc_ci(pos, neg, resamples=bootstrap, confidence=confidence, seed=seed)
    fpr, tpr = roc_points(pos, neg)
    return AttackResult(
        name=name, auc=roc_auc(pos, neg), auc_ci_low=low, auc_ci_high=high,
        tpr_at_fpr=[tpr_at_fpr(pos, neg, f, confidence) for f in sorted(set(fprs))],
        roc=downsample_roc(fpr, tpr), description=ATTACK_DESCRIPTIONS.get(name, ""),
        n_members=len(pos), n_nonmembers=len(neg),
    )



def fprs_for(policy: MembershipPolicy) -> list[float]:
    return sorted({*DEFAULT_FPRS, *(limit.fpr for limit in policy.max_tpr_at_fpr)})


def resolution_notes(n_nonmembers: int, fprs: Sequence[float]) -> list[str]:
    notes = []
    for f in fprs:
        if f * n_nonmembers < 1:
            notes.append(
                f"FPR {f:g} is below 1/{n_nonmembers} (the smallest non-zero FPR with {n_nonmembers} non-members): "
                f"its TPR is measured at zero false positives; about {math.ceil(1 / f)} non-members resolve it"
            )
    return notes

