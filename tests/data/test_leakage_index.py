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


@pytest.mark.parametrize(("threshold", "pair_limit"), [(0.9, leakage_index.PAIR_LIMIT), (0.7, 40)])
def test_streamed_check_equals_the_in_memory_check(threshold: float, pair_limit: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leakage_index, "CHUNK", 700)  # many chunks on both sides
    monkeypatch.setattr(leakage_index, "PAIR_LIMIT", pair_limit)  # 40: candidates verified in many groups
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
    evidence = LeakageIndex([]).evidence()
    assert evidence.exact_fraction == 0.0 and evidence.near_fraction == 0.0
    index = LeakageIndex([("some text here", "e0")])
    index.add_train([("", "t0"), ("!!!", "t1")])  # empty after normalisation: matches nothing
    assert index.evidence().near_duplicates == 0


def test_templated_data_where_every_record_is_a_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many identical texts on both sides: every train record shares every band with every eval record,
    so the candidate pairs are verified in bounded groups (PAIR_LIMIT) and the earliest train record of a
    text is the one named."""
    monkeypatch.setattr(leakage_index, "CHUNK", 64)
    monkeypatch.setattr(leakage_index, "PAIR_LIMIT", 100)
    template = "your order has been shipped and will arrive within three working days"
    train = [template] * 300 + [template + " thanks"] * 50
    train_ids = [f"t{i}" for i in range(len(train))]
    eval_ = [template.upper()] * 10 + [template + " thanks a lot"] * 10
    eval_ids = [f"e{i}" for i in range(len(eval_))]
    expected = check_leakage(train, train_ids, eval_, eval_ids, threshold=0.7)
    got = check_leakage_streaming(zip(train, train_ids, strict=True), zip(eval_, eval_ids, strict=True),
                                  threshold=0.7)
    assert got == expected
    assert got.exact_duplicates == 10 and got.near_duplicates == 20
    assert got.example_pairs[0] == ("e0", "t0")
    assert ("e10", "t300") in got.example_pairs  # the near copy names the first "… thanks" train record
