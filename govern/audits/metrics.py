"""Task metrics on the held-out set: what the model is worth before asking whether it is fair or private.

Classification: accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix
(scikit-learn), plus calibration — the expected calibration error (ECE) and the reliability diagram's
data. Causal LM: mean loss and perplexity.

Calibration choices (recorded in the evidence so a reader can reproduce the number):
top-label ECE (the confidence is the highest class probability, correct means the arg-max is the
true class), ``n_bins`` equal-width bins over [0, 1] with right-closed edges ``(lo, hi]`` (the first
bin also holds 0), ``ECE = Σ_b (n_b / n) · |accuracy_b − confidence_b|``. Empty bins contribute
nothing and are left out of the reliability data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from govern.errors import DataError
from govern.evidence import EvaluationEvidence

DEFAULT_ECE_BINS = 15
ECE_METHOD = "top-label confidence, equal-width bins (lo, hi] over [0, 1]"


def calibration_bins(confidence: np.ndarray, correct: np.ndarray, n_bins: int = DEFAULT_ECE_BINS
                     ) -> tuple[float, list[dict[str, float]]]:
    """(ECE, reliability rows). Each row: bin edges, count, mean confidence, accuracy, and the gap."""
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    n = confidence.size
    if n == 0:
        return 0.0, []
    # Right-closed bins: ceil(c·B) − 1, so c = 0.2 with 5 bins is in (0.0, 0.2], and 0 goes to bin 0.
    index = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(index, weights=correct, minlength=n_bins)
    ece = 0.0
    rows: list[dict[str, float]] = []
    for b in range(n_bins):
        if counts[b] == 0:
            continue
        mean_conf = conf_sum[b] / counts[b]
        accuracy = correct_sum[b] / counts[b]
        ece += counts[b] / n * abs(accuracy - mean_conf)
        rows.append({"bin_low": b / n_bins, "bin_high": (b + 1) / n_bins, "count": float(counts[b]),
                     "confidence": float(mean_conf), "accuracy": float(accuracy),
                     "gap": float(accuracy - mean_conf)})
    return float(ece), rows


def classification_metrics(y_true: Sequence[int] | np.ndarray, probabilities: np.ndarray,
                           label_names: Sequence[str], *, n_bins: int = DEFAULT_ECE_BINS,
                           source: str = "<eval>") -> EvaluationEvidence:
    """Metrics for class indices ``y_true`` and probabilities ``[n, K]`` (columns = ``label_names``)."""
    y = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(probabilities, dtype=np.float64)
    k = len(label_names)
    if proba.ndim != 2 or proba.shape[1] != k:
        raise DataError(source, f"probabilities have shape {proba.shape}, expected (n, {k}) for {k} classes")
    if proba.shape[0] != y.shape[0]:
        raise DataError(source, f"{proba.shape[0]} predictions but {y.shape[0]} labels")
    if y.size == 0:
        raise DataError(source, "no records to evaluate")
    if y.min() < 0 or y.max() >= k:
        raise DataError(source, "label index outside the model's classes")
    pred = proba.argmax(axis=1)
    classes = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    ece, rows = calibration_bins(proba.max(axis=1), pred == y, n_bins)
    return EvaluationEvidence(
        task="classification",
        n=int(y.size),
        accuracy=float(np.mean(pred == y)),
        macro_f1=float(f1_score(y, pred, labels=classes, average="macro", zero_division=0)),
        per_class={
            str(name): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": float(support[i])}
            for i, name in enumerate(label_names)
        },
        labels=[str(n) for n in label_names],
        confusion_matrix=confusion_matrix(y, pred, labels=classes).tolist(),
        ece=ece,
        ece_bins=n_bins,
        ece_method=ECE_METHOD,
        reliability=rows,
    )


def causal_lm_metrics(losses: Sequence[float] | np.ndarray, tokens: Sequence[int] | np.ndarray | None = None,
                      *, source: str = "<eval>") -> EvaluationEvidence:
    """Mean loss and perplexity. With per-record token counts the mean is over tokens (the usual
    corpus perplexity); without, over records."""
    loss = np.asarray(losses, dtype=np.float64)
    if loss.size == 0:
        raise DataError(source, "no records to evaluate")
    if not np.all(np.isfinite(loss)):
        raise DataError(source, f"loss is not finite for record {int(np.flatnonzero(~np.isfinite(loss))[0])}")
    if tokens is not None:
        weight = np.asarray(tokens, dtype=np.float64)
        if weight.shape != loss.shape:
            raise DataError(source, f"{weight.size} token counts for {loss.size} losses")
        total = float(weight.sum())
        mean = float(np.dot(loss, weight) / total) if total > 0 else float(loss.mean())
    else:
        total, mean = None, float(loss.mean())
    return EvaluationEvidence(
        task="causal-lm",
        n=int(loss.size),
        loss=mean,
        perplexity=math.exp(mean) if mean < 700 else None,  # beyond float range: loss says it
        tokens=None if total is None else int(total),
    )
