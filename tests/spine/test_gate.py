"""One gate path: a waiver of a data set (its content fingerprint) applies the same way in a governed run,
in ``govern check`` of that run and in a standalone audit or scan of the same file.

The story: a data officer's eval set carries a model's predictions, and the model is unfair on it. A run
that evaluated on that set is blocked by the fairness gate, and so is ``govern audit fairness`` on the
file. After one waiver per failing rule, recorded for the data set (not for a run), the same rules read
``waived`` everywhere the data set is judged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from govern.audits.fairness import audit_fairness
from govern.data.stage import DataStage
from govern.lineage import LineageStore
from govern.pii.stage import PIIStage
from govern.pipeline import Pipeline
from govern.policy import load_policy
from tests.spine.helpers import INTENTS, make_records, write_jsonl, write_project
from tests.spine.stages import EvidenceStage, training_evidence

FAIRNESS_ARGS = ("--label", "label", "--pred", "pred", "--sensitive", "region", "--bootstrap", "0", "--format", "json")


def _eval_with_unfair_predictions(workdir: Path) -> Path:
    """200 eval records whose ``pred`` is right for the north and always wrong for the south."""
    records = make_records(200, 2, "eval")
    for i, r in enumerate(records):
        r["pred"] = r["label"] if r["region"] == "north" else INTENTS[(INTENTS.index(r["label"]) + 1) % len(INTENTS)]
        assert r["id"] == f"eval-{i}"
    return write_jsonl(workdir / "eval.jsonl", records)


def _stages(eval_path: Path) -> list[Any]:
    fairness = audit_fairness(eval_path, "label", "pred", ["region"], load_policy("default").policy, bootstrap=0)
    return [DataStage(), EvidenceStage("training", training_evidence()), EvidenceStage("fairness", fairness)]


def _fingerprint(store: LineageStore, run_id: str, role: str) -> str:
    (fp,) = [f["fingerprint"] for f in store.evidence(run_id)["data"]["files"] if f["role"] == role]
    return str(fp)


def _statuses(results: list[dict[str, Any]], rule_ids: set[str]) -> dict[str, str]:
    return {r["rule_id"]: r["status"] for r in results if r["rule_id"] in rule_ids}


def test_a_data_set_waiver_applies_in_a_run_in_check_and_in_a_standalone_fairness_audit(
        workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir, n_eval=200)
    eval_path = _eval_with_unfair_predictions(workdir)

    # Without a waiver the fairness gate blocks the run, its check and the standalone audit of the same file.
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        blocked = Pipeline(store, stages=_stages(eval_path)).start(cfg)
        assert blocked.status == "blocked"
        failing = {r["rule_id"] for r in blocked.results if r["status"] == "fail" and r["severity"] == "block"}
        assert failing and all(rule.startswith("fairness.") for rule in failing), blocked.results
        eval_fp, train_fp = _fingerprint(store, blocked.run_id, "eval"), _fingerprint(store, blocked.run_id, "train")
    code, out, _ = govern_cli("audit", "fairness", "--predictions", str(eval_path), *FAIRNESS_ARGS)
    audited = json.loads(out)
    assert code == 1 and audited["decision"] == "block"
    assert set(_statuses(audited["results"], failing).values()) == {"fail"}
    # the standalone audit recorded the file it read by the same content fingerprint the run did
    with LineageStore.open(os.environ["GOVERN_DB_URL"], read_only=True) as store:
        assert [a.dataset_fingerprint for a in store.artifacts(audited["run_id"])] == [eval_fp]

    # The data officer waives each failing rule for the eval data set: not for a run, for the data.
    for rule in sorted(failing):
        code, out, err = govern_cli("waive", eval_fp, rule, "--by", "Dana DPO", "--reason",
                                    "known regional skew, mitigation tracked in FAIR-12", "--until", "2099-01-01")
        assert code == 0, err
    with LineageStore.open(os.environ["GOVERN_DB_URL"], read_only=True) as store:
        waiver_ids = {w.id for w in store.waivers(targets=[eval_fp])}
        assert not store.waivers(targets=[train_fp])
    assert len(waiver_ids) == len(failing)

    # (1) a new governed run on the same data passes the fairness gate with the rules waived
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        waived_run = Pipeline(store, stages=_stages(eval_path)).start(cfg)
        assert waived_run.status == "completed" and waived_run.decision == "warn"
        final = store.latest_decision(waived_run.run_id, kind="final")
        assert final is not None
        assert {r.rule_id: r.status for r in final.results if r.rule_id in failing} == dict.fromkeys(failing, "waived")
        assert {r.waiver_id for r in final.results if r.rule_id in failing} == waiver_ids

    # (2) `govern check` of the run the gate blocked now reads the same rules as waived
    code, out, _ = govern_cli("check", blocked.run_id, "--format", "json")
    checked = json.loads(out)
    assert code == 0 and checked["decision"] == "warn"
    assert _statuses(checked["results"], failing) == dict.fromkeys(failing, "waived")

    # (3) the standalone audit of the file is waived the same way, by the same waivers
    code, out, _ = govern_cli("audit", "fairness", "--predictions", str(eval_path), *FAIRNESS_ARGS)
    audited = json.loads(out)
    assert code == 0 and audited["decision"] == "warn"
    assert _statuses(audited["results"], failing) == dict.fromkeys(failing, "waived")
    assert {r["waiver_id"] for r in audited["results"] if r["rule_id"] in failing} == waiver_ids

    # `govern runs show` of the audit lists the waivers that applied to it
    code, out, _ = govern_cli("runs", "show", audited["run_id"], "--format", "json")
    assert code == 0 and {w["id"] for w in json.loads(out)["waivers"]} == waiver_ids


def test_a_waiver_of_another_data_set_does_not_reach_a_standalone_audit(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    write_project(workdir, n_eval=200)
    eval_path = _eval_with_unfair_predictions(workdir)
    train_fp = f"sha256:{'0' * 64}"  # some other data set
    code, _, err = govern_cli("waive", train_fp, "fairness.max_difference.equalized_odds_difference", "--by", "x",
                              "--reason", "another data set", "--until", "2099-01-01")
    assert code == 0, err
    code, out, _ = govern_cli("audit", "fairness", "--predictions", str(eval_path), *FAIRNESS_ARGS)
    audited = json.loads(out)
    assert code == 1 and audited["decision"] == "block"
    assert "waived" not in {r["status"] for r in audited["results"]}


def test_a_data_set_waiver_of_blocked_pii_applies_in_a_run_and_is_recorded_on_a_standalone_scan(
        workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir)
    records = make_records(200, 1, "train")
    records[13]["text"] += " my ssn is 388-40-1362"  # the default policy blocks US_SSN
    train = write_jsonl(workdir / "train.jsonl", records)
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        blocked = Pipeline(store, stages=[DataStage(), PIIStage(), EvidenceStage("training", training_evidence())]
                           ).start(cfg)
        assert blocked.status == "blocked"
        train_fp = _fingerprint(store, blocked.run_id, "train")
    code, _, err = govern_cli("waive", train_fp, "pii.blocked_entities", "--by", "Dana DPO", "--reason",
                              "synthetic test identifier, not a person's", "--until", "2099-01-01")
    assert code == 0, err

    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        passed = Pipeline(store, stages=[DataStage(), PIIStage(), EvidenceStage("training", training_evidence())]
                          ).start(cfg)
        assert passed.status == "completed" and passed.decision == "warn"
        assert _statuses(passed.results, {"pii.blocked_entities"}) == {"pii.blocked_entities": "waived"}
    code, out, _ = govern_cli("check", blocked.run_id, "--format", "json")
    assert code == 0 and _statuses(json.loads(out)["results"], {"pii.blocked_entities"}) == {
        "pii.blocked_entities": "waived"}

    # The scan records the file by its content fingerprint, so its gate decision reads the waiver too.
    # (`govern scan` still exits 1 on findings the policy blocks: it is the pre-merge check of the file.)
    govern_cli("scan", str(train), "--format", "json")
    with LineageStore.open(os.environ["GOVERN_DB_URL"], read_only=True) as store:
        (scan,) = store.list_runs(kind="scan")
        assert [a.dataset_fingerprint for a in store.artifacts(scan.id)] == [train_fp]
        decision = store.latest_decision(scan.id, kind="final")
        assert decision is not None and decision.decision == "warn" and scan.decision == "warn"
        assert {r.rule_id: r.status for r in decision.results} == {"pii.blocked_entities": "waived"}
