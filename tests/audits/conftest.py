"""Shared builders for the audit tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def word_tokenizer(words: Iterable[str], punctuation: str = "") -> Any:
    """A deterministic word-level WordPiece tokenizer: every data word is one token; anything else
    (canaries' random strings, digits) falls back to letter pairs and single characters; each character of
    ``punctuation`` is a token of its own (else BERT's pre-tokenizer makes it [UNK])."""
    from transformers import BertTokenizer

    letters = list("abcdefghijklmnopqrstuvwxyz")
    pieces = letters + list("0123456789") + [a + b for a in letters for b in letters]
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *punctuation] + sorted(set(words))
                               + pieces + ["##" + p for p in pieces]))
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)


def build_word_bert(folder: Path, words: Iterable[str], *, hidden: int, max_len: int) -> Path:
    """A one-layer random BERT encoder (no classification head, like a pre-trained base) with the
    :func:`word_tokenizer` vocabulary of ``words``."""
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = word_tokenizer(words)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=max_len + 8)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_word_gpt2(folder: Path, words: Iterable[str], *, hidden: int, layers: int, max_len: int,
                    punctuation: str = "") -> Path:
    """A random GPT-2 (a causal-LM "base model" built from a config) with the :func:`word_tokenizer`
    vocabulary of ``words`` and ``punctuation``; no BOS/EOS token, like the tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = word_tokenizer(words, punctuation)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=tokenizer.vocab_size, n_embd=hidden, n_layer=layers, n_head=2,
                               n_positions=max_len + 8, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
                               eos_token_id=None)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train_memorising_gpt2(tokenizer_from: Path, texts: list[str], base_dir: Path, model_dir: Path, *,
                          epochs: int = 40, max_length: int = 32) -> None:
    """A one-layer random GPT-2 with ``tokenizer_from``'s vocabulary saved to ``base_dir``, then trained
    hard (Adam, ``epochs`` passes) on ``texts`` — memorising them — and saved to ``model_dir``."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_from))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=tokenizer.vocab_size, n_embd=64, n_layer=1, n_head=2,
                                       n_positions=max_length + 8, pad_token_id=tokenizer.pad_token_id,
                                       bos_token_id=None, eos_token_id=None))
    for folder in (base_dir, model_dir):
        tokenizer.save_pretrained(folder)
    model.save_pretrained(base_dir)
    enc = tokenizer(texts, add_special_tokens=False, padding="max_length", truncation=True, max_length=max_length,
                    return_tensors="pt")
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(epochs):
        for start in range(0, len(texts), 16):
            batch = slice(start, start + 16)
            loss = model(input_ids=enc["input_ids"][batch], attention_mask=enc["attention_mask"][batch],
                         labels=labels[batch]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.save_pretrained(model_dir)
