"""The model card next to the model: what someone handed the model asks first — the privacy guarantee and
its accountant, task metrics, the decision and the policy's digest, the base model, the intended use."""

from __future__ import annotations

import os
from pathlib import Path

from govern.data.stage import DataStage
from govern.evidence import (
    EvaluationEvidence,
    ExtractionAudit,
    ExtractionRate,
    MembershipEvidence,
    PIIRegurgitation,
)
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


def test_a_causal_lm_card_says_what_the_model_writes_out_verbatim(workdir: Path) -> None:
    """The extraction and PII-regurgitation figures (membership evidence) each get a plain-language line,
    with the members' and the never-seen baseline's numbers; a run without them gets neither line."""
    extraction = ExtractionAudit(
        prefix_tokens=4, suffix_tokens=8, excess_exact_match_rate=0.75,
        members=ExtractionRate(records=16, exact_matches=13, exact_match_rate=13 / 16, mean_prefix_match=0.9),
        nonmembers=ExtractionRate(records=16, exact_matches=1, exact_match_rate=1 / 16, mean_prefix_match=0.2))
    pii = PIIRegurgitation(pool_size=30, repetitions=2, inserted=15, inserted_reproduced=14, inserted_rate=14 / 15,
                           held_out=15, held_out_reproduced=0, held_out_rate=0.0)
    membership = MembershipEvidence(n_members=16, n_nonmembers=16, seed=0, attacks=[], max_auc=0.5,
                                    extraction=extraction, pii_regurgitation=pii, task="causal-lm")
    cfg = write_project(workdir, policy="dev")
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        outcome = Pipeline(store, stages=[DataStage(), EvidenceStage("training", training_evidence(eps=2.5)),
                                          EvidenceStage("membership", membership), ModelCardStage()]).start(cfg)
        assert outcome.status == "completed", outcome.error
        card = Path(store.evidence(outcome.run_id)["model_card"]["path"]).read_text()
    privacy = card.split("## Privacy")[1].split("## Task metrics")[0]
    extraction_line = next(line for line in privacy.splitlines() if "first 4 tokens" in line)
    assert extraction_line.startswith("- Given the first 4 tokens of each of 16 training records")
    assert "continued 13 of them (81%) word for word for up to 8 more tokens" in extraction_line
    assert "1 of 16 similar records it never saw (6%)" in extraction_line and "75 percentage points" in extraction_line
    pii_line = next(line for line in privacy.splitlines() if "Made-up personal data" in line)
    assert "planted in 15 training records" in pii_line and "wrote out 14 of them exactly (93%)" in pii_line
    assert "0 of 15 made-up values it was never shown" in pii_line
    # The same evidence without either audit (a classifier's membership stage): no such lines.
    plain = membership.model_copy(update={"extraction": None, "pii_regurgitation": None, "task": "classification"})
    cfg = write_project(workdir / "classifier", policy="dev")
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        outcome = Pipeline(store, stages=[DataStage(), EvidenceStage("training", training_evidence(eps=2.5)),
                                          EvidenceStage("membership", plain), ModelCardStage()]).start(cfg)
        card = Path(store.evidence(outcome.run_id)["model_card"]["path"]).read_text()
    assert "word for word" not in card and "Made-up personal data" not in card
