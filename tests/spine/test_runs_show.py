"""`govern runs show` states one decision and one policy: the latest, as its findings table does."""

from __future__ import annotations

import os
import re
from pathlib import Path

from govern.data.stage import DataStage
from govern.lineage import LineageStore
from govern.pipeline import Pipeline
from tests.report.populate import record_governed_run
from tests.spine.helpers import write_project
from tests.spine.stages import EvidenceStage, training_evidence


def test_runs_show_after_a_stricter_check_states_the_check_decision_and_its_policy(
        workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{workdir / 'lineage.db'}"
    with LineageStore.open(url) as store:
        run = record_governed_run(store, workdir)  # under the default policy: warn (a waived fairness finding)
    assert run.decision == "warn"

    code, out, err = govern_cli("check", run.run_id, "--policy", "strict", "--db", url)
    assert code == 1, out + err  # the strict policy blocks what the default policy let through

    code, out, err = govern_cli("runs", "show", run.run_id, "--db", url)
    assert code == 0, out + err
    text = " ".join(out.split())
    header = re.search(r"decision=(\w+) \((\w+),", text)
    assert header is not None, text
    assert header.groups() == ("block", "check") and "check decision: block" in text
    [policy_line] = [line for line in out.splitlines() if line.startswith("policy ")]
    assert policy_line.split()[1] == "strict"
    # the run-time decision is still shown, labelled as such, with the policy it was made under
    assert "at run time: decision=warn, run policy default" in text

    # before any check, the header is the run's own final decision under its own policy, stated once
    with LineageStore.open(url) as store:
        second = record_governed_run(store, workdir, name="second")
    code, out, _ = govern_cli("runs", "show", second.run_id, "--db", url)
    text = " ".join(out.split())
    assert "decision=warn (final," in text and "at run time" not in text
    assert [line.split()[1] for line in out.splitlines() if line.startswith("policy ")] == ["default"]


def test_runs_show_gives_the_models_ancestry_and_the_base_model_is_recorded(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    """`runs show` answers "where did this model come from": data sets, base model, parents, signatures."""
    import json

    from govern.stage import BaseModelOut, StageContext, StageResult

    class TrainsFromABaseModel(EvidenceStage):
        def run(self, ctx: StageContext) -> StageResult:
            result = super().run(ctx)
            result.base_model = BaseModelOut(name="tiny-base", path="/models/tiny", digest="sha256:" + "ab" * 32)
            return result

    cfg = write_project(workdir, policy="dev")
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        outcome = Pipeline(store, stages=[DataStage(), TrainsFromABaseModel("training", training_evidence())]).start(cfg)
        run = store.get_run(outcome.run_id)
        assert run.base_model_id is not None
        assert store.base_model(run.base_model_id).name == "tiny-base"
    code, out, err = govern_cli("runs", "show", outcome.run_id, "--format", "json")
    assert code == 0, err
    ancestry = json.loads(out)["ancestry"]
    assert ancestry["artifact"]["kind"] == "model" and ancestry["base_model"]["digest"] == "sha256:" + "ab" * 32
    assert len(ancestry["datasets"]) == 2  # train and eval, by content fingerprint
    code, out, _ = govern_cli("runs", "show", outcome.run_id)
    assert code == 0 and "model ancestry" in out and "tiny-base" in out
