"""Offline LiRA (Carlini et al. 2022, "Membership Inference Attacks From First Principles", §VI-C).

The loss attack asks "is the model confident on this record?"; LiRA asks "is it *more* confident than
models that never saw this record?". Some records are easy for any model, others hard for all; the
reference models measure that per record, so LiRA finds members the loss attack cannot tell from easy
non-members — especially at low FPR, where the paper shows it matters.

How govern runs it:

* **reference models** (``k`` = ``membership.lira.reference_models``) are trained with the target's own
  recipe — the training stage's :class:`~govern.training.trainer.TrainingSpec`: same base model,
  method, batch size, learning rate and clipping — pinned to the target's number of optimizer steps and
  noise multiplier σ, so they are trained *as* the target was (the spec alone would re-solve σ and the
  step count for their smaller data set and give systematically weaker models, whose OUT confidences
  would be too low). Only the data and the seed differ: random subsets of the *held-out* pool, each
  record in exactly ⌊k/2⌋ models (the paper's balanced design; halves for even k). They never see a
  training record (offline LiRA);
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
import math
import os
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
#: Fewest records any reference model may be trained on (a model on nothing cannot be trained).
MIN_RECORDS_PER_MODEL = 2
#: Fewest reference models: with 2, each record has one OUT model and no variance can be estimated.
MIN_MODELS = 3


def logit_confidence(loss: np.ndarray) -> np.ndarray:
    """φ(p) = log(p / (1 − p)) with p = exp(−loss), computed stably from the loss.

    log(1 − p) = log(−expm1(−loss)); a loss of exactly 0 is clipped to 1e-30 so φ stays finite (≈ 69)."""
    loss = np.clip(np.asarray(loss, dtype=float), 1e-30, None)
    phi: np.ndarray = -loss - np.log(-np.expm1(-loss))
    return phi


def balanced_inclusion(n_pool: int, k: int, seed: int) -> np.ndarray:
    """(k, n_pool) boolean matrix: record j trains reference model i. Every record is in exactly ⌊k/2⌋
    models (as in the LiRA reference code: per record, a random order of the models, the first half)."""
    if k < 2:
        raise ValueError("a balanced design needs at least 2 models")
    rng = np.random.default_rng(seed)
    order = rng.random((k, n_pool)).argsort(axis=0).argsort(axis=0)
    return order < k // 2


def reference_design(n_pool: int, k: int, seed: int, *, min_models: int = MIN_MODELS) -> np.ndarray:
    """:func:`balanced_inclusion` in which every model gets ≥ :data:`MIN_RECORDS_PER_MODEL` records
    (redrawn, deterministically, when a small pool leaves one short); a clear error when the pool is
    too small for ``k`` models at all. ``min_models``: LiRA needs 3 (a variance); RMIA works with 1,
    whose one model is trained on a random half of the pool."""
    needed = math.ceil(MIN_RECORDS_PER_MODEL * k / max(k // 2, 1))
    attack = "offline LiRA" if min_models >= MIN_MODELS else "offline RMIA"
    if k < min_models or n_pool < needed:
        raise StageError(STAGE, f"{attack} with {k} reference models needs k ≥ {min_models} and at least "
                                f"{max(needed, 1)} held-out records; the evaluation set has {n_pool}")
    for attempt in range(100):
        inclusion = design(n_pool, k, seed + 7919 * attempt)
        if inclusion.sum(axis=1).min() >= MIN_RECORDS_PER_MODEL:
            return inclusion
    raise StageError(STAGE, f"could not give each of {k} reference models {MIN_RECORDS_PER_MODEL} of the "
                            f"{n_pool} held-out records; use fewer reference models or a larger evaluation set")


def design(n: int, k: int, seed: int) -> np.ndarray:
    """:func:`balanced_inclusion` for k ≥ 2; for one model, a random half (each record IN with
    probability ½), so RMIA's one reference model still sees about half the pool."""
    if k == 1:
        return np.random.default_rng(seed).random((1, n)) < 0.5
    return balanced_inclusion(n, k, seed)


def variance_kind(out_counts: np.ndarray) -> str:
    """``per-record`` when every record has ≥ :data:`PER_RECORD_VARIANCE_MIN_OUT` OUT models, else ``global``."""
    return "per-record" if int(np.min(out_counts)) >= PER_RECORD_VARIANCE_MIN_OUT else "global"


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
        per_record_variance = variance_kind(counts) == "per-record"
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
    steps: list[int]  # optimizer steps each reference model took
    noise_multiplier: float | None


def train_reference_models(spec: Any, pool: Sequence[Mapping[str, Any]], *, k: int, seed: int,
                           score: Callable[[Any], Mapping[str, np.ndarray]], work_dir: Path,
                           steps: int | None = None, noise_multiplier: float | None = None,
                           progress: Any = None, min_models: int = MIN_MODELS) -> ReferenceRun:
    """Train ``k`` reference models with ``spec``'s recipe on balanced subsets of ``pool`` (held-out
    records, already validated by the caller) and return ``score(model)`` (record-set name →
    per-record loss) for each, as φ. ``steps`` and ``noise_multiplier``: the target's, pinned.

    One model at a time is trained, scored and deleted, so memory holds one reference model. Training
    runs in this process only (``single_process``), also when the run itself was under torchrun."""
    from govern.errors import GovernError
    from govern.training.trainer import DataFile, train

    started = time.perf_counter()
    inclusion = reference_design(len(pool), k, seed, min_models=min_models)
    confidences: dict[str, list[np.ndarray]] = {}
    epsilons: list[float] = []
    seeds: list[int] = []
    steps_taken: list[int] = []
    work_dir.mkdir(parents=True, exist_ok=True)
    for stale in work_dir.glob("lira-*"):  # left by a killed run: held-out copies must not linger
        shutil.rmtree(stale, ignore_errors=True)
    updates: dict[str, Any] = {"checkpoint_every": None, "merge_adapter": False}
    if steps is not None:
        updates["max_steps"] = int(steps)
    if noise_multiplier is not None and spec.training.dp.enabled:
        updates["dp"] = spec.training.dp.model_copy(update={"noise_multiplier": float(noise_multiplier),
                                                            "target_epsilon": None})
    bar = progress.task("reference models", total=k, unit="models") if progress is not None else None
    tmp = Path(tempfile.mkdtemp(prefix="lira-", dir=work_dir))  # mode 0700
    try:
        for i in range(k):
            folder = tmp / f"reference-{i}"
            folder.mkdir()
            data = folder / "train.jsonl"
            with open(os.open(data, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as fh:
                for j in np.flatnonzero(inclusion[i]):
                    fh.write(json.dumps(pool[int(j)], default=str) + "\n")
            model_seed = seed * 1_000 + i + 1
            seeds.append(model_seed)
            training = spec.training.model_copy(update={**updates, "seed": model_seed})
            ref_spec = spec.model_copy(update={
                "train_files": [DataFile(path=str(data), format="jsonl", role="lira-reference")],
                "output_dir": str(folder / "out"), "training": training})
            try:
                outcome = train(ref_spec, single_process=True)
            except GovernError as exc:
                raise StageError(STAGE, f"LiRA reference model {i + 1} of {k} could not be trained: {exc}") from exc
            ev = outcome.evidence
            steps_taken.append(int(ev.steps))
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
                        dp=bool(spec.training.dp.enabled), duration_s=time.perf_counter() - started,
                        steps=steps_taken, noise_multiplier=noise_multiplier if spec.training.dp.enabled else None)
