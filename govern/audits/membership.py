"""Membership-inference audit: how much does the fine-tuned model give away about its training records?

The audit attacks the model the way the privacy literature does and reports the standard numbers:

* **members** are training records, **non-members** held-out records of the same distribution, sampled
  to equal sizes with a fixed seed;
* every attack gives each record a score, *higher = "more likely a member"*:

  - ``loss`` (Yeom et al. 2018): minus the model's loss on the record;
  - ``reference`` (reference-calibrated, Watson et al. 2022 / Mireshghallah et al. 2022): the base
    (pre-fine-tune) model's loss minus the fine-tuned model's loss. It removes how hard a record is
    *in general*, leaving what the fine-tune learned about it — cheap and strong for fine-tunes;
  - causal LMs also get ``min_k`` (Min-K% probability, Shi et al. 2023: the mean log-probability of the
    k% least likely tokens) and ``zlib`` (Carlini et al. 2021: minus the ratio of the log-perplexity to
    the zlib-compressed length);

* metrics: ROC AUC with a bootstrap CI, and the **TPR at low FPR** (0.1 %, 1 % and any FPR the policy
  limits), as Carlini et al. 2022 ("Membership Inference Attacks From First Principles") argue an
  attack must be judged by how many members it identifies *confidently*.

TPR at FPR is measured at the ROC operating point with the largest empirical FPR ≤ the budget, with a
Clopper-Pearson interval on the TPR. The empirical FPR moves in steps of 1/n (n non-members): when the
budget allows no false positive at all, the number is the TPR at zero false positives, flagged
``resolvable: false`` and explained in ``notes`` — never passed off as a measurement at 0.1 %.

With ``membership.lira.enabled`` the stage adds **offline LiRA** (Carlini et al. 2022): reference models
trained with the run's own recipe on halves of the held-out set give each record an OUT distribution,
and the score is the target's confidence standardised against it (:mod:`govern.audits.lira`). LiRA
needs the training recipe, so it runs in ``govern run`` only; the standalone audit refuses it with a
clear error rather than silently skipping it.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from govern.audits.canaries import (
    audit_canaries,
    canary_id,
    exposure,
    random_secret,
    read_inserted_ids,
    split_secret,
)
from govern.devices import pick_device
from govern.errors import DataError, StageError
from govern.evidence import AttackResult, CanaryAudit, LiraDetails, MembershipEvidence, TprAtFpr
from govern.stage import (
    CanaryFiles,
    StageContext,
    StageOutputs,
    StageResult,
    digest_of,
    judged_model_digest,
    trained_model_digest,
)

if TYPE_CHECKING:
    from govern.policy.schema import MembershipPolicy

STAGE = "membership"
#: FPR budgets always reported (Carlini et al. 2022); the policy may add more.
DEFAULT_FPRS: tuple[float, ...] = (0.001, 0.01)
ATTACK_DESCRIPTIONS = {
    "loss": "Loss threshold (Yeom et al. 2018): -loss of the fine-tuned model.",
    "reference": "Reference-calibrated: base-model loss minus fine-tuned loss on the same record.",
    "min_k": "Min-K% probability (Shi et al. 2023): mean log-prob of the k% least likely tokens.",
    "zlib": "zlib ratio (Carlini et al. 2021): -(log-perplexity / zlib-compressed length in bytes).",
    "lira": "Offline LiRA (Carlini et al. 2022): target confidence standardised against reference models "
            "trained without the record.",
}
CAUSAL_ONLY = ("min_k", "zlib")


# ============================================================================================ metrics
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


def min_k_score(token_logprobs: np.ndarray, k: float = 0.2) -> float:
    """Min-K% probability: mean of the ⌈k·T⌉ lowest token log-probabilities (higher = member)."""
    lp = np.sort(np.asarray(token_logprobs, dtype=float))
    if len(lp) == 0:
        return 0.0
    return float(lp[: max(1, math.ceil(k * len(lp)))].mean())


def zlib_score(mean_nll: float, text: str) -> float:
    """−(log-perplexity / zlib entropy): a record the model finds far easier than zlib does scores high."""
    return -mean_nll / max(1, len(zlib.compress(text.encode("utf-8"))))


# ============================================================================================ scoring
def default_device() -> str:
    return pick_device("auto")


@dataclass
class AuditRecords:
    """What the scorer needs of each record: text (or prompt + completion) and the label index."""

    texts: list[str]
    prompts: list[str] | None = None
    label_ids: list[int] | None = None
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def full_texts(self) -> list[str]:
        if self.prompts is None:
            return self.texts
        return [p + t for p, t in zip(self.prompts, self.texts, strict=True)]


@dataclass
class RecordScores:
    loss: np.ndarray
    token_logprobs: list[np.ndarray] | None = None


@dataclass
class LiraInput:
    """The reference models' view of a record set: φ per (model, record) and which models were OUT."""

    confidences: np.ndarray  # (k, n)
    out_mask: np.ndarray  # (k, n)


def _encode(records: AuditRecords, tokenizer: Any, task: str, max_length: int) -> list[Any]:
    """Tokenise exactly as training did (:func:`govern.training.encoding.encode_records`: same special
    tokens, same EOS, loss on the completion only), so the audit scores what the model was trained on."""
    from govern.training.encoding import Columns, encode_records

    if task == "classification":
        rows = [{"text": t, "label": str(i)} for t, i in zip(records.texts, records.label_ids or [], strict=True)]
        names = [str(i) for i in range(max(records.label_ids or [0]) + 1)]
        return encode_records(rows, tokenizer, task=task, columns=Columns(text="text", label="label"),
                              label_names=names, max_length=max_length)
    if records.prompts is not None:
        rows = [{"prompt": p, "completion": t} for p, t in zip(records.prompts, records.texts, strict=True)]
        columns = Columns(text="text", label=None, prompt="prompt", completion="completion")
    else:
        rows = [{"text": t} for t in records.texts]
        columns = Columns(text="text", label=None)
    return encode_records(rows, tokenizer, task=task, columns=columns, label_names=None, max_length=max_length)


def score_records(model: Any, tokenizer: Any, records: AuditRecords, *, task: str, batch_size: int = 32,
                  max_length: int = 128, device: str | None = None) -> RecordScores:
    """Per-record loss (and, for causal LMs, per-token log-probabilities) under ``model``.

    Classification: cross-entropy of the true label. Causal LM: mean negative log-likelihood of the
    scored tokens (the completion only when a prompt is given, as in training). Records are batched
    by length so padding stays small; the result is in the input order.
    """
    import torch

    from govern.training.encoding import IGNORE_INDEX, collate

    device = device or default_device()
    model.to(device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples = _encode(records, tokenizer, task, max_length)
    n = len(examples)
    losses = np.zeros(n, dtype=float)
    token_lps: list[np.ndarray] = [np.zeros(0)] * n
    order = np.argsort([len(e.input_ids) for e in examples], kind="stable")
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            idx = order[start: start + batch_size]
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in idx], tokenizer.pad_token_id,
                                                         task).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            if task == "classification":
                nll = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
                losses[idx] = nll.cpu().numpy()
                continue
            labels = batch["labels"][:, 1:]
            mask = labels != IGNORE_INDEX
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            tok_lp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            for row, i in enumerate(idx):
                values = tok_lp[row][mask[row]].cpu().numpy().astype(float)
                token_lps[i] = values
                losses[i] = float(-values.mean()) if len(values) else 0.0
    return RecordScores(loss=losses, token_logprobs=token_lps if task != "classification" else None)


def attack_scores(attacks: Sequence[str], *, task: str, target: RecordScores, base: RecordScores | None,
                  texts: Sequence[str], min_k_fraction: float = 0.2,
                  lira: LiraInput | None = None) -> dict[str, np.ndarray]:
    """Scores (higher = member) of each requested attack; ``reference`` needs the base model's scores,
    ``lira`` the reference models' confidences on the same records."""
    out: dict[str, np.ndarray] = {}
    for name in attacks:
        if name == "loss":
            out[name] = -target.loss
        elif name == "reference":
            if base is None:
                raise StageError(STAGE, "the reference attack needs the base model's losses")
            out[name] = base.loss - target.loss
        elif name == "min_k":
            if task != "causal-lm" or target.token_logprobs is None:
                continue
            out[name] = np.array([min_k_score(lp, min_k_fraction) for lp in target.token_logprobs])
        elif name == "zlib":
            if task != "causal-lm":
                continue
            out[name] = np.array([zlib_score(loss, t) for loss, t in zip(target.loss, texts, strict=True)])
        elif name == "lira":
            if lira is None:
                raise StageError(STAGE, "the LiRA attack needs reference models' confidences")
            from govern.audits.lira import logit_confidence, offline_lira_scores

            out[name] = offline_lira_scores(logit_confidence(target.loss), lira.confidences, lira.out_mask)[0]
        else:
            raise StageError(STAGE, f"unknown attack '{name}'")
    return out


# ===================================================================================== loading data
def _label_index(label_names: Sequence[str]) -> dict[str, int]:
    return {str(name): i for i, name in enumerate(label_names)}


def to_audit_records(records: Sequence[dict[str, Any]], *, source: str, task: str, text_column: str,
                     label_column: str | None, label_names: Sequence[str] | None,
                     prompt_column: str | None = None, completion_column: str | None = None,
                     id_column: str | None = "id", locations: Sequence[int] | None = None) -> AuditRecords:
    """Validate and convert records; a bad one is a :class:`DataError` naming file, line and field."""
    index = _label_index(label_names or [])
    texts: list[str] = []
    prompts: list[str] | None = [] if (task == "causal-lm" and prompt_column) else None
    label_ids: list[int] | None = [] if task == "classification" else None
    ids: list[str] = []
    for n, rec in enumerate(records):
        line = locations[n] if locations is not None else None
        where = {"line": line} if line is not None else {"record": n}
        text_field = completion_column if prompts is not None else text_column
        text = rec.get(text_field or text_column)
        if not isinstance(text, str):
            raise DataError(source, "missing or non-string text", field=text_field or text_column, **where)
        texts.append(text)
        if prompts is not None:
            prompt = rec.get(prompt_column or "")
            if not isinstance(prompt, str):
                raise DataError(source, "missing or non-string prompt", field=prompt_column, **where)
            prompts.append(prompt)
        if label_ids is not None:
            value = rec.get(label_column or "")
            if value is None or str(value) not in index:
                raise DataError(source, f"label not among the model's {len(index)} labels", field=label_column,
                                **where)
            label_ids.append(index[str(value)])
        ids.append(str(rec.get(id_column)) if id_column and rec.get(id_column) is not None else f"{source}:{n}")
    return AuditRecords(texts=texts, prompts=prompts, label_ids=label_ids, ids=ids)


def read_with_locations(path: Path, fmt: str = "auto") -> tuple[list[dict[str, Any]], list[int]]:
    from govern.data.io import iter_records

    locations: list[int] = []
    records: list[dict[str, Any]] = []
    for loc, rec in iter_records(Path(path), fmt):
        locations.append(loc)
        records.append(rec)
    return records, locations


def balanced_sample(n_members: int, n_nonmembers: int, max_records: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of equally many members and non-members (≤ ``max_records`` each), seeded."""
    n = min(n_members, n_nonmembers, max_records)
    rng = np.random.default_rng(seed)
    members = np.sort(rng.choice(n_members, size=n, replace=False))
    nonmembers = np.sort(rng.choice(n_nonmembers, size=n, replace=False))
    return members, nonmembers


# ==================================================================================== loading models
def _has_tokenizer(path: Path) -> bool:
    return any((path / name).exists() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"))


def load_model(path: Path, *, task: str, label_names: Sequence[str] | None = None, base_path: Path | None = None,
               gguf_file: str | None = None, seed: int = 0, as_reference: bool = False) -> tuple[Any, Any]:
    """(model, tokenizer) from a full model folder, a PEFT adapter folder (with ``base_path``), or the
    base model itself. Local files only.

    ``as_reference``: the model is the base of the reference attack. A classification base usually has
    no head for these labels; a randomly initialised one would only add noise to the calibration, so
    the parameters the checkpoint lacks are set to zero: the base then predicts uniformly (loss log K on
    every record) and the reference attack ranks like the loss attack. It calibrates for real when the
    base already has a trained head for the same labels, and always for causal LMs."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    if not path.exists():
        raise StageError(STAGE, f"model folder not found: {path}")
    from govern.training.inference import MODEL_META, load_trained_model

    if not as_reference and (path / MODEL_META).is_file():
        # A folder govern trained: its own loader knows the layout (adapter or full weights).
        return load_trained_model(path, base_path, gguf_file=gguf_file, task=task)  # type: ignore[arg-type]  # task is a validated task name
    is_adapter = (path / "adapter_config.json").exists()
    if is_adapter and base_path is None:
        raise StageError(STAGE, f"{path} is a LoRA adapter: give the base model it was trained from")
    weights_from = Path(base_path) if is_adapter and base_path is not None else path
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # stages never print; transformers' load reports would
    kwargs: dict[str, Any] = {}
    if gguf_file and (weights_from / gguf_file).exists():
        kwargs["gguf_file"] = gguf_file
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if task == "classification":
                if label_names:
                    kwargs.update(num_labels=len(label_names),
                                  id2label={i: str(n) for i, n in enumerate(label_names)},
                                  label2id={str(n): i for i, n in enumerate(label_names)})
                model, info = AutoModelForSequenceClassification.from_pretrained(
                    str(weights_from), output_loading_info=True, **kwargs)
                if as_reference and not is_adapter:
                    missing = set(info.get("missing_keys") or [])
                    with torch.no_grad():
                        for name, param in model.named_parameters():
                            if name in missing:
                                param.zero_()
            else:
                model = AutoModelForCausalLM.from_pretrained(str(weights_from), **kwargs)
        if not kwargs.get("gguf_file"):
            model = model.float()  # GGUF weights are de-quantised to fp32 already
        if is_adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    except (OSError, ValueError) as exc:
        raise StageError(STAGE, f"cannot load model from {path}: {type(exc).__name__}: {exc}") from None
    tok_from = path if _has_tokenizer(path) else weights_from
    tok_kwargs = {"gguf_file": gguf_file} if (gguf_file and (tok_from / gguf_file).exists()) else {}
    tokenizer = AutoTokenizer.from_pretrained(str(tok_from), **tok_kwargs)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def model_label_names(path: Path) -> list[str] | None:
    """Label names saved with a trained classifier (config.json id2label), unless they are defaults."""
    import json

    from govern.training.inference import MODEL_META

    meta = Path(path) / MODEL_META
    if meta.is_file():
        names = json.loads(meta.read_text(encoding="utf-8")).get("label_names")
        if names:
            return [str(n) for n in names]
    for candidate in (Path(path) / "config.json", Path(path) / "label_names.json"):
        if not candidate.exists():
            continue
        data = json.loads(candidate.read_text(encoding="utf-8"))
        if isinstance(data, list):
            return [str(x) for x in data]
        id2label = data.get("id2label") or {}
        names = [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]
        if names and not all(n == f"LABEL_{i}" for i, n in enumerate(names)):
            return names
    return None


# ========================================================================================= the audit
@dataclass
class ScoredSets:
    member: dict[str, np.ndarray]
    nonmember: dict[str, np.ndarray]


def combine(members: AuditRecords, nonmembers: AuditRecords) -> AuditRecords:
    """Members then non-members, as one set to score."""
    return AuditRecords(
        texts=members.texts + nonmembers.texts,
        prompts=None if members.prompts is None else members.prompts + (nonmembers.prompts or []),
        label_ids=None if members.label_ids is None else members.label_ids + (nonmembers.label_ids or []),
        ids=members.ids + nonmembers.ids,
    )


def run_attacks(model: Any, tokenizer: Any, base_model: Any | None, base_tokenizer: Any | None,
                members: AuditRecords, nonmembers: AuditRecords, *, task: str, attacks: Sequence[str],
                batch_size: int, max_length: int, min_k_fraction: float, device: str | None,
                lira: LiraInput | None = None) -> ScoredSets:
    combined = combine(members, nonmembers)
    target = score_records(model, tokenizer, combined, task=task, batch_size=batch_size, max_length=max_length,
                           device=device)
    base = None
    if "reference" in attacks and base_model is not None:
        base = score_records(base_model, base_tokenizer, combined, task=task, batch_size=batch_size,
                             max_length=max_length, device=device)
    scores = attack_scores(attacks, task=task, target=target, base=base, texts=combined.full_texts(),
                           min_k_fraction=min_k_fraction, lira=lira)
    n = len(members)
    return ScoredSets(member={k: v[:n] for k, v in scores.items()}, nonmember={k: v[n:] for k, v in scores.items()})


def attacks_for(policy: MembershipPolicy, task: str, has_base: bool, *,
                lira_available: bool = False) -> tuple[list[str], list[str]]:
    """The attacks to run (policy's, plus Min-K% and zlib for causal LMs, plus LiRA when the policy
    enables it) and notes on skipped ones. ``lira_available``: the caller knows the training recipe."""
    if policy.lira.enabled and not lira_available:
        raise StageError(STAGE, "policy membership.lira.enabled: offline LiRA retrains reference models with the "
                                "target's own training recipe, which only `govern run` knows; audit a model "
                                "trained elsewhere without it (the loss, reference, min_k and zlib attacks run)")
    names: list[str] = list(dict.fromkeys(policy.attacks))
    notes: list[str] = []
    if task == "causal-lm":
        names += [a for a in CAUSAL_ONLY if a not in names]
    else:
        for a in CAUSAL_ONLY:
            if a in names:
                names.remove(a)
                notes.append(f"attack '{a}' applies to causal LMs only; skipped for {task}")
    if "reference" in names and not has_base:
        names.remove("reference")
        notes.append("no base model: reference-calibrated attack skipped")
    if policy.lira.enabled:
        names.append("lira")
    return names, notes


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


def build_evidence(scored: ScoredSets, *, n_members: int, n_nonmembers: int, seed: int, fprs: Sequence[float],
                   bootstrap: int, task: str, notes: list[str], canaries: CanaryAudit | None = None,
                   members_source: str | None = None, nonmembers_source: str | None = None,
                   duration_s: float = 0.0) -> MembershipEvidence:
    results = [evaluate_attack(name, scored.member[name], scored.nonmember[name], fprs=fprs, bootstrap=bootstrap,
                               seed=seed) for name in scored.member]
    return MembershipEvidence(
        n_members=n_members, n_nonmembers=n_nonmembers, seed=seed, attacks=results,
        max_auc=max((r.auc for r in results), default=0.5), canaries=canaries, task=task,
        members_source=members_source, nonmembers_source=nonmembers_source,
        notes=notes + resolution_notes(n_nonmembers, fprs), duration_s=duration_s,
    )


def audit_membership(model_dir: str | Path, base: str | Path | None, members_path: str | Path,
                     nonmembers_path: str | Path, policy: MembershipPolicy | None = None, *,
                     task: str = "classification", text_column: str = "text", label_column: str | None = "label",
                     prompt_column: str | None = None, completion_column: str | None = None,
                     id_column: str | None = "id", label_names: Sequence[str] | None = None,
                     gguf_file: str | None = None, max_records: int = 500, seed: int = 0, batch_size: int = 32,
                     max_length: int = 128, bootstrap: int = 200, min_k_fraction: float = 0.2,
                     device: str | None = None, data_format: str = "auto") -> MembershipEvidence:
    """Audit a model trained elsewhere: ``members_path`` holds (some of) its training records,
    ``nonmembers_path`` held-out records of the same distribution. ``base`` is the pre-fine-tune model
    (needed for LoRA adapters and for the reference attack). Returns the evidence; the caller applies
    the policy decision and records lineage (see ``govern.api``)."""
    from govern.policy.schema import MembershipPolicy

    started = time.perf_counter()
    policy = policy or MembershipPolicy()
    model_dir = Path(model_dir)
    base_path = Path(base) if base is not None else None
    if task == "classification" and label_names is None:
        label_names = model_label_names(model_dir)
    member_raw, member_loc = read_with_locations(Path(members_path), data_format)
    nonmember_raw, nonmember_loc = read_with_locations(Path(nonmembers_path), data_format)
    for path, raw in ((members_path, member_raw), (nonmembers_path, nonmember_raw)):
        if not raw:
            raise DataError(path, "no records")
    if task == "classification" and label_names is None:
        values = ({str(r.get(label_column)) for r in member_raw + nonmember_raw if r.get(label_column) is not None}
                  if label_column is not None else set())
        label_names = sorted(values)
    m_idx, n_idx = balanced_sample(len(member_raw), len(nonmember_raw), max_records, seed)
    common: dict[str, Any] = dict(task=task, text_column=text_column, label_column=label_column, label_names=label_names,
                  prompt_column=prompt_column, completion_column=completion_column, id_column=id_column)
    members = to_audit_records([member_raw[i] for i in m_idx], source=str(members_path),
                               locations=[member_loc[i] for i in m_idx], **common)
    nonmembers = to_audit_records([nonmember_raw[i] for i in n_idx], source=str(nonmembers_path),
                                  locations=[nonmember_loc[i] for i in n_idx], **common)
    attacks, notes = attacks_for(policy, task, base_path is not None)
    model, tokenizer = load_model(model_dir, task=task, label_names=label_names, base_path=base_path,
                                  gguf_file=gguf_file, seed=seed)
    base_model = base_tokenizer = None
    if "reference" in attacks and base_path is not None:
        base_model, base_tokenizer = load_model(base_path, task=task, label_names=label_names,
                                                gguf_file=gguf_file, seed=seed, as_reference=True)
    scored = run_attacks(model, tokenizer, base_model, base_tokenizer, members, nonmembers, task=task,
                         attacks=attacks, batch_size=batch_size, max_length=max_length,
                         min_k_fraction=min_k_fraction, device=device)
    return build_evidence(scored, n_members=len(members), n_nonmembers=len(nonmembers), seed=seed,
                          fprs=fprs_for(policy), bootstrap=bootstrap, task=task, notes=notes,
                          members_source=str(members_path), nonmembers_source=str(nonmembers_path),
                          duration_s=time.perf_counter() - started)


# ===================================================================================== canary audit
def canary_attack(attacks: Sequence[str]) -> str:
    """The attack that ranks canaries, fixed before looking at results (choosing the best one after
    the fact would overstate the bound): reference when available, else loss. Never LiRA: canaries
    are i.i.d. random records, equally hard, so per-record calibration adds nothing — and swapping
    the attack when a policy enables LiRA could only weaken the bound the DP gate relies on."""
    return "reference" if "reference" in attacks else "loss"


def secret_exposures(model: Any, tokenizer: Any, texts: Sequence[str], *, candidates: int, seed: int,
                     batch_size: int, max_length: int, device: str | None) -> list[float]:
    """Exposure of each causal-LM canary's secret among ``candidates`` random secrets of the same format."""
    rng = np.random.default_rng(seed)
    out: list[float] = []
    for text in texts:
        parts = split_secret(text)
        if parts is None:
            continue
        prefix, secret = parts
        variants = [secret] + [" " + random_secret(rng) for _ in range(candidates)]
        recs = AuditRecords(texts=variants, prompts=[prefix] * len(variants))
        scores = score_records(model, tokenizer, recs, task="causal-lm", batch_size=batch_size,
                               max_length=max_length, device=device)
        token_lps = scores.token_logprobs or []
        if not len(token_lps) or len(token_lps[0]) == 0:
            continue  # the secret was truncated away by max_length: nothing the model could have learned
        total_lp = np.array([lp.sum() for lp in token_lps])
        out.append(exposure(float(total_lp[0]), total_lp[1:]))
    return out


def canary_audit(model: Any, tokenizer: Any, base_model: Any | None, base_tokenizer: Any | None, *,
                 pool: Sequence[dict[str, Any]], inserted_ids: set[str], ctx_task: str, text_column: str,
                 label_column: str | None, label_names: Sequence[str] | None, prompt_column: str | None,
                 completion_column: str | None, id_column: str | None, attacks: Sequence[str],
                 canary_policy: Any, delta: float, accountant_epsilon: float | None, batch_size: int,
                 max_length: int, seed: int, device: str | None, source: str) -> CanaryAudit:
    """Score the whole canary pool with the fixed attack and turn the guesses into the ε lower bound."""
    attack = canary_attack(attacks)
    records = to_audit_records(pool, source=source, task=ctx_task, text_column=text_column,
                               label_column=label_column, label_names=label_names, prompt_column=prompt_column,
                               completion_column=completion_column, id_column=id_column)
    target = score_records(model, tokenizer, records, task=ctx_task, batch_size=batch_size, max_length=max_length,
                           device=device)
    base = None
    if attack == "reference" and base_model is not None:
        base = score_records(base_model, base_tokenizer, records, task=ctx_task, batch_size=batch_size,
                             max_length=max_length, device=device)
    else:
        attack = "loss"
    scores = attack_scores([attack], task=ctx_task, target=target, base=base, texts=records.full_texts())[attack]
    inserted = np.array([canary_id(rec, id_column) in inserted_ids for rec in pool])
    exposures: list[float] = []
    exposures_out: list[float] = []
    candidates = None
    if ctx_task == "causal-lm" and canary_policy.exposure_canaries > 0:
        candidates = canary_policy.exposure_candidates
        full = records.full_texts()
        ins = [t for t, k in zip(full, inserted, strict=True) if k][: canary_policy.exposure_canaries]
        outs = [t for t, k in zip(full, inserted, strict=True) if not k][: canary_policy.exposure_canaries]
        kw = dict(candidates=candidates, seed=seed, batch_size=batch_size, max_length=max_length, device=device)
        exposures = secret_exposures(model, tokenizer, ins, **kw)
        exposures_out = secret_exposures(model, tokenizer, outs, **kw)
    return audit_canaries(scores, inserted, guess_fraction=canary_policy.guess_fraction,
                          confidence=canary_policy.confidence, delta=delta, attack=attack,
                          accountant_epsilon=accountant_epsilon, exposures=exposures,
                          exposures_nonmembers=exposures_out, exposure_candidates=candidates)


# ============================================================================================ stage
class MembershipOutputs(StageOutputs):
    #: Per-record attack scores (ids only).
    scores_path: str


class MembershipStage:
    """Attacks the fine-tuned model of this run; reads the training stage's outputs (model folder, base
    model, labels, task, device, recipe), the data paths, and the canary files when the canary stage ran."""

    name = STAGE
    outputs_model = MembershipOutputs

    def enabled(self, ctx: StageContext) -> bool:
        return bool(ctx.config.audits.membership.enabled)

    def input_digest(self, ctx: StageContext) -> str:
        from govern.training.stage import TrainingOutputs

        trained, canary_files = ctx.find(TrainingOutputs), ctx.find(CanaryFiles)
        # The attacked model's bytes on disk (what training recorded may be stale after a replaced folder).
        return digest_of("membership/2", ctx.config.audits.membership, ctx.policy.membership,
                         trained.model_dir if trained else None, trained_model_digest(ctx), ctx.data_paths(),
                         canary_files.pool_path if canary_files else None)

    def run(self, ctx: StageContext) -> StageResult:
        started = time.perf_counter()
        cfg = ctx.config.audits.membership
        policy = ctx.policy.membership
        data = ctx.config.data
        from govern.training.stage import TrainingOutputs

        trained = ctx.require(TrainingOutputs, STAGE)
        if not trained.model_dir:
            raise StageError(STAGE, "no trained model: the training stage did not run or produced no model_dir")
        training = trained.model_dump()
        model_digest = judged_model_digest(ctx, STAGE)
        task = training.get("task") or ctx.config.task
        model_dir = Path(training["model_dir"])
        base_path = training.get("base_model_path")
        base_path = Path(base_path) if base_path else None
        gguf_file = training.get("gguf_file")
        paths = ctx.data_paths()
        label_names = training.get("label_names") or paths.label_names or None
        device = pick_device(training.get("device"))  # a GPU-trained model is judged on the CPU if needed
        attacks, notes = attacks_for(policy, task, base_path is not None, lira_available=True)

        fmt = paths.format or "auto"
        train_raw, train_loc = read_with_locations(Path(paths.train_path), fmt)
        eval_raw, eval_loc = read_with_locations(Path(paths.eval_path), fmt)
        if not train_raw or not eval_raw:
            raise StageError(STAGE, "membership audit needs training and held-out records")
        m_idx, n_idx = balanced_sample(len(train_raw), len(eval_raw), cfg.max_records, cfg.seed)
        common: dict[str, Any] = dict(task=task, text_column=data.text_column, label_column=data.label_column,
                      label_names=label_names, prompt_column=data.prompt_column,
                      completion_column=data.completion_column, id_column=data.id_column)
        members = to_audit_records([train_raw[i] for i in m_idx], source=paths.train_path,
                                   locations=[train_loc[i] for i in m_idx], **common)
        nonmembers = to_audit_records([eval_raw[i] for i in n_idx], source=paths.eval_path,
                                      locations=[eval_loc[i] for i in n_idx], **common)
        progress = ctx.progress.task("membership audit", total=None, unit="step")
        max_length = ctx.config.training.max_length
        model, tokenizer = _load_trained(training, model_dir, task, label_names, base_path, gguf_file, cfg.seed)
        base_model = base_tokenizer = None
        if base_path is not None and "reference" in attacks:
            base_model, base_tokenizer = _load_base(training, base_path, task, label_names, gguf_file, cfg.seed)
        canary_out = ctx.find(CanaryFiles) if policy.canaries.enabled else None
        pool: list[dict[str, Any]] = []
        if canary_out:
            from govern.data.io import read_records

            pool = read_records(Path(canary_out.pool_path), "jsonl")

        lira_audit = None
        lira_details: LiraDetails | None = None
        if "lira" in attacks:
            # Every held-out record trains some reference model: validate them all first, so a bad one
            # is reported against the eval file, not against a temporary copy.
            to_audit_records(eval_raw, source=paths.eval_path, locations=eval_loc, **common)
            lira_audit, lira_details = _lira_references(
                ctx, training, tokenizer, combine(members, nonmembers), n_members=len(members),
                nonmember_pool_index=n_idx, pool=eval_raw, k=policy.lira.reference_models, seed=cfg.seed,
                task=task, label_names=label_names, batch_size=cfg.batch_size, max_length=max_length,
                device=device)
        scored = run_attacks(model, tokenizer, base_model, base_tokenizer, members, nonmembers, task=task,
                             attacks=attacks, batch_size=cfg.batch_size, max_length=max_length,
                             min_k_fraction=cfg.min_k_fraction, device=device, lira=lira_audit)
        progress.advance()

        canaries: CanaryAudit | None = None
        if canary_out:
            inserted_ids = read_inserted_ids(Path(canary_out.inserted_ids_path))
            ev = ctx.evidence.training
            dp = bool(ev and ev.dp_enabled)
            accountant_eps = None
            if dp and ev is not None and ev.epsilon:
                accountant_eps = ev.epsilon.get(ev.accountant or "", None) or max(ev.epsilon.values())
            delta = float(ev.delta) if (dp and ev is not None and ev.delta) else 0.0
            canaries = canary_audit(
                model, tokenizer, base_model, base_tokenizer, pool=pool, inserted_ids=inserted_ids, ctx_task=task,
                text_column=data.text_column, label_column=data.label_column, label_names=label_names,
                prompt_column=data.prompt_column, completion_column=data.completion_column,
                id_column=data.id_column, attacks=attacks, canary_policy=policy.canaries, delta=delta,
                accountant_epsilon=accountant_eps, batch_size=cfg.batch_size, max_length=max_length,
                seed=cfg.seed, device=device, source=canary_out.pool_path,
            )
        elif policy.canaries.enabled:
            notes.append("canaries enabled in the policy but the canary stage did not run: no ε lower bound")
        progress.advance()
        progress.close()

        scores_path = ctx.stage_dir(STAGE) / "scores.jsonl"
        _write_scores(scores_path, members.ids, nonmembers.ids, scored)
        evidence = build_evidence(scored, n_members=len(members), n_nonmembers=len(nonmembers), seed=cfg.seed,
                                  fprs=fprs_for(policy), bootstrap=cfg.bootstrap, task=task, notes=notes,
                                  canaries=canaries, members_source="train", nonmembers_source="eval",
                                  duration_s=time.perf_counter() - started)
        evidence.lira = lira_details
        evidence.model_digest = model_digest
        from govern.stage import artifact_for

        return StageResult(evidence=evidence, artifacts=[artifact_for(scores_path, "membership-scores", "predictions")],
                           outputs=MembershipOutputs(scores_path=str(scores_path)))


def _lira_references(ctx: StageContext, training: dict[str, Any], tokenizer: Any, audit: AuditRecords, *,
                     n_members: int, nonmember_pool_index: np.ndarray, pool: list[dict[str, Any]], k: int,
                     seed: int, task: str, label_names: Sequence[str] | None, batch_size: int, max_length: int,
                     device: str) -> tuple[LiraInput, LiraDetails]:
    """Train LiRA's reference models with the training stage's recipe (and the target's steps and σ
    from its evidence) on subsets of the held-out ``pool`` and score the audit records (members,
    then non-members) under each.

    Members were never in the pool. Audited non-members are ``pool[nonmember_pool_index]``: OUT of
    the models whose subset did not contain them."""
    from govern.audits.lira import balanced_inclusion, train_reference_models, variance_kind
    from govern.training.trainer import TrainingSpec

    spec_path = training.get("spec_path")
    if not spec_path or not Path(spec_path).is_file():
        raise StageError(STAGE, "offline LiRA retrains with the training stage's recipe, but this run's training "
                                "stage left no spec.json (trained by an older govern?); re-run training")
    spec = TrainingSpec.model_validate_json(Path(spec_path).read_text(encoding="utf-8"))
    if task == "classification" and label_names:
        # Fix the label order to the target's: a half of the pool may lack a class.
        spec = spec.model_copy(update={"label_names": list(label_names)})

    def score(model: Any) -> dict[str, np.ndarray]:
        return {"audit": score_records(model, tokenizer, audit, task=task, batch_size=batch_size,
                                       max_length=max_length, device=device).loss}

    target = ctx.evidence.training
    run = train_reference_models(spec, pool, k=k, seed=seed, score=score, work_dir=ctx.stage_dir(STAGE),
                                 steps=target.steps if target is not None and target.steps else None,
                                 noise_multiplier=target.noise_multiplier if target is not None else None,
                                 progress=ctx.progress)
    # Every audited record is measured against exactly ⌈k/2⌉ OUT models — members too, although no
    # reference model saw them: a member calibrated by all k models would have a tighter μ_out than a
    # non-member, and the wider non-member tail would hide members at low FPR.
    out_audit = np.empty((k, len(audit)), dtype=bool)
    out_audit[:, :n_members] = ~balanced_inclusion(n_members, k, seed + 1)
    out_audit[:, n_members:] = ~run.inclusion[:, nonmember_pool_index]
    counts = out_audit.sum(axis=0)
    details = LiraDetails(
        reference_models=k, pool="eval", pool_size=len(pool), records_per_model=run.records_per_model,
        min_out_models_per_record=int(counts.min()), variance=variance_kind(counts), dp=run.dp,
        steps=run.steps, noise_multiplier=run.noise_multiplier, reference_epsilon=run.epsilons, seeds=run.seeds,
        training_s=round(run.duration_s, 3))
    return LiraInput(confidences=run.confidences["audit"], out_mask=out_audit), details


def _load_trained(training: dict[str, Any], model_dir: Path, task: str, label_names: Sequence[str] | None,
                  base_path: Path | None, gguf_file: str | None, seed: int) -> tuple[Any, Any]:
    return load_model(model_dir, task=task, label_names=label_names, base_path=base_path, gguf_file=gguf_file,
                      seed=seed)


def _load_base(training: dict[str, Any], base_path: Path, task: str, label_names: Sequence[str] | None,
               gguf_file: str | None, seed: int) -> tuple[Any, Any]:
    return load_model(base_path, task=task, label_names=label_names, gguf_file=gguf_file, seed=seed,
                      as_reference=True)


def _write_scores(path: Path, member_ids: Sequence[str], nonmember_ids: Sequence[str], scored: ScoredSets) -> None:
    """Per-record scores for the report's histograms: ids and numbers only, never text."""
    import json

    with open(path, "w", encoding="utf-8") as fh:
        for is_member, ids, table in ((True, member_ids, scored.member), (False, nonmember_ids, scored.nonmember)):
            for i, rid in enumerate(ids):
                row = {"id": rid, "member": is_member, **{k: float(v[i]) for k, v in table.items()}}
                fh.write(json.dumps(row) + "\n")
