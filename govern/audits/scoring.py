"""Scoring records for the membership attacks: validated audit records, per-record losses, attack scores.

Every attack gives each record a score, *higher = "more likely a member"*; the numbers come from
:func:`govern.training.inference.score_examples`, the one per-record scorer, on records encoded
exactly as training encoded them. This module turns raw records into :class:`AuditRecords` (with
errors naming the file, line and field), samples members and non-members to equal sizes, and turns
per-record losses into each attack's scores.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from govern.devices import pick_device
from govern.errors import DataError, StageError

if TYPE_CHECKING:
    from govern.policy.schema import MembershipPolicy
    from govern.training.encoding import EncodedExample
    from govern.training.inference import RecordScores

STAGE = "membership"
CAUSAL_ONLY = ("min_k", "zlib")
#: Causal-LM attacks a policy must ask for (they cost more, or change what the default audit reports).
CAUSAL_OPT_IN = ("min_k_pp",)

__all__ = ["CAUSAL_ONLY", "CAUSAL_OPT_IN", "AuditRecords", "LiraInput", "RmiaInput", "ScoredSets", "attack_scores",
           "attacks_for", "balanced_sample", "combine", "encode_audit_records", "min_k_score", "read_with_locations",
           "run_attacks", "score_records", "to_audit_records", "zlib_score"]


def min_k_score(token_logprobs: np.ndarray, k: float = 0.2) -> float:
    """Min-K% probability: mean of the ⌈k·T⌉ lowest token log-probabilities (higher = member)."""
    lp = np.sort(np.asarray(token_logprobs, dtype=float))
    if len(lp) == 0:
        return 0.0
    return float(lp[: max(1, math.ceil(k * len(lp)))].mean())


def zlib_score(mean_nll: float, text: str) -> float:
    """−(log-perplexity / zlib entropy): a record the model finds far easier than zlib does scores high."""
    return -mean_nll / max(1, len(zlib.compress(text.encode("utf-8"))))



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

    def take(self, indices: Sequence[int] | np.ndarray) -> AuditRecords:
        """The records at ``indices``, in that order."""
        rows = [int(i) for i in indices]
        return AuditRecords(texts=[self.texts[i] for i in rows],
                            prompts=None if self.prompts is None else [self.prompts[i] for i in rows],
                            label_ids=None if self.label_ids is None else [self.label_ids[i] for i in rows],
                            ids=[self.ids[i] for i in rows] if self.ids else [])



@dataclass
class LiraInput:
    """The reference models' view of a record set: φ per (model, record) and which models were OUT."""

    confidences: np.ndarray  # (k, n)
    out_mask: np.ndarray  # (k, n)


@dataclass
class RmiaInput:
    """RMIA's calibration on top of the reference models' view: which audited records form the
    population (non-members, by index), the offline correction factor and γ."""

    population: np.ndarray
    offline_a: float
    gamma: float = 1.0


def encode_audit_records(records: AuditRecords, tokenizer: Any, task: str, max_length: int) -> list[EncodedExample]:
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
                  max_length: int = 128, device: str | None = None, token_zscores: bool = False) -> RecordScores:
    """Per-record loss (and, for causal LMs, per-token log-probabilities) of ``records`` under ``model``:
    :func:`~govern.training.inference.score_examples` on them, encoded as in training."""
    from govern.training.inference import score_examples

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return score_examples(model, tokenizer, encode_audit_records(records, tokenizer, task, max_length), task=task,
                          batch_size=batch_size, device=device or pick_device("auto"), token_zscores=token_zscores)


def attack_scores(attacks: Sequence[str], *, task: str, target: RecordScores, base: RecordScores | None,
                  texts: Sequence[str], min_k_fraction: float = 0.2,
                  lira: LiraInput | None = None, rmia: RmiaInput | None = None) -> dict[str, np.ndarray]:
    """Scores (higher = member) of each requested attack; ``reference`` needs the base model's scores,
    ``lira`` and ``rmia`` the reference models' confidences on the same records (and RMIA's calibration)."""
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
        elif name == "min_k_pp":
            if task != "causal-lm" or target.token_zscores is None:
                continue
            out[name] = np.array([min_k_score(z, min_k_fraction) for z in target.token_zscores])
        elif name == "zlib":
            if task != "causal-lm":
                continue
            out[name] = np.array([zlib_score(loss, t) for loss, t in zip(target.loss, texts, strict=True)])
        elif name == "lira":
            if lira is None:
                raise StageError(STAGE, "the LiRA attack needs reference models' confidences")
            from govern.audits.lira import logit_confidence, offline_lira_scores

            out[name] = offline_lira_scores(logit_confidence(target.loss), lira.confidences, lira.out_mask)[0]
        elif name == "rmia":
            if lira is None or rmia is None:
                raise StageError(STAGE, "the RMIA attack needs reference models' confidences and its calibration")
            from govern.audits.rmia import label_probability, rmia_scores

            # φ = log(p / (1 − p)) ⇒ p = sigmoid(φ): the reference models' label probabilities back.
            reference_prob = 1.0 / (1.0 + np.exp(-lira.confidences))
            out[name] = rmia_scores(label_probability(target.loss), reference_prob, lira.out_mask, rmia.population,
                                    a=rmia.offline_a, gamma=rmia.gamma)
        else:
            raise StageError(STAGE, f"unknown attack '{name}'")
    return out


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
                lira: LiraInput | None = None, rmia: RmiaInput | None = None) -> ScoredSets:
    combined = combine(members, nonmembers)
    target = score_records(model, tokenizer, combined, task=task, batch_size=batch_size, max_length=max_length,
                           device=device, token_zscores="min_k_pp" in attacks)
    base = None
    if "reference" in attacks and base_model is not None:
        base = score_records(base_model, base_tokenizer, combined, task=task, batch_size=batch_size,
                             max_length=max_length, device=device)
    scores = attack_scores(attacks, task=task, target=target, base=base, texts=combined.full_texts(),
                           min_k_fraction=min_k_fraction, lira=lira, rmia=rmia)
    n = len(members)
    return ScoredSets(member={k: v[:n] for k, v in scores.items()}, nonmember={k: v[n:] for k, v in scores.items()})


def attacks_for(policy: MembershipPolicy, task: str, has_base: bool, *,
                lira_available: bool = False) -> tuple[list[str], list[str]]:
    """The attacks to run (policy's, plus Min-K% and zlib for causal LMs, plus LiRA when the policy
    enables it) and notes on skipped ones. ``lira_available``: the caller knows the training recipe."""
    if policy.rmia.enabled and not policy.lira.enabled and not lira_available:
        raise StageError(STAGE, "policy membership.rmia.enabled: offline RMIA needs reference models trained with "
                                "the target's own training recipe, which only `govern run` knows; audit a model "
                                "trained elsewhere without it (the loss, reference, min_k and zlib attacks run)")
    if policy.lira.enabled and not lira_available:
        raise StageError(STAGE, "policy membership.lira.enabled: offline LiRA retrains reference models with the "
                                "target's own training recipe, which only `govern run` knows; audit a model "
                                "trained elsewhere without it (the loss, reference, min_k and zlib attacks run)")
    names: list[str] = list(dict.fromkeys(policy.attacks))
    notes: list[str] = []
    if task == "causal-lm":
        names += [a for a in CAUSAL_ONLY if a not in names]
    else:
        for a in (*CAUSAL_ONLY, *CAUSAL_OPT_IN):
            if a in names:
                names.remove(a)
                notes.append(f"attack '{a}' applies to causal LMs only; skipped for {task}")
    if "reference" in names and not has_base:
        names.remove("reference")
        notes.append("no base model: reference-calibrated attack skipped")
    if policy.lira.enabled:
        names.append("lira")
    if policy.rmia.enabled:
        names.append("rmia")
    return names, notes
