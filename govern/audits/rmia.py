"""Offline RMIA (Zarifzadeh, Liu & Shokri, ICML 2024, "Low-Cost High-Power Membership Inference Attacks").

LiRA asks whether the target is more confident on a record than models that never saw it, in logit
space with a Gaussian fit; with few reference models that fit is poor. RMIA compares *likelihood
ratios*: for a record x and a population record z (a non-member),

    LR(x, z) = [p(x | θ) / p(x)] / [p(z | θ) / p(z)]

where p(· | θ) is the target's probability of the record's label (for causal LMs, exp(−mean NLL)) and
p(·) its average over reference models. The score of x is the fraction of population records it
dominates, Pr_z[LR(x, z) > γ]. It works in probability space, where a record every model finds easy
(p ≈ 1 under all of them) gives a ratio near 1 instead of a large, noisy logit difference.

Offline: the reference models are LiRA's (:mod:`govern.audits.lira`: same recipe, subsets of the
held-out pool), so RMIA adds no training. They were trained *without* most records, so p(x), the
average over IN and OUT models alike, is approximated from the OUT average with the paper's
correction, ``p(x) ≈ ½(1 + a)·p_OUT(x) + ½(1 − a)``; a record with no OUT model (one reference model)
takes its IN signal back through ``p_OUT ≈ (p_IN + a − 1)/a``. The correction factor ``a`` is chosen as
the paper's reference code does (privacytrustlab/ml_privacy_meter): attack one reference model with
the others for every a in 0, 0.1, …, 1 and keep the one with the highest AUC — reference models only,
never the target's membership. With one reference model there is nothing to attack, and the default
:data:`DEFAULT_OFFLINE_A` (the reference code's) is used; the evidence records which.

Population: the audited non-members (records the target never saw), each compared with the others
(itself left out). With one shared population the score orders records as p(x | θ)/p(x) does; the
fraction is what the paper reports, and ties on its 1/|Z| grid are broken by that ratio.
"""

from __future__ import annotations

import math

import numpy as np

#: The reference code's default correction factor, used when it cannot be tuned (one reference model).
DEFAULT_OFFLINE_A = 0.3
#: Candidate correction factors tried when tuning (the reference code's grid).
A_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))


def label_probability(loss: np.ndarray) -> np.ndarray:
    """p = exp(−loss): the probability of the record's label (geometric mean per token for causal LMs)."""
    out: np.ndarray = np.exp(-np.asarray(loss, dtype=float))
    return out


def offline_marginal(reference_prob: np.ndarray, out_mask: np.ndarray, a: float) -> np.ndarray:
    """p(x) per record from the reference models: the mean over the models x was OUT of, corrected by
    ``a`` for the missing IN models; records with no OUT model use their IN signals, inverted."""
    probs = np.asarray(reference_prob, dtype=float)
    out = np.asarray(out_mask, dtype=bool)
    if probs.shape != out.shape or probs.ndim != 2:
        raise ValueError("reference_prob and out_mask must both be (k, n)")
    if not 0 <= a <= 1:
        raise ValueError(f"the offline correction factor must be in [0, 1], got {a}")
    n_out = out.sum(axis=0)
    mean_out = np.where(out, probs, 0.0).sum(axis=0) / np.maximum(n_out, 1)
    if (n_out == 0).any():
        # (1 + a)/2 · p_out + (1 − a)/2 = (p_out + p_in)/2  ⇒  p_out = (p_in + a − 1)/a
        inverted = (probs + a - 1.0) / a if a > 0 else (probs - 0.7) / 0.3
        n_in = (~out).sum(axis=0)
        mean_in = np.where(~out, inverted, 0.0).sum(axis=0) / np.maximum(n_in, 1)
        mean_out = np.where(n_out > 0, mean_out, mean_in)
    marginal: np.ndarray = (1.0 + a) / 2.0 * mean_out + (1.0 - a) / 2.0
    return marginal


def log_ratio(target_prob: np.ndarray, reference_prob: np.ndarray, out_mask: np.ndarray, a: float) -> np.ndarray:
    """log p(x | θ) − log p(x): the per-record half of RMIA's pairwise likelihood ratio."""
    marginal = np.clip(offline_marginal(reference_prob, out_mask, a), 1e-300, None)
    ratio: np.ndarray = np.log(np.clip(np.asarray(target_prob, dtype=float), 1e-300, None)) - np.log(marginal)
    return ratio


def rmia_scores(target_prob: np.ndarray, reference_prob: np.ndarray, out_mask: np.ndarray,
                population: np.ndarray, *, a: float, gamma: float = 1.0) -> np.ndarray:
    """Pr_z[LR(x, z) > γ] for every record x, over the ``population`` records (indices into the same
    arrays, each compared with the others only), plus a tie-break below the 1/|Z| grid by log LR(x)."""
    if gamma < 1:
        raise ValueError("γ must be ≥ 1 (a record must beat a population record by that factor)")
    lr = log_ratio(target_prob, reference_prob, out_mask, a)
    pop = np.asarray(population, dtype=int)
    if len(pop) < 2:
        raise ValueError("RMIA needs at least 2 population records")
    z_sorted = np.sort(lr[pop])
    # z with LR(x, z) > γ  ⇔  lr_z < lr_x − log γ; for γ ≥ 1 a record never counts itself.
    counts = np.searchsorted(z_sorted, lr - math.log(gamma), side="left").astype(float)
    in_pop = np.zeros(len(lr), dtype=bool)
    in_pop[pop] = True
    fraction = counts / np.where(in_pop, len(pop) - 1, len(pop))
    ranks = np.argsort(np.argsort(lr, kind="stable"), kind="stable") / max(len(lr), 1)
    scores: np.ndarray = fraction + ranks / (2.0 * len(pop))
    return scores


def tune_offline_a(reference_prob: np.ndarray, inclusion: np.ndarray) -> float | None:
    """The correction factor with the highest AUC when reference model 0 is attacked with the others
    (the reference code's procedure), over records whose inclusion in every reference model is known.
    ``None`` with fewer than 2 reference models or without both IN and OUT records for model 0."""
    from govern.audits.attack_metrics import roc_auc

    probs = np.asarray(reference_prob, dtype=float)
    inc = np.asarray(inclusion, dtype=bool)
    if probs.shape[0] < 2 or probs.shape != inc.shape:
        return None
    pseudo_member = inc[0]
    population = np.flatnonzero(~pseudo_member)
    if pseudo_member.sum() < 1 or len(population) < 2:
        return None
    best_a, best_auc = DEFAULT_OFFLINE_A, -1.0
    for a in A_GRID:
        scores = rmia_scores(probs[0], probs[1:], ~inc[1:], population, a=a)
        auc = roc_auc(scores[pseudo_member], scores[~pseudo_member])
        if auc > best_auc + 1e-12:
            best_a, best_auc = a, auc
    return best_a
