"""Loading a model to judge and scoring records with it: per-record losses and class probabilities.

This module owns both for every audit: :func:`load_model` is the one loader (a folder govern trained,
a model trained elsewhere, a LoRA adapter on its base, or a base model as the reference attack's
calibrator), and :func:`score_examples` the one per-record scorer the evaluation, membership, LiRA
and canary audits all use. Records are encoded exactly as training did
(:mod:`govern.training.encoding`) and scored in eval mode without gradients.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from govern.config import Task
from govern.errors import StageError
from govern.training.encoding import IGNORE_INDEX, Columns, EncodedExample, collate, encode_records
from govern.training.models import load_base_model, load_tokenizer, quiet_transformers

#: Written next to the weights: what a loader needs to rebuild the model (no data, no text).
MODEL_META = "govern_training.json"

__all__ = ["MODEL_META", "RecordScores", "load_base_model", "load_model", "load_trained_model",
           "model_label_names", "per_example_loss", "predict_proba", "read_model_meta", "score_examples"]


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


def load_model(path: Path | str, *, task: str, label_names: Sequence[str] | None = None,
               base_path: Path | str | None = None, gguf_file: str | None = None, seed: int = 0,
               as_reference: bool = False, stage: str = "membership") -> tuple[Any, Any]:
    """(model, tokenizer) from a folder govern trained, a full model folder, a PEFT adapter folder (with
    ``base_path``), or the base model itself. Local files only. Errors are :class:`StageError` of ``stage``.

    ``as_reference``: the model is the base of the reference attack. A classification base usually has
    no head for these labels; a randomly initialised one would only add noise to the calibration, so
    the parameters the checkpoint lacks are set to zero: the base then predicts uniformly (loss log K on
    every record) and the reference attack ranks like the loss attack. It calibrates for real when the
    base already has a trained head for the same labels, and always for causal LMs."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    path = Path(path)
    if not path.exists():
        raise StageError(stage, f"model folder not found: {path}")
    if not as_reference and (path / MODEL_META).is_file():
        # A folder govern trained: its own metadata says the layout (adapter or full weights).
        return load_trained_model(path, base_path, gguf_file=gguf_file, task=task)  # type: ignore[arg-type]  # task is a validated task name
    is_adapter = (path / "adapter_config.json").exists()
    if is_adapter and base_path is None:
        raise StageError(stage, f"{path} is a LoRA adapter: give the base model it was trained from")
    weights_from = Path(base_path) if is_adapter and base_path is not None else path
    kwargs: dict[str, Any] = {}
    if gguf_file and (weights_from / gguf_file).exists():
        kwargs["gguf_file"] = gguf_file
    try:
        with torch.random.fork_rng(devices=[]), quiet_transformers():
            torch.manual_seed(seed)
            if task == "classification":
                if label_names:
                    kwargs.update(num_labels=len(label_names),
                                  id2label={i: str(n) for i, n in enumerate(label_names)},
                                  label2id={str(n): i for i, n in enumerate(label_names)})
                model, info = AutoModelForSequenceClassification.from_pretrained(
                    str(weights_from), output_loading_info=True, **kwargs)
                if as_reference and not is_adapter:
                    missing = set(info.get("missing_keys") or [])
                    with torch.no_grad():
                        for name, param in model.named_parameters():
                            if name in missing:
                                param.zero_()
            else:
                model = AutoModelForCausalLM.from_pretrained(str(weights_from), **kwargs)
            if not kwargs.get("gguf_file"):
                model = model.float()  # GGUF weights are de-quantised to fp32 already
            if is_adapter:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
        tok_from = path if _has_tokenizer(path) else weights_from
        tokenizer = load_tokenizer(tok_from, gguf_file if (gguf_file and (tok_from / gguf_file).exists()) else None)
    except (OSError, ValueError) as exc:
        raise StageError(stage, f"cannot load model from {path}: {type(exc).__name__}: {exc}") from None
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).exists() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"))


def model_label_names(path: Path | str) -> list[str] | None:
    """Label names saved with a trained classifier (govern's metadata, or config.json id2label unless
    they are transformers' defaults)."""
    meta = Path(path) / MODEL_META
    if meta.is_file():
        names = json.loads(meta.read_text(encoding="utf-8")).get("label_names")
        if names:
            return [str(n) for n in names]
    for candidate in (Path(path) / "config.json", Path(path) / "label_names.json"):
        if not candidate.exists():
            continue
        data = json.loads(candidate.read_text(encoding="utf-8"))
        if isinstance(data, list):
            return [str(x) for x in data]
        id2label = data.get("id2label") or {}
        found = [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]
        if found and not all(n == f"LABEL_{i}" for i, n in enumerate(found)):
            return found
    return None


@dataclass
class RecordScores:
    """Per-record loss, and for causal LMs the log-probability of each scored token (and, when asked,
    each token's log-probability standardised against the model's own next-token distribution)."""

    loss: np.ndarray
    token_logprobs: list[np.ndarray] | None = None
    token_zscores: list[np.ndarray] | None = None


def score_examples(model: Any, tokenizer: Any, examples: Sequence[EncodedExample], *, task: str,
                   batch_size: int = 32, device: str | torch.device = "cpu",
                   token_zscores: bool = False) -> RecordScores:
    """Loss of each encoded record under ``model`` (float64, input order), and for causal LMs the
    per-token log-probabilities of its scored tokens.

    Classification: cross-entropy of the true label. Causal LM: mean negative log-likelihood of the
    scored tokens (the completion only when a prompt is given, as in training). Records are batched
    by length so padding stays small.

    ``token_zscores`` (causal LMs, for Min-K%++): ``(log p(x_t) − μ_t) / σ_t`` per scored token, with μ_t
    and σ_t² the mean and variance of log p(z) for z drawn from the model's next-token distribution.
    """
    model = model.to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    n = len(examples)
    losses = np.zeros(n, dtype=float)
    token_lps: list[np.ndarray] = [np.zeros(0)] * n
    token_zs: list[np.ndarray] = [np.zeros(0)] * n
    order = np.argsort([len(e.input_ids) for e in examples], kind="stable")
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            idx = order[start: start + batch_size]
            batch = {k: v.to(device) for k, v in collate([examples[i] for i in idx], tokenizer.pad_token_id,
                                                         task).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
            if task == "classification":
                nll = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
                losses[idx] = nll.cpu().double().numpy()
                continue
            labels = batch["labels"][:, 1:]
            mask = labels != IGNORE_INDEX
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            tok_lp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            z = None
            if token_zscores:
                probs = logp.exp()
                mu = (probs * logp).sum(-1)
                sigma = ((probs * logp.square()).sum(-1) - mu.square()).clamp(min=1e-12).sqrt()
                z = (tok_lp - mu) / sigma
            for row, i in enumerate(idx):
                values = tok_lp[row][mask[row]].cpu().numpy().astype(float)
                token_lps[i] = values
                losses[i] = float(-values.mean()) if len(values) else 0.0
                if z is not None:
                    token_zs[i] = z[row][mask[row]].cpu().numpy().astype(float)
    causal = task != "classification"
    return RecordScores(loss=losses, token_logprobs=token_lps if causal else None,
                        token_zscores=token_zs if causal and token_zscores else None)


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
    """Loss of each raw record under ``model``, shape [N] (float64): :func:`score_examples` on the
    records encoded with the given columns."""
    examples = encode_records(records, tokenizer, task=task,
                              columns=Columns(text=text_column, label=label_column, prompt=prompt_column,
                                              completion=completion_column),
                              label_names=label_names, max_length=max_length)
    return score_examples(model, tokenizer, examples, task=task, batch_size=batch_size, device=device).loss


def scored_token_counts(tokenizer: Any, records: Sequence[dict[str, Any]], *, task: str, columns: Columns,
                        max_length: int) -> np.ndarray:
    """Tokens each record's causal-LM loss averages over (next-token targets that are not masked), so
    a corpus perplexity can weight records by length, as the usual definition does."""
    examples = encode_records(records, tokenizer, task=task, columns=columns, label_names=None,
                              max_length=max_length)
    return np.array([max(1, sum(1 for t in (e.labels[1:] if isinstance(e.labels, list) else [])
                                if t != IGNORE_INDEX)) for e in examples], dtype=np.int64)


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
