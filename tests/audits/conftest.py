"""Shared builders for the audit tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass
class World:
    """A tiny audit world: train and held-out JSONL files and a base model folder."""

    root: Path
    train: Path
    eval: Path
    base: Path


def random_words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` random lower-case 'words' of 4–8 letters: a vocabulary no model knows anything about."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return ["".join(rng.choice(letters, int(rng.integers(4, 9)))) for _ in range(n)]


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One thread: deterministic float reductions, and no oversubscription stalls on a shared 2-core CI box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build_word_bert(folder: Path, words: Iterable[str], *, hidden: int, max_len: int) -> Path:
    """A one-layer random BERT encoder (no classification head, like a pre-trained base) with a
    deterministic word-level WordPiece vocabulary: every data word is one token; anything else
    (canaries' random strings, digits) falls back to letter pairs and single characters."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    letters = list("abcdefghijklmnopqrstuvwxyz")
    pieces = letters + list("0123456789") + [a + b for a in letters for b in letters]
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(words)) + pieces
                               + ["##" + p for p in pieces]))
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=max_len + 8)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
