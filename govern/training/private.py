"""The one DP path: σ planned by govern's accountant, Opacus attached, and the training watched.

Both the built-in recipe (:mod:`govern.training.trainer`) and a user's own loop
(:meth:`govern.sessions.GovernedRun.make_private`) go through :func:`plan_privacy` and
:func:`attach_opacus`, so σ is always solved for the whole planned run by
:func:`govern.training.accounting.noise_multiplier` before the first step, and ε always comes from the
accountant's history.

:class:`IntegrityTracker` makes "the model that is signed is the model the accountant accounted for"
checkable: it snapshots the trainable parameters after every private optimizer step, and any change
between two private steps (a second, non-private optimizer, a manual ``param.data`` edit, loading other
weights) or an optimizer step the accountant did not count is recorded as a violation. It also records
whether the model actually trained (Opacus issue #820, PEFT issue #1402): the relative change of the
trainable weights, per-sample gradients present for every trainable parameter, the fraction of
per-sample gradients clipped, and σ as read from the DP optimizer.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from govern.config import DPSettings
from govern.errors import StageError
from govern.evidence import TrainingIntegrity
from govern.training import accounting

# Opacus' hooks on the first adapted layer see inputs that need no gradient; PyTorch warns about it
# on every backward although per-sample gradients are computed correctly (as in the trainer).
warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed")

#: Violations kept in the evidence (the count is exact; the list is a sample for the report).
MAX_VIOLATIONS = 20


@dataclass(frozen=True)
class PlannedPrivacy:
    """q, steps, δ and σ fixed for the whole run before the first step."""

    sample_rate: float
    steps_per_epoch: int
    total_steps: int
    delta: float
    noise_multiplier: float | None


def plan_privacy(n: int, batch_size: int, dp: DPSettings, *, max_steps: int | None, epochs: float,
                 max_delta: float | None) -> PlannedPrivacy:
    """σ solved for the configured target ε over *all* planned steps (never per epoch: optimistic).

    ``poisson_sampling: false`` is refused for a DP run: the loader's own batches are not the Poisson
    subsampling the accountant's ε assumes (Opacus calls it an approximation), so the ε recorded would be
    optimistic; and under torchrun every rank would read every record (Opacus shards only its sampler)."""
    if dp.enabled and not dp.poisson_sampling:
        raise StageError("training", "training.dp.poisson_sampling: false trains on the loader's own batches, "
                                     "which the accountant's ε (Poisson subsampling) does not cover: govern "
                                     "records no ε it cannot vouch for; remove the setting (Poisson sampling "
                                     "is the default)")
    sample_rate = accounting.poisson_sample_rate(n, batch_size)
    total_steps = max_steps or accounting.steps_for_epochs(epochs, sample_rate)
    # Default δ: 1/(10·n) — well below 1/n — and never above the policy's cap.
    delta = dp.delta if dp.delta is not None else min(accounting.default_delta(n), max_delta or 1.0)
    sigma: float | None = None
    if dp.enabled:
        if dp.noise_multiplier is not None:
            sigma = float(dp.noise_multiplier)
        else:
            assert dp.target_epsilon is not None  # the DP config validates one of the two
            sigma = accounting.noise_multiplier(dp.target_epsilon, sample_rate, total_steps, delta, dp.accountant)
    return PlannedPrivacy(sample_rate=sample_rate, steps_per_epoch=accounting.steps_per_epoch(sample_rate),
                          total_steps=total_steps, delta=delta, noise_multiplier=sigma)


def attach_opacus(model: nn.Module, optimizer: torch.optim.Optimizer, loader: Any, dp: DPSettings,
                  noise_multiplier: float, *, criterion: Any = None, noise_generator: torch.Generator | None = None,
                  wrap_model: bool = True) -> tuple[Any, Any, Any, Any, Any]:
    """Opacus' PrivacyEngine on (model, optimizer, loader) with govern's σ: (engine, model, optimizer,
    criterion, loader). ``criterion`` is Opacus' wrapped one in ghost mode, else the one given.

    ``wrap_model=False``: Opacus' hooks go on the user's own module, which is returned unwrapped (what a
    Hugging Face Trainer needs: it inspects, saves and moves the module it was given)."""
    from opacus import PrivacyEngine

    model.train()  # Opacus needs train mode before make_private ("No activations detected" otherwise)
    with warnings.catch_warnings():
        # "Secure RNG turned off": seeded noise is what makes runs reproducible and resumable.
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant=dp.accountant)
        kwargs: dict[str, Any] = {}
        if criterion is not None:
            kwargs["criterion"] = criterion
        if noise_generator is not None:
            kwargs["noise_generator"] = noise_generator
        made = engine.make_private(module=model, optimizer=optimizer, data_loader=loader,
                                   noise_multiplier=noise_multiplier, max_grad_norm=dp.max_grad_norm,
                                   poisson_sampling=dp.poisson_sampling, grad_sample_mode=dp.grad_sample_mode,
                                   wrap_model=wrap_model, **kwargs)
    if dp.grad_sample_mode == "ghost":
        private_model, private_optimizer, private_criterion, private_loader = made
    else:
        (private_model, private_optimizer, private_loader), private_criterion = made, criterion
    if not wrap_model:  # Opacus returns a hooks handle; the user's module is the model
        private_model = model
    return engine, private_model, private_optimizer, private_criterion, private_loader


def keep_ranks_in_lockstep(loader: Any) -> None:
    """Under DDP: make Opacus' distributed Poisson sampler yield a rank's empty draw as an empty batch.

    Opacus' ``DistributedUniformWithReplacementSampler`` skips an empty draw, so that rank takes fewer steps
    per epoch than the others: the ranks' all-reduces then pair different logical steps (or one rank waits
    forever at the end of an epoch loop), and a record's chance of joining a step is no longer the q the
    accountant uses (a skipped draw is drawn again). With a per-rank expected batch of 8 a draw is empty
    once in ~3,000. Opacus' one-process sampler yields empty batches, which its optimizer handles (a zero
    clipped sum, the noise still added on rank 0); this makes every rank do the same: 1/q draws per epoch,
    all of them steps, in lockstep."""
    from opacus.utils.uniform_sampler import DistributedUniformWithReplacementSampler

    sampler = getattr(loader, "batch_sampler", None)
    if type(sampler) is DistributedUniformWithReplacementSampler:
        # The DataLoader refuses a new batch_sampler after construction; the sampler's state stays Opacus'.
        sampler.__class__ = _lockstep_class()


@functools.cache
def _lockstep_class() -> type:
    from opacus.utils.uniform_sampler import DistributedUniformWithReplacementSampler

    class LockstepDistributedSampler(DistributedUniformWithReplacementSampler):  # type: ignore[misc]
        def __iter__(self) -> Any:
            # Opacus' own __iter__ (opacus/utils/uniform_sampler.py), with the empty draw kept.
            if self.shuffle:
                g = torch.Generator()
                g.manual_seed(self.shuffle_seed + self.epoch)
                indices = torch.randperm(self.total_size, generator=g)
            else:
                indices = torch.arange(self.total_size)
            indices = indices[self.rank:self.total_size:self.num_replicas]
            for _ in range(self.num_batches):
                mask = torch.rand(self.num_samples, generator=self.generator) < self.sample_rate
                yield indices[mask.nonzero(as_tuple=False).reshape(-1)]

    return LockstepDistributedSampler


def accounted_privacy(engine: Any, delta: float | None, accountant: str) -> tuple[list[tuple[float, float, int]],
                                                                               dict[str, float]]:
    """What the evidence records of a DP run: the accountant's (σ, q, steps) history and ε from it under every
    accountant govern cross-checks with, the live accountant's own ε under its name — never a configured
    value echoed back. ``([], {})`` without an engine (non-private training)."""
    if engine is None or delta is None:
        return [], {}
    history = [(float(s), float(q), int(k)) for s, q, k in engine.accountant.history]
    live = float(engine.get_epsilon(delta))
    epsilons = accounting.all_epsilons(history, delta)
    epsilons[accountant] = live
    return history, epsilons


def resumed_stream_seed(base: int, rank: int, step: int) -> int:
    """The seed of a rank's Poisson stream after a resume at ``step`` under torchrun. Only rank 0's generator
    states are saved (it writes the checkpoint), so every other rank starts a fresh stream — one per (rank,
    step), so two resumes never replay each other's draws. The draws differ from an uninterrupted run's, but
    are Poisson with the same q: the accounting is unchanged."""
    return base + 7 * rank + 1 + 31 * step


def accounted_steps(engine: Any) -> int:
    """Optimizer steps the accountant has composed (Opacus' history: (σ, q, steps) entries)."""
    return sum(int(h[2]) for h in engine.accountant.history) if engine is not None else 0


_DDP_WRAPPERS = ("DistributedDataParallel", "DifferentiallyPrivateDistributedDataParallel")


def trainable_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the trainable parameters by name (the tracker's reference for "did it train")."""
    with torch.no_grad():
        return {n: p.detach().clone() for n, p in unwrap(model).named_parameters() if p.requires_grad}


def unwrap(model: Any) -> nn.Module:
    """The user's module under Opacus' GradSampleModule / DPDDP wrappers."""
    inner: Any = model
    while True:
        if isinstance(getattr(inner, "_module", None), nn.Module):  # Opacus' GradSampleModule
            inner = inner._module
        elif type(inner).__name__ in _DDP_WRAPPERS and isinstance(getattr(inner, "module", None), nn.Module):
            inner = inner.module
        else:
            return inner  # type: ignore[no-any-return]  # an nn.Module by construction


class IntegrityTracker:
    """Watches the trainable parameters across optimizer steps (see the module docstring).

    ``optimizer``: the optimizer whose real updates count (for DP, Opacus' ``original_optimizer``: its
    step hooks fire once per logical step, after Opacus clipped, noised and accounted). ``engine``: the
    PrivacyEngine whose accountant must count every such step (None: non-private training)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, engine: Any = None,
                 dp_optimizer: Any = None, planned: PlannedPrivacy | None = None,
                 initial: dict[str, torch.Tensor] | None = None) -> None:
        self.model = unwrap(model)
        #: σ and q the run was planned with: an accountant entry with others means they were changed mid-run.
        self.planned = planned
        self.engine = engine
        self.dp_optimizer = dp_optimizer
        self.names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        # ``initial``: the trainable weights before training, when they were loaded over since (a resumed
        # Trainer loads its vouched-for checkpoint before the optimizer exists): the relative change is
        # measured from them, and the current weights are the state after the last private step.
        self.last = self._copy()
        self.initial = ([initial[n].detach().clone() for n in self.names] if initial is not None
                        else [t.clone() for t in self.last])
        self.violation_count = 0
        self.violations: list[str] = []
        self.steps = 0
        self._accounted_at_last = accounted_steps(engine)
        self.samples_seen = 0
        self.samples_clipped = 0
        self.missing_grad_sample: set[str] = set()
        self.clip_measured = False
        optimizer.register_step_pre_hook(self._before_step)
        optimizer.register_step_post_hook(self._after_step)
        # Opacus' flat-clipping optimizers; the distributed one (torchrun) clips as its parent does.
        if dp_optimizer is not None and dp_optimizer.__class__.__name__ in ("DPOptimizer", "DistributedDPOptimizer"):
            self._wrap_clipping(dp_optimizer)

    # ----------------------------------------------------------------------------------- snapshots
    def _params(self) -> list[torch.Tensor]:
        named = dict(self.model.named_parameters())
        return [named[n] for n in self.names]

    def _copy(self) -> list[torch.Tensor]:
        with torch.no_grad():
            return [p.detach().clone() for p in self._params()]

    def _changed_since_last(self) -> list[str]:
        with torch.no_grad():
            return [n for n, p, q in zip(self.names, self._params(), self.last, strict=True) if not torch.equal(p, q)]

    def _violate(self, message: str) -> None:
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(message)

    def rebase(self) -> None:
        """Accept the current weights as the state after the last private step (a checkpoint was loaded
        by govern itself); the initial weights stay the reference for the relative change."""
        self.last = self._copy()
        self._accounted_at_last = accounted_steps(self.engine)

    # ------------------------------------------------------------------------------- step hooks
    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        changed = self._changed_since_last()
        if changed:
            self._violate(f"before optimizer step {self.steps + 1}: {len(changed)} trainable tensor(s) changed "
                          f"outside a private step (first: {changed[0]})")

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.steps += 1
        if self.engine is not None:
            now = accounted_steps(self.engine)
            if now != self._accounted_at_last + 1:
                self._violate(f"optimizer step {self.steps} was not a private step: the accountant counted "
                              f"{now - self._accounted_at_last} step(s) for it")
            self._accounted_at_last = now
        self.last = self._copy()

    def _wrap_clipping(self, dp_optimizer: Any) -> None:
        """Count clipped per-sample gradients and check every trainable parameter has them, just before
        Opacus clips (hooks/functorch/ew modes; ghost clipping never materialises them)."""
        original = dp_optimizer.clip_and_accumulate
        covered = {id(p) for p in dp_optimizer.params}
        trainable = dict(zip(self.names, self._params(), strict=True))

        def clip_and_accumulate() -> None:
            for name, p in trainable.items():
                if id(p) not in covered or getattr(p, "grad_sample", None) is None:
                    self.missing_grad_sample.add(name)
            samples = dp_optimizer.grad_samples
            if samples and len(samples[0]):
                with torch.no_grad():
                    norms = torch.stack([g.reshape(len(g), -1).norm(2, dim=-1).to(samples[0].device)
                                         for g in samples], dim=1).norm(2, dim=1)
                    self.samples_seen += int(norms.numel())
                    self.samples_clipped += int((norms > dp_optimizer.max_grad_norm).sum().item())
                self.clip_measured = True
            original()

        dp_optimizer.clip_and_accumulate = clip_and_accumulate

    # ---------------------------------------------------------------------------------- evidence
    def evidence(self) -> TrainingIntegrity:
        """What the run records at the end: call once the model is final (before it is saved)."""
        changed = self._changed_since_last()
        if changed:
            self._violate(f"after the last optimizer step: {len(changed)} trainable tensor(s) changed outside a "
                          f"private step (first: {changed[0]}; other weights loaded or edited?)")
        if self.engine is not None and accounted_steps(self.engine) != self._accounted_at_last:
            self._violate("the accountant counted steps that no optimizer update followed")
        planned = self.planned
        if self.engine is not None and planned is not None and planned.noise_multiplier is not None:
            for sigma, rate, steps in self.engine.accountant.history:
                if abs(float(sigma) - planned.noise_multiplier) > 1e-9 or abs(float(rate) - planned.sample_rate) > 1e-12:
                    self._violate(f"{int(steps)} step(s) ran with σ={float(sigma):.4g}, q={float(rate):.4g} instead of the "
                                  f"planned σ={planned.noise_multiplier:.4g}, q={planned.sample_rate:.4g} (changed "
                                  "during training; ε is still the accountant's)")
        with torch.no_grad():
            current = self._params()
            delta_sq = sum(float((p.float() - q.float()).pow(2).sum()) for p, q in zip(current, self.initial,
                                                                                       strict=True))
            base_sq = sum(float(q.float().pow(2).sum()) for q in self.initial)
            changed_tensors = sum(1 for p, q in zip(current, self.initial, strict=True) if not torch.equal(p, q))
        relative = (delta_sq ** 0.5) / (base_sq ** 0.5) if base_sq > 0 else (float("inf") if delta_sq > 0 else 0.0)
        dp_opt = self.dp_optimizer
        return TrainingIntegrity(
            tracked_tensors=len(self.names),
            tracked_params=sum(int(q.numel()) for q in self.initial),
            optimizer_steps=self.steps,
            accounted_steps=accounted_steps(self.engine) if self.engine is not None else None,
            violations=self.violation_count,
            violation_details=list(self.violations),
            relative_weight_change=relative,
            changed_tensors=changed_tensors,
            per_sample_grads_all_params=(not self.missing_grad_sample) if self.clip_measured else None,
            missing_per_sample_grads=sorted(self.missing_grad_sample)[:MAX_VIOLATIONS],
            clipped_fraction=(self.samples_clipped / self.samples_seen) if self.samples_seen else None,
            optimizer_noise_multiplier=float(dp_opt.noise_multiplier) if dp_opt is not None else None,
            optimizer_max_grad_norm=float(dp_opt.max_grad_norm) if dp_opt is not None else None,
        )
