"""Privacy accounting for DP-SGD with Poisson sampling: ε from σ, σ from ε, under several accountants.

Pure functions over (sample rate q, noise multiplier σ, steps, δ). Two independent implementations:

* Opacus' own accountants — ``rdp`` (Rényi DP, Mironov et al.) and ``prv`` (privacy random variables,
  Gopi et al.; Opacus returns the *upper* bound of its estimate);
* Google's ``dp-accounting`` — ``dp_accounting_rdp`` and ``dp_accounting_pld`` (privacy loss
  distributions, pessimistic discretisation).

The training stage records all four for the same history, so a reviewer can see that the ε the policy
gates on agrees with an implementation that Opacus did not write. ``govern privacy plan`` is a thin
view over :func:`plan`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from govern.errors import ConfigError

AccountantName = Literal["rdp", "prv", "dp_accounting_rdp", "dp_accounting_pld"]
ACCOUNTANTS: tuple[AccountantName, ...] = ("rdp", "prv", "dp_accounting_rdp", "dp_accounting_pld")

#: (noise_multiplier, sample_rate, steps) — the shape of Opacus' ``accountant.history`` entries.
HistoryEntry = tuple[float, float, int]

#: σ above this is "no meaningful training": a target ε that needs more is refused.
MAX_NOISE_MULTIPLIER = 500.0


def poisson_sample_rate(dataset_size: int, batch_size: int) -> float:
    """q as Opacus' Poisson loader sets it: one over the number of batches of the plain loader."""
    if dataset_size < 1 or batch_size < 1:
        raise ValueError("dataset_size and batch_size must be positive")
    return 1.0 / math.ceil(dataset_size / batch_size)


def steps_per_epoch(sample_rate: float) -> int:
    """Batches per epoch of Opacus' Poisson sampler (``int(1 / q)``)."""
    return int(1 / sample_rate)


def steps_for_epochs(epochs: float, sample_rate: float) -> int:
    """Total optimizer steps for (possibly fractional) ``epochs``."""
    return max(1, int(round(epochs * steps_per_epoch(sample_rate))))


def default_delta(n: int) -> float:
    """δ = 1 / (10·n): well below 1/n, the level at which "leak one record in full" becomes allowed."""
    return 1.0 / (10 * n)


def _opacus_accountant(name: str, history: Sequence[HistoryEntry]) -> object:
    from opacus.accountants import create_accountant

    accountant = create_accountant(mechanism=name)
    accountant.history = [(float(s), float(q), int(k)) for s, q, k in history]
    return accountant


def _dp_event(history: Sequence[HistoryEntry]):  # type: ignore[no-untyped-def]  # returns a dp_accounting event (untyped library)
    import dp_accounting

    return dp_accounting.ComposedDpEvent([
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(float(q), dp_accounting.GaussianDpEvent(float(s))), int(k))
        for s, q, k in history
    ])


def epsilon_from_history(history: Sequence[HistoryEntry], delta: float, accountant: AccountantName) -> float:
    """ε after the steps in ``history`` (Opacus' format), under one accountant."""
    if not history:
        return 0.0
    if accountant in ("rdp", "prv"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "optimal order is the largest alpha": ε is still an upper bound
            return float(_opacus_accountant(accountant, history).get_epsilon(delta))  # type: ignore[attr-defined]  # an Opacus accountant (untyped library)
    from dp_accounting import pld, rdp

    if accountant == "dp_accounting_rdp":
        acc = rdp.RdpAccountant()  # dp-accounting's own order grid: an independent check
    elif accountant == "dp_accounting_pld":
        acc = pld.PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    else:
        raise ValueError(f"unknown accountant '{accountant}' (expected one of {ACCOUNTANTS})")
    with _quiet_absl():
        acc.compose(_dp_event(history))
        return float(acc.get_epsilon(delta))


#: PLD grid step. Discretisation is pessimistic (ε rounds up), finer = tighter but slower.
PLD_DISCRETIZATION = 1e-4


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
    """dp-accounting logs a warning per RDP order it drops (tiny σ); the result already excludes
    them, so the warnings are noise on the user's terminal."""
    log = logging.getLogger("absl")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(old)


def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
            accountant: AccountantName) -> float:
    """ε for ``steps`` Poisson-sampled Gaussian steps with σ and q."""
    return epsilon_from_history([(noise_multiplier, sample_rate, steps)], delta, accountant)


def all_epsilons(history: Sequence[HistoryEntry], delta: float) -> dict[str, float]:
    """ε under every accountant (the training evidence records all four)."""
    return {name: epsilon_from_history(history, delta, name) for name in ACCOUNTANTS}


def noise_multiplier(target_epsilon: float, sample_rate: float, steps: int, delta: float,
                     accountant: AccountantName, tolerance: float = 0.01) -> float:
    """The smallest σ (within ``tolerance`` in ε) whose ε is at most ``target_epsilon``.

    Opacus accountants use Opacus' own search (what ``make_private_with_epsilon`` does);
    dp-accounting ones use its ``calibrate_dp_mechanism``. Both return σ on the private side.
    """
    _check(target_epsilon, sample_rate, steps, delta)
    if accountant in ("rdp", "prv"):
        from opacus.accountants.utils import get_noise_multiplier

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta,
                                                  sample_rate=sample_rate, steps=steps, accountant=accountant,
                                                  epsilon_tolerance=tolerance))
        except ValueError as exc:
            raise ConfigError("dp", [f"target ε={target_epsilon} is unreachable with q={sample_rate:.4g}, "
                                     f"{steps} steps, δ={delta:.3g}: {exc}"]) from None
    import dp_accounting
    from dp_accounting import pld, rdp

    def fresh() -> dp_accounting.PrivacyAccountant:
        if accountant == "dp_accounting_rdp":
            return rdp.RdpAccountant()
        # A coarser grid while searching: still pessimistic (σ errs on the private side), much faster.
        return pld.PLDAccountant(value_discretization_interval=1e-3)

    def event(sigma: float) -> dp_accounting.DpEvent:
        return _dp_event([(sigma, sample_rate, steps)])

    # Bracket around Opacus' RDP answer: PLD/RDP need a little less noise than RDP's bound, never
    # much less; a bracket reaching σ→0 makes the PLD grid explode in memory.
    sigma_rdp = _rdp_sigma(target_epsilon, sample_rate, steps, delta, tolerance)
    low = max(0.05, 0.25 * sigma_rdp)
    try:
        with _quiet_absl():
            sigma = dp_accounting.calibrate_dp_mechanism(
                fresh, event, target_epsilon, delta,
                bracket_interval=dp_accounting.ExplicitBracketInterval(low, sigma_rdp * 1.05 + 1e-3), tol=1e-3)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError("dp", [f"target ε={target_epsilon} is unreachable with q={sample_rate:.4g}, "
                                 f"{steps} steps, δ={delta:.3g}: {exc}"]) from None
    return float(sigma)


@functools.lru_cache(maxsize=64)
def _rdp_sigma(target_epsilon: float, sample_rate: float, steps: int, delta: float, tolerance: float) -> float:
    return noise_multiplier(target_epsilon, sample_rate, steps, delta, "rdp", tolerance)


def _check(value: float | None, sample_rate: float, steps: int, delta: float) -> None:
    problems = []
    if value is not None and value <= 0:
        problems.append(f"must be > 0 (got {value})")
    if not 0 < sample_rate <= 1:
        problems.append(f"sample rate must be in (0, 1] (got {sample_rate})")
    if steps < 1:
        problems.append(f"steps must be ≥ 1 (got {steps})")
    if not 0 < delta < 1:
        problems.append(f"δ must be in (0, 1) (got {delta})")
    if problems:
        raise ConfigError("privacy plan", problems)


class PlanRow(BaseModel):
    accountant: AccountantName
    epsilon: float
    noise_multiplier: float


class PrivacyPlan(BaseModel):
    """What ``govern privacy plan`` prints: the inputs and, per accountant, the (ε, σ) pair."""

    sample_rate: float
    steps: int
    epochs: float | None = None
    delta: float
    dataset_size: int | None = None
    batch_size: int | None = None
    given: Literal["noise_multiplier", "target_epsilon"]
    target_epsilon: float | None = None
    noise_multiplier: float | None = None
    delta_source: str = Field(default="given", description="Where δ came from: given, 1/(10·n), or the "
                              "policy's max_delta (the smaller of the two, as a run chooses it).")
    policy: str | None = Field(default=None, description="The policy whose max_delta bounded δ (name version).")
    rows: list[PlanRow] = Field(default_factory=list)


def plan(
    *,
    sample_rate: float | None = None,
    dataset_size: int | None = None,
    batch_size: int | None = None,
    steps: int | None = None,
    epochs: float | None = None,
    delta: float | None = None,
    noise_multiplier_value: float | None = None,
    target_epsilon: float | None = None,
    accountants: Sequence[AccountantName] = ACCOUNTANTS,
    max_delta: float | None = None,
    policy: str | None = None,
) -> PrivacyPlan:
    """Given q (or n and batch size), steps (or epochs), δ and σ or a target ε: the other, per accountant.

    δ defaults as a run chooses it: 1/(10·n), capped at the policy's ``max_delta`` (``policy`` names
    that policy in the result). Without the dataset size there is no default: planning at the cap alone
    would be optimistic (a larger δ gives a smaller ε) whenever the run's 1/(10·n) is below it.
    """
    problems: list[str] = []
    if sample_rate is None:
        if dataset_size is None or batch_size is None:
            problems.append("give --sample-rate, or --dataset-size with --batch-size")
        elif dataset_size < 1 or batch_size < 1:
            problems.append("--dataset-size and --batch-size must be ≥ 1")
        else:
            sample_rate = poisson_sample_rate(dataset_size, batch_size)
    if (steps is None) == (epochs is None):
        problems.append("give exactly one of --steps or --epochs")
    if (noise_multiplier_value is None) == (target_epsilon is None):
        problems.append("give exactly one of --noise-multiplier or --target-epsilon")
    if noise_multiplier_value is not None and noise_multiplier_value <= 0:
        problems.append(f"--noise-multiplier must be > 0 (got {noise_multiplier_value})")
    if target_epsilon is not None and target_epsilon <= 0:
        problems.append(f"--target-epsilon must be > 0 (got {target_epsilon})")
    if epochs is not None and epochs <= 0:
        problems.append(f"--epochs must be > 0 (got {epochs})")
    delta_source = "given"
    if delta is None:
        if dataset_size is None:
            problems.append("give --delta (or --dataset-size for the default 1/(10·n))")
        elif dataset_size >= 1:
            delta, delta_source = default_delta(dataset_size), "1/(10·n)"
            if max_delta is not None and max_delta < delta:
                delta, delta_source = max_delta, (f"the policy's max_delta, as a run uses it (1/(10·n) = "
                                                  f"{default_delta(dataset_size):.3g} is above it)")
            elif max_delta is not None:
                delta_source = f"1/(10·n), within the policy's max_delta {max_delta:g}"
    elif max_delta is not None and delta > max_delta:
        delta_source = f"given, above the policy's max_delta {max_delta:g}: privacy.max_delta would fail"
    if problems:
        raise ConfigError("privacy plan", problems)
    assert sample_rate is not None and delta is not None
    if steps is None:
        assert epochs is not None
        steps = steps_for_epochs(epochs, sample_rate)
    _check(None, sample_rate, steps, delta)

    rows: list[PlanRow] = []
    for name in accountants:
        if noise_multiplier_value is not None:
            eps = epsilon(noise_multiplier_value, sample_rate, steps, delta, name)
            rows.append(PlanRow(accountant=name, epsilon=eps, noise_multiplier=noise_multiplier_value))
        else:
            assert target_epsilon is not None
            sigma = noise_multiplier(target_epsilon, sample_rate, steps, delta, name)
            rows.append(PlanRow(accountant=name, epsilon=epsilon(sigma, sample_rate, steps, delta, name),
                                noise_multiplier=sigma))
    return PrivacyPlan(
        sample_rate=sample_rate, steps=steps, epochs=epochs, delta=delta, dataset_size=dataset_size,
        batch_size=batch_size, given="noise_multiplier" if noise_multiplier_value is not None else "target_epsilon",
        target_epsilon=target_epsilon, noise_multiplier=noise_multiplier_value, delta_source=delta_source,
        policy=policy if max_delta is not None else None, rows=rows,
    )
