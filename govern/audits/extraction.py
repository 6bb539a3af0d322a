"""Verbatim extraction: does a causal LM continue its training records word for word?

Membership inference asks whether an attacker can tell that a record was trained on; extraction asks
what they can *read back*. Following Carlini et al. 2022 ("Quantifying Memorization Across Neural
Language Models", discoverable memorisation), each sampled record is cut into a prefix (its first
``prefix_tokens`` tokens, as training encoded them) and a suffix (the next ``suffix_tokens``); the model
is prompted with the prefix and greedy-decoded, and the record counts as extracted when the
continuation equals the suffix token for token. The longest common prefix of the two, as a share of
the suffix, says how close the others came.

Why members *and* non-members: a held-out record of the same distribution is "extracted" too when its
continuation is predictable — a template, a code idiom, a closing formula — and that is the task
being learned. The excess of the members' rate over the non-members' is what training on the records
added; :mod:`govern.policy.engine` gates on it (``memorization.max_extraction_rate``).

Where the prefix ends: a prompt/completion record was trained with no loss on its prompt, so the model
never learned to continue a prompt; its prefix is the whole prompt when that is longer than
``prefix_tokens``. A record with nothing after the prefix is skipped and counted.

The same greedy decoder serves the PII regurgitation audit (:mod:`govern.audits.regurgitation`).
Prompts are batched by exact length, so no padding (and no padding-dependent position ids) can change
what a model generates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from govern.audits.attack_metrics import clopper_pearson
from govern.evidence import ExtractionAudit, ExtractionRate
from govern.training.encoding import IGNORE_INDEX, EncodedExample

if TYPE_CHECKING:
    from govern.audits.scoring import AuditRecords
    from govern.config import ExtractionAuditConfig

__all__ = ["audit_extraction", "common_prefix_length", "extraction_pairs", "extraction_rate",
           "greedy_continuations", "matched_lengths", "rate_interval"]


def common_prefix_length(generated: Sequence[int], target: Sequence[int]) -> int:
    """Tokens of ``target`` that ``generated`` reproduces before its first difference."""
    n = 0
    for a, b in zip(generated, target, strict=False):
        if a != b:
            break
        n += 1
    return n


def greedy_continuations(model: Any, prefixes: Sequence[Sequence[int]], lengths: Sequence[int], *,
                         batch_size: int = 32, device: str = "cpu") -> list[list[int]]:
    """``lengths[i]`` greedily decoded tokens after ``prefixes[i]`` (argmax at each step, key-value cache).

    Prompts of one length form a batch: no padding, so every row is decoded exactly as it would be alone.
    Decoding never stops at an end-of-sequence token: the comparison decides what a stop means."""
    import torch

    model = model.to(device).eval()
    out: list[list[int]] = [[] for _ in prefixes]
    by_length: dict[int, list[int]] = {}
    for i, prefix in enumerate(prefixes):
        if len(prefix) == 0:
            raise ValueError("greedy decoding needs a non-empty prompt")
        if lengths[i] > 0:
            by_length.setdefault(len(prefix), []).append(i)
    with torch.inference_mode():
        for _, rows in sorted(by_length.items()):
            for start in range(0, len(rows), batch_size):
                batch = rows[start:start + batch_size]
                steps = max(lengths[i] for i in batch)
                step_input = torch.tensor([list(prefixes[i]) for i in batch], dtype=torch.long, device=device)
                past = None
                generated: list[Any] = []
                for _ in range(steps):
                    result = model(input_ids=step_input, past_key_values=past, use_cache=True)
                    past = result.past_key_values
                    step_input = result.logits[:, -1].float().argmax(dim=-1, keepdim=True)
                    generated.append(step_input)
                tokens = torch.cat(generated, dim=1).cpu().tolist()
                for row, i in enumerate(batch):
                    out[i] = tokens[row][: lengths[i]]
    return out


def matched_lengths(model: Any, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], *, batch_size: int,
                    device: str) -> list[int]:
    """For each (prompt, target): how many target tokens greedy decoding reproduces before a difference."""
    generated = greedy_continuations(model, [p for p, _ in pairs], [len(t) for _, t in pairs],
                                     batch_size=batch_size, device=device)
    return [common_prefix_length(g, t) for g, (_, t) in zip(generated, pairs, strict=True)]


def _first_trained_position(example: EncodedExample) -> int:
    """Index of the first token the training loss predicted (≥ 1: the first token is never predicted)."""
    labels = example.labels if isinstance(example.labels, list) else []
    for t, label in enumerate(labels):
        if t >= 1 and label != IGNORE_INDEX:
            return t
    return len(example.input_ids)


def extraction_pairs(examples: Sequence[EncodedExample], *, prefix_tokens: int, suffix_tokens: int,
                     eos_token_id: int | None) -> list[tuple[list[int], list[int]] | None]:
    """(prefix, suffix) of each encoded causal-LM record, or None when nothing but an end-of-sequence
    token (or nothing at all) follows the prefix. See the module docstring for where the prefix ends."""
    pairs: list[tuple[list[int], list[int]] | None] = []
    for example in examples:
        ids = list(example.input_ids)
        end = len(ids) - 1 if (eos_token_id is not None and ids and ids[-1] == eos_token_id) else len(ids)
        start = max(prefix_tokens, _first_trained_position(example))
        if start >= end:
            pairs.append(None)
            continue
        pairs.append((ids[:start], ids[start:start + suffix_tokens]))
    return pairs


def rate_interval(successes: int, trials: int, confidence: float) -> tuple[float | None, float | None]:
    """Clopper-Pearson interval of a rate, None when nothing was tried."""
    if trials == 0:
        return None, None
    return clopper_pearson(successes, trials, confidence)


def extraction_rate(matched: Sequence[int], target_lengths: Sequence[int], *, confidence: float) -> ExtractionRate:
    """Exact-match count and rate (with its Clopper-Pearson interval) and the mean prefix-match fraction."""
    n = len(matched)
    exact = sum(1 for k, length in zip(matched, target_lengths, strict=True) if k == length)
    low, high = rate_interval(exact, n, confidence)
    fractions = [k / length for k, length in zip(matched, target_lengths, strict=True)]
    return ExtractionRate(records=n, exact_matches=exact, exact_match_rate=exact / n if n else 0.0, ci_low=low,
                          ci_high=high, mean_prefix_match=float(np.mean(fractions)) if n else 0.0)


def audit_extraction(model: Any, tokenizer: Any, members: AuditRecords, nonmembers: AuditRecords, *,
                     config: ExtractionAuditConfig, max_length: int, batch_size: int, device: str, seed: int,
                     confidence: float = 0.95) -> ExtractionAudit:
    """Verbatim extraction of a seeded sample of ``members`` against as many ``nonmembers``: the records
    are encoded exactly as training encoded them (truncated to ``max_length``)."""
    from govern.audits.scoring import balanced_sample, encode_audit_records

    started = time.perf_counter()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    m_idx, n_idx = balanced_sample(len(members), len(nonmembers), config.max_records, seed)
    rates: list[ExtractionRate] = []
    skipped = 0
    for records in (members.take(m_idx), nonmembers.take(n_idx)):
        encoded = encode_audit_records(records, tokenizer, "causal-lm", max_length)
        candidates = extraction_pairs(encoded, prefix_tokens=config.prefix_tokens, suffix_tokens=config.suffix_tokens,
                                      eos_token_id=tokenizer.eos_token_id)
        pairs = [p for p in candidates if p is not None]
        skipped += len(candidates) - len(pairs)
        matched = matched_lengths(model, pairs, batch_size=batch_size, device=device)
        rates.append(extraction_rate(matched, [len(t) for _, t in pairs], confidence=confidence))
    member_rate, nonmember_rate = rates
    return ExtractionAudit(
        prefix_tokens=config.prefix_tokens, suffix_tokens=config.suffix_tokens, confidence=confidence,
        members=member_rate, nonmembers=nonmember_rate,
        excess_exact_match_rate=member_rate.exact_match_rate - nonmember_rate.exact_match_rate,
        skipped_short=skipped, duration_s=round(time.perf_counter() - started, 3))
