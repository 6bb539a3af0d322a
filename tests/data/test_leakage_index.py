"""The streamed leakage check (:mod:`govern.data.leakage_index`) gives the in-memory check's evidence."""

from __future__ import annotations

import random

import pytest

from govern.data import leakage_index
from govern.data.leakage import check_leakage
from govern.data.leakage_index import LeakageIndex, check_leakage_streaming
from tests.data.test_leakage import random_texts


def _corpus(seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    train = random_texts(3000, seed=seed, length=(6, 30)) + ["", "!!!", "short one"]
    eval_ = random_texts(800, seed=seed + 1, length=(6, 30)) + ["", "...", "SHORT one!"]
    for e in range(0, 200, 4):  # exact copies (after normalisation), near copies, looser copies
        t = rng.randrange(len(train) - 3)
        words = train[t].split()
        eval_[e] = "  " + train[t].upper() + " !"
        eval_[e + 1] = " ".join(words + ["extra"])
        eval_[e + 2] = " ".join(words[:-2] + ["changed", "words"]) if len(words) > 6 else eval_[e + 2]
    train += train[:50]  # repeated train texts: the first train record of a text is the one named
    return train, eval_


@pytest.mark.parametrize("threshold", [0.9, 0.7])
def test_streamed_check_equals_the_in_memory_check(threshold: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leakage_index, "CHUNK", 700)  # many chunks on both sides
    train, eval_ = _corpus(3)
    train_ids, eval_ids = [f"t{i}" for i in range(len(train))], [f"e{i}" for i in range(len(eval_))]
    expected = check_leakage(train, train_ids, eval_, eval_ids, threshold=threshold)
    got = check_leakage_streaming(iter(zip(train, train_ids, strict=True)), iter(zip(eval_, eval_ids, strict=True)),
                                  threshold=threshold)
    assert expected.exact_duplicates >= 50 and expected.near_duplicates > expected.exact_duplicates
    assert got.model_dump(exclude={"example_pairs"}) == expected.model_dump(exclude={"example_pairs"})
    exact = expected.exact_duplicates
    assert got.example_pairs[:exact] == expected.example_pairs[:exact]  # exact pairs: the same, in order
    # near pairs: the same eval records (the train record named may differ only on a similarity tie)
    assert [e for e, _ in got.example_pairs] == [e for e, _ in expected.example_pairs]


def test_no_train_or_no_eval_records() -> None:
    assert check_leakage_streaming([], [("some text here", "e0")]).near_duplicates == 0
    evidence = LeakageIndex().check([])
    assert evidence.exact_fraction == 0.0 and evidence.near_fraction == 0.0
