"""``govern.session`` under ``torchrun`` (2 CPU processes, gloo): rank 0 governs and records one run, both
ranks train the user's own loop under Opacus' DPDDP, and a block on rank 0 stops every rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from govern.lineage import LineageStore
from govern.training import accounting
from tests.conftest import PROJECT_ROOT
from tests.session.conftest import Project, make_project, planted

TORCHRUN = Path(sys.executable).with_name("torchrun")
SCRIPT = Path(__file__).with_name("ddp_user_script.py")


def _launch(project: Project, port: str, script: Path, *args: str, **env_extra: str
            ) -> subprocess.CompletedProcess[str]:
    if not TORCHRUN.exists():
        pytest.fail("torchrun is installed with torch; it is missing next to the interpreter")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           **env_extra}
    return subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--master_port", port, str(script),
                           str(project.config), *args], env=env, cwd=project.root, capture_output=True, text=True,
                          timeout=240)


def _torchrun(project: Project, port: str, *extra: str, **env_extra: str
              ) -> tuple[subprocess.CompletedProcess[str], dict[int, dict[str, Any]]]:
    markers = project.root / "markers"
    markers.mkdir(exist_ok=True)
    result = _launch(project, port, SCRIPT, str(markers), *extra, **env_extra)
    seen = {}
    for line in result.stdout.splitlines():
        if line.startswith("result "):
            report = json.loads(line.removeprefix("result "))
            seen[report["rank"]] = report
    return result, seen


def _killed_run_id(killed: subprocess.CompletedProcess[str]) -> str:
    """The run a torchrun launch killed with SIGKILL had opened (its script prints ``run-id ID`` first).

    Each rank kills itself at the same step, but not at the same instant: a rank whose peer is already gone
    may abort inside a collective first (exit code -6), and torchrun reports whichever death it saw first."""
    assert killed.returncode != 0, killed.stderr[-3000:]
    assert "SIGKILL" in killed.stderr or "exitcode: -6" in killed.stderr, killed.stderr[-3000:]
    return next(line.split()[1] for line in killed.stdout.splitlines() if line.startswith("run-id "))


def _completed_with_the_uninterrupted_epsilon(run_id: str, batch: int, govern_cli: Any) -> dict[str, Any]:
    """After a resume: the one recorded run completed, its accountant went on from the checkpoint to an
    uninterrupted run's 8 steps of q = batch/254 (same history, same ε), and the whole DB verifies.
    Returns the training evidence."""
    with LineageStore.open() as store:
        (run,) = store.list_runs()
        assert run.id == run_id and run.status == "completed", run.error
        t: dict[str, Any] = store.evidence(run_id)["training"]
    q = accounting.poisson_sample_rate(254, batch)
    sigma = accounting.noise_multiplier(4.0, q, 8, 1e-5, "rdp")
    assert t["accountant_history"] == [[pytest.approx(sigma), q, 8]]
    assert t["epsilon"]["rdp"] == pytest.approx(accounting.epsilon(sigma, q, 8, 1e-5, "rdp"), rel=1e-9)
    assert t["integrity"]["violations"] == 0
    code, text, err = govern_cli("lineage", "verify")
    assert code == 0, text + err
    return t


def test_a_session_under_torchrun_records_one_run_with_the_single_process_epsilon(project: Project) -> None:
    result, seen = _torchrun(project, "29547")
    assert result.returncode == 0, result.stderr[-4000:]
    zero, one = seen[0], seen[1]
    # Both ranks saw the same run, records and plan (σ, q, steps): rank 0's, handed over after its gates.
    assert zero["run_id"] == one["run_id"] == zero["outcome_run"] == one["outcome_run"]
    assert zero["n"] == one["n"] == 254 and zero["world"] == one["world"] == 2
    assert (zero["sigma"], zero["q"], zero["steps"]) == (one["sigma"], one["q"], one["steps"])
    assert zero["status"] == one["status"] == "completed" and one["decision"] == zero["decision"]
    # DPDDP: one all-reduced, once-noised gradient per step, so both ranks hold the very same weights.
    assert zero["weights"] == one["weights"]
    with LineageStore.open() as store:
        (run,) = store.list_runs()  # one run, recorded by rank 0 alone
        assert run.id == zero["run_id"] and run.status == "completed", run.error
        t = store.evidence(run.id)["training"]
    q = accounting.poisson_sample_rate(254, 32)  # the loader's batch_size is the global logical batch
    sigma = accounting.noise_multiplier(4.0, q, 8, 1e-5, "rdp")
    assert t["world_size"] == 2 and t["sample_rate"] == q == zero["q"]
    assert t["noise_multiplier"] == pytest.approx(sigma) and t["steps"] == 8
    # One accountant entry per logical step with the global q: the single-process run's ε for q, σ, steps.
    assert t["accountant_history"] == [[pytest.approx(sigma), q, 8]]
    assert t["epsilon"]["rdp"] == pytest.approx(accounting.epsilon(sigma, q, 8, 1e-5, "rdp"), rel=1e-9)
    integrity = t["integrity"]  # rank 0 still tracks that only DP steps changed the weights
    assert integrity["violations"] == 0 and integrity["optimizer_steps"] == 8 == integrity["accounted_steps"]
    assert integrity["relative_weight_change"] > 0 and integrity["per_sample_grads_all_params"] is True
    assert 0.0 <= integrity["clipped_fraction"] <= 1.0
    assert t["tokens_processed"] > 0  # both ranks' training forwards


def test_a_pii_block_under_torchrun_stops_every_rank_before_user_code(workdir: Path, session_bert: Path) -> None:
    project = make_project(workdir / "pii", session_bert, [planted("731-15-6065", 1)])  # a US SSN: blocked
    result, seen = _torchrun(project, "29549")
    assert result.returncode != 0
    assert seen[0]["blocked"] == seen[1]["blocked"] == "pii", result.stderr[-4000:]
    assert seen[0]["run_id"] == seen[1]["run_id"]
    assert not list((project.root / "markers").iterdir())  # no rank ran a line of the block
    with LineageStore.open() as store:
        (run,) = store.list_runs()
        assert run.status == "blocked" and run.decision == "block"
    assert "731-15-6065" not in result.stdout + result.stderr


def test_a_trainer_script_under_torchrun_trains_dp_on_every_rank_and_records_one_run(project: Project) -> None:
    result = _launch(project, "29551", Path(__file__).with_name("hf_user_script.py"), str(project.root / "out"))
    assert result.returncode == 0, result.stderr[-4000:]
    weights = dict(line.split()[1:] for line in result.stdout.splitlines() if line.startswith("weights "))
    assert set(weights) == {"0", "1"} and weights["0"] == weights["1"]  # one noised, all-reduced step each
    with LineageStore.open() as store:
        (run,) = store.list_runs()  # one run, recorded by rank 0
        assert run.status == "completed", run.error
        t = store.evidence(run.id)["training"]
    # The Trainer's meaning of the batch: 16 per device × 2 accumulation steps × 2 processes per step.
    q = accounting.poisson_sample_rate(254, 64)
    sigma = accounting.noise_multiplier(4.0, q, 8, 1e-5, "rdp")
    assert t["world_size"] == 2 and t["batch_size"] == 64 and t["sample_rate"] == q
    assert t["accountant_history"] == [[pytest.approx(sigma), q, 8]]  # once per logical step, not per rank
    assert t["epsilon"]["rdp"] == pytest.approx(accounting.epsilon(sigma, q, 8, 1e-5, "rdp"), rel=1e-9)
    integrity = t["integrity"]
    assert integrity["violations"] == 0 and integrity["optimizer_steps"] == 8 == integrity["accounted_steps"]
    assert integrity["per_sample_grads_all_params"] is True and integrity["relative_weight_change"] > 0
    # Both processes wrote into each checkpoint folder; the digest rank 0 recorded covers them all.
    from govern.training import checkpoints as ckpt
    from govern.training.stage import LineageCheckpointChain

    with LineageStore.open() as store:
        found = ckpt.resumable_checkpoint(project.root / "out", LineageCheckpointChain(store, run.id),
                                          root=project.root / "out")
    assert found is not None and found.step == 8 and (found.path / "rng_state_1.pth").is_file()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="with CUDA the Trainer joins torchrun over NCCL")
def test_a_trainer_that_stays_single_process_under_torchrun_says_use_cpu_and_records_the_run_failed(
        project: Project) -> None:
    """Without CUDA, transformers trains multi-process only with ``use_cpu=True``: a script written for
    CUDA would train twice, single-process, each rank on every record; govern stops it with the fix."""
    result = _launch(project, "29569", Path(__file__).with_name("hf_user_script.py"), str(project.root / "out"),
                     "--no-use-cpu")
    assert result.returncode != 0
    assert result.stderr.count("the Trainer did not join the process group") == 2  # both ranks stop
    assert "set use_cpu=True in the training arguments" in result.stderr
    with LineageStore.open() as store:
        (run,) = store.list_runs()
        assert run.status == "failed" and "use_cpu=True" in (run.error or "")
        assert not store.evidence(run.id).get("training")


def test_a_trainer_killed_under_torchrun_resumes_on_every_rank_to_the_uninterrupted_epsilon(
        project: Project, govern_cli: Any) -> None:
    script, out = Path(__file__).with_name("hf_user_script.py"), project.root / "out"
    run_id = _killed_run_id(_launch(project, "29557", script, str(out), "--kill-at", "5"))
    assert (out / "checkpoint-3" / "state.json").is_file() and not (out / "checkpoint-6").exists()
    resumed = _launch(project, "29559", script, str(out), GOVERN_RESUME=run_id)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    weights = dict(line.split()[1:] for line in resumed.stdout.splitlines() if line.startswith("weights "))
    assert set(weights) == {"0", "1"} and weights["0"] == weights["1"]  # both ranks resumed the same model
    _completed_with_the_uninterrupted_epsilon(run_id, 64, govern_cli)  # 16 per device × 2 accumulation × 2

def test_kill_9_under_torchrun_then_resume_continues_the_accountant_on_every_rank(project: Project,
                                                                                  govern_cli: Any) -> None:
    project.edit_config(checkpoint_every=3)
    run_id = _killed_run_id(_torchrun(project, "29553", "--kill-at", "5")[0])
    result, seen = _torchrun(project, "29555", GOVERN_RESUME=run_id)
    assert result.returncode == 0, result.stderr[-4000:]
    # Both ranks loaded the step-3 checkpoint rank 0's audit chain vouches for, and ended alike.
    assert seen[0]["started_at"] == seen[1]["started_at"] == 3 and seen[0]["weights"] == seen[1]["weights"]
    t = _completed_with_the_uninterrupted_epsilon(run_id, 32, govern_cli)
    assert t["integrity"]["optimizer_steps"] == 5  # 3 restored + 5 run

def test_the_distributed_poisson_sampler_yields_empty_draws_so_ranks_stay_in_lockstep(tmp_path: Path) -> None:
    import torch
    import torch.distributed as dist
    from opacus.data_loader import DPDataLoader
    from torch.utils.data import DataLoader, TensorDataset

    from govern.training.private import keep_ranks_in_lockstep

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        loader = DataLoader(TensorDataset(torch.arange(100)), batch_size=2)  # q = 1/50: some draws are empty
        private = DPDataLoader.from_data_loader(loader, distributed=True, generator=torch.Generator().manual_seed(0))
        assert len(list(private)) < len(private) == 50  # Opacus skips the empty draws: fewer steps on this rank
        keep_ranks_in_lockstep(private)
        batches = [b[0] for b in private]
        assert len(batches) == 50 and sum(len(b) == 0 for b in batches) > 0
        assert all(b.dtype == torch.int64 for b in batches)  # Opacus' empty-batch collate, as in one process
    finally:
        dist.destroy_process_group()
