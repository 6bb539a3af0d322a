"""The governed run: gates stop the run, failures are recorded, killed runs resume."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from govern.data.stage import DataStage
from govern.errors import ConfigError, DataError
from govern.lineage import LineageStore
from govern.pipeline import Pipeline
from tests.spine.helpers import make_records, policy_doc, write_jsonl, write_project
from tests.spine.stages import EvidenceStage, training_evidence

PROJECT = Path(__file__).resolve().parents[2]


def _store(workdir: Path) -> LineageStore:
    return LineageStore.open(os.environ["GOVERN_DB_URL"])


def test_broken_data_fails_the_run_with_file_line_and_it_is_recorded(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir)
    lines = (workdir / "train.jsonl").read_text().splitlines()
    lines[41] = lines[41][:-5]  # truncate line 42: invalid JSON
    (workdir / "train.jsonl").write_text("\n".join(lines) + "\n")
    code, out, err = govern_cli("run", str(cfg))
    assert code == 2
    assert "train.jsonl, line 42" in err and "invalid JSON" in err
    code, out, _ = govern_cli("runs", "list", "--format", "json")
    (run,) = json.loads(out)
    assert run["status"] == "failed" and "line 42" in run["error"]
    code, out, _ = govern_cli("runs", "show", "latest", "--format", "json")
    stages = json.loads(out)["stages"]
    assert [(s["stage"], s["status"]) for s in stages] == [("data", "failed")]


def test_invalid_config_is_recorded_as_a_failed_run(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir, extra={"training": {"epochs": -1}})
    code, _, err = govern_cli("run", str(cfg))
    assert code == 2 and "training.epochs: Input should be greater than 0" in err
    with _store(workdir) as store:
        (run,) = store.list_runs()
        assert run.status == "failed" and "training.epochs" in (run.error or "")
        assert store.verify_chain().ok


def test_missing_column_names_file_line_and_field(workdir: Path) -> None:
    cfg = write_project(workdir)
    records = make_records(30, 3, "eval")
    del records[7]["label"]
    write_jsonl(workdir / "eval.jsonl", records)
    with _store(workdir) as store, pytest.raises(DataError) as exc:
        Pipeline(store, stages=[DataStage()]).start(cfg)
    assert exc.value.line == 8 and exc.value.field == "label" and "eval.jsonl" in str(exc.value)


def test_block_at_a_gate_stops_before_the_next_stage(workdir: Path) -> None:
    cfg = write_project(workdir)
    # plant leakage: 3 eval records copied from train
    train = [json.loads(x) for x in (workdir / "train.jsonl").read_text().splitlines()]
    eval_ = [json.loads(x) for x in (workdir / "eval.jsonl").read_text().splitlines()]
    for i in range(3):
        eval_[i]["text"] = train[i]["text"].upper() + "  "
    write_jsonl(workdir / "eval.jsonl", eval_)
    after = EvidenceStage("training", training_evidence())
    with _store(workdir) as store:
        outcome = Pipeline(store, stages=[DataStage(), after]).start(cfg)
        assert outcome.status == "blocked" and outcome.decision == "block"
        assert after.runs == 0, "the stage after a blocking gate must not run"
        (failed,) = [r for r in outcome.results if r["status"] == "fail"]
        assert failed["rule_id"] == "data.max_exact_leakage" and failed["observed"] == 3
        run = store.get_run(outcome.run_id)
        assert run.status == "blocked" and run.decision == "block"
        (decision,) = store.decisions(outcome.run_id)
        assert decision.kind == "gate" and decision.decision == "block"


def test_passing_run_records_evidence_artifacts_and_final_decision(workdir: Path) -> None:
    cfg = write_project(workdir)
    with _store(workdir) as store:
        outcome = Pipeline(store, stages=[DataStage(), EvidenceStage("training", training_evidence(3.0))]).start(cfg)
        assert (outcome.status, outcome.decision) == ("completed", "pass")
        evidence = store.evidence(outcome.run_id)
        assert set(evidence) == {"data", "training"}
        assert evidence["training"]["epsilon"]["rdp"] == 3.0
        kinds = sorted(a.kind for a in store.artifacts(outcome.run_id))
        assert kinds == ["dataset", "dataset", "model"]
        final = store.latest_decision(outcome.run_id, kind="final")
        assert final is not None and final.decision == "pass" and final.policy_name == "default"
        assert any(r.rule_id == "privacy.max_epsilon" and r.status == "pass" for r in final.results)
        run = store.get_run(outcome.run_id)
        assert run.run_dir and Path(run.run_dir).is_dir() and run.versions and "torch" in run.versions
        assert store.verify_chain().ok


def test_check_reevaluates_under_a_newer_policy_and_waivers_apply(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir)
    with _store(workdir) as store:
        outcome = Pipeline(store, stages=[DataStage(), EvidenceStage("training", training_evidence(6.0))]).start(cfg)
    assert outcome.decision == "pass"
    tighter = workdir / "tighter.yaml"
    tighter.write_text(json.dumps(policy_doc(privacy={"max_epsilon": 4.0})))
    code, out, _ = govern_cli("check", "latest", "--policy", str(tighter), "--format", "json")
    assert code == 1
    result = json.loads(out)
    assert result["decision"] == "block" and result["policy"]["name"] == "test"
    assert [r["rule_id"] for r in result["results"] if r["status"] == "fail"] == ["privacy.max_epsilon"]
    # under its own policy it still passes
    code, out, _ = govern_cli("check", outcome.run_id)
    assert code == 0 and "decision: pass" in out
    # a waiver is the only way past the block, and it shows
    code, out, err = govern_cli("waive", "latest", "privacy.max_epsilon", "--by", "Dana DPO", "--reason",
                                "accepted for internal pilot", "--until", "2099-01-01")
    assert code == 0, err
    code, out, _ = govern_cli("check", "latest", "--policy", str(tighter))
    assert code == 0 and "WAIVED by Dana DPO until 2099-01-01" in out
    code, _, err = govern_cli("waive", "latest", "privacy.max_epsilon", "--by", "x", "--reason", "y",
                              "--until", "2001-01-01")
    assert code == 2 and "in the past" in err
    with _store(workdir) as store:
        kinds = [d.kind for d in store.decisions(outcome.run_id)]
    assert kinds == ["final", "check", "check", "check"]


def test_expired_waiver_in_the_db_does_not_apply(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    from datetime import date

    cfg = write_project(workdir)
    with _store(workdir) as store:
        outcome = Pipeline(store, stages=[DataStage(), EvidenceStage("training", training_evidence(9.0))]).start(cfg)
        assert outcome.decision == "block"
        store.add_waiver(target=outcome.run_id, rule_id="privacy.max_epsilon", by="someone", reason="old",
                         until=date(2020, 1, 1))
    code, out, _ = govern_cli("check", "latest")
    assert code == 1 and "expired on 2020-01-01" in out


def test_lineage_verify_detects_an_edited_audit_event(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir)
    with _store(workdir) as store:
        Pipeline(store, stages=[DataStage()]).start(cfg)
    code, out, _ = govern_cli("lineage", "verify")
    assert code == 0 and "hash chain verified" in out
    db = workdir / ".govern" / "lineage.db"
    con = sqlite3.connect(db)
    table = next(n for (n,) in con.execute("select name from sqlite_master where type='table'") if "event" in n)
    cols = [r[1] for r in con.execute(f"pragma table_info({table})")]
    payload_col = next(c for c in cols if c in ("payload", "payload_json"))
    con.execute(f"update {table} set {payload_col} = ? where id = 2", ('{"status": "completed"}',))
    con.commit()
    con.close()
    code, out, _ = govern_cli("lineage", "verify")
    assert code == 1 and "BROKEN" in out


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from govern.data.stage import DataStage
    from govern.lineage import LineageStore
    from govern.pipeline import Pipeline
    from tests.spine.stages import EvidenceStage, training_evidence
    store = LineageStore.open(sys.argv[2])
    Pipeline(store, stages=[DataStage(), EvidenceStage("training", training_evidence(), delay=120)]).start(sys.argv[1])
""")


def _run_in_training(workdir: Path, url: str) -> tuple[subprocess.Popen[bytes], str]:
    """KILL_SCRIPT's run in a process of its own, once its data stage completed and training runs."""
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(write_project(workdir)), url], cwd=workdir,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)})
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.3)
        with LineageStore.open(url) as store:
            runs = store.list_runs()
            if runs:
                stages = {s.stage: s.status for s in store.stage_executions(runs[0].id)}
                if stages.get("data") == "completed" and stages.get("training") == "running":
                    return proc, runs[0].id
    proc.kill()
    raise AssertionError("the run never reached the second stage")


def test_run_killed_between_stages_resumes_and_completes(workdir: Path) -> None:
    url = os.environ["GOVERN_DB_URL"]
    proc, run_id = _run_in_training(workdir, url)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with LineageStore.open(url) as store:
        assert store.get_run(run_id).status == "running"  # killed: nothing recorded it as finished
        data_stage = DataStage()
        training = EvidenceStage("training", training_evidence())
        outcome = Pipeline(store, stages=[data_stage, training]).resume(run_id)
        assert outcome.run_id == run_id and outcome.status == "completed"
        assert [(s.name, s.status) for s in outcome.stages] == [("data", "reused"), ("training", "completed")]
        assert training.runs == 1
        statuses = [(s.stage, s.status) for s in store.stage_executions(run_id)]
        assert ("training", "running") in statuses and statuses[-1] == ("training", "completed")
        assert store.verify_chain().ok


def test_a_run_whose_process_is_alive_is_not_resumed_and_once_killed_it_is(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    """A killed run and a live one are both "running" in the DB; resuming the live one would have two processes
    train, gate and record one run. The lock its process holds tells them apart: refused with the holder named
    and nothing written, then, after kill -9 (the kernel drops the lock), listed ``interrupted`` and resumed."""
    from govern.runlock import RunBusyError

    url = os.environ["GOVERN_DB_URL"]
    proc, run_id = _run_in_training(workdir, url)
    try:
        with LineageStore.open(url) as store:
            events = len(store.events(run_id))
            with pytest.raises(RunBusyError, match=f"run {run_id} is being executed by another process "
                                                   rf"\(pid {proc.pid} on "):
                Pipeline(store, stages=[DataStage()]).resume(run_id)
            assert len(store.events(run_id)) == events and store.get_run(run_id).status == "running"
        listed = json.loads(govern_cli("runs", "list", "--format", "json")[1])
        assert [(r["status"], r["shown_status"]) for r in listed] == [("running", "running")]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    code, out, _ = govern_cli("runs", "list")
    assert code == 0 and run_id in out and "interrupted" in out  # the DB still says running: nothing recorded the kill
    code, out, _ = govern_cli("runs", "show", run_id)
    assert code == 0 and f"govern run --resume {run_id}" in out and "status=interrupted" in out
    with LineageStore.open(url) as store:
        outcome = Pipeline(store, stages=[DataStage(), EvidenceStage("training", training_evidence())]).resume(run_id)
        assert outcome.status == "completed" and store.verify_chain().ok
        # done with it, this process let the lock go: another could take it now
        from govern.runlock import hold

        hold(Path(store.get_run(run_id).run_dir or ""), run_id).release()


def test_resume_reruns_a_stage_whose_inputs_changed(workdir: Path) -> None:
    cfg = write_project(workdir)
    with _store(workdir) as store:
        first = Pipeline(store, stages=[DataStage(), EvidenceStage("training", training_evidence(9.0))]).start(cfg)
        assert first.status == "blocked"
        # the data changed since: the data stage and everything after it must run again
        write_jsonl(workdir / "train.jsonl", make_records(210, 5, "train"))
        again = Pipeline(store, stages=[DataStage(), EvidenceStage("training", training_evidence(3.0))]).resume(
            first.run_id)
        assert [(s.name, s.status) for s in again.stages] == [("data", "completed"), ("training", "completed")]
        assert again.decision == "pass"


def test_completed_runs_cannot_be_resumed(workdir: Path) -> None:
    cfg = write_project(workdir)
    with _store(workdir) as store:
        done = Pipeline(store, stages=[DataStage()]).start(cfg)
        with pytest.raises(Exception, match="already completed"):
            Pipeline(store, stages=[DataStage()]).resume(done.run_id)


def test_config_error_raised_from_pipeline_start(workdir: Path) -> None:
    cfg = write_project(workdir, policy="no-such-policy")
    with _store(workdir) as store, pytest.raises(ConfigError, match="not a shipped policy name"):
        Pipeline(store, stages=[DataStage()]).start(cfg)


def test_privacy_budget_ledger_composes_across_runs_and_the_cap_blocks(workdir: Path) -> None:
    from govern.lineage.records import LedgerRow
    from govern.privacy_ledger import composed_epsilon

    cfg = write_project(workdir)
    ev = training_evidence(3.0)
    row = LedgerRow(run_id="x", dataset_fingerprint="f", dp_enabled=True, epsilon=ev.epsilon, delta=ev.delta,
                    noise_multiplier=ev.noise_multiplier, sample_rate=ev.sample_rate, steps=ev.steps,
                    accountant="rdp", started_at="2026-01-01T00:00:00Z", run_status="completed")
    totals = [composed_epsilon([row] * k, "rdp", ev.delta) for k in (1, 2, 3, 4)]
    cap = (totals[2] + totals[3]) / 2  # three runs fit under the cap, the fourth does not
    import yaml

    (workdir / "capped.yaml").write_text(yaml.safe_dump(policy_doc(
        privacy={"max_epsilon": 8, "max_delta": 1e-3, "max_total_epsilon_per_dataset": cap})))
    cfg.write_text(cfg.read_text().replace("policy: default", "policy: capped.yaml"))
    outcomes = []
    with _store(workdir) as store:
        for _ in range(4):
            outcomes.append(Pipeline(store, stages=[DataStage(), EvidenceStage("training", ev)]).start(cfg))
    assert [o.decision for o in outcomes] == ["pass", "pass", "pass", "block"]
    (blocked,) = [r for r in outcomes[3].results if r["status"] == "fail"]
    assert blocked["rule_id"].startswith("privacy.max_total_epsilon_per_dataset")
    assert blocked["observed"] == pytest.approx(totals[3], rel=1e-9)


def test_a_resumed_run_whose_training_is_reused_still_answers_to_the_ledger(workdir: Path) -> None:
    """Budget other runs spent on the same data while this one was down counts when it resumes: reusing the
    training stage must not skip the per-data-set cap (privacy accounting is never optimistic)."""
    from govern.lineage.records import LedgerRow
    from govern.privacy_ledger import composed_epsilon

    class Killed(BaseException):
        pass

    def die_after_training(stage: str) -> None:
        if stage == "training":
            raise Killed(stage)

    cfg = write_project(workdir)
    ev = training_evidence(3.0)
    row = LedgerRow(run_id="x", dataset_fingerprint="f", dp_enabled=True, epsilon=ev.epsilon, delta=ev.delta,
                    noise_multiplier=ev.noise_multiplier, sample_rate=ev.sample_rate, steps=ev.steps,
                    accountant="rdp", started_at="2026-01-01T00:00:00Z", run_status="completed")
    cap = (composed_epsilon([row] * 2, "rdp", ev.delta) + composed_epsilon([row] * 3, "rdp", ev.delta)) / 2
    import yaml

    (workdir / "capped.yaml").write_text(yaml.safe_dump(policy_doc(
        privacy={"max_epsilon": 8, "max_delta": 1e-3, "max_total_epsilon_per_dataset": cap})))
    cfg.write_text(cfg.read_text().replace("policy: default", "policy: capped.yaml"))
    training = EvidenceStage("training", ev)
    with _store(workdir) as store:
        first = Pipeline(store, stages=[DataStage(), training], on_stage_done=die_after_training)
        with pytest.raises(Killed):
            first.start(cfg)
        assert first.run_id is not None and training.runs == 1
        # Two more runs spend on the same data while the first one is down: three in all exceed the cap.
        others = [Pipeline(store, stages=[DataStage(), EvidenceStage("training", ev)]).start(cfg) for _ in range(2)]
        assert [o.decision for o in others] == ["pass", "block"]
        resumed = Pipeline(store, stages=[DataStage(), training]).resume(first.run_id)
    assert training.runs == 1  # training was reused, not re-run
    assert resumed.decision == "block"
    (blocked,) = [r for r in resumed.results if r["status"] == "fail"]
    assert blocked["rule_id"].startswith("privacy.max_total_epsilon_per_dataset")
