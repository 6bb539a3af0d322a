"""The significant-modification check: a fine-tune's training compute against its base model's, from the
tokens and parameters the training evidence records, recomputed here by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from govern.config import load_run_config
from govern.documents.compute import KNOWN_BASE_COMPUTE, estimate_compute
from govern.evidence import Evidence
from govern.policy.engine import evaluate
from govern.policy.schema import Policy
from govern.stage import DataFiles, StageContext
from govern.training.stage import TrainingStage
from govern.training.trainer import DataFile, TrainingSpec, train

torch.set_num_threads(1)
QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "govern.yaml"
POLICY = {"apiVersion": "govern.dev/v1", "kind": "Policy", "metadata": {"name": "t", "version": "1"}}


def test_quickstart_training_records_tokens_and_the_base_compute_ratio(tmp_path: Path) -> None:
    """The quickstart's own config (all-MiniLM-L6-v2 from its package, DP-LoRA), cut to one step."""
    config = load_run_config(QUICKSTART)
    config.training.max_steps, config.training.batch_size, config.training.max_length = 1, 16, 16
    records = [json.loads(line) for line in config.data.train.read_text().splitlines()[:32]]
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    policy = Policy.model_validate({**POLICY, "privacy": {"max_delta": 0.1}})
    ctx = StageContext(run_id="r1", config=config, run_dir=tmp_path / "run", policy=policy, evidence=Evidence(),
                       outputs={"data": DataFiles(train_path=str(train_file), eval_path=str(train_file),
                                                  format="jsonl", train_fingerprint="fp", eval_fingerprint="fp")})
    ev = TrainingStage().run(ctx).evidence
    compute = ev.compute
    assert compute is not None and ev.tokens_processed and ev.padded_tokens_processed
    assert 0 < ev.tokens_processed <= ev.padded_tokens_processed <= ev.steps * 32 * 16
    # By hand: LoRA under DP is (4·N + 2·N_t)·D + 2·N_t·D, D the positions computed.
    n, n_t, d = ev.total_params, ev.trainable_params, ev.padded_tokens_processed
    assert compute.flops == pytest.approx((4 * n + 2 * n_t) * d + 2 * n_t * d)
    # The packaged model is known: its documented fine-tuning, 6·N·D = 6 · 22.7M · 100k · 1024 · 128.
    base = 6 * 22_713_216 * 100_000 * 1024 * 128
    assert compute.base_model_training_flops == pytest.approx(base)
    assert "lower bound" in (compute.base_model_training_flops_source or "")
    assert compute.base_compute_ratio == pytest.approx(compute.flops / base)
    assert compute.exceeds_significant_modification is False and compute.base_compute_ratio < 1e-3
    assert ev.total_params == pytest.approx(22_713_216, rel=0.01)  # the figure the known value uses


def test_token_count_equals_the_tokens_of_the_records_read(tmp_path: Path) -> None:
    """One full batch per epoch (no DP sampling): D is each record's token count, twice."""
    from tests.training.conftest import build_tiny_bert, sentiment_records, write_jsonl

    model = build_tiny_bert(tmp_path / "bert")
    records = sentiment_records(24)
    data = write_jsonl(tmp_path / "train.jsonl", records)
    from govern.config import TrainingConfig

    spec = TrainingSpec(base_model_path=str(model), train_files=[DataFile(path=str(data))], allow_non_private=True,
                        training=TrainingConfig.model_validate({"epochs": 2, "batch_size": 32, "max_length": 16,
                                                                "method": "full", "dp": {"enabled": False}}),
                        output_dir=str(tmp_path / "out"))
    ev = train(spec).evidence
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model))
    lengths = [min(16, len(tokenizer(r["text"])["input_ids"])) for r in records]
    assert ev.steps == 2
    assert ev.tokens_processed == 2 * sum(lengths)
    assert ev.padded_tokens_processed == 2 * len(records) * max(lengths)
    compute = estimate_compute(ev, base_model_training_flops=1e12)
    assert compute is not None and compute.method == "full"
    assert compute.flops == pytest.approx(6 * ev.total_params * ev.padded_tokens_processed)
    assert compute.base_model_training_flops_source == "run config (base_model.training_flops)"
    assert compute.base_compute_ratio == pytest.approx(compute.flops / 1e12)
    assert estimate_compute(ev) is not None and estimate_compute(ev).base_compute_ratio is None  # type: ignore[union-attr]


def _training_doc(ratio: float | None) -> dict[str, object]:
    from govern.evidence import ComputeEstimate, TrainingEvidence

    compute = ComputeEstimate(tokens_processed=1000, method="lora", trainable_params=10, total_params=100,
                              formula="f", flops=1.0, base_model_training_flops=None if ratio is None else 1 / ratio,
                              base_compute_ratio=ratio,
                              exceeds_significant_modification=None if ratio is None else ratio > 1 / 3)
    training = TrainingEvidence(dp_enabled=True, non_private=False, steps=1, epochs=1, n_train=10, batch_size=1,
                                method="lora", trainable_params=10, total_params=100, device="cpu", duration_s=1,
                                seed=0, compute=compute, epsilon={"rdp": 1.0}, accountant="rdp", delta=1e-6)
    return Evidence(training=training).document()


@pytest.mark.parametrize(("ratio", "decision"), [(0.01, "pass"), (0.5, "block"), (None, "block")])
def test_a_cel_rule_blocks_a_fine_tune_above_a_third_of_the_base_compute(ratio: float | None, decision: str) -> None:
    policy = Policy.model_validate({**POLICY, "rules": [{
        "id": "compute.significant_modification", "severity": "block", "requires": ["training"],
        # CEL has no `!= null` on a map: a missing estimate or ratio is told by its type (and fails).
        "expression": "type(evidence.training.compute) == map"
                      " && type(evidence.training.compute.base_compute_ratio) == double"
                      " && evidence.training.compute.base_compute_ratio <= 1.0 / 3.0",
        "message": "the fine-tune's compute is above a third of the base model's (or unknown): it may be a new "
                   "GPAI model"}]})
    result = evaluate(policy, _training_doc(ratio))
    assert result.decision == decision
    rule = next(r for r in result.results if r.rule_id == "compute.significant_modification")
    assert rule.status == ("pass" if decision == "pass" else "fail")


def test_known_base_models_are_matched_by_name_source_or_package() -> None:
    from govern.documents.compute import known_base_compute

    assert known_base_compute({"source": "sentence-transformers/all-MiniLM-L6-v2"}) == KNOWN_BASE_COMPUTE["all-minilm-l6-v2"]
    assert known_base_compute({"name": "SmolLM2-135M-Instruct"}) == KNOWN_BASE_COMPUTE["smollm2-135m"]
    assert known_base_compute({"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}) is not None
    assert known_base_compute({"name": "my-own-model"}) is None
