"""The membership audit works: it finds leakage in an overfit model, none under DP, and its numbers
are right on hand-made inputs.

The end-to-end tests train tiny BERT classifiers from scratch (a WordPiece tokenizer trained on the
test's own words, one transformer layer) on random labels — the classic way to force memorisation —
once without DP and several times with real Opacus DP-SGD at ε ≤ 1, run the real canary and
membership stages around them, and check the attack metrics, the policy decision and the empirical
ε lower bound.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from govern.audits.attack_metrics import downsample_roc, roc_auc, roc_points, tpr_at_fpr
from govern.audits.canaries import (
    CanaryStage,
    dp_audit_p_value,
    epsilon_lower_bound,
    exposure,
    guess_membership,
    read_inserted_ids,
)
from govern.audits.membership import MembershipStage, audit_membership
from govern.config import DataConfig, RunConfig, TrainingConfig
from govern.data.io import read_records
from govern.errors import DataError, StageError
from govern.evidence import Evidence, MembershipEvidence, TrainingEvidence
from govern.policy.schema import CanaryPolicy, LiraPolicy, MembershipPolicy, Metadata, Policy
from govern.stage import DataFiles, StageContext
from govern.training.stage import TrainingOutputs
from tests.audits.conftest import World, build_word_bert, random_words, train_memorising_gpt2

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ====================================================================== metrics on hand-made scores
MEMBERS = np.array([0.99, 0.97, 0.9, 0.6, 0.2])
NONMEMBERS = np.array([0.95, 0.5, 0.4, 0.3, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01])


def test_auc_on_hand_made_scores_counts_ties_as_half() -> None:
    # member 0.99 and 0.97 beat all 10; 0.9 and 0.6 beat 9 (not 0.95); 0.2 beats 4 and ties 1.
    assert roc_auc(MEMBERS, NONMEMBERS) == pytest.approx((10 + 10 + 9 + 9 + 4.5) / 50)


def test_tpr_at_fpr_on_hand_made_scores_matches_the_known_answer() -> None:
    # One false positive allowed (10 %): threshold 0.6 admits 0.95 only → TPR 4/5 at FPR 0.1.
    at_10 = tpr_at_fpr(MEMBERS, NONMEMBERS, 0.1)
    assert (at_10.tpr, at_10.achieved_fpr, at_10.max_false_positives, at_10.resolvable) == (0.8, 0.1, 1, True)
    # 5 % of 10 non-members allows none: best is threshold 0.96 → TPR 2/5 at zero false positives.
    at_5 = tpr_at_fpr(MEMBERS, NONMEMBERS, 0.05)
    assert (at_5.tpr, at_5.achieved_fpr, at_5.max_false_positives, at_5.resolvable) == (0.4, 0.0, 0, False)
    # FPR ≤ 0.5: threshold 0.3 (5 false positives) still gives 4/5; 0.2 would be 6 false positives.
    assert tpr_at_fpr(MEMBERS, NONMEMBERS, 0.5).tpr == 0.8
    assert tpr_at_fpr(MEMBERS, NONMEMBERS, 0.6).tpr == 1.0
    # Clopper-Pearson 95 % for 4/5, computed independently from the beta quantiles.
    assert at_10.ci_low == pytest.approx(stats.beta.ppf(0.025, 4, 2))
    assert at_10.ci_high == pytest.approx(stats.beta.ppf(0.975, 5, 1))


def test_roc_points_and_downsampling_keep_the_curve_monotone_with_both_ends() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 2000), rng.normal(0, 1, 2000)
    fpr, tpr = roc_points(pos, neg)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(pos, neg), abs=1e-9)
    points = downsample_roc(fpr, tpr, max_points=100)
    assert len(points) <= 101 and points[0] == (0.0, 0.0) and points[-1] == (1.0, 1.0)
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(points, points[1:], strict=False))
    assert any(0 < f <= 0.002 for f, _ in points), "the low-FPR region must survive downsampling"


# ============================================================================= the ε lower bound
def test_epsilon_bound_without_delta_is_the_logit_of_the_clopper_pearson_lower_bound() -> None:
    for r, v in ((40, 40), (100, 80), (30, 22)):
        p_lo = stats.beta.ppf(0.05, v, r - v + 1)  # one-sided 95 % Clopper-Pearson lower bound
        expected = max(0.0, math.log(p_lo / (1 - p_lo)))
        assert epsilon_lower_bound(200, r, v, delta=0.0, confidence=0.95) == pytest.approx(expected, abs=1e-5)


def test_epsilon_bound_is_zero_when_guesses_are_no_better_than_chance() -> None:
    assert epsilon_lower_bound(200, 100, 50) == 0.0
    assert epsilon_lower_bound(200, 100, 55) == 0.0  # within noise of a fair coin
    assert epsilon_lower_bound(200, 0, 0) == 0.0


def test_delta_can_only_weaken_the_bound() -> None:
    no_delta = epsilon_lower_bound(1000, 100, 95)
    with_delta = epsilon_lower_bound(1000, 100, 95, delta=1e-4)
    assert 0 < with_delta < no_delta
    assert dp_audit_p_value(1000, 100, 95, 1.0, 1e-4) > dp_audit_p_value(1000, 100, 95, 1.0, 0.0)


def test_epsilon_bound_holds_for_randomised_response_with_a_known_epsilon() -> None:
    # An ε-DP mechanism's best guesser is right with probability e^ε/(1+e^ε). The 95 % bound may exceed
    # the true ε in at most ~5 % of audits, and should be far from vacuous when ε is large.
    rng = np.random.default_rng(7)
    for true_eps in (0.5, 2.0):
        q = 1 / (1 + math.exp(-true_eps))
        bounds = [epsilon_lower_bound(400, 200, int(rng.binomial(200, q))) for _ in range(300)]
        assert sum(b > true_eps for b in bounds) <= 25  # 5 % of 300 is 15
        if true_eps == 2.0:
            assert np.median(bounds) > 1.2


def test_guessing_takes_top_and_bottom_scores_and_abstains_on_the_rest() -> None:
    inserted = np.array([True] * 5 + [False] * 5)
    scores = np.array([9, 8, 7, 6, 0.5, 5, 4, 3, 2, 1], dtype=float)  # one member scores lowest
    g = guess_membership(scores, inserted, guess_fraction=0.4)  # k = 2 each side
    assert (g.guesses, g.correct) == (4, 3)  # top 9, 8 right; bottom 0.5 wrong, 1 right


def test_exposure_is_high_for_the_most_likely_secret_and_low_for_a_typical_one() -> None:
    candidates = np.linspace(-50, -10, 255)
    assert exposure(0.0, candidates) == pytest.approx(8.0)  # top of 256: log2(256)
    assert exposure(-30.0, candidates) < 2.0


# ================================================================== end to end with tiny models
N_RECORDS = 120
POOL = 100
VOCABULARY_WORDS = 1500
EPOCHS = 30
WORDS = 5
HIDDEN = 32
LABELS = ["neg", "pos", "neutral", "mixed"]
MAX_LEN = 16


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Random-word records with random labels, and a tiny untrained BERT 'base' with its tokenizer."""
    root = tmp_path_factory.mktemp("membership")
    rng = np.random.default_rng(0)
    vocabulary = random_words(rng, VOCABULARY_WORDS)

    def records(prefix: str) -> list[dict[str, Any]]:
        return [{"id": f"{prefix}-{i}", "text": " ".join(rng.choice(vocabulary, WORDS)), "label": LABELS[rng.integers(len(LABELS))]}
                for i in range(N_RECORDS)]

    paths = {}
    for split in ("train", "eval"):
        paths[split] = root / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in records(split)))
    base = build_word_bert(root / "base", vocabulary, hidden=HIDDEN, max_len=MAX_LEN)
    return World(root=root, train=paths["train"], eval=paths["eval"], base=base)


def _policy(**membership: Any) -> Policy:
    canaries = CanaryPolicy(enabled=True, pool_size=POOL, guess_fraction=0.3)
    return Policy(apiVersion="govern.dev/v1", kind="Policy", metadata=Metadata(name="test", version="1"),
                  membership=MembershipPolicy(max_auc=0.6, canaries=canaries, **membership))


def _train(world: World, records: list[dict[str, Any]], out: Path, *, dp: bool, seed: int) -> dict[str, float]:
    """Full fine-tune of the tiny BERT (non-private: EPOCHS of Adam; DP: Opacus at ε = 1, 10 epochs)."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(world.base))
    model = BertForSequenceClassification.from_pretrained(
        str(world.base), num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    for module in (model.bert.embeddings.position_embeddings, model.bert.embeddings.token_type_embeddings):
        module.weight.requires_grad = False
    enc = tokenizer([r["text"] for r in records], padding="max_length", truncation=True, max_length=MAX_LEN,
                    return_tensors="pt")
    labels = torch.tensor([LABELS.index(r["label"]) for r in records])
    data = torch.utils.data.TensorDataset(enc["input_ids"], enc["attention_mask"], labels)
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    info: dict[str, float] = {}
    epochs = 10 if dp else EPOCHS
    if dp:
        from opacus import PrivacyEngine

        engine = PrivacyEngine(accountant="rdp")
        model, optimizer, loader = engine.make_private_with_epsilon(
            module=model, optimizer=optimizer, data_loader=loader, target_epsilon=1.0, target_delta=1e-4,
            epochs=epochs, max_grad_norm=1.0)
    for _ in range(epochs):
        for ids, mask, y in loader:
            if len(y) == 0:
                continue
            loss = model(input_ids=ids, attention_mask=mask, labels=y).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    if dp:
        info["epsilon"] = float(engine.get_epsilon(1e-4))  # what the accountant computed
        model = model._module
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return info


@dataclass
class RunResult:
    evidence: MembershipEvidence
    accountant_epsilon: float | None
    ctx: StageContext


def _run(world: World, *, dp: bool, seed: int) -> RunResult:
    """Canary stage → training on train + inserted canaries → membership stage, as the pipeline runs them."""
    run_dir = world.root / f"run-{'dp' if dp else 'plain'}-{seed}"
    config = RunConfig(task="classification", data=DataConfig(train=world.train, eval=world.eval),
                       training=TrainingConfig(max_length=MAX_LEN))
    ctx = StageContext(run_id=run_dir.name, config=config, run_dir=run_dir, policy=_policy(), evidence=Evidence())
    ctx.outputs["data"] = DataFiles(train_path=str(world.train), eval_path=str(world.eval), format="jsonl",
                                    train_fingerprint="fp-train", eval_fingerprint="fp-eval", label_names=LABELS)
    canaries = CanaryStage(seed=1000 + seed).run(ctx)
    ctx.outputs["canaries"] = canaries.outputs
    from govern.data.io import read_records

    training_records = read_records(world.train) + read_records(Path(canaries.outputs.inserted_path))
    model_dir = run_dir / "model"
    info = _train(world, training_records, model_dir, dp=dp, seed=seed)
    ctx.outputs["training"] = TrainingOutputs(model_dir=str(model_dir), base_model_path=str(world.base),
                                              label_names=LABELS, task="classification", device="cpu")
    eps = info.get("epsilon")
    ctx.evidence.training = TrainingEvidence(
        dp_enabled=dp, non_private=not dp, accountant="rdp" if dp else None,
        epsilon={"rdp": eps} if eps is not None else {}, delta=1e-4 if dp else None, steps=0, epochs=0,
        n_train=len(training_records), batch_size=32, method="full", trainable_params=0, total_params=0,
        device="cpu", duration_s=0.0, seed=seed)
    result = MembershipStage().run(ctx)
    assert isinstance(result.evidence, MembershipEvidence)
    return RunResult(evidence=result.evidence, accountant_epsilon=eps, ctx=ctx)


@pytest.fixture(scope="module")
def overfit(world: World) -> RunResult:
    return _run(world, dp=False, seed=0)


@pytest.fixture(scope="module")
def dp_runs(world: World) -> list[RunResult]:
    return [_run(world, dp=True, seed=seed) for seed in (1, 2, 3)]


def _attack(evidence: MembershipEvidence, name: str) -> Any:
    return next(a for a in evidence.attacks if a.name == name)


def _membership_rule(evidence: MembershipEvidence, rule: str = "membership.max_auc") -> tuple[str, str]:
    from govern.policy import evaluate

    decision = evaluate(_policy(), {"membership": evidence.model_dump(mode="json")}, final=False)
    result = next(r for r in decision.results if r.rule_id == rule)
    return decision.decision, result.status


def test_overfit_non_private_model_leaks_and_a_max_auc_policy_blocks_it(overfit: RunResult) -> None:
    ev = overfit.evidence
    reference = _attack(ev, "reference")
    assert reference.auc >= 0.8, f"reference-calibrated AUC {reference.auc:.3f}"
    assert reference.auc_ci_low is not None and reference.auc_ci_low > 0.6
    assert ev.n_members == ev.n_nonmembers == N_RECORDS
    assert {a.name for a in ev.attacks} == {"loss", "reference"}
    assert [p.fpr for p in reference.tpr_at_fpr] == [0.001, 0.01]
    # 120 non-members resolve 1 % (one false positive allowed) but not 0.1 %: that one is measured at zero
    # false positives, flagged, and the notes say so.
    at_01, at_1 = reference.tpr_at_fpr
    assert (at_01.resolvable, at_01.max_false_positives, at_01.achieved_fpr) == (False, 0, 0.0)
    assert (at_1.resolvable, at_1.max_false_positives) == (True, 1) and at_1.achieved_fpr <= 0.01
    assert at_1.tpr >= at_01.tpr > 0.1
    assert any(note.startswith("FPR 0.001 ") for note in ev.notes)
    assert _membership_rule(ev) == ("block", "fail")


def test_dp_model_at_epsilon_one_does_not_leak_and_the_same_policy_passes_it(dp_runs: list[RunResult]) -> None:
    for run in dp_runs:
        assert run.accountant_epsilon is not None and run.accountant_epsilon <= 1.0 + 1e-6
        assert _attack(run.evidence, "reference").auc <= 0.6, [a.auc for a in run.evidence.attacks]
        assert run.evidence.max_auc <= 0.6
        assert _membership_rule(run.evidence) == ("pass", "pass")


def test_canaries_prove_a_positive_epsilon_for_the_overfit_model(overfit: RunResult) -> None:
    canaries = overfit.evidence.canaries
    assert canaries is not None and canaries.canaries_in_model
    assert canaries.pool_size == POOL and 30 <= canaries.inserted <= 70
    assert canaries.guesses == 30 and canaries.correct >= 26
    assert canaries.epsilon_lower_bound > 1.0
    assert canaries.epsilon_lower_bound == pytest.approx(
        epsilon_lower_bound(POOL, canaries.guesses, canaries.correct, delta=0.0, confidence=0.95))


def test_canary_bound_never_exceeds_the_accountants_epsilon_under_dp(dp_runs: list[RunResult]) -> None:
    from govern.policy import evaluate

    for run in dp_runs:
        canaries = run.evidence.canaries
        assert canaries is not None and run.accountant_epsilon is not None
        assert canaries.accountant_epsilon == pytest.approx(run.accountant_epsilon)
        assert canaries.delta == 1e-4
        assert canaries.epsilon_lower_bound <= run.accountant_epsilon
        assert not canaries.violation
        doc = {"membership": run.evidence.model_dump(mode="json"),
               "training": run.ctx.evidence.training.model_dump(mode="json")}  # type: ignore[union-attr]
        rule = next(r for r in evaluate(_policy(), doc, final=False).results
                    if r.rule_id == "membership.empirical_epsilon")
        assert rule.status == "pass"


def _reaudit_canaries(run: RunResult, base_path: Path, canary_policy: CanaryPolicy) -> Any:
    """The same model and canary pool, audited again with another canary policy (no retraining)."""
    from govern.audits.canaries import canary_audit
    from govern.training.inference import load_model

    ctx, out = run.ctx, run.ctx.outputs
    model, tokenizer = load_model(Path(str(out["training"].model_dir)), task="classification", label_names=LABELS)
    base, base_tokenizer = load_model(base_path, task="classification", label_names=LABELS, as_reference=True)
    pool = read_records(Path(out["canaries"].pool_path), "jsonl")
    ev = ctx.evidence.training
    assert ev is not None
    return canary_audit(model, tokenizer, base, base_tokenizer, pool=pool,
                        inserted_ids=read_inserted_ids(Path(out["canaries"].inserted_ids_path)),
                        ctx_task="classification", text_column="text", label_column="label", label_names=LABELS,
                        prompt_column=None, completion_column=None, id_column="id", attacks=["loss", "reference"],
                        canary_policy=canary_policy, delta=float(ev.delta or 0.0),
                        accountant_epsilon=run.accountant_epsilon, batch_size=32, max_length=MAX_LEN, seed=0,
                        device="cpu", source="pool")


def test_fdp_and_steinke_bounds_over_several_thresholds_hold_under_dp_and_prove_the_overfit_leak(
        world: World, overfit: RunResult, dp_runs: list[RunResult]) -> None:
    policy = CanaryPolicy(enabled=True, pool_size=POOL, guess_fraction=0.3, guess_fractions=[0.1, 0.6],
                          bounds=["steinke", "fdp"])
    leaky = _reaudit_canaries(overfit, world.base, policy)
    methods = {b.method for b in leaky.bounds}
    assert methods == {"steinke-nasr-jagielski-2023", "mahloujifar-melis-chaudhuri-2025"}
    assert len(leaky.bounds) == 6 and all(b.confidence == pytest.approx(1 - 0.05 / 6) for b in leaky.bounds)
    gated = max(leaky.bounds, key=lambda b: b.epsilon_lower_bound)
    assert leaky.epsilon_lower_bound == gated.epsilon_lower_bound > 1.0 and leaky.method == gated.method
    assert (leaky.guesses, leaky.correct) == (gated.guesses, gated.correct)
    for method in methods:  # each bound on its own proves the leak
        assert max(b.epsilon_lower_bound for b in leaky.bounds if b.method == method) > 1.0
    for run in dp_runs:
        audit = _reaudit_canaries(run, world.base, policy)
        assert run.accountant_epsilon is not None and audit.delta == 1e-4
        assert all(b.epsilon_lower_bound <= run.accountant_epsilon for b in audit.bounds)
        assert not audit.violation


def test_canary_secrets_stay_in_private_files_and_out_of_evidence(overfit: RunResult) -> None:
    out = overfit.ctx.outputs["canaries"]
    for key in ("pool_path", "inserted_path", "inserted_ids_path"):
        assert stat.S_IMODE(os.stat(getattr(out, key)).st_mode) == 0o600
    seed_file = Path(out.pool_path).parent / "secret_seed"
    assert stat.S_IMODE(os.stat(seed_file).st_mode) == 0o600
    document = overfit.evidence.model_dump_json()
    for canary_id in read_inserted_ids(Path(out.inserted_ids_path)):
        assert f'"{canary_id}"' not in document
    seed = int(seed_file.read_text())

    def values(node: Any) -> Any:
        if isinstance(node, dict):
            for v in node.values():
                yield from values(v)
        elif isinstance(node, list):
            for v in node:
                yield from values(v)
        else:
            yield node

    assert seed not in set(values(json.loads(document))) - {True, False}


def test_standalone_audit_of_a_saved_model_finds_the_same_leak(world: World, overfit: RunResult) -> None:
    model_dir = overfit.ctx.outputs["training"].model_dir
    ev = audit_membership(model_dir, world.base, world.train, world.eval, _policy().membership,
                          task="classification", max_records=80, seed=3, bootstrap=50, max_length=MAX_LEN)
    assert ev.n_members == ev.n_nonmembers == 80
    assert _attack(ev, "reference").auc >= 0.8
    assert ev.members_source == str(world.train)


def test_a_label_the_model_does_not_know_is_a_data_error_naming_line_and_field(world: World,
                                                                               overfit: RunResult) -> None:
    bad = world.root / "bad-members.jsonl"
    bad.write_text(json.dumps({"id": "a", "text": "x y", "label": "neg"}) + "\n"
                   + json.dumps({"id": "b", "text": "x y", "label": "maybe"}) + "\n")
    with pytest.raises(DataError) as err:
        audit_membership(overfit.ctx.outputs["training"].model_dir, world.base, bad, world.eval,
                         task="classification", max_records=80, bootstrap=0, max_length=MAX_LEN)
    assert err.value.line == 2 and err.value.field == "label"
    assert "maybe" not in str(err.value)


def test_lira_on_a_model_trained_elsewhere_is_a_clear_error_not_a_silent_skip(world: World,
                                                                              overfit: RunResult) -> None:
    # LiRA retrains with the target's recipe, which a model trained elsewhere does not come with.
    policy = MembershipPolicy(lira=LiraPolicy(enabled=True))
    with pytest.raises(StageError, match="only `govern run` knows"):
        audit_membership(overfit.ctx.outputs["training"].model_dir, world.base, world.train, world.eval, policy,
                         task="classification", max_length=MAX_LEN)


def test_cli_audit_membership_blocks_the_overfit_model_with_exit_code_1(world: World, overfit: RunResult,
                                                                         workdir: Path) -> None:
    from typer.testing import CliRunner

    from govern.cli import app

    policy = workdir / "membership.yaml"
    policy.write_text("apiVersion: govern.dev/v1\nkind: Policy\nmetadata: {name: mia, version: 1.0.0}\n"
                      "membership:\n  max_auc: 0.6\n")
    args = ["audit", "membership", "--model", overfit.ctx.outputs["training"].model_dir, "--base", str(world.base),
            "--members", str(world.train), "--nonmembers", str(world.eval), "--policy", str(policy),
            "--max-length", str(MAX_LEN), "--bootstrap", "20", "--format", "json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["decision"] == "block"
    assert any(r["rule_id"] == "membership.max_auc" and r["status"] == "fail" for r in report["results"])
    assert report["evidence"]["max_auc"] >= 0.8
    table = CliRunner().invoke(app, args[:-2])
    assert table.exit_code == 1 and "reference" in table.stdout and "decision" in table.stdout


def test_causal_lm_audit_adds_min_k_and_zlib_and_measures_exposure_of_memorised_secrets(world: World) -> None:
    """A tiny GPT-2 trained hard on its records and on half of a pool of secret-code canaries."""
    from govern.data.io import read_records

    run_dir = world.root / "run-causal"
    config = RunConfig(task="causal-lm", data=DataConfig(train=world.train, eval=world.eval, label_column=None),
                       training=TrainingConfig(max_length=32))
    canary_policy = CanaryPolicy(enabled=True, pool_size=40, guess_fraction=0.3, exposure_canaries=4,
                                 exposure_candidates=63)
    policy = Policy(apiVersion="govern.dev/v1", kind="Policy", metadata=Metadata(name="t", version="1"),
                    membership=MembershipPolicy(canaries=canary_policy))
    ctx = StageContext(run_id="causal", config=config, run_dir=run_dir, policy=policy, evidence=Evidence())
    ctx.outputs["data"] = DataFiles(train_path=str(world.train), eval_path=str(world.eval), format="jsonl",
                                    train_fingerprint="fp-train", eval_fingerprint="fp-eval")
    ctx.outputs["canaries"] = CanaryStage(seed=5).run(ctx).outputs
    records = read_records(world.train)[:60] + read_records(Path(ctx.outputs["canaries"].inserted_path))

    base_dir, model_dir = run_dir / "base", run_dir / "model"
    train_memorising_gpt2(world.base, [r["text"] for r in records], base_dir, model_dir)
    ctx.outputs["training"] = TrainingOutputs(model_dir=str(model_dir), base_model_path=str(base_dir),
                                              label_names=[], task="causal-lm", device="cpu")
    ev = MembershipStage().run(ctx).evidence
    assert isinstance(ev, MembershipEvidence)
    assert {a.name for a in ev.attacks} == {"loss", "reference", "min_k", "zlib"}
    assert ev.n_members == 120  # members are sampled from the whole training file; 60 were trained on
    canaries = ev.canaries
    assert canaries is not None and canaries.exposure_candidates == 63 and canaries.exposure_max == 6.0
    assert len(canaries.exposure) == len(canaries.exposure_nonmembers) == 4
    # Memorised secrets sit at the top of their candidate space; unseen ones do not.
    assert np.mean(canaries.exposure) >= 5.0 > np.mean(canaries.exposure_nonmembers) + 2.0
    assert canaries.epsilon_lower_bound > 0.5
