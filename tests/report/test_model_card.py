"""The model card next to the model: what someone handed the model asks first — the privacy guarantee and
its accountant, task metrics, the decision and the policy's digest, the base model, the intended use."""

from __future__ import annotations

import os
from pathlib import Path

from govern.data.stage import DataStage
from govern.evidence import EvaluationEvidence
from govern.lineage import LineageStore
from govern.pipeline import Pipeline
from govern.report.model_card import ModelCardStage
from tests.spine.helpers import write_project
from tests.spine.stages import EvidenceStage, training_evidence


def test_the_model_card_states_privacy_metrics_decision_and_intended_use(workdir: Path) -> None:
    cfg = write_project(workdir, policy="dev", extra={"documentation": {
        "intended_use": "Routing customer-support messages to a queue.",
        "limitations": "English only; not evaluated on messages longer than 200 words."}})
    stages = [DataStage(), EvidenceStage("training", training_evidence(eps=2.5)),
              EvidenceStage("evaluation", EvaluationEvidence(task="classification", n=60, accuracy=0.9125)),
              ModelCardStage()]
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        outcome = Pipeline(store, stages=stages).start(cfg)
        assert outcome.status == "completed", outcome.error
        evidence = store.evidence(outcome.run_id)["model_card"]
        artifacts = {a.name: a for a in store.artifacts(outcome.run_id)}
    card_path = Path(evidence["path"])
    assert card_path.parent == Path(artifacts["model"].path).parent.parent  # beside the model folder
    card = card_path.read_text()
    assert "Routing customer-support messages to a queue." in card and "English only" in card
    assert "ε = 2.5, δ = 5e-07 (rdp accountant" in card
    assert "accuracy: 0.9125 (n = 60)" in card
    assert "Policy decision before signing: **pass**" in card and "under policy `" in card
    assert artifacts["MODEL_CARD.md"].kind == "report"  # recorded with its digest
    assert artifacts["MODEL_CARD.md"].sha256 == evidence["sha256"]


def test_without_documentation_the_card_says_what_is_missing(workdir: Path) -> None:
    cfg = write_project(workdir, policy="dev")
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        outcome = Pipeline(store, stages=[DataStage(), EvidenceStage("training", training_evidence(dp=False)),
                                          ModelCardStage()]).start(cfg)
        card = Path(store.evidence(outcome.run_id)["model_card"]["path"]).read_text()
    assert "Not stated: set `documentation.intended_use`" in card
    assert "**Not differentially private**" in card and "- not evaluated" in card
