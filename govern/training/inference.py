"""Scoring records with a trained (or base) model: per-example losses and class probabilities.

The evaluation, membership and fairness audits build on these two functions, so they encode records
exactly as training did (:mod:`govern.training.encoding`) and run in eval mode without gradients.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from govern.config import Task
from govern.errors import StageError
from govern.training.encoding import Columns, collate, encode_records, per_sequence_lm_loss
from govern.training.models import load_base_model, quiet_transformers

#: Written next to the weights: what a loader needs to rebuild the model (no data, no text).
MODEL_META = "govern_training.json"

__all__ = ["MODEL_META", "load_base_model", "load_trained_model", "per_example_loss", "predict_proba",
           "read_model_meta"]


def read_model_meta(model_dir: Path | str) -> dict[str, Any]:
    path = Path(model_dir) / MODEL_META
    if not path.is_file():
        raise StageError("training", f"{model_dir} is not a govern model folder (no {MODEL_META})")
    meta: dict[str, Any] = json.loads(path.read_text())
    return meta


def load_trained_model(
    model_dir: Path | str,
    base_model_path: Path | str | None,
    gguf_file: str | None = None,
    task: Task | None = None,
) -> tuple[nn.Module, Any]:
    """(model, tokenizer) as trained: the base model plus the adapter, or the fully fine-tuned weights.

    ``task`` defaults to the one recorded in the model folder. The model is returned in eval mode on
    the CPU; move it with ``.to(device)``.
    """
    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    task = task or meta["task"]
    label_names = meta.get("label_names") or None
    from govern.training.models import load_tokenizer

    if meta["method"] == "full":
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        cls = AutoModelForSequenceClassification if task == "classification" else AutoModelForCausalLM
        with quiet_transformers():
            model = cls.from_pretrained(str(model_dir), local_files_only=True)
        tokenizer = load_tokenizer(model_dir)
    else:
        from peft import PeftModel

        base, _ = load_base_model(base_model_path, gguf_file, task=task, label_names=label_names)
        with quiet_transformers():
            model = PeftModel.from_pretrained(base, str(model_dir), is_trainable=False)
        tokenizer = load_tokenizer(model_dir)
    model.eval()
    return model, tokenizer


def _columns(text_column: str, label_column: str | None, prompt_column: str | None,
             completion_column: str | None) -> Columns:
    return Columns(text=text_column, label=label_column, prompt=prompt_column, completion=completion_column)


@torch.no_grad()
def per_example_loss(
    model: nn.Module,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    task: str,
    label_names: Sequence[str] | None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    *,
    text_column: str = "text",
    label_column: str | None = "label",
    prompt_column: str | None = None,
    completion_column: str | None = None,
    max_length: int = 128,
) -> np.ndarray:
    """Loss of each record under ``model``, shape [N] (float64).

    classification: cross-entropy of the true label; causal-lm: mean next-token cross-entropy over
    the record's scored tokens (the completion when prompt/completion columns are given).
    """
    model = model.to(device).eval()
    examples = encode_records(records, tokenizer, task=task,
                              columns=_columns(text_column, label_column, prompt_column, completion_column),
                              label_names=label_names, max_length=max_length)
    losses: list[np.ndarray] = []
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start:start + batch_size], tokenizer.pad_token_id, task)
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        if task == "classification":
            loss = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
        else:
            loss = per_sequence_lm_loss(logits, batch["labels"])
        losses.append(loss.cpu().double().numpy())
    return np.concatenate(losses) if losses else np.zeros(0)


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    label_names: Sequence[str] | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    *,
    text_column: str = "text",
    max_length: int = 128,
) -> np.ndarray:
    """Class probabilities, shape [N, K], columns in the order of the model's ``id2label``.

    Labels are not needed to predict, so records without a label column work too.
    """
    if not hasattr(model, "config") or getattr(model.config, "num_labels", None) is None:
        raise StageError("training", "predict_proba needs a sequence-classification model")
    model = model.to(device).eval()
    texts = [str(r.get(text_column, "")) for r in records]
    probs: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")
        logits = model(input_ids=enc["input_ids"].to(device),
                       attention_mask=enc["attention_mask"].to(device)).logits.float()
        probs.append(torch.softmax(logits, dim=-1).cpu().double().numpy())
    hf_config: Any = model.config  # a transformers config; nn.Module types attributes as Tensor | Module
    k = int(hf_config.num_labels)
    return np.concatenate(probs) if probs else np.zeros((0, k))
