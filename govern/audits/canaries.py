"""Canaries: measure, from one training run, how much a model can leak — an empirical lower bound on ε.

A *canary* is a random record nobody would write: a string of random tokens with a random label (for
causal LMs, a random "secret code"). Before training, :class:`CanaryStage` builds a pool of them and
flips a fair coin per canary, with a secret seed, to decide which go into the training data. After
training, the membership stage ranks the whole pool by an attack score fixed in advance, guesses "in"
for the top-scoring canaries and "out" for the bottom-scoring ones, abstains on the rest, and counts
the correct guesses. A model that is (ε, δ)-DP cannot let any auditor be right much more often than
randomised response with parameter ε, so many correct guesses *prove* ε is at least some value
(Steinke, Nasr & Jagielski 2023, "Privacy auditing with one (1) training run", Theorem 3.3 and its
approximate-DP extension). If that proven lower bound exceeds the accountant's ε, the DP implementation
or its accounting is broken.

Why independent coin flips and not "exactly half": the theorem assumes each canary is included
independently with probability ½; the expected number inserted is half the pool.

Audit run vs release run: a model trained with canaries contains them, so it is an *audit model*.
Unless the policy sets ``membership.canaries.ship_canaried_model``, evidence says
``canaries_in_model: true`` and the signing gate refuses to sign it; ship a model from a separate
run without canaries (same config, canaries disabled). The audit run tells you how the recipe leaks;
the release run is what you ship. Shipping the canaried model saves a training run at the price of a
model that carries a few hundred meaningless records.

Besides that bound, the policy can ask for the f-DP one-run audit (Mahloujifar, Melis & Chaudhuri 2025)
on the same guesses and for several abstention thresholds (:mod:`govern.audits.fdp_audit`); the
largest bound, Bonferroni-corrected, is the one gated.

The seed that chose the inserted canaries is written only to the run folder (mode 0600); evidence
holds counts and the bound, never which canary was inserted.

For causal LMs the same secret seed also draws PII-shaped canaries (fake e-mail addresses, phone and
card numbers after a context, :mod:`govern.audits.regurgitation`) on a stream of their own, with coin
flips of their own: the membership stage measures how many the model completes from their context.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from govern.errors import StageError
from govern.evidence import CanaryAudit
from govern.stage import CanaryFiles, StageContext, StageResult, artifact_for, digest_of

if TYPE_CHECKING:
    from govern.policy.schema import CanaryPolicy

CANARY_ID_PREFIX = "canary-"
#: causal-lm canaries end in "secret code" + this many random digits; exposure ranks the digits.
SECRET_DIGITS = 6
_SECRET_MARKER = "secret code"


# ------------------------------------------------------------------------------- the ε lower bound
def dp_audit_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[at least ``v`` of ``r`` guesses correct] under the null hypothesis "the training is (ε, δ)-DP".

    Steinke, Nasr & Jagielski (2023), Theorem 3.3 / Proposition 5.7 (their reference code). With
    ``q = e^ε / (1 + e^ε)`` (the accuracy of ε-randomised response):

        p = P[Binomial(r, q) ≥ v] + 2·m·δ · max_{1≤i≤v} P[v−i ≤ Binomial(r, q) < v] / i

    The first term is the pure-DP bound (each non-abstained guess is at best a q-biased coin, even
    given the others); the second charges δ's failure probability, at most δ per canary and per
    direction (2m), to the cheapest way of adding i correct guesses.

    ``m``: canaries in the pool (each included independently with probability ½); ``r``: guesses made
    (not abstained); ``v``: correct guesses.
    """
    if not (0 <= v <= r <= m):
        raise ValueError(f"need 0 ≤ v ≤ r ≤ m, got v={v}, r={r}, m={m}")
    if epsilon < 0 or not (0 <= delta <= 1):
        raise ValueError("need ε ≥ 0 and 0 ≤ δ ≤ 1")
    q = 1.0 / (1.0 + math.exp(-epsilon))
    beta = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) ≥ v]
    alpha = 0.0
    if delta > 0 and v > 0:
        # P[v > Binomial(r, q) ≥ v − i] for i = 1…v, summed term by term (no difference of tails, which
        # could cancel to something smaller) in one vectorised call: thousands of guesses stay cheap.
        i = np.arange(1, v + 1)
        cumulative = np.cumsum(stats.binom.pmf(v - i, r, q))
        alpha = float(np.max(cumulative / i))
    return min(beta + alpha * delta * 2 * m, 1.0)


def epsilon_lower_bound(m: int, r: int, v: int, *, delta: float = 0.0, confidence: float = 0.95,
                        epsilon_max: float = 100.0) -> float:
    """The largest ε the observed ``v`` correct guesses out of ``r`` reject at ``confidence``.

    I.e. ``sup{ε : p(ε) < 1 − confidence}`` with ``p`` from :func:`dp_audit_p_value`, which grows
    with ε, found by bisection (to 1e-6). 0 when even ε = 0 is not rejected (no evidence of leakage).
    With δ = 0 this equals ``log(p_lo / (1 − p_lo))`` where ``p_lo`` is the one-sided Clopper-Pearson
    lower confidence bound on the guessing accuracy.
    """
    if not (0 < confidence < 1):
        raise ValueError("confidence must be in (0, 1)")
    level = 1.0 - confidence
    if r == 0 or dp_audit_p_value(m, r, v, 0.0, delta) >= level:
        return 0.0
    lo, hi = 0.0, 1.0
    while dp_audit_p_value(m, r, v, hi, delta) < level:
        lo, hi = hi, 2 * hi
        if hi > epsilon_max:
            return epsilon_max
    while hi - lo > 1e-6:
        mid = (lo + hi) / 2
        if dp_audit_p_value(m, r, v, mid, delta) < level:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class CanaryGuesses:
    guesses: int
    correct: int


def guess_membership(scores: np.ndarray, inserted: np.ndarray, guess_fraction: float) -> CanaryGuesses:
    """Guess "in" for the top ``k`` scores and "out" for the bottom ``k`` (``2k ≈ guess_fraction · m``),
    abstain on the rest, and count correct guesses. Scores: higher = more likely a member. Ties are
    broken by a fixed order (stable sort), never by looking at the answer."""
    scores = np.asarray(scores, dtype=float)
    inserted = np.asarray(inserted, dtype=bool)
    m = len(scores)
    k = int(round(guess_fraction * m / 2))
    k = max(1, min(k, m // 2)) if m >= 2 else 0
    order = np.argsort(-scores, kind="stable")
    top, bottom = order[:k], order[m - k:] if k else order[:0]
    correct = int(inserted[top].sum() + (~inserted[bottom]).sum())
    return CanaryGuesses(guesses=2 * k, correct=correct)


def exposure(canary_logprob: float, candidate_logprobs: Sequence[float] | np.ndarray) -> float:
    """Exposure of a secret (Carlini et al. 2019, "The Secret Sharer"), estimated by sampling.

    exposure = log2 |R| − log2 rank, with rank the canary's position among all secrets of the same
    format ordered by model likelihood. With ``n`` uniformly random candidates, ``rank / |R|`` is
    estimated by ``(1 + #candidates at least as likely) / (n + 1)``, so
    ``exposure ≈ −log2((1 + #≥) / (n + 1))``, between 0 and log2(n + 1). A memorised secret reaches the
    top of that range; an unseen one scores about 1 bit on average.
    """
    cands = np.asarray(candidate_logprobs, dtype=float)
    at_least = int((cands >= canary_logprob).sum())
    return float(-math.log2((1 + at_least) / (len(cands) + 1)))


# ------------------------------------------------------------------------------------- the pool
def _random_word(rng: np.random.Generator) -> str:
    letters = string.ascii_lowercase
    return "".join(letters[i] for i in rng.integers(0, len(letters), size=int(rng.integers(4, 9))))


def random_secret(rng: np.random.Generator) -> str:
    """A secret in the canary format: ``SECRET_DIGITS`` random digits separated by spaces."""
    return " ".join(str(d) for d in rng.integers(0, 10, size=SECRET_DIGITS))


def make_canary_pool(pool_size: int, *, task: str, text_column: str, label_column: str | None,
                     labels: Sequence[Any], id_column: str | None, prompt_column: str | None = None,
                     completion_column: str | None = None, words: int | None = None,
                     rng: np.random.Generator) -> list[dict[str, Any]]:
    """``pool_size`` random records in the training data's schema.

    Text is ``words`` random lowercase "words" (unlike any natural record, so only memorisation can
    make a model confident on it). Classification canaries get a random label from ``labels`` (kept in
    the data's own type); causal-LM canaries end in ``secret code d d d d d d`` so their exposure can be
    measured. ``words`` defaults to 8 for classification and 3 for causal LMs, whose secret must fit in
    the training ``max_length`` after the prefix.
    """
    words = words if words is not None else (8 if task == "classification" else 3)
    if task == "classification" and not labels:
        raise StageError("canaries", "classification canaries need the training labels (none found)")
    pool: list[dict[str, Any]] = []
    for n in range(pool_size):
        body = " ".join(_random_word(rng) for _ in range(words))
        record: dict[str, Any] = {}
        if id_column:
            record[id_column] = f"{CANARY_ID_PREFIX}{n}"
        if task == "causal-lm":
            secret = random_secret(rng)
            if prompt_column and completion_column:
                record[prompt_column] = f"{body} {_SECRET_MARKER}"
                record[completion_column] = f" {secret}"
            else:
                record[text_column] = f"{body} {_SECRET_MARKER} {secret}"
        else:
            record[text_column] = body
            if label_column:
                record[label_column] = labels[int(rng.integers(0, len(labels)))]
        if not id_column:
            record["_canary_id"] = f"{CANARY_ID_PREFIX}{n}"
        pool.append(record)
    return pool


def canary_id(record: dict[str, Any], id_column: str | None) -> str:
    return str(record.get(id_column) if id_column else record.get("_canary_id"))


def split_secret(text: str) -> tuple[str, str] | None:
    """(prefix up to and including the marker, secret digits) of a causal-LM canary text."""
    head, sep, tail = text.rpartition(_SECRET_MARKER)
    if not sep:
        return None
    return head + sep, tail


def _write_private_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.chmod(path, 0o600)


def _write_private_ids(path: Path, ids: Sequence[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.writelines(i + "\n" for i in ids)


def _training_labels(ctx: StageContext) -> list[Any]:
    """Label values in the data's own type (ints stay ints), ordered like the data stage's label names."""
    from govern.data.io import read_records

    label_column = ctx.config.data.label_column
    if ctx.config.task != "classification" or not label_column:
        return []
    paths = ctx.data_paths()
    values: dict[str, Any] = {}
    for rec in read_records(Path(paths.train_path), paths.format or "auto"):
        value = rec.get(label_column)
        if value is not None:
            values.setdefault(str(value), value)
    names = paths.label_names or sorted(values)
    return [values.get(str(name), name) for name in names]


class CanaryStage:
    """Builds the canary pool and the secretly chosen half that training appends (runs before training).

    Outputs: ``pool_path`` (every canary), ``inserted_path`` (the records to append to training data),
    ``inserted_ids_path`` (their ids, one per line), ``pool_size``, ``inserted``; for causal LMs also the
    PII canaries' pool and inserted ids (their inserted copies are in ``inserted_path`` too). Evidence:
    none of its own (the membership stage reports the audit); the pipeline records the files as artifacts.
    """

    name = "canaries"
    outputs_model = CanaryFiles

    def __init__(self, seed: int | None = None) -> None:
        #: None (the default) draws a fresh secret seed per run; tests pass one to be reproducible.
        self._seed = seed

    def enabled(self, ctx: StageContext) -> bool:
        return bool(ctx.policy.membership.canaries.enabled)

    def input_digest(self, ctx: StageContext) -> str:
        policy = ctx.policy.membership.canaries
        data = ctx.config.data
        return digest_of("canaries/2", policy, ctx.config.task, data.text_column, data.label_column,
                         data.id_column, data.prompt_column, data.completion_column,
                         ctx.data_paths().train_path)

    def run(self, ctx: StageContext) -> StageResult:
        from govern.evidence import EvidenceModel

        policy = ctx.policy.membership.canaries
        data = ctx.config.data
        out_dir = ctx.stage_dir(self.name)
        os.chmod(out_dir, 0o700)
        seed = secrets.randbits(63) if self._seed is None else self._seed
        seed_path = out_dir / "secret_seed"
        fd = os.open(seed_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{seed}\n")
        rng = np.random.default_rng(seed)
        pool = make_canary_pool(policy.pool_size, task=ctx.config.task, text_column=data.text_column,
                                label_column=data.label_column, labels=_training_labels(ctx),
                                id_column=data.id_column, prompt_column=data.prompt_column,
                                completion_column=data.completion_column, rng=rng)
        chosen = rng.random(len(pool)) < 0.5
        inserted = [rec for rec, keep in zip(pool, chosen, strict=True) if keep]
        copies = inserted * policy.repetitions
        pool_path, inserted_path = out_dir / "pool.jsonl", out_dir / "inserted.jsonl"
        ids_path = out_dir / "inserted_ids.txt"
        _write_private_jsonl(pool_path, pool)
        _write_private_ids(ids_path, [canary_id(rec, data.id_column) for rec in inserted])
        artifacts = [artifact_for(pool_path, "canary-pool", "dataset")]
        pii_paths: dict[str, str] = {}
        if ctx.config.task == "causal-lm" and policy.pii_pool_size > 0:
            pii_copies, pii_paths = self._pii_canaries(ctx, out_dir, seed)
            copies += pii_copies
            artifacts.append(artifact_for(Path(pii_paths["pii_pool_path"]), "canary-pii-pool", "dataset"))
        _write_private_jsonl(inserted_path, copies)
        artifacts.append(artifact_for(inserted_path, "canaries-inserted", "dataset"))
        return StageResult(
            evidence=EvidenceModel(),
            artifacts=artifacts,
            outputs=CanaryFiles(pool_path=str(pool_path), inserted_path=str(inserted_path),
                                inserted_ids_path=str(ids_path), pool_size=len(pool), inserted=len(inserted),
                                **pii_paths),
        )

    @staticmethod
    def _pii_canaries(ctx: StageContext, out_dir: Path, seed: int) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The PII canary pool (:mod:`govern.audits.regurgitation`) and the copies of its inserted half that
        training appends. Drawn from a stream of its own under the same secret seed, so the ε audit's
        pool and coin flips are what they would be without it."""
        from govern.audits.regurgitation import make_pii_canary_pool

        policy = ctx.policy.membership.canaries
        data = ctx.config.data
        rng = np.random.default_rng([seed, 1])
        pool = make_pii_canary_pool(policy.pii_pool_size, text_column=data.text_column, id_column=data.id_column,
                                    prompt_column=data.prompt_column, completion_column=data.completion_column,
                                    rng=rng)
        chosen = rng.random(len(pool)) < 0.5
        inserted = [row for row, keep in zip(pool, chosen, strict=True) if keep]
        pool_path, ids_path = out_dir / "pii_pool.jsonl", out_dir / "pii_inserted_ids.txt"
        _write_private_jsonl(pool_path, pool)
        _write_private_ids(ids_path, [row["id"] for row in inserted])
        return ([row["record"] for row in inserted] * policy.repetitions,
                {"pii_pool_path": str(pool_path), "pii_inserted_ids_path": str(ids_path)})


def read_inserted_ids(path: Path) -> set[str]:
    return {line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()}


def audit_canaries(scores: np.ndarray, inserted: np.ndarray, *, guess_fraction: float, confidence: float,
                   delta: float, attack: str, accountant_epsilon: float | None,
                   exposures: Sequence[float] = (), exposures_nonmembers: Sequence[float] = (),
                   exposure_candidates: int | None = None, guess_fractions: Sequence[float] = (),
                   bounds: Sequence[str] = ("steinke",)) -> CanaryAudit:
    """Turn attack scores on the whole pool into :class:`CanaryAudit` (guesses, bounds, violation).

    Every requested bound (``steinke``, ``fdp``) at every abstention threshold (``guess_fraction`` and
    ``guess_fractions``) is computed at a Bonferroni-corrected confidence; the largest is the gated
    ``epsilon_lower_bound``, and it holds at ``confidence``. With the defaults this is exactly the one
    Steinke bound at ``guess_fraction``."""
    from govern.audits.fdp_audit import METHODS, candidate_bounds
    from govern.evidence import CanaryBound

    inserted = np.asarray(inserted, dtype=bool)
    candidates = candidate_bounds(np.asarray(scores, dtype=float), inserted,
                                  guess_fractions=[guess_fraction, *guess_fractions],
                                  methods=[METHODS[b] for b in bounds], confidence=confidence, delta=delta)
    gated = max(candidates, key=lambda c: c.epsilon_lower_bound)  # first of equals: the order asked for
    bound = gated.epsilon_lower_bound
    return CanaryAudit(
        pool_size=len(scores), inserted=int(inserted.sum()), guesses=gated.guesses, correct=gated.correct,
        confidence=confidence, epsilon_lower_bound=bound, exposure=[float(e) for e in exposures],
        attack=attack, delta=delta, accountant_epsilon=accountant_epsilon,
        violation=accountant_epsilon is not None and bound > accountant_epsilon,
        canaries_in_model=bool(inserted.any()), method=gated.method,
        exposure_candidates=exposure_candidates,
        exposure_max=None if exposure_candidates is None else math.log2(exposure_candidates + 1),
        exposure_nonmembers=[float(e) for e in exposures_nonmembers],
        bounds=[CanaryBound(method=c.method, guess_fraction=c.guess_fraction, guesses=c.guesses, correct=c.correct,
                            confidence=c.confidence, epsilon_lower_bound=c.epsilon_lower_bound) for c in candidates],
    )


# ------------------------------------------------------------------------------- the canary audit
def canary_attack(attacks: Sequence[str]) -> str:
    """The attack that ranks canaries, fixed before looking at results (choosing the best one after
    the fact would overstate the bound): reference when available, else loss. Never LiRA: canaries
    are i.i.d. random records, equally hard, so per-record calibration adds nothing — and swapping
    the attack when a policy enables LiRA could only weaken the bound the DP gate relies on."""
    return "reference" if "reference" in attacks else "loss"


def secret_exposures(model: Any, tokenizer: Any, texts: Sequence[str], *, candidates: int, seed: int,
                     batch_size: int, max_length: int, device: str | None) -> list[float]:
    """Exposure of each causal-LM canary's secret among ``candidates`` random secrets of the same format."""
    from govern.audits.scoring import AuditRecords, score_records

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
                 canary_policy: CanaryPolicy, delta: float, accountant_epsilon: float | None, batch_size: int,
                 max_length: int, seed: int, device: str | None, source: str) -> CanaryAudit:
    """Score the whole canary pool with the fixed attack and turn the guesses into the ε lower bound."""
    from govern.audits.scoring import attack_scores, score_records, to_audit_records

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
        kw: dict[str, Any] = dict(candidates=candidates, seed=seed, batch_size=batch_size, max_length=max_length, device=device)
        exposures = secret_exposures(model, tokenizer, ins, **kw)
        exposures_out = secret_exposures(model, tokenizer, outs, **kw)
    return audit_canaries(scores, inserted, guess_fraction=canary_policy.guess_fraction,
                          confidence=canary_policy.confidence, delta=delta, attack=attack,
                          accountant_epsilon=accountant_epsilon, exposures=exposures,
                          exposures_nonmembers=exposures_out, exposure_candidates=candidates,
                          guess_fractions=canary_policy.guess_fractions, bounds=canary_policy.bounds)

