"""Tiny offline models and data sets for the training tests (seconds, not minutes, on 2 cores)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

POSITIVE = ["great", "good", "love", "excellent", "happy", "nice", "fine", "super"]
NEGATIVE = ["awful", "bad", "hate", "terrible", "sad", "poor", "worse", "ugly"]
FILLER = ["the", "movie", "food", "was", "service", "really", "quite", "very", "a", "day", "it", "is"]


def build_tiny_bert(folder: Path) -> Path:
    """A 2-layer, 32-wide random BERT with a word-level vocab: the real BERT code path, tiny."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    return folder


def sentiment_records(n: int, seed: int = 0, prefix: str = "r") -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(FILLER, 4) + [rng.choice(POSITIVE if label == "pos" else NEGATIVE)]
        rng.shuffle(words)
        out.append({"id": f"{prefix}{i}", "text": " ".join(words), "label": label})
    return out


def write_jsonl(path: Path, records: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def sentiment_train(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", sentiment_records(256))
