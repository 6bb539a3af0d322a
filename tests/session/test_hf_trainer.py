"""A Hugging Face ``Trainer`` script under govern (:class:`govern.integrations.transformers.GovernedTrainer`).

Real Trainer, real Opacus, real stages and lineage DB; the "user's script" is tests/session/hf_user_script.py,
run in-process and — for the kill -9 test — as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

import govern
from govern import api
from govern.errors import RunBlocked, StageError
from govern.lineage import LineageStore
from govern.training import accounting
from tests.session.conftest import Project
from tests.session.hf_user_script import train

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")
SCRIPT = Path(__file__).with_name("hf_user_script.py")
ROOT = Path(__file__).resolve().parents[2]


def _evidence(run_id: str) -> tuple[Any, dict[str, Any]]:
    with LineageStore.open() as store:
        return store.get_run(run_id), store.evidence(run_id)


def test_a_trainer_script_is_governed_and_records_the_builtin_recipes_epsilon(project: Project, workdir: Path
                                                                             ) -> None:
    with govern.session(project.config) as run:
        outcome = train(run, workdir / "out", max_steps=8, accumulation=2)
    assert outcome.status == "completed" and outcome.decision in ("pass", "warn")
    record, evidence = _evidence(outcome.run_id)
    t = evidence["training"]
    assert t["loop"] == "session" and t["steps"] == 8 and t["n_train"] == 254 and t["batch_size"] == 32
    # Poisson logical batches of 32 split into 2 chunks: one accountant step per logical step
    q = accounting.poisson_sample_rate(254, 32)
    sigma = accounting.noise_multiplier(4.0, q, 8, 1e-5, "rdp")
    assert t["sample_rate"] == q and t["noise_multiplier"] == pytest.approx(sigma)
    assert t["accountant_history"] == [[pytest.approx(sigma), q, 8]]
    integrity = t["integrity"]
    assert integrity["violations"] == 0 and integrity["optimizer_steps"] == 8 == integrity["accounted_steps"]
    assert integrity["per_sample_grads_all_params"] is True and integrity["relative_weight_change"] > 0
    assert len(t["curve"]) == 8  # one loss per logical step
    results = {r["rule_id"]: r["status"] for r in outcome.results}
    assert results["training.integrity"] == "pass" and results["privacy.max_epsilon"] == "pass"
    # the Trainer's own log carries ε per logged step, and never the non-private gradient norm
    import json

    log = json.loads((workdir / "out" / "checkpoint-6" / "trainer_state.json").read_text())["log_history"]
    assert [round(e["epsilon"], 6) for e in log if "loss" in e][-1] > 0
    assert all("grad_norm" not in e or e["grad_norm"] is None for e in log)

    # govern's built-in recipe on the same data, same (q, σ, steps): the same ε
    builtin = api.run(project.config)
    _, built = _evidence(builtin.run_id)
    assert built["training"]["steps"] == 8 and built["training"]["sample_rate"] == q
    assert built["training"]["noise_multiplier"] == pytest.approx(t["noise_multiplier"])
    assert built["training"]["epsilon"] == pytest.approx(t["epsilon"], rel=1e-9)


class _EditAfterStep(TrainerCallback):  # type: ignore[misc]
    """The cheat: a manual weight edit after an optimizer step (outside any private step)."""

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        if state.global_step == 2:
            with torch.no_grad():
                next(p for p in model.parameters() if p.requires_grad).add_(0.01)
        return control


def test_a_trainer_whose_model_is_edited_outside_private_steps_is_blocked(project: Project, workdir: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from govern.integrations import transformers as integration

    original = integration.GovernedTrainer.__init__

    def with_cheat(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.add_callback(_EditAfterStep())

    monkeypatch.setattr(integration.GovernedTrainer, "__init__", with_cheat)
    with pytest.raises(RunBlocked) as blocked, govern.session(project.config) as run:
        train(run, workdir / "out", max_steps=4)
    failed = {r.rule_id for r in blocked.value.decision.results if r.status == "fail"}
    assert blocked.value.gate == "training" and "training.integrity" in failed


def test_a_trainer_that_does_not_learn_is_blocked(project: Project, workdir: Path) -> None:
    with pytest.raises(RunBlocked) as blocked, govern.session(project.config) as run:
        train(run, workdir / "out", max_steps=3, lr=0.0)  # ε accrues, the adapter stays where it was
    failed = {r.rule_id for r in blocked.value.decision.results if r.status == "fail"}
    assert failed == {"training.weights_changed"}


def _script(project: Project, out: Path, *extra: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), str(project.config), str(out), *extra], env=environ,
                          capture_output=True, text=True, timeout=300, cwd=project.root)


def test_kill_9_inside_a_trainer_run_then_resume_gives_the_uninterrupted_epsilon(project: Project, workdir: Path,
                                                                                govern_cli: Any) -> None:
    out = workdir / "out"
    killed = _script(project, out, "--kill-at", "5")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_id = next(line.split()[1] for line in killed.stdout.splitlines() if line.startswith("run-id "))
    assert (out / "checkpoint-3" / "state.json").is_file() and not (out / "checkpoint-6").exists()

    resumed = _script(project, out, env={"GOVERN_RESUME": run_id})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record, evidence = _evidence(run_id)
    t = evidence["training"]
    assert record.status == "completed" and t["steps"] == 8
    q = accounting.poisson_sample_rate(254, 32)
    sigma = accounting.noise_multiplier(4.0, q, 8, 1e-5, "rdp")
    # the accountant continued from the recorded checkpoint (3 steps) to 8: an uninterrupted run's ε
    assert t["accountant_history"] == [[pytest.approx(sigma), q, 8]]
    assert t["epsilon"]["rdp"] == pytest.approx(accounting.epsilon(sigma, q, 8, 1e-5, "rdp"), rel=1e-9)
    assert t["integrity"]["violations"] == 0 and t["integrity"]["relative_weight_change"] > 0
    with LineageStore.open() as store:
        saved = [e.payload["folder"] for e in store.events(run_id) if e.kind == "checkpoint.saved"]
    assert saved[:1] == ["checkpoint-3"] and "checkpoint-6" in saved
    code, text, err = govern_cli("lineage", "verify")
    assert code == 0, text + err


class _FailAt(TrainerCallback):  # type: ignore[misc]
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step == 4:
            raise RuntimeError("simulated crash at step 4")
        return control


def test_a_tampered_trainer_checkpoint_is_refused_on_resume(project: Project, workdir: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from govern.integrations import transformers as integration

    out = workdir / "out"
    original = integration.GovernedTrainer.__init__

    def crashing(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.add_callback(_FailAt())

    with monkeypatch.context() as patch:
        patch.setattr(integration.GovernedTrainer, "__init__", crashing)
        with pytest.raises(RuntimeError), govern.session(project.config) as run:
            train(run, out, max_steps=8)
    run_id = run.run_id
    assert (out / "checkpoint-3" / "state.json").is_file()
    (out / "checkpoint-3" / "trainer_state.json").write_text("{}")  # one edited file of the recorded checkpoint
    with pytest.raises(StageError, match="checkpoint-3 refused"), govern.session(project.config, resume=run_id) as run:
        train(run, out, max_steps=8)
    record, _ = _evidence(run_id)
    assert record.status == "failed"
