"""Turning records into token tensors, the same way for training, evaluation and audits.

One encoder serves the trainer and :mod:`govern.training.inference`, so a membership audit scores a
record exactly as the model saw it in training (same truncation, same prompt masking).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from govern.errors import DataError

#: Label value that excludes a position from the causal-LM loss (PyTorch's CrossEntropy default).
IGNORE_INDEX = -100


@dataclass(frozen=True)
class Columns:
    """Which record fields feed the model."""

    text: str = "text"
    label: str | None = "label"
    prompt: str | None = None
    completion: str | None = None


class EncodedExample(NamedTuple):
    """A tuple (Opacus' Poisson loader inspects ``dataset[0]`` as a sequence of fields)."""

    input_ids: list[int]
    labels: int | list[int]


def _field(record: dict[str, Any], column: str, index: int, source: str) -> str:
    value = record.get(column)
    if value is None:
        raise DataError(source, "missing value", record=index, field=column)
    return str(value)


def encode_records(
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    *,
    task: str,
    columns: Columns,
    label_names: Sequence[str] | None,
    max_length: int,
    source: str = "<records>",
) -> list[EncodedExample]:
    """Tokenise records: classification → (ids, class index); causal-lm → (ids, per-token labels).

    causal-lm with a prompt column puts ``IGNORE_INDEX`` on the prompt tokens, so the loss (and the
    privacy-relevant gradient) comes from the completion only. ``record`` in errors is 0-based.
    """
    out: list[EncodedExample] = []
    if task == "classification":
        label_index = {name: i for i, name in enumerate(label_names or [])}
        if columns.label is None:
            raise DataError(source, "classification needs a label column")
        texts = [_field(r, columns.text, i, source) for i, r in enumerate(records)]
        encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        for i, (record, ids) in enumerate(zip(records, encoded, strict=True)):
            label = _field(record, columns.label, i, source)
            if label not in label_index:
                raise DataError(source, f"label not among the trained classes {list(label_index)}",
                                record=i, field=columns.label)
            out.append(EncodedExample(list(ids), label_index[label]))
        return out

    eos = tokenizer.eos_token_id
    bos = [tokenizer.bos_token_id] if getattr(tokenizer, "bos_token_id", None) is not None else []
    for i, record in enumerate(records):
        if columns.prompt and columns.completion:
            prompt = tokenizer(_field(record, columns.prompt, i, source), add_special_tokens=False)["input_ids"]
            completion = tokenizer(_field(record, columns.completion, i, source), add_special_tokens=False)["input_ids"]
            ids = bos + list(prompt) + list(completion) + ([eos] if eos is not None else [])
            n_masked = len(bos) + len(prompt)
            labels = [IGNORE_INDEX] * n_masked + ids[n_masked:]
        else:
            text = tokenizer(_field(record, columns.text, i, source), add_special_tokens=False)["input_ids"]
            ids = bos + list(text) + ([eos] if eos is not None else [])
            labels = [IGNORE_INDEX] * len(bos) + ids[len(bos):]
        out.append(EncodedExample(ids[:max_length], labels[:max_length]))
    return out


def collate(examples: Sequence[EncodedExample], pad_token_id: int, task: str) -> dict[str, torch.Tensor]:
    """Right-pad a batch to its longest example (dynamic padding keeps CPU steps short)."""
    width = max((len(e.input_ids) for e in examples), default=1)
    n = len(examples)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    if task == "classification":
        labels = torch.tensor([int(e.labels) for e in examples], dtype=torch.long)  # type: ignore[arg-type]  # classification examples hold one int label
    else:
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(examples):
        length = len(example.input_ids)
        input_ids[row, :length] = torch.tensor(example.input_ids, dtype=torch.long)
        attention[row, :length] = 1
        if task != "classification":
            labels[row, :length] = torch.tensor(example.labels, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


class EncodedDataset(torch.utils.data.Dataset[EncodedExample]):
    def __init__(self, examples: list[EncodedExample]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> EncodedExample:
        return self.examples[index]


def per_sequence_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of each sequence over its unmasked positions, shape [B].

    The privacy unit is one record (one sequence), so the loss is averaged per sequence first and
    then over the batch — each record's gradient then has the same weight whatever its length.
    """
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    token_loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="none",
    ).view(shift_labels.shape)
    mask = (shift_labels != IGNORE_INDEX).float()
    return (token_loss * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
