"""A killed run resumes to the same privacy spend; two gloo processes train with global-batch accounting."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from govern.training.trainer import TrainingSpec, train
from tests.conftest import kill_when, skip_or_fail

from .conftest import sentiment_records, write_jsonl
from .test_training import make_spec

torch.set_num_threads(1)
PYTHON = sys.executable
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _spec_file(spec: TrainingSpec, path: Path) -> Path:
    path.write_text(spec.model_dump_json())
    return path


def test_killed_run_resumes_to_the_same_epsilon_and_steps(tiny_bert: Path, sentiment_train: Path,
                                                          tmp_path: Path) -> None:
    settings = {"epochs": 5, "checkpoint_every": 4, "dp": {"noise_multiplier": 1.0, "accountant": "rdp"}}
    reference = train(make_spec(tiny_bert, sentiment_train, tmp_path / "uninterrupted", **settings)).evidence

    out = tmp_path / "killed"
    spec_path = _spec_file(make_spec(tiny_bert, sentiment_train, out, **settings), tmp_path / "spec.json")
    proc = subprocess.Popen([PYTHON, "-m", "govern.training", str(spec_path)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kill_when(proc, lambda: any((out / "checkpoints").glob("step-*[0-9]")))
    interrupted_at = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*[0-9]"))
    assert 0 < interrupted_at < reference.steps and not (out / "model").exists()

    resumed = train(make_spec(tiny_bert, sentiment_train, out, **settings)).evidence
    assert resumed.resumed_from_step == interrupted_at
    assert resumed.steps == reference.steps == 40
    assert resumed.accountant_history == reference.accountant_history
    assert resumed.epsilon == reference.epsilon
    # The compute estimate's token count carries over the checkpoint: same batches, same tokens.
    assert resumed.tokens_processed == reference.tokens_processed and reference.tokens_processed
    assert resumed.padded_tokens_processed == reference.padded_tokens_processed
    # Same seed, same restored RNG/sampler/optimizer state: the very same training trajectory.
    assert [p.loss for p in resumed.curve] == pytest.approx([p.loss for p in reference.curve], abs=1e-5)
    # The built-in recipe records training integrity too: loading its own checkpoint is no violation, and
    # the weight change is measured from the same initial weights as the uninterrupted run's.
    assert reference.integrity is not None and resumed.integrity is not None
    assert reference.integrity.violations == resumed.integrity.violations == 0
    assert reference.integrity.per_sample_grads_all_params is True
    assert resumed.integrity.relative_weight_change == pytest.approx(reference.integrity.relative_weight_change,
                                                                     rel=1e-4)
    assert reference.integrity.relative_weight_change > 0


def test_a_checkpoint_from_another_setup_is_not_resumed(tiny_bert: Path, sentiment_train: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "out"
    train(make_spec(tiny_bert, sentiment_train, out, max_steps=2, dp={"noise_multiplier": 1.0}))
    from govern.errors import StageError

    with pytest.raises(StageError, match="different training set-up"):
        train(make_spec(tiny_bert, sentiment_train, out, max_steps=4, dp={"noise_multiplier": 2.0}))


def test_two_gloo_processes_train_with_dpddp_and_global_batch_accounting(tiny_bert: Path, tmp_path: Path) -> None:
    torchrun = Path(PYTHON).with_name("torchrun")
    if not torchrun.exists():
        skip_or_fail("torchrun not installed next to the interpreter")
    train_path = write_jsonl(tmp_path / "train.jsonl", sentiment_records(200))
    out = tmp_path / "ddp"
    spec = make_spec(tiny_bert, train_path, out, epochs=1, batch_size=40, max_physical_batch_size=16,
                     dp={"noise_multiplier": 1.2, "accountant": "rdp"})
    spec_path = _spec_file(spec, tmp_path / "spec.json")
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", "-m", "govern.training",
                             str(spec_path)], env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    evidence = json.loads((out / "evidence.json").read_text())
    assert evidence["world_size"] == 2 and evidence["device"] == "cpu"
    # q is per *global* batch: 40 of 200 records → 1/5, five steps per epoch, one σ·C noise draw per step.
    assert evidence["sample_rate"] == pytest.approx(1 / 5) and evidence["batch_size"] == 40
    assert evidence["steps"] == 5
    from govern.training import accounting

    assert evidence["epsilon"]["rdp"] == pytest.approx(
        accounting.epsilon(1.2, 1 / 5, 5, evidence["delta"], "rdp"), abs=1e-6)
    assert (out / "model" / "adapter_model.safetensors").is_file()
    shutil.rmtree(out)


def test_dp_without_poisson_sampling_is_refused_before_training(tiny_bert: Path, tmp_path: Path) -> None:
    """``poisson_sampling: false`` trains on the loader's own batches, which the accountant's ε (Poisson
    subsampling) does not cover — and under torchrun every rank would read every record, as Opacus shards
    only its sampler. Refused before the first step, nothing written, in one process and under torchrun alike."""
    from govern.errors import StageError

    train_path = write_jsonl(tmp_path / "train.jsonl", sentiment_records(40))
    out = tmp_path / "out"
    spec = make_spec(tiny_bert, train_path, out, epochs=1, batch_size=8,
                     dp={"noise_multiplier": 1.0, "poisson_sampling": False})
    with pytest.raises(StageError, match="poisson_sampling: false trains on the loader's own batches"):
        train(spec)
    assert not (out / "model").exists() and not (out / "checkpoints").exists()
