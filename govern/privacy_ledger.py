"""The privacy budget ledger: ε spent on one data set across all the runs that trained on it.

Each DP run on a data set spends privacy on every record in it, so the guarantees compose. We compose
the runs' actual mechanisms — each a Poisson-subsampled Gaussian with its (q, σ, steps) — with Google's
dp-accounting, rather than adding ε values: adding is valid but loose, and composing the mechanisms is
what the accountants were built for. δ: the composition is reported at the largest δ any run used
(the δ a reader of each single run already accepted).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import dp_accounting
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from govern.evidence import LedgerEntry, TrainingEvidence

# dp-accounting logs a warning for every RDP order it cannot evaluate (harmless: that order is excluded).
logging.getLogger("absl").setLevel(logging.ERROR)


class Spend(Protocol):
    noise_multiplier: float | None
    sample_rate: float | None
    steps: int | None
    delta: float | None


def _event(q: float, sigma: float, steps: int) -> Any:
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)


def composed_epsilon(spends: Sequence[tuple[float, float, int]], delta: float, accountant: str) -> float:
    """ε of running every (q, σ, steps) mechanism on the same data, at ``delta``.

    ``accountant``: rdp / dp_accounting_rdp compose in RDP; prv / dp_accounting_pld compose privacy loss
    distributions (tighter). Any mechanism without noise makes the total infinite.
    """
    if not spends:
        return 0.0
    if any(sigma is None or sigma <= 0 for _, sigma, _ in spends):
        return float("inf")
    if accountant in ("rdp", "dp_accounting_rdp"):
        acc: Any = rdp_privacy_accountant.RdpAccountant()
    else:
        acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-3)
    acc.compose(dp_accounting.ComposedDpEvent([_event(q, s, n) for q, s, n in spends]))
    return float(acc.get_epsilon(delta))


def compose_ledger(fingerprint: str, earlier: Sequence[Any], current: TrainingEvidence, accountant: str
                   ) -> LedgerEntry:
    """Ledger entry for one data set: earlier runs' spends (from the lineage DB) plus this run's."""
    spends: list[tuple[float, float, int]] = []
    deltas: list[float] = []
    for row in list(earlier) + [current]:
        q, sigma, steps = row.sample_rate, row.noise_multiplier, row.steps
        if q is None or steps is None:
            continue
        spends.append((float(q), float(sigma) if sigma is not None else 0.0, int(steps)))
        if row.delta is not None:
            deltas.append(float(row.delta))
    delta = max(deltas) if deltas else 1e-5
    total = composed_epsilon(spends, delta, accountant)
    return LedgerEntry(dataset_fingerprint=fingerprint, runs=len(spends), total_epsilon=total, accountant=accountant)
