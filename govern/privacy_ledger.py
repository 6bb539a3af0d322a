"""The privacy-budget ledger: ε spent per data set, composed over every DP run that trained on it.

Differential privacy composes: training twice on the same data set spends more than either run alone.
Adding the per-run ε values (basic composition) is valid but loose; the accountants compose the
*mechanisms* instead. For each run the lineage DB holds what its accountant used — the Poisson
sampling rate q, the noise multiplier σ and the number of steps — so the ledger rebuilds every run as
``steps × PoissonSampled(q, Gaussian(σ))`` and composes all of them in one dp-accounting accountant,
converting to ε **once**, at the ledger's δ:

- ``rdp`` / ``dp_accounting_rdp``: :class:`dp_accounting.rdp.RdpAccountant` (RDP curves add up);
- ``prv`` / ``dp_accounting_pld``: :class:`dp_accounting.pld.PLDAccountant` (privacy-loss
  distributions convolve; Opacus' PRV accountant is the same idea, so PRV runs compose as PLD here),
  with a value discretisation of 1e-3 — dp-accounting rounds pessimistically, so the result is an
  upper bound.

The ledger's δ is the largest δ any of its runs used (composing at the same δ the runs were each
accounted at keeps the total comparable with the per-run ε and is the pessimistic choice: a larger δ
would give a smaller ε). A run whose q/σ/steps were not recorded cannot be recomposed; it enters by
basic composition with its own recorded (ε_i, δ_i): the total is ε_accountant(rest, δ − Σδ_i) + Σε_i,
and infinite when δ − Σδ_i ≤ 0. A run trained without DP makes the total infinite.

Only runs that trained on a data set are charged to it. The lineage DB lists every data set a run
recorded (train, eval, their redacted copies); DP-SGD's guarantee covers the records it took gradients
on, and the evaluation set is only scored (loss, membership non-members, fairness). Its role comes
from the artifact name the pipeline gives it (``train``/``eval``, ``.redacted`` copies, canary files):
only a name that says evaluation is exempt; anything unrecognised is charged (never optimistic).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from govern.evidence import LedgerEntry, TrainingEvidence
from govern.lineage.records import LedgerRow

AccountantName = Literal["rdp", "prv", "dp_accounting_rdp", "dp_accounting_pld"]
_RDP = {"rdp", "dp_accounting_rdp"}
_PLD = {"prv", "dp_accounting_pld", "pld"}
PLD_DISCRETIZATION = 1e-3


def accountant_family(accountant: str) -> Literal["rdp", "pld"]:
    if accountant in _RDP:
        return "rdp"
    if accountant in _PLD:
        return "pld"
    raise ValueError(f"unknown accountant '{accountant}' (expected one of rdp, prv, dp_accounting_rdp, "
                     "dp_accounting_pld)")


DatasetRole = Literal["train", "eval", "canary", "unknown"]


def dataset_role(name: str | None) -> DatasetRole:
    """The role a data set played in a run, from its artifact name: ``train``, ``train.redacted`` and
    ``train.jsonl`` are training data, ``eval``/``eval.redacted`` evaluation data, ``canary-pool`` and
    ``canaries-inserted`` canaries (inserted into training); anything else ``unknown``."""
    stem = (name or "").strip().lower().split(".", 1)[0]
    if stem == "train":
        return "train"
    if stem == "eval":
        return "eval"
    if stem.startswith("canar"):
        return "canary"
    return "unknown"


def trained_on(row: LedgerRow) -> bool:
    """Whether the run in ``row`` trained on the row's data set (so its ε is charged there). Only an
    evaluation role is exempt: an unknown role is charged, so the ledger is never optimistic."""
    return dataset_role(row.dataset_name) != "eval"


def recomposable(row: LedgerRow) -> bool:
    return (row.noise_multiplier is not None and row.sample_rate is not None and row.steps is not None
            and row.noise_multiplier > 0 and 0 < row.sample_rate <= 1 and row.steps >= 0)


def recorded_epsilon(row: LedgerRow, accountant: str) -> float:
    """The run's own ε for basic composition: the requested accountant's, else the largest recorded."""
    if accountant in row.epsilon:
        return row.epsilon[accountant]
    return max(row.epsilon.values()) if row.epsilon else math.inf


def composed_epsilon(runs: Sequence[LedgerRow], accountant: str, delta: float) -> float:
    """ε of all ``runs`` composed under ``accountant`` at ``delta`` (see the module docstring).

    The policy check of ``privacy.max_total_epsilon_per_dataset`` calls this with the runs already on a
    data set plus the current one. Never optimistic: any run without DP makes it ``inf``.
    """
    if not runs:
        return 0.0
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    family = accountant_family(accountant)
    if any(not r.dp_enabled for r in runs):
        return math.inf
    exact = [r for r in runs if recomposable(r)]
    basic = [r for r in runs if not recomposable(r)]
    basic_eps = sum(recorded_epsilon(r, accountant) for r in basic)
    basic_delta = sum(r.delta if r.delta is not None else math.inf for r in basic)
    remaining = delta - basic_delta
    if basic and (not math.isfinite(basic_eps) or remaining <= 0):
        return math.inf
    if not exact:
        return basic_eps
    return _accountant_epsilon(exact, family, remaining) + basic_eps


def _accountant_epsilon(runs: Sequence[LedgerRow], family: str, delta: float) -> float:
    import dp_accounting
    from dp_accounting import pld, rdp

    # dp-accounting logs a warning for every RDP order it cannot evaluate; the result stays valid.
    logging.getLogger("absl").setLevel(logging.ERROR)
    accountant: Any
    if family == "rdp":
        accountant = rdp.RdpAccountant()
    else:
        accountant = pld.PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    for r in runs:
        assert r.sample_rate is not None and r.noise_multiplier is not None and r.steps is not None
        event = dp_accounting.PoissonSampledDpEvent(r.sample_rate, dp_accounting.GaussianDpEvent(r.noise_multiplier))
        if r.steps > 0:
            accountant.compose(event, r.steps)
    return float(accountant.get_epsilon(delta))


def ledger_delta(runs: Sequence[LedgerRow]) -> float:
    """The δ a data set's composed ε is stated at: the largest δ among its runs (see module docstring).
    With runs that can only enter by basic composition, their δs must fit too, so it is the sum."""
    deltas = [r.delta for r in runs if r.delta is not None]
    if not deltas:
        return 1e-5
    if all(recomposable(r) for r in runs):
        return max(deltas)
    return min(sum(deltas), 0.999999)


def current_run_row(run_id: str, fingerprint: str, training: TrainingEvidence) -> LedgerRow:
    """The run being gated, as a ledger row (it is not in the DB's ledger until its evidence is stored)."""
    return LedgerRow(run_id=run_id, dataset_fingerprint=fingerprint, dp_enabled=training.dp_enabled,
                     epsilon=dict(training.epsilon), delta=training.delta,
                     noise_multiplier=training.noise_multiplier, sample_rate=training.sample_rate,
                     steps=training.steps, accountant=training.accountant, started_at=datetime.now(UTC),
                     run_status="running")


def compose_ledger(fingerprint: str, earlier: Sequence[LedgerRow], current: LedgerRow, accountant: str
                   ) -> LedgerEntry:
    """Ledger entry for one data set: earlier runs (from the lineage DB) plus the run being gated."""
    runs = [*earlier, current]
    total = composed_epsilon(runs, accountant, ledger_delta(runs))
    return LedgerEntry(dataset_fingerprint=fingerprint, runs=len(runs), total_epsilon=total, accountant=accountant)
