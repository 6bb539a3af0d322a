"""Offline LiRA (Carlini et al. 2022, "Membership Inference Attacks From First Principles", §VI-C).

The loss attack asks "is the model confident on this record?"; LiRA asks "is it *more* confident than
models that never saw this record?". Some records are easy for any model, others hard for all; the
reference models measure that per record, so LiRA finds members the loss attack cannot tell from easy
non-members — especially at low FPR, where the paper shows it matters.

How govern runs it:

* **reference models** (``k`` = ``membership.lira.reference_models``) are trained with the target's own
  recipe — the training stage's :class:`~govern.training.trainer.TrainingSpec`: same base model,
  method, hyper-parameters and DP settings; only the data and the seed differ — on random halves of the
  *held-out* pool. They never see a training record, so every audit member is OUT of every reference
  model (offline LiRA). Each held-out record is in exactly ⌊k/2⌋ models (the paper's balanced design),
  so it is OUT of ⌈k/2⌉ of them;
* each record's confidence is the logit-scaled probability of its label, φ(p) = log p − log(1 − p),
  p = exp(−loss) — the scaling under which the paper finds the OUT distribution close to Gaussian;
* per record, the OUT Gaussian's mean is the mean φ over the models it was OUT of; the variance is
  *pooled over all records* (the paper's fixed-variance variant, recommended for few reference
  models) unless every record has at least :data:`PER_RECORD_VARIANCE_MIN_OUT` OUT models;
* the score is the standardised target confidence z = (φ_target − μ_out) / σ_out. The paper's offline
  test statistic Φ(z) is a monotone function of it, so AUC and TPR@FPR are the same; z stays finite.

The reference models and their data copies live in a temporary folder that is deleted after scoring:
they are audit instruments, never artifacts.

Why hand-written: the LiRA reference code (tensorflow/privacy, privacy_meter) trains its own models
and expects its own array layout; the statistics here are a few lines on top of govern's trainer.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from govern.errors import StageError

STAGE = "membership"
#: Below this many OUT models per record, one variance pooled over all records (Carlini et al. 2022
#: use a global variance when there are few shadow models; per-record estimates from 2–4 values are noise).
PER_RECORD_VARIANCE_MIN_OUT = 32
#: Smallest held-out pool that gives every reference model a usable half.
MIN_POOL = 4


def logit_confidence(loss: np.ndarray) -> np.ndarray:
    """φ(p) = log(p / (1 − p)) with p = exp(−loss), computed stably from the loss.

    log(1 − p) = log(−expm1(−loss)); a loss of exactly 0 is clipped to 1e-30 so φ stays finite (≈ 69)."""
    loss = np.clip(np.asarray(loss, dtype=float), 1e-30, None)
    return -loss - np.log(-np.expm1(-loss))


def balanced_inclusion(n_pool: int, k: int, seed: int) -> np.ndarray:
    """(k, n_pool) boolean matrix: record j trains reference model i. Every record is in exactly ⌊k/2⌋
    models (as in the LiRA reference code: per record, a random order of the models, the first half)."""
    if k < 2:
        raise ValueError("offline LiRA needs at least 2 reference models")
    rng = np.random.default_rng(seed)
    order = rng.random((k, n_pool)).argsort(axis=0).argsort(axis=0)
    return order < k // 2


def offline_lira_scores(target_conf: np.ndarray, reference_conf: np.ndarray, out_mask: np.ndarray, *,
                        per_record_variance: bool | None = None) -> tuple[np.ndarray, str]:
    """z = (φ_target − μ_out) / σ_out per record, and which variance was used (``global``/``per-record``).

    ``reference_conf`` and ``out_mask`` are (k, n): φ of each record under each reference model, and
    whether that model was trained without the record. ``per_record_variance=None`` chooses per-record
    variances only when every record has ≥ :data:`PER_RECORD_VARIANCE_MIN_OUT` OUT models."""
    target = np.asarray(target_conf, dtype=float)
    conf = np.asarray(reference_conf, dtype=float)
    mask = np.asarray(out_mask, dtype=bool)
    if conf.shape != mask.shape or conf.ndim != 2 or conf.shape[1] != target.shape[0]:
        raise ValueError("reference_conf and out_mask must be (k, n) with n = len(target_conf)")
    counts = mask.sum(axis=0)
    if (counts == 0).any():
        raise ValueError(f"{int((counts == 0).sum())} record(s) are IN every reference model: no OUT distribution")
    mu = np.where(mask, conf, 0.0).sum(axis=0) / counts
    residual_sq = np.where(mask, (conf - mu) ** 2, 0.0)
    dof = counts.sum() - len(counts)
    pooled = residual_sq.sum() / dof if dof > 0 else 0.0
    if per_record_variance is None:
        per_record_variance = bool(counts.min() >= PER_RECORD_VARIANCE_MIN_OUT)
    if per_record_variance:
        var = np.where(counts > 1, residual_sq.sum(axis=0) / np.maximum(counts - 1, 1), pooled)
        kind = "per-record"
    else:
        var = np.full(len(counts), pooled)
        kind = "global"
    # A floor: k identical reference models (σ = 0) must still rank by the mean, not divide by zero.
    sigma = np.sqrt(np.maximum(var, 1e-12))
    return (target - mu) / sigma, kind


@dataclass
class ReferenceRun:
    """φ of every record set under every reference model, and what was trained."""

    confidences: dict[str, np.ndarray]  # set name → (k, n_set)
    inclusion: np.ndarray  # (k, n_pool)
    records_per_model: list[int]
    seeds: list[int]
    epsilons: list[float]  # the accountant's ε of each reference model (empty for non-private recipes)
    dp: bool
    duration_s: float


def train_reference_models(spec: Any, pool: Sequence[Mapping[str, Any]], *, k: int, seed: int,
                           score: Callable[[Any], Mapping[str, np.ndarray]], work_dir: Path,
                           progress: Any = None) -> ReferenceRun:
    """Train ``k`` reference models with ``spec``'s recipe on balanced halves of ``pool`` (held-out
    records) and return ``score(model)`` (record-set name → per-record loss) for each, as φ.

    One model at a time is trained, scored and deleted, so memory holds one reference model. Training
    runs in this process only (``single_process``), also when the run itself was under torchrun."""
    from govern.training.trainer import DataFile, train

    if len(pool) < MIN_POOL:
        raise StageError(STAGE, f"offline LiRA needs at least {MIN_POOL} held-out records to train reference "
                                f"models on; the evaluation set has {len(pool)}")
    started = time.perf_counter()
    inclusion = balanced_inclusion(len(pool), k, seed)
    confidences: dict[str, list[np.ndarray]] = {}
    epsilons: list[float] = []
    seeds: list[int] = []
    work_dir.mkdir(parents=True, exist_ok=True)
    bar = progress.task("LiRA reference models", total=k, unit="models") if progress is not None else None
    tmp = Path(tempfile.mkdtemp(prefix="lira-", dir=work_dir))
    try:
        for i in range(k):
            folder = tmp / f"reference-{i}"
            folder.mkdir()
            data = folder / "train.jsonl"
            with open(data, "w", encoding="utf-8") as fh:
                for j in np.flatnonzero(inclusion[i]):
                    fh.write(json.dumps(pool[int(j)], default=str) + "\n")
            model_seed = seed * 1_000 + i + 1
            seeds.append(model_seed)
            training = spec.training.model_copy(update={"seed": model_seed, "checkpoint_every": None,
                                                        "merge_adapter": False})
            ref_spec = spec.model_copy(update={
                "train_files": [DataFile(path=str(data), format="jsonl", role="lira-reference")],
                "output_dir": str(folder / "out"), "training": training})
            outcome = train(ref_spec, single_process=True)
            ev = outcome.evidence
            if ev.dp_enabled and ev.epsilon:
                epsilons.append(float(ev.epsilon.get(ev.accountant or "", max(ev.epsilon.values()))))
            for name, losses in score(outcome.model).items():
                confidences.setdefault(name, []).append(logit_confidence(losses))
            del outcome
            shutil.rmtree(folder, ignore_errors=True)
            if bar is not None:
                bar.advance(1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if bar is not None:
            bar.close()
    return ReferenceRun(confidences={n: np.stack(v) for n, v in confidences.items()}, inclusion=inclusion,
                        records_per_model=[int(c) for c in inclusion.sum(axis=1)], seeds=seeds, epsilons=epsilons,
                        dp=bool(spec.training.dp.enabled), duration_s=time.perf_counter() - started)
