"""DP fine-tuning on a tiny BERT: the ε recorded is the accountant's, the model reloads exactly,
non-private training needs a permissive policy, and bad settings fail with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from govern.config import DPSettings, TrainingConfig
from govern.errors import ConfigError, DataError, StageError
from govern.training import accounting
from govern.training.inference import load_trained_model, per_example_loss, predict_proba
from govern.training.trainer import DataFile, TrainingSpec, train

from .conftest import sentiment_records, write_jsonl

torch.set_num_threads(1)


def make_spec(tiny_bert: Path, train_path: Path, out: Path, **training: object) -> TrainingSpec:
    settings = {"epochs": 1, "batch_size": 32, "max_physical_batch_size": 16, "learning_rate": 0.02,
                "max_length": 16, "checkpoint_every": 5, **training}
    return TrainingSpec(base_model_path=str(tiny_bert), train_files=[DataFile(path=str(train_path))],
                        training=TrainingConfig.model_validate(settings), output_dir=str(out))


def test_dp_lora_run_records_the_accountants_epsilon_and_reloads_identically(
        tiny_bert: Path, sentiment_train: Path, tmp_path: Path) -> None:
    spec = make_spec(tiny_bert, sentiment_train, tmp_path / "out", epochs=2,
                     dp={"target_epsilon": 3.0, "accountant": "rdp"})
    outcome = train(spec)
    ev = outcome.evidence
    q, n = 1 / 8, 256                                 # 256 records, batch 32: Poisson rate 1/8
    assert ev.dp_enabled and not ev.non_private and ev.n_train == n
    assert ev.sample_rate == pytest.approx(q) and ev.steps == 16 and ev.steps_per_epoch == 8
    assert ev.delta == pytest.approx(1 / (10 * n))
    assert set(ev.epsilon) == {"rdp", "prv", "dp_accounting_rdp", "dp_accounting_pld"}
    # Never optimistic: below the target, and exactly what the accountant gives for the recorded history.
    assert ev.epsilon["rdp"] <= 3.0
    assert ev.accountant_history == [(ev.noise_multiplier, ev.sample_rate, ev.steps)]
    recomputed = accounting.epsilon(ev.noise_multiplier, ev.sample_rate, ev.steps, ev.delta, "rdp")
    assert abs(ev.epsilon["rdp"] - recomputed) < 1e-6
    assert ev.epsilon["dp_accounting_rdp"] == pytest.approx(ev.epsilon["rdp"], rel=0.01)
    # The curve ends at the recorded ε; LoRA trains a small fraction of the weights.
    assert ev.curve[-1].step == ev.steps and ev.curve[-1].epsilon == pytest.approx(ev.epsilon["rdp"], abs=1e-9)
    assert 0 < ev.trainable_params < ev.total_params / 5
    assert ev.lora["target_modules"] == ["query", "value"]
    assert ev.base_model["digest"].startswith("sha256:") and ev.seed == 0 and ev.versions["opacus"]

    model_dir = outcome.model_dir
    assert model_dir is not None
    names = {p.name for p in model_dir.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "config.json", "README.md",
            "govern_training.json"} <= names
    assert "pos" in (model_dir / "config.json").read_text()          # id2label
    card = (model_dir / "README.md").read_text()
    assert "Differentially private" in card and "great" not in card  # no training text in the card

    records = sentiment_records(20, seed=5)
    reloaded, tokenizer = load_trained_model(model_dir, tiny_bert)
    batch = tokenizer([r["text"] for r in records], padding=True, return_tensors="pt")
    with torch.no_grad():
        before = outcome.model(**batch).logits
        after = reloaded(**batch).logits
    assert torch.equal(before, after)
    probs = predict_proba(reloaded, tokenizer, records, ["neg", "pos"], batch_size=8)
    assert probs.shape == (20, 2) and abs(probs.sum(axis=1) - 1).max() < 1e-6
    losses = per_example_loss(reloaded, tokenizer, records, "classification", ["neg", "pos"], batch_size=8)
    assert losses.shape == (20,) and (losses > 0).all()

    # The policy gates on the recorded ε: a max ε above passes, below blocks.
    from govern.evidence import Evidence
    from govern.policy.engine import evaluate
    from govern.policy.schema import Policy

    document = Evidence(training=ev).document()
    base = {"apiVersion": "govern.dev/v1", "kind": "Policy", "metadata": {"name": "t", "version": "1"}}
    loose = Policy.model_validate({**base, "privacy": {"max_epsilon": 3.0, "max_delta": 1e-3}})
    strict = Policy.model_validate({**base, "privacy": {"max_epsilon": 1.0, "max_delta": 1e-3}})
    assert evaluate(loose, document).decision == "pass"
    assert evaluate(strict, document).decision == "block"


def test_non_private_training_needs_a_policy_that_allows_it(tiny_bert: Path, sentiment_train: Path,
                                                             tmp_path: Path) -> None:
    spec = make_spec(tiny_bert, sentiment_train, tmp_path / "out", max_steps=3, dp={"enabled": False})
    with pytest.raises(StageError, match="requires differential privacy"):
        train(spec)
    assert not (tmp_path / "out" / "model").exists()
    allowed = spec.model_copy(update={"allow_non_private": True})
    ev = train(allowed).evidence
    assert ev.non_private and not ev.dp_enabled and ev.epsilon == {} and ev.steps == 3


def test_bad_training_settings_fail_with_clear_errors(tiny_bert: Path, sentiment_train: Path,
                                                      tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        DPSettings(target_epsilon=0)
    with pytest.raises(ValidationError, match="less than 1"):
        DPSettings(delta=1.0)
    with pytest.raises(ConfigError) as unknown:
        train(make_spec(tiny_bert, sentiment_train, tmp_path / "a", lora={"target_modules": ["q_proj"]}))
    assert "q_proj" in str(unknown.value) and "query" in str(unknown.value)  # names what is available

    one_class = write_jsonl(tmp_path / "one.jsonl", [{"text": "good day", "label": "pos"}] * 10)
    with pytest.raises(DataError, match="1 class") as single:
        train(make_spec(tiny_bert, one_class, tmp_path / "b"))
    assert single.value.field == "label"

    missing = make_spec(tiny_bert, sentiment_train, tmp_path / "c").model_copy(
        update={"base_model_path": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match="model folder not found"):
        train(missing)
    no_gguf = make_spec(tiny_bert, sentiment_train, tmp_path / "d").model_copy(update={"gguf_file": "absent.gguf"})
    with pytest.raises(ConfigError, match="absent.gguf"):
        train(no_gguf)


def test_full_fine_tuning_with_ghost_clipping_trains_and_reloads(tiny_bert: Path, sentiment_train: Path,
                                                                 tmp_path: Path) -> None:
    spec = make_spec(tiny_bert, sentiment_train, tmp_path / "out", method="full", max_steps=2,
                     dp={"noise_multiplier": 1.0, "grad_sample_mode": "ghost"})
    outcome = train(spec.model_copy(update={"max_delta": 1e-5}))
    ev = outcome.evidence
    assert ev.delta == 1e-5  # the default 1/(10·n) = 3.9e-4 is capped at the policy's max_delta
    assert ev.method == "full" and ev.trainable_params == ev.total_params and ev.grad_sample_mode == "ghost"
    assert ev.steps == 2 and ev.epsilon["rdp"] > 0
    assert outcome.model_dir is not None and (outcome.model_dir / "model.safetensors").is_file()
    reloaded, tokenizer = load_trained_model(outcome.model_dir, None)
    batch = tokenizer(["great day", "awful food"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(outcome.model(**batch).logits, reloaded(**batch).logits)
