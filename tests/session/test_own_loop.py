"""A user's own PyTorch training loop under ``govern.session``: the same gates as ``govern run``.

Every test drives the real stages (data, Presidio PII scan, evaluation, membership audit), real Opacus
and the real lineage DB; the "user's script" is the plain loop in :func:`user_loop`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
import yaml

import govern
from govern.errors import RunBlocked, SessionError, StageError
from govern.lineage import LineageStore
from govern.training import accounting
from tests.session.conftest import Project, make_project, planted
from tests.session.hf_user_script import lora_model_and_data

torch.set_num_threads(1)
# Opacus' hooks on a frozen first layer: PyTorch warns on every backward, gradients are still right.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

Cheat = Callable[[Any, Any, tuple[torch.Tensor, ...]], None]


def user_loop(run: Any, *, lr: float = 0.05, private: bool = True, cheat: Cheat | None = None,
              after: Callable[[Any], None] | None = None) -> Any:
    """What a user writes: their model, their tokenisation, their loop; the governed lines are marked."""
    from torch.utils.data import DataLoader, TensorDataset

    model, tokenizer, enc, labels = lora_model_and_data(run)                   # governed: base model, records
    loader = DataLoader(TensorDataset(enc["input_ids"], enc["attention_mask"], labels), batch_size=32)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    if private:
        model, optimizer, loader = run.make_private(model, optimizer, loader)  # governed: Opacus, govern's σ
    model.train()
    steps = run.planned_steps or 8
    step = run.completed_steps  # a resumed run continues from its newest recorded checkpoint
    while step < steps:
        for batch in loader:
            if step >= steps:
                break
            ids, mask, y = batch
            loss = F.cross_entropy(model(ids, attention_mask=mask).logits, y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            run.log(loss.item())
            if cheat is not None:
                cheat(model, optimizer, batch)
            step += 1
    if after is not None:
        after(model)
    return run.finish(model, tokenizer=tokenizer)                              # governed: audits, decision


def _run(store_run_id: str) -> tuple[Any, dict[str, Any]]:
    with LineageStore.open() as store:
        return store.get_run(store_run_id), store.evidence(store_run_id)


def test_a_plain_pytorch_loop_is_governed_end_to_end(project: Project) -> None:
    with govern.session(project.config) as run:
        outcome = user_loop(run)
    assert outcome.status == "completed" and outcome.decision in ("pass", "warn")
    stages = {s.name: s.status for s in outcome.stages}
    assert stages["training"] == "completed" and stages["evaluation"] == "completed"
    assert stages["membership"] == "completed" and stages["fairness"] == "skipped"
    record, evidence = _run(outcome.run_id)
    assert record.status == "completed"
    t = evidence["training"]
    assert t["loop"] == "session" and t["dp_enabled"] and t["steps"] == 8 and t["n_train"] == 254
    # σ was solved by govern's accountant for the config's ε over the planned steps; ε is the accountant's
    q = accounting.poisson_sample_rate(254, 32)
    sigma = accounting.noise_multiplier(4.0, q, 8, 1e-5, "rdp")
    assert t["sample_rate"] == q and t["noise_multiplier"] == pytest.approx(sigma)
    assert t["epsilon"]["rdp"] == pytest.approx(accounting.epsilon(sigma, q, 8, 1e-5, "rdp"), rel=1e-9)
    assert t["epsilon"]["rdp"] <= 4.0 and set(t["epsilon"]) == set(accounting.ACCOUNTANTS)
    integrity = t["integrity"]
    assert integrity["violations"] == 0 and integrity["optimizer_steps"] == 8 == integrity["accounted_steps"]
    assert integrity["per_sample_grads_all_params"] is True
    assert 0.0 <= integrity["clipped_fraction"] <= 1.0
    assert integrity["optimizer_noise_multiplier"] == pytest.approx(sigma)
    assert integrity["relative_weight_change"] > 0
    assert evidence["evaluation"]["n"] == 64 and evidence["membership"]["attacks"]
    results = {r["rule_id"]: r["status"] for r in outcome.results}
    assert results["training.integrity"] == "pass" and results["training.weights_changed"] == "pass"
    assert results["privacy.max_epsilon"] == "pass"


def test_blocked_pii_stops_the_run_before_any_user_code(workdir: Path, session_bert: Path) -> None:
    proj = make_project(workdir / "pii", session_bert, [planted("731-15-6065", 1)])  # a US SSN: the policy blocks
    marker = workdir / "user-code-ran"
    with pytest.raises(RunBlocked) as blocked, govern.session(proj.config) as run:
        marker.write_text("the block ran")  # first thing inside the block
        user_loop(run)
    assert not marker.exists()
    assert blocked.value.gate == "pii" and blocked.value.decision.decision == "block"
    assert "731-15-6065" not in str(blocked.value)
    record, _ = _run(blocked.value.run_id)
    assert record.status == "blocked" and record.decision == "block"


def test_planted_pii_under_a_redacting_policy_never_reaches_training_data(workdir: Path, session_bert: Path) -> None:
    email = "amanda7145@example.org"
    proj = make_project(workdir / "redact", session_bert, [planted(email, 1), planted(email, 2)])
    with govern.session(proj.config) as run:
        records = run.training_data()
        run.fail("test: stop after reading the data")  # the run ends here, recorded failed
    assert len(records) == 256 and not any(email in str(r) for r in records)
    assert sum("<EMAIL_ADDRESS>" in r["text"] for r in records) == 2


def _second_optimizer(model: Any, optimizer: Any, batch: tuple[torch.Tensor, ...]) -> None:
    """The cheat: an extra, non-private step with a plain optimizer after every private one."""
    ids, mask, y = batch
    params = [p for p in model.parameters() if p.requires_grad]
    plain = torch.optim.SGD(params, lr=0.5)
    F.cross_entropy(model(ids, attention_mask=mask).logits, y).backward()
    plain.step()
    optimizer.zero_grad()  # clears Opacus' per-sample gradients too


def _edit_weights(model: Any) -> None:
    with torch.no_grad():
        next(p for p in model.parameters() if p.requires_grad).add_(0.01)


@pytest.mark.parametrize("how", ["second optimizer", "param.data edit"])
def test_a_model_changed_outside_private_steps_is_blocked(project: Project, how: str) -> None:
    with pytest.raises(RunBlocked) as blocked, govern.session(project.config) as run:
        if how == "second optimizer":
            user_loop(run, cheat=_second_optimizer)
        else:
            user_loop(run, after=_edit_weights)
    assert blocked.value.gate == "training"
    failed = {r.rule_id for r in blocked.value.decision.results if r.status == "fail"}
    assert "training.integrity" in failed
    record, evidence = _run(blocked.value.run_id)
    assert record.status == "blocked"
    assert evidence["training"]["integrity"]["violations"] >= 1


def test_a_model_whose_weights_did_not_change_is_blocked(project: Project) -> None:
    with pytest.raises(RunBlocked) as blocked, govern.session(project.config) as run:
        user_loop(run, lr=0.0)  # ε accrues, the loss is logged, nothing learns
    failed = {r.rule_id for r in blocked.value.decision.results if r.status == "fail"}
    assert failed == {"training.weights_changed"}
    _, evidence = _run(blocked.value.run_id)
    assert evidence["training"]["integrity"]["relative_weight_change"] == 0.0


def test_training_without_make_private_is_blocked_when_the_policy_requires_dp(project: Project) -> None:
    with pytest.raises(RunBlocked) as blocked, govern.session(project.config) as run:
        user_loop(run, private=False)
    assert blocked.value.gate == "training"
    assert "privacy.require_dp" in {r.rule_id for r in blocked.value.decision.results if r.status == "fail"}


def test_make_private_without_poisson_sampling_is_refused_and_the_run_recorded_failed(project: Project) -> None:
    """The loader's own batches are not the Poisson subsampling the accountant's ε assumes: refused at
    make_private, before the first step, as in the built-in recipe."""
    doc = yaml.safe_load(project.config.read_text())
    doc["training"]["dp"]["poisson_sampling"] = False
    project.config.write_text(yaml.safe_dump(doc))
    with pytest.raises(StageError, match="poisson_sampling: false trains on the loader's own batches"), \
            govern.session(project.config) as run:
        user_loop(run)
    record, evidence = _run(run.run_id)
    assert record.status == "failed" and "poisson_sampling" in (record.error or "")
    assert not evidence.get("training")


def test_an_exception_in_user_code_fails_the_run_and_the_lineage_still_verifies(project: Project,
                                                                               govern_cli: Any) -> None:
    def boom(model: Any, optimizer: Any, batch: Any) -> None:
        raise ValueError("loss went NaN at step 3")

    with pytest.raises(ValueError), govern.session(project.config) as run:
        user_loop(run, cheat=boom)
    record, _ = _run(run.run_id)
    assert record.status == "failed"
    assert "ValueError" in (record.error or "") and "loss went NaN at step 3" in (record.error or "")
    code, out, err = govern_cli("lineage", "verify")
    assert code == 0, out + err


def test_an_exception_quoting_a_record_is_recorded_without_its_text(project: Project) -> None:
    with pytest.raises(KeyError), govern.session(project.config) as run:
        text = run.training_data()[0]["text"]
        raise KeyError(f"unknown token in {text!r}")
    record, _ = _run(run.run_id)
    assert record.status == "failed" and "KeyError" in (record.error or "")
    assert text not in (record.error or "") and "withheld" in (record.error or "")


def test_leaving_the_block_without_finish_is_a_failed_run(project: Project) -> None:
    with pytest.raises(SessionError), govern.session(project.config) as run:
        run.training_data()
    record, _ = _run(run.run_id)
    assert record.status == "failed" and "without run.finish" in (record.error or "")


def test_a_failed_session_resumes_with_the_same_run_and_the_officer_can_check_it(project: Project,
                                                                                govern_cli: Any) -> None:
    with pytest.raises(RuntimeError), govern.session(project.config) as run:
        raise RuntimeError("out of memory")
    first = run.run_id
    with govern.session(project.config, resume=first) as run:
        outcome = user_loop(run)
    assert outcome.run_id == first and outcome.status == "completed"
    assert {s.name: s.status for s in outcome.stages}["data"] == "reused"
    # the compliance officer's side, from the lineage DB alone
    code, out, err = govern_cli("check", first)
    assert code == 0, out + err
    code, out, err = govern_cli("report", first, "--format", "json", "--out", "-")
    assert code == 0, err
    import json

    report = json.loads(out)
    assert report["run"]["id"] == first
    code, out, err = govern_cli("lineage", "verify")
    assert code == 0, out + err


def test_kill_9_inside_a_plain_loop_then_resume_continues_the_accountant(project: Project, govern_cli: Any) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT

    project.edit_config(checkpoint_every=3)
    script = Path(__file__).with_name("loop_user_script.py")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"}

    def run_script(*extra: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), str(project.config), *extra], env={**env, **more},
                              capture_output=True, text=True, timeout=300, cwd=project.root)

    killed = run_script("--kill-at", "5")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_id = next(line.split()[1] for line in killed.stdout.splitlines() if line.startswith("run-id "))
    resumed = run_script(GOVERN_RESUME=run_id)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record, evidence = _run(run_id)
    t = evidence["training"]
    q = accounting.poisson_sample_rate(254, 32)
    sigma = accounting.noise_multiplier(4.0, q, 8, 1e-5, "rdp")
    # resumed from the step-3 checkpoint; the accountant continued to 8: an uninterrupted run's ε
    assert record.status == "completed" and t["steps"] == 8
    assert t["accountant_history"] == [[pytest.approx(sigma), q, 8]]
    assert t["epsilon"]["rdp"] == pytest.approx(accounting.epsilon(sigma, q, 8, 1e-5, "rdp"), rel=1e-9)
    assert t["integrity"]["violations"] == 0 and t["integrity"]["optimizer_steps"] == 5  # 3 restored + 5 run
    code, out, err = govern_cli("lineage", "verify")
    assert code == 0, out + err
