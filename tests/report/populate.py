"""Record a realistic governed run in a lineage DB without training a model.

Reports are views of the DB, so their tests only need what a run *records*: evidence built from the
real Evidence models, real data files (with planted PII) that the real Presidio scanner scans, ε from
the real dp-accounting accountant, decisions from the real policy engine. Only the model-dependent
numbers (accuracy, attack scores, group metrics) are synthetic, drawn from seeded distributions.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dp_accounting
from dp_accounting import rdp
from sklearn.metrics import roc_auc_score, roc_curve

from govern.data.validate import fingerprint_file
from govern.documents.compute import estimate_compute
from govern.evidence import (
    AttackResult,
    DataEvidence,
    Disparity,
    EvaluationEvidence,
    FairnessEvidence,
    FileRecord,
    GroupMetrics,
    LeakageEvidence,
    LiraDetails,
    MembershipEvidence,
    MetricValue,
    SigningEvidence,
    TprAtFpr,
    TrainingEvidence,
    TrainingPoint,
)
from govern.lineage import LineageStore, PolicyRef
from govern.policy.engine import WaiverRef, evaluate
from govern.policy.loader import load_policy
from govern.stage import ArtifactOut, file_sha256

#: Values planted in the source data. They must never appear in any report output.
PLANTED_PII = ["marguerite.planted@example.org", "4111 1111 1111 1111", "203.0.113.77"]
INTENTS = ["billing", "shipping", "account", "technical"]


@dataclass
class RecordedRun:
    run_id: str
    run_dir: Path
    data_dir: Path
    epsilon: float
    policy_digest: str
    decision: str
    train_fingerprint: str
    planted: list[str] = field(default_factory=lambda: list(PLANTED_PII))


@dataclass
class RecordedDB:
    """A lineage DB file holding one recorded run: what the report, document and tampering tests read."""

    url: str
    root: Path
    run: RecordedRun

    @property
    def path(self) -> Path:
        return self.root / "lineage.db"


def record_governed_db(root: Path, **options: Any) -> RecordedDB:
    """A new lineage DB at ``root/lineage.db`` holding one :func:`record_governed_run` run (same options)."""
    url = f"sqlite:///{root / 'lineage.db'}"
    with LineageStore.open(url) as store:
        run = record_governed_run(store, root, **options)
    return RecordedDB(url=url, root=root, run=run)


def write_data(data_dir: Path, seed: int = 0, n_train: int = 240, n_eval: int = 80) -> tuple[Path, Path]:
    """JSONL train/eval files; a few train records carry the planted PII values."""
    rng = random.Random(seed)
    data_dir.mkdir(parents=True, exist_ok=True)

    def records(n: int, prefix: str) -> list[dict[str, Any]]:
        out = []
        for i in range(n):
            intent = INTENTS[i % 4]
            text = f"{prefix} {i} {intent} question number {rng.randint(0, 10**6)} please help"
            out.append({"id": f"{prefix}-{i}", "text": text, "label": intent,
                        "region": rng.choice(["north", "south"]), "age_band": rng.choice(["18-29", "30-44", "45+"])})
        return out

    train, eval_ = records(n_train, "train"), records(n_eval, "eval")
    train[3]["text"] = f"please send the invoice to {PLANTED_PII[0]} today"
    train[7]["text"] = f"my card {PLANTED_PII[1]} was charged twice"
    train[11]["text"] = f"login fails from {PLANTED_PII[2]} since monday"
    train_path, eval_path = data_dir / "train.jsonl", data_dir / "eval.jsonl"
    train_path.write_text("".join(json.dumps(r) + "\n" for r in train))
    eval_path.write_text("".join(json.dumps(r) + "\n" for r in eval_))
    return train_path, eval_path


def rdp_epsilon(q: float, sigma: float, steps: int, delta: float) -> float:
    acc = rdp.RdpAccountant()
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    return float(acc.get_epsilon(delta))


def _stage(store: LineageStore, run_id: str, stage: str, evidence: Any, *, outputs: dict[str, Any] | None = None,
           artifacts: list[ArtifactOut] | None = None) -> None:
    execution = store.start_stage(run_id, stage, "sha256:" + hashlib.sha256(stage.encode()).hexdigest())
    if artifacts:
        store.add_artifacts(run_id, execution, artifacts)
    store.finish_stage(execution, "completed", evidence=evidence.model_dump(mode="json"), outputs=outputs or {})


def record_governed_run(store: LineageStore, root: Path, *, name: str = "support-intents", seed: int = 0,
                        q: float = 0.05, sigma: float = 0.9, steps: int = 120, delta: float = 1e-5,
                        policy_ref: str | Path = "default", data_dir: Path | None = None,
                        waive_fairness: bool = True, parent_run_id: str | None = None,
                        disparities: list[Disparity] | None = None,
                        tpr_at_fpr: list[TprAtFpr] | None = None,
                        documentation: dict[str, Any] | None = None) -> RecordedRun:
    """One complete run (data → pii → training → evaluation → membership → fairness → signing);
    ``disparities`` / ``tpr_at_fpr`` replace the fairness rows / the attack's TPR-at-FPR points."""
    from govern.pii import scan_paths

    rng = random.Random(seed)
    loaded = load_policy(policy_ref)
    policy = PolicyRef(name=loaded.name, version=loaded.version, digest=loaded.digest, document=loaded.document,
                       source=loaded.source)
    data_dir = data_dir or root / "data"
    if not (data_dir / "train.jsonl").exists():
        write_data(data_dir)
    train_path, eval_path = data_dir / "train.jsonl", data_dir / "eval.jsonl"
    run_dir = root / "runs" / f"{name}-{seed}"
    (run_dir / "adapter").mkdir(parents=True, exist_ok=True)
    (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(rng.randbytes(4096))
    config = {"name": name, "task": "classification",
              "data": {"train": str(train_path), "eval": str(eval_path), "text_column": "text",
                       "label_column": "label", "sensitive_columns": ["region", "age_band"]},
              "training": {"seed": seed, "dp": {"noise_multiplier": sigma, "delta": delta}}, "policy": str(policy_ref)}
    if documentation is not None:  # the run config's documentation: section, as govern stores it
        config["documentation"] = documentation
    run_id = store.create_run(
        name=name, config=config, config_digest="sha256:" + hashlib.sha256(json.dumps(config).encode()).hexdigest(),
        config_path=str(root / "govern.yaml"), policy=policy, run_dir=str(run_dir),
        code_revision="9f1c2ab7d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8",
        versions={"python": "3.11.7", "torch": "2.13.0", "opacus": "1.6.0", "transformers": "5.23.0"},
        parent_run_id=parent_run_id)
    base = store.upsert_base_model(name="all-MiniLM-L6-v2", path="/models/all-MiniLM-L6-v2",
                                   digest="sha256:" + "5e" * 32)
    store.link_base_model(run_id, base)

    # data
    files, artifacts = [], []
    for role, path in (("train", train_path), ("eval", eval_path)):
        rows = sum(1 for _ in path.open())
        fp = fingerprint_file(path)
        sha = file_sha256(path)
        files.append(FileRecord(role=role, path=str(path), format="jsonl", sha256=sha, size_bytes=path.stat().st_size,
                                rows=rows, columns=["id", "text", "label", "region", "age_band"], fingerprint=fp))
        artifacts.append(ArtifactOut(name=f"{role}.jsonl", kind="dataset", path=str(path), sha256=sha,
                                     size_bytes=path.stat().st_size, role="input", dataset_fingerprint=fp, rows=rows))
    data_ev = DataEvidence(files=files, train_rows=files[0].rows, eval_rows=files[1].rows, text_column="text",
                           label_column="label", labels={i: files[0].rows // 4 for i in INTENTS},
                           sensitive_columns=["region", "age_band"],
                           leakage=LeakageEvidence(exact_duplicates=0, exact_fraction=0.0, near_duplicates=1,
                                                   near_fraction=1 / files[1].rows, threshold=0.9,
                                                   example_pairs=[("eval-5", "train-17")]))
    _stage(store, run_id, "data", data_ev, artifacts=artifacts,
           outputs={"train_path": str(train_path), "eval_path": str(eval_path), "format": "jsonl"})

    # pii: the real scanner over the real files (findings carry keyed hashes, never values)
    scan = scan_paths([train_path, eval_path], loaded.policy, engine="patterns", key=b"k" * 32, workers=1)
    assert scan.findings, "the planted PII must be found"
    execution = store.start_stage(run_id, "pii", "sha256:" + "01" * 32)
    store.add_pii_findings(run_id, scan.findings)
    store.finish_stage(execution, "completed", evidence=scan.evidence.model_dump(mode="json"))

    # training: ε from the real accountant, per step
    eps = rdp_epsilon(q, sigma, steps, delta)
    curve = [TrainingPoint(step=s, loss=1.4 * math.exp(-s / 60) + 0.25 + rng.uniform(-0.03, 0.03),
                           epsilon=rdp_epsilon(q, sigma, s, delta)) for s in range(10, steps + 1, 10)]
    n_train = files[0].rows
    training = TrainingEvidence(
        dp_enabled=True, non_private=False, accountant="rdp", epsilon={"rdp": eps, "dp_accounting_rdp": eps},
        delta=delta, noise_multiplier=sigma, sample_rate=q, steps=steps, epochs=steps * q, max_grad_norm=1.0,
        n_train=n_train, batch_size=round(q * n_train), method="lora", trainable_params=74_000,
        total_params=22_787_000, base_model={"name": "all-MiniLM-L6-v2", "digest": "sha256:" + "5e" * 32},
        curve=curve, device="cpu", duration_s=312.4, seed=seed,
        versions={"torch": "2.13.0", "opacus": "1.6.0", "peft": "0.21.2"},
        tokens_processed=steps * round(q * n_train) * 21, padded_tokens_processed=steps * round(q * n_train) * 32)
    training.compute = estimate_compute(training)  # the known figure for all-MiniLM-L6-v2
    adapter = run_dir / "adapter"
    adapter_sha = "sha256:" + hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()
    _stage(store, run_id, "training", training, artifacts=[
        ArtifactOut(name="adapter", kind="adapter", path=str(adapter), sha256=adapter_sha, size_bytes=4096)])

    # evaluation
    reliability = [{"bin_low": b / 10, "bin_high": (b + 1) / 10, "confidence": b / 10 + 0.05,
                    "accuracy": min(1.0, b / 10 + 0.05 + rng.uniform(-0.08, 0.04)), "count": 8} for b in range(2, 10)]
    evaluation = EvaluationEvidence(
        task="classification", n=files[1].rows, accuracy=0.8125, macro_f1=0.806, labels=INTENTS,
        per_class={i: {"precision": 0.8, "recall": 0.81, "f1": 0.805, "support": 20.0} for i in INTENTS},
        confusion_matrix=[[17, 1, 1, 1], [2, 16, 1, 1], [1, 1, 16, 2], [1, 2, 1, 16]], ece=0.041, ece_bins=10,
        reliability=reliability, loss=0.52)
    _stage(store, run_id, "evaluation", evaluation)

    # membership: ROC of seeded member/non-member scores
    members = [rng.gauss(0.15, 1) for _ in range(200)]
    nonmembers = [rng.gauss(0.0, 1) for _ in range(200)]
    y = [1] * 200 + [0] * 200
    scores = members + nonmembers
    fpr, tpr, _ = roc_curve(y, scores)
    auc = float(roc_auc_score(y, scores))
    roc = [(float(a), float(b)) for a, b in zip(fpr, tpr, strict=True)][:: max(1, len(fpr) // 50)] + [(1.0, 1.0)]
    membership = MembershipEvidence(n_members=200, n_nonmembers=200, seed=seed, max_auc=auc, attacks=[
        AttackResult(name="loss", auc=auc, auc_ci_low=auc - 0.05, auc_ci_high=auc + 0.05, roc=roc,
                     tpr_at_fpr=tpr_at_fpr or [TprAtFpr(fpr=0.01, tpr=0.02, ci_low=0.005, ci_high=0.045),
                                               TprAtFpr(fpr=0.1, tpr=0.14, ci_low=0.11, ci_high=0.19)])],
        lira=LiraDetails(reference_models=4, pool="eval", pool_size=200, records_per_model=[98, 101, 99, 102],
                         min_out_models_per_record=2, variance="global", dp=True,
                         steps=[141] * 4, noise_multiplier=0.61, reference_epsilon=[21.3, 20.8, 21.0, 21.4], seeds=[1, 2, 3, 4], training_s=41.0))
    _stage(store, run_id, "membership", membership)

    # fairness
    groups = []
    for attr, values in (("region", ["north", "south"]), ("age_band", ["18-29", "30-44", "45+"])):
        for v in values:
            n = 12 if v == "45+" else 40
            acc = 0.78 + rng.uniform(-0.06, 0.06)
            groups.append(GroupMetrics(attribute=attr, group=v, n=n, insufficient_data=n < 30, metrics={
                "accuracy": MetricValue(value=acc, ci_low=acc - 0.09, ci_high=acc + 0.07),
                "selection_rate": MetricValue(value=0.25, ci_low=0.18, ci_high=0.33)}))
    fairness = FairnessEvidence(
        sensitive_columns=["region", "age_band"], intersections=False, bootstrap=200, seed=seed, min_group_size=30,
        groups=groups, insufficient_groups=["age_band=45+"], disparities=disparities or [
            Disparity(attribute="region", metric="equalized_odds_difference", value=0.14, ci_low=0.05, ci_high=0.22),
            Disparity(attribute="region", metric="demographic_parity_ratio", value=0.91, ci_low=0.8, ci_high=0.99),
            Disparity(attribute="age_band", metric="equalized_odds_difference", value=0.06, ci_low=0.01, ci_high=0.15),
            Disparity(attribute="age_band", metric="demographic_parity_ratio", value=0.88, ci_low=0.75, ci_high=0.97)])
    _stage(store, run_id, "fairness", fairness)

    # signing
    bundle = run_dir / "adapter.sig"
    signing = SigningEvidence(method="key", signed=True, bundle=str(bundle), signer="sha256:" + "c0" * 32, files=1,
                              manifest_digest="sha256:" + "d1" * 32)
    _stage(store, run_id, "signing", signing, outputs={"bundle": str(bundle), "public_key": "keys/signing.pub.pem"})
    store.add_signature(run_id, subject=str(adapter), subject_digest=adapter_sha, method="key",
                        bundle_path=str(bundle), signer="sha256:" + "c0" * 32, kind="model")

    # the final decision, by the real policy engine, with a waiver for the fairness finding
    document = {k: v for k, v in store.evidence(run_id).items()}
    waivers = []
    if waive_fairness:
        until = date.today() + timedelta(days=30)
        wid = store.add_waiver(target=run_id, rule_id="fairness.max_difference.equalized_odds_difference",
                               by="dpo@example.org", reason="region disparity reviewed; retrain scheduled", until=until)
        waivers.append(WaiverRef(id=wid, target=run_id, rule_id="fairness.max_difference.equalized_odds_difference",
                                 by="dpo@example.org", reason="reviewed", until=until))
    decision = evaluate(loaded.policy, document, waivers=waivers, final=True)
    store.record_decision(run_id, kind="final", decision=decision.decision, policy=policy,
                          results=[r.model_dump(mode="json") for r in decision.results])
    store.set_run_status(run_id, "completed" if decision.decision != "block" else "blocked",
                         decision=decision.decision)
    return RecordedRun(run_id=run_id, run_dir=run_dir, data_dir=data_dir, epsilon=eps, policy_digest=loaded.digest,
                       decision=decision.decision, train_fingerprint=files[0].fingerprint)
