"""Min-K%++ (Zhang et al. 2024) for causal LMs: each token's log-probability is standardised against the
model's own next-token distribution before the k % least likely are averaged, so a token is judged by
how surprising it is *for that position*. Right on a random tiny GPT-2 (checked against its logits by
hand), and it finds the records a tiny GPT-2 memorised, through the standalone audit a user runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from govern.audits.membership import audit_membership
from govern.audits.scoring import AuditRecords, attacks_for, min_k_score, score_records
from govern.policy.schema import MembershipPolicy
from tests.audits.conftest import build_word_bert, random_words, train_memorising_gpt2

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def texts_and_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, Path, Path]:
    root = tmp_path_factory.mktemp("minkpp")
    rng = np.random.default_rng(4)
    vocabulary = random_words(rng, 300)
    tokenizer_dir = build_word_bert(root / "vocab", vocabulary, hidden=16, max_len=32)
    members = [{"id": f"m{i}", "text": " ".join(rng.choice(vocabulary, 8))} for i in range(40)]
    nonmembers = [{"id": f"n{i}", "text": " ".join(rng.choice(vocabulary, 8))} for i in range(40)]
    paths = []
    for name, rows in (("members", members), ("nonmembers", nonmembers)):
        path = root / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(path)
    base_dir, model_dir = root / "base", root / "model"
    train_memorising_gpt2(tokenizer_dir, [r["text"] for r in members], base_dir, model_dir, epochs=30)
    return base_dir, model_dir, paths[0], paths[1], tokenizer_dir


def test_token_scores_are_log_probs_standardised_by_the_next_token_distribution(
        texts_and_models: tuple[Path, Path, Path, Path, Path]) -> None:
    import torch

    from govern.training.inference import load_model

    base_dir = texts_and_models[0]
    model, tokenizer = load_model(base_dir, task="causal-lm")
    text = json.loads(texts_and_models[2].read_text().splitlines()[0])["text"]
    scores = score_records(model, tokenizer, AuditRecords(texts=[text]), task="causal-lm", device="cpu",
                           token_zscores=True)
    assert scores.token_zscores is not None
    z = scores.token_zscores[0]
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]  # as training encodes
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
    target = ids[0, 1:]
    token_lp = logp[torch.arange(len(target)), target]
    mu = (logp.exp() * logp).sum(-1)
    sigma = ((logp.exp() * logp**2).sum(-1) - mu**2).sqrt()
    assert z == pytest.approx(((token_lp - mu) / sigma).numpy(), abs=1e-3)  # float32 in govern, float64 here
    assert scores.token_logprobs is not None and scores.token_logprobs[0] == pytest.approx(token_lp.numpy(), abs=1e-4)
    assert min_k_score(z, 0.2) == pytest.approx(float(np.sort(z)[: int(np.ceil(0.2 * len(z)))].mean()))


def test_min_k_pp_is_opt_in_for_causal_lms_and_skipped_with_a_note_for_classifiers() -> None:
    policy = MembershipPolicy(attacks=["loss", "min_k_pp"])
    assert "min_k_pp" in attacks_for(policy, "causal-lm", False)[0]
    assert "min_k_pp" not in attacks_for(MembershipPolicy(), "causal-lm", False)[0]  # defaults unchanged
    names, notes = attacks_for(policy, "classification", False)
    assert "min_k_pp" not in names and any("min_k_pp" in n for n in notes)


def test_min_k_pp_finds_the_records_a_tiny_gpt2_memorised(texts_and_models: tuple[Path, Path, Path, Path, Path]
                                                          ) -> None:
    base_dir, model_dir, members, nonmembers, _ = texts_and_models
    evidence = audit_membership(model_dir, base_dir, members, nonmembers, MembershipPolicy(attacks=["loss", "min_k_pp"]),
                                task="causal-lm", label_column=None, max_length=32, bootstrap=20)
    attack = next(a for a in evidence.attacks if a.name == "min_k_pp")
    assert attack.auc >= 0.8 and attack.description.startswith("Min-K%++")
    assert {a.name for a in evidence.attacks} == {"loss", "min_k", "zlib", "min_k_pp"}
