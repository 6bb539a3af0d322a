"""Training integrity, in small: the tracker on a real Opacus optimizer, and the policy rules that judge it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from govern.config import DPSettings
from govern.policy import evaluate
from govern.policy.schema import Policy
from govern.training.private import IntegrityTracker, attach_opacus

# Opacus' hooks on a frozen first layer: PyTorch warns on every backward, gradients are still right.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

POLICY = Policy.model_validate({"apiVersion": "govern.dev/v1", "kind": "Policy",
                                "metadata": {"name": "t", "version": "1"}})


def _private(steps: int, after_step: Any = None) -> tuple[nn.Module, IntegrityTracker]:
    from govern.training.private import plan_privacy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    model[0].requires_grad_(False)  # a frozen layer is not tracked and needs no per-sample gradients
    data = torch.utils.data.TensorDataset(torch.randn(64, 6), torch.randint(0, 2, (64,)))
    loader = torch.utils.data.DataLoader(data, batch_size=16)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    engine, model, optimizer, _, loader = attach_opacus(model, optimizer, loader, DPSettings(noise_multiplier=1.0),
                                                        1.0)
    planned = plan_privacy(64, 16, DPSettings(noise_multiplier=1.0), max_steps=steps, epochs=1, max_delta=1e-5)
    tracker = IntegrityTracker(model, optimizer.original_optimizer, engine=engine, dp_optimizer=optimizer,
                               planned=planned)
    done = 0
    while done < steps:
        for x, y in loader:
            if done >= steps or len(y) == 0:
                continue
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
            done += 1
            if after_step is not None:
                after_step(model, optimizer, done)
    return model, tracker


def test_private_steps_only_leave_no_violation_and_record_what_trained() -> None:
    _, tracker = _private(5)
    ev = tracker.evidence()
    assert ev.violations == 0 and ev.optimizer_steps == ev.accounted_steps == 5
    assert ev.tracked_tensors == 2 and ev.tracked_params == 8 * 2 + 2
    assert ev.per_sample_grads_all_params is True and ev.relative_weight_change > 0
    assert ev.clipped_fraction is not None and 0 <= ev.clipped_fraction <= 1
    assert ev.optimizer_noise_multiplier == 1.0 and ev.optimizer_max_grad_norm == 1.0


def test_loading_other_weights_before_finish_is_a_violation() -> None:
    model, tracker = _private(3)
    other = {k: v + 1.0 for k, v in model._module.state_dict().items()}  # type: ignore[operator]
    model._module.load_state_dict(other)  # type: ignore[operator]
    ev = tracker.evidence()
    assert ev.violations == 1 and "after the last optimizer step" in ev.violation_details[0]


def test_an_unaccounted_step_of_the_underlying_optimizer_is_a_violation() -> None:
    def sneak(model: Any, optimizer: Any, done: int) -> None:
        if done == 2:  # Opacus' wrapped optimizer bypassed: no clipping, no noise, no accounting
            for p in optimizer.params:
                p.grad = torch.ones_like(p)
            optimizer.original_optimizer.step()

    _, tracker = _private(4, sneak)
    ev = tracker.evidence()
    assert ev.violations == 1 and "was not a private step" in ev.violation_details[0]
    assert ev.optimizer_steps == 5 and ev.accounted_steps == 4


def test_lowering_the_noise_during_training_is_a_violation() -> None:
    def quieter(model: Any, optimizer: Any, done: int) -> None:
        if done == 2:
            optimizer.noise_multiplier = 0.1

    _, tracker = _private(4, quieter)
    ev = tracker.evidence()
    assert ev.violations == 1 and "instead of the planned σ=1" in ev.violation_details[0]


def _doc(**integrity: Any) -> dict[str, Any]:
    base = {"tracked_tensors": 2, "tracked_params": 18, "optimizer_steps": 4, "accounted_steps": 4,
            "violations": 0, "relative_weight_change": 0.2, "per_sample_grads_all_params": True}
    return {"training": {"dp_enabled": True, "epsilon": {"rdp": 1.0}, "delta": 1e-6, "n_train": 100,
                         "integrity": {**base, **integrity}}}


@pytest.mark.parametrize(("integrity", "failed"), [
    ({}, set()),
    ({"violations": 2, "violation_details": ["before optimizer step 3: 1 trainable tensor(s) changed"]},
     {"training.integrity"}),
    ({"relative_weight_change": 0.0}, {"training.weights_changed"}),
    ({"per_sample_grads_all_params": False, "missing_per_sample_grads": ["head.weight"]},
     {"training.per_sample_gradients"}),
])
def test_the_default_policy_blocks_integrity_failures(integrity: dict[str, Any], failed: set[str]) -> None:
    decision = evaluate(POLICY, _doc(**integrity), final=False)
    training = {r.rule_id for r in decision.results if r.rule_id.startswith("training.") and r.status == "fail"}
    assert training == failed
    assert (decision.decision == "block") == bool(failed)


def test_evidence_recorded_before_integrity_tracking_is_not_judged_on_it() -> None:
    doc = _doc()
    del doc["training"]["integrity"]
    decision = evaluate(POLICY, doc, final=False)
    assert not [r for r in decision.results if r.rule_id.startswith("training.")]
