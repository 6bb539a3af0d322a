"""Stages for pipeline tests: real DataStage plus a stage that reports evidence it is given.

The pipeline and the policy gate are what these tests exercise; the evidence stage stands in for a
stage whose own behaviour is tested in its own package.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from govern.data.stage import DataStage
from govern.evidence import EvidenceModel, TrainingEvidence
from govern.lineage import LineageStore
from govern.pii.stage import PIIStage
from govern.pipeline import Pipeline
from govern.stage import DataFiles, ModelFolder, StageContext, StageResult, artifact_for, digest_of


def training_evidence(eps: float = 3.0, n: int = 200, dp: bool = True) -> TrainingEvidence:
    return TrainingEvidence(dp_enabled=dp, non_private=not dp, accountant="rdp",
                            epsilon={"rdp": eps, "prv": eps, "dp_accounting_rdp": eps, "dp_accounting_pld": eps},
                            delta=1e-4 / n, noise_multiplier=1.1, sample_rate=0.1, steps=50, epochs=1.0,
                            max_grad_norm=1.0, n_train=n, batch_size=20, method="lora", trainable_params=10,
                            total_params=100, device="cpu", duration_s=0.1, seed=0)


class EvidenceStage:
    """Writes a model file and returns fixed evidence under ``name``; optional delay for kill tests."""

    outputs_model = ModelFolder

    def __init__(self, name: str, evidence: EvidenceModel, delay: float = 0.0, version: str = "1") -> None:
        self.name = name
        self.evidence = evidence
        self.delay = delay
        self.version = version
        self.runs = 0

    def enabled(self, ctx: StageContext) -> bool:
        return True

    def input_digest(self, ctx: StageContext) -> str:
        data = ctx.find(DataFiles)
        return digest_of(self.name, self.version, data.train_fingerprint if data else None)

    def run(self, ctx: StageContext) -> StageResult:
        self.runs += 1
        if self.delay:
            time.sleep(self.delay)
        out: Path = ctx.stage_dir(self.name) / "weights.bin"
        out.write_bytes(b"model-" + self.version.encode())
        return StageResult(evidence=self.evidence, artifacts=[artifact_for(out, "model", "model")],
                           outputs=ModelFolder(model_dir=str(out.parent)))


class ReadsTrainingData(EvidenceStage):
    """A stand-in training stage that records which file its position in the pipeline would read."""

    def run(self, ctx: StageContext) -> StageResult:
        self.read_path = Path(ctx.data_paths().train_path)
        return super().run(ctx)


def run_through_pii(store: LineageStore, config: Path) -> tuple[Any, ReadsTrainingData]:
    """Start a run of the real data and PII stages, then a :class:`ReadsTrainingData` stage: the outcome and
    that stage (which file it read, whether it ran at all)."""
    training = ReadsTrainingData("training", training_evidence())
    return Pipeline(store, stages=[DataStage(), PIIStage(), training]).start(config), training


def assert_blocked_by_pii(store: LineageStore, outcome: Any, training: ReadsTrainingData,
                          observed: dict[str, int]) -> None:
    """The PII gate blocked the run before training ran, on blocked entities counted as ``observed``, and
    the lineage DB records the run as blocked."""
    assert outcome.status == "blocked" and training.runs == 0
    (failed,) = [r for r in outcome.results if r["status"] == "fail"]
    assert failed["rule_id"] == "pii.blocked_entities" and failed["observed"] == observed
    assert store.get_run(outcome.run_id).status == "blocked"
