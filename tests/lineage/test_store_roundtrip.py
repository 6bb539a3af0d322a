"""Every LineageStore method writes and reads back the same facts, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from govern.errors import LineageError, NotFoundError
from govern.lineage import LineageStore, PolicyRef, default_db_url
from govern.stage import ArtifactOut, PIIFindingRow

POLICY = PolicyRef(name="default", version="1.2.0", digest="sha256:" + "ab" * 32,
                   document={"apiVersion": "govern/v1", "privacy": {"max_epsilon": 8.0}})


def _artifact(name: str, kind: str, sha: str, role: str = "output", fingerprint: str | None = None,
              rows: int | None = None) -> ArtifactOut:
    return ArtifactOut(name=name, kind=kind, path=f"/runs/{name}", sha256=sha, size_bytes=1234, role=role,  # type: ignore[arg-type]
                       dataset_fingerprint=fingerprint, rows=rows)


def _training_evidence(eps: float, *, dp: bool = True) -> dict[str, object]:
    return {"dp_enabled": dp, "non_private": not dp, "accountant": "rdp" if dp else None,
            "epsilon": {"rdp": eps, "dp_accounting_pld": eps * 0.8} if dp else {}, "delta": 1e-5 if dp else None,
            "noise_multiplier": 0.62 if dp else None, "sample_rate": 0.0625 if dp else None, "steps": 16,
            "epochs": 1.0, "n_train": 512, "batch_size": 32, "method": "lora", "trainable_params": 10,
            "total_params": 100, "device": "cpu", "duration_s": 1.0, "seed": 0}


def test_run_is_created_with_sortable_id_and_read_back_with_every_field(store: LineageStore) -> None:
    run_id = store.create_run(name="quickstart", config={"task": "classification", "lr": 5e-3},
                              config_digest="sha256:cfg", config_path="examples/quickstart/govern.yaml",
                              policy=POLICY, run_dir="/runs/x", code_revision="abc123",
                              versions={"torch": "2.13.0"})
    assert re.fullmatch(r"run-\d{8}T\d{6}-[0-9a-f]{6}", run_id)
    run = store.get_run(run_id)
    assert (run.name, run.kind, run.status, run.decision) == ("quickstart", "run", "running", None)
    assert run.config == {"task": "classification", "lr": 5e-3}
    assert (run.config_digest, run.config_path, run.run_dir, run.code_revision) == (
        "sha256:cfg", "examples/quickstart/govern.yaml", "/runs/x", "abc123")
    assert run.versions == {"torch": "2.13.0"}
    assert run.policy == POLICY
    assert run.started_at.tzinfo is not None and run.started_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - run.started_at) < timedelta(minutes=1)
    assert run.ended_at is None


def test_latest_resolves_to_newest_run_and_unknown_ids_raise(store: LineageStore) -> None:
    with pytest.raises(NotFoundError, match="no runs"):
        store.get_run("latest")
    first = store.create_run(name="a")
    second = store.create_run(name="b", kind="scan", parent_run_id=first)
    assert store.get_run("latest").id == second
    assert store.resolve_run_id("latest") == second
    assert store.get_run(second).parent_run_id == first
    with pytest.raises(NotFoundError, match="run-nope"):
        store.get_run("run-nope")
    with pytest.raises(NotFoundError):
        store.start_stage("run-nope", "data", "sha256:x")
    with pytest.raises(NotFoundError):
        store.create_run(name="c", parent_run_id="run-missing")
    with pytest.raises(ValueError, match="run kind"):
        store.create_run(name="c", kind="bogus")


def test_status_changes_set_end_time_decision_and_error(store: LineageStore) -> None:
    run_id = store.create_run(name="a")
    store.set_run_status(run_id, "failed", error="data.jsonl, line 3: missing field 'label'")
    run = store.get_run(run_id)
    assert run.status == "failed" and run.ended_at is not None and run.ended_at >= run.started_at
    assert run.error == "data.jsonl, line 3: missing field 'label'"
    store.set_run_status(run_id, "running")
    assert store.get_run(run_id).ended_at is None
    store.set_run_status(run_id, "blocked", decision="block")
    run = store.get_run(run_id)
    assert (run.status, run.decision) == ("blocked", "block")
    with pytest.raises(ValueError):
        store.set_run_status(run_id, "exploded")
    newer = PolicyRef(name="strict", version="2", digest="sha256:cd", document={"x": 1})
    store.set_run_policy(run_id, newer)
    assert store.get_run(run_id).policy == newer
    store.set_run_dir(run_id, "/runs/" + run_id)
    assert store.get_run(run_id).run_dir == "/runs/" + run_id
    assert [e.kind for e in store.events(run_id)][-2:] == ["run.policy", "run.dir"]


def test_list_and_count_runs_filter_newest_first(store: LineageStore) -> None:
    ids = [store.create_run(name=f"r{i}", kind="run" if i % 2 == 0 else "scan") for i in range(6)]
    store.set_run_status(ids[0], "completed", decision="pass")
    store.set_run_status(ids[3], "failed", error="x")
    listed = [r.id for r in store.list_runs()]
    assert listed == list(reversed(ids))
    assert [r.id for r in store.list_runs(limit=2, offset=1)] == [ids[4], ids[3]]
    assert [r.id for r in store.list_runs(kind="scan")] == [ids[5], ids[3], ids[1]]
    assert [r.id for r in store.list_runs(status="completed")] == [ids[0]]
    cut = store.get_run(ids[4]).started_at
    assert [r.id for r in store.list_runs(since=cut)] == [ids[5], ids[4]]
    assert store.count_runs() == 6
    assert store.count_runs(kind="run") == 3
    assert store.count_runs(status="running") == 4
    assert store.count_runs(since=cut) == 2


def test_stage_executions_keep_evidence_outputs_and_resume_finds_completed(store: LineageStore) -> None:
    run_id = store.create_run(name="a")
    data = store.start_stage(run_id, "data", "sha256:in1")
    store.finish_stage(data, "completed", evidence={"rows": 10, "score": float("nan")},
                       outputs={"train_path": "/d/train.jsonl"})
    pii1 = store.start_stage(run_id, "pii", "sha256:in2")
    store.finish_stage(pii1, "failed", error="stage 'pii': boom")
    pii2 = store.start_stage(run_id, "pii", "sha256:in2")
    store.finish_stage(pii2, "completed", evidence={"findings": 3}, outputs={"train_path": "/d/red.jsonl"})
    train = store.start_stage(run_id, "training", "sha256:in3")
    store.finish_stage(train, "skipped")

    stages = store.stage_executions(run_id)
    assert [(s.stage, s.status) for s in stages] == [("data", "completed"), ("pii", "failed"),
                                                     ("pii", "completed"), ("training", "skipped")]
    assert stages[0].evidence == {"rows": 10, "score": None}  # NaN is not JSON: stored as null
    assert stages[1].error == "stage 'pii': boom" and stages[1].evidence is None
    assert all(s.ended_at is not None and s.ended_at >= s.started_at for s in stages)

    done = store.completed_stage(run_id, "pii")
    assert done is not None and done.id == pii2 and done.input_digest == "sha256:in2"
    assert done.outputs == {"train_path": "/d/red.jsonl"} and done.evidence == {"findings": 3}
    assert store.completed_stage(run_id, "training") is None
    assert store.evidence(run_id) == {"data": {"rows": 10, "score": None}, "pii": {"findings": 3}}
    with pytest.raises(NotFoundError):
        store.finish_stage(999_999, "completed")
    with pytest.raises(ValueError):
        store.finish_stage(data, "running")


def test_artifacts_register_datasets_once_and_base_models_upsert(store: LineageStore) -> None:
    run_a = store.create_run(name="a")
    run_b = store.create_run(name="b")
    exe = store.start_stage(run_a, "data", "sha256:x")
    store.add_artifacts(run_a, exe, [_artifact("train", "dataset", "d1", "input", "fp-train", 100),
                                     _artifact("eval", "dataset", "d2", "input", "fp-eval", 20)])
    store.add_artifacts(run_b, None, [_artifact("train", "dataset", "d1", "input", "fp-train", 100),
                                      _artifact("adapter", "adapter", "m1")])
    store.add_artifacts(run_b, None, [])
    arts = store.artifacts(run_a)
    assert [(a.name, a.kind, a.sha256, a.role, a.dataset_fingerprint, a.rows, a.execution_id) for a in arts] == [
        ("train", "dataset", "d1", "input", "fp-train", 100, exe), ("eval", "dataset", "d2", "input", "fp-eval", 20, exe)]
    assert [a.size_bytes for a in store.artifacts(run_b)] == [1234, 1234]
    datasets = store.datasets()
    assert [(d.fingerprint, d.rows, d.first_run_id) for d in datasets] == [
        ("fp-train", 100, run_a), ("fp-eval", 20, run_a)]

    first = store.upsert_base_model(name="all-MiniLM-L6-v2", path="/m/a", digest="sha256:bm")
    again = store.upsert_base_model(name="all-MiniLM-L6-v2", path="/m/a", digest="sha256:bm")
    other = store.upsert_base_model(name="all-MiniLM-L6-v2", path="/m/b", digest="sha256:bm2")
    assert first == again != other
    store.link_base_model(run_b, first)
    assert store.get_run(run_b).base_model_id == first
    assert store.base_model(first).digest == "sha256:bm"
    with pytest.raises(NotFoundError):
        store.link_base_model(run_b, 424242)


def test_decisions_keep_every_rule_result_and_latest_by_kind(store: LineageStore) -> None:
    run_id = store.create_run(name="a")
    waiver = store.add_waiver(target=run_id, rule_id="pii.block", by="Dana (DPO)", reason="synthetic data",
                              until=date(2099, 1, 1))
    gate = store.record_decision(run_id, kind="gate", decision="pass", policy=POLICY, results=[
        {"rule_id": "data.leakage", "severity": "block", "status": "pass", "message": "no leakage",
         "evidence_path": "data.leakage.exact", "observed": 0, "threshold": 0}])
    final = store.record_decision(run_id, kind="final", decision="warn", policy=POLICY, results=[
        {"rule_id": "privacy.epsilon", "severity": "block", "status": "pass", "message": "eps ok",
         "evidence_path": "training.epsilon.rdp", "observed": 7.99, "threshold": {"max": 8.0}},
        {"rule_id": "pii.block", "severity": "block", "status": "waived", "message": "EMAIL found",
         "evidence_path": "pii.counts", "observed": [{"entity": "EMAIL_ADDRESS", "n": 3}], "threshold": None,
         "waiver_id": waiver},
        {"rule_id": "fairness.gap", "severity": "warn", "status": "fail", "message": "gap 0.2 > 0.1",
         "extra_key": "ignored"},
        {"rule_id": "membership.auc", "severity": "block", "status": "fail", "message": "auc 1.0 > 0.6",
         "observed": 1.0, "threshold": "0.6"}])
    decisions = store.decisions(run_id)
    assert [d.id for d in decisions] == [gate, final]
    assert [(d.kind, d.decision, d.policy_digest) for d in decisions] == [
        ("gate", "pass", POLICY.digest), ("final", "warn", POLICY.digest)]
    results = decisions[1].results
    assert [(r.rule_id, r.status, r.severity) for r in results] == [
        ("privacy.epsilon", "pass", "block"), ("pii.block", "waived", "block"), ("fairness.gap", "fail", "warn"),
        ("membership.auc", "fail", "block")]
    assert results[0].observed == 7.99 and results[0].threshold == {"max": 8.0}
    assert results[1].waiver_id == waiver and results[1].observed == [{"entity": "EMAIL_ADDRESS", "n": 3}]
    assert results[2].evidence_path is None and results[2].observed is None
    # Scalars come back exactly as stored: 1.0 stays a float, "0.6" stays a string.
    assert type(results[3].observed) is float and results[3].observed == 1.0 and results[3].threshold == "0.6"
    latest_gate = store.latest_decision(run_id, kind="gate")
    assert latest_gate is not None and latest_gate.id == gate and latest_gate.results[0].rule_id == "data.leakage"
    latest_any = store.latest_decision(run_id)
    assert latest_any is not None and latest_any.id == final
    assert store.latest_decision(run_id, kind="check") is None
    with pytest.raises(ValueError, match="rule_id"):
        store.record_decision(run_id, kind="check", decision="pass", policy=POLICY, results=[{"status": "pass"}])


def test_waivers_round_trip_with_expiry(store: LineageStore) -> None:
    today = date.today()
    active = store.add_waiver(target="run-x", rule_id="fairness.gap", by="Ana", reason="known skew",
                              until=today + timedelta(days=30))
    expired = store.add_waiver(target="fp-data", rule_id="pii.block", by="Bo", reason="old",
                               until=today - timedelta(days=1))
    waivers = store.waivers()
    assert [(w.id, w.target, w.rule_id, w.by, w.reason) for w in waivers] == [
        (active, "run-x", "fairness.gap", "Ana", "known skew"), (expired, "fp-data", "pii.block", "Bo", "old")]
    assert waivers[0].active_on(today) and not waivers[1].active_on(today)
    assert waivers[1].until == today - timedelta(days=1)
    assert [w.id for w in store.waivers(targets=["fp-data"])] == [expired]
    assert store.waivers(targets=[]) == []
    with pytest.raises(ValueError):
        store.add_waiver(target="run-x", rule_id="r", by=" ", reason="x", until=today)


def test_pii_findings_are_stored_without_any_value_column(store: LineageStore) -> None:
    run_id = store.create_run(name="scan", kind="scan")
    rows = [PIIFindingRow(dataset="train", file="train.jsonl", record_id=f"r{i}", line=i + 1, field="text",
                          entity_type="EMAIL_ADDRESS" if i % 2 else "PHONE_NUMBER", start=3, end=20,
                          score=0.85, recognizer="EmailRecognizer", value_hmac=f"hmac-{i:04d}", action="redact")
            for i in range(250)]
    store.add_pii_findings(run_id, rows)
    stored = store.pii_findings(run_id)
    assert len(stored) == 250
    assert [PIIFindingRow.model_validate(s.model_dump(exclude={"id", "run_id"})) for s in stored] == rows
    assert len(store.pii_findings(run_id, limit=7)) == 7
    columns = {c["name"] for c in sa.inspect(store.engine).get_columns("pii_findings")}
    assert columns == {"id", "run_id", "dataset", "file", "record_id", "line", "field", "entity_type", "start",
                       "end", "score", "recognizer", "value_hmac", "action"}
    payload = store.events(run_id)[-1].payload
    assert payload["count"] == 250 and payload["by_entity"] == {"PHONE_NUMBER": 125, "EMAIL_ADDRESS": 125}


def test_signatures_round_trip(store: LineageStore) -> None:
    run_id = store.create_run(name="a")
    sid = store.add_signature(run_id, subject="adapter", subject_digest="sha256:m", method="key",
                              bundle_path="/runs/a/model.sig", signer="SHA256:fingerprint")
    pid = store.add_signature(run_id, subject="provenance", subject_digest="sha256:p", method="key",
                              bundle_path="/runs/a/prov.sig", signer=None, kind="provenance")
    sigs = store.signatures(run_id)
    assert [(s.id, s.kind, s.subject, s.subject_digest, s.signer) for s in sigs] == [
        (sid, "model", "adapter", "sha256:m", "SHA256:fingerprint"), (pid, "provenance", "provenance", "sha256:p", None)]
    with pytest.raises(ValueError):
        store.add_signature(run_id, subject="x", subject_digest="d", method="key", bundle_path="b", signer=None,
                            kind="poem")


def test_privacy_ledger_reports_accountant_epsilon_per_dataset(store: LineageStore) -> None:
    dp_run = store.create_run(name="dp")
    exe = store.start_stage(dp_run, "training", "sha256:t")
    store.finish_stage(exe, "completed", evidence=_training_evidence(7.99))
    store.add_artifacts(dp_run, None, [_artifact("train", "dataset", "d1", "input", "fp-A"),
                                       _artifact("adapter", "adapter", "m1")])
    plain_run = store.create_run(name="non-private")
    exe = store.start_stage(plain_run, "training", "sha256:t2")
    store.finish_stage(exe, "completed", evidence=_training_evidence(0, dp=False))
    store.add_artifacts(plain_run, None, [_artifact("train", "dataset", "d1", "input", "fp-A"),
                                          _artifact("other", "dataset", "d9", "input", "fp-B")])
    scan_only = store.create_run(name="scan", kind="scan")  # data but no training: spends nothing
    store.add_artifacts(scan_only, None, [_artifact("train", "dataset", "d1", "input", "fp-A")])

    ledger = store.privacy_ledger()
    assert [(r.run_id, r.dataset_fingerprint, r.dp_enabled) for r in ledger] == [
        (dp_run, "fp-A", True), (plain_run, "fp-A", False), (plain_run, "fp-B", False)]
    first = ledger[0]
    assert first.epsilon == {"rdp": 7.99, "dp_accounting_pld": pytest.approx(7.99 * 0.8)}
    assert (first.delta, first.noise_multiplier, first.sample_rate, first.steps, first.accountant) == (
        1e-5, 0.62, 0.0625, 16, "rdp")
    assert first.started_at == store.get_run(dp_run).started_at and first.dataset_name == "train"
    assert [r.run_id for r in store.privacy_ledger("fp-B")] == [plain_run]
    assert store.privacy_ledger("fp-unknown") == []


def test_ancestry_walks_model_to_run_inputs_base_model_policy_and_parents(store: LineageStore) -> None:
    grandparent = store.create_run(name="gp")
    parent = store.create_run(name="p", parent_run_id=grandparent)
    run_id = store.create_run(name="child", parent_run_id=parent, policy=POLICY, config_digest="sha256:cfg")
    base = store.upsert_base_model(name="mini", path="/m", digest="sha256:base")
    store.link_base_model(run_id, base)
    train = store.start_stage(run_id, "training", "sha256:t")
    store.finish_stage(train, "completed")
    store.add_artifacts(run_id, None, [_artifact("train", "dataset", "d1", "input", "fp-A", 10)])
    store.add_artifacts(run_id, train, [_artifact("adapter", "adapter", "sha-model")])
    store.add_signature(run_id, subject="adapter", subject_digest="sha-model", method="key",
                        bundle_path="/s", signer="k")
    # A later run that only *consumes* the same model must not steal its ancestry.
    consumer = store.create_run(name="audit", kind="audit-membership")
    store.add_artifacts(consumer, None, [_artifact("adapter", "adapter", "sha-model", "input")])

    graph = store.ancestry("sha-model")
    assert graph.artifact.role == "output" and graph.run.id == run_id
    assert [p.id for p in graph.parents] == [parent, grandparent]
    assert [d.fingerprint for d in graph.datasets] == ["fp-A"]
    assert [a.name for a in graph.inputs] == ["train"] and [a.name for a in graph.outputs] == ["adapter"]
    assert graph.base_model is not None and graph.base_model.digest == "sha256:base"
    assert graph.policy == POLICY and graph.config_digest == "sha256:cfg"
    assert [s.subject_digest for s in graph.signatures] == ["sha-model"]
    assert [s.stage for s in graph.stages] == ["training"]
    with pytest.raises(NotFoundError, match="sha-none"):
        store.ancestry("sha-none")


def test_every_mutation_appends_a_chained_event(store: LineageStore) -> None:
    run_id = store.create_run(name="a", policy=POLICY)
    exe = store.start_stage(run_id, "data", "sha256:x")
    # Floats, exponents, unicode and nesting must digest identically after the backend's JSON round trip.
    store.finish_stage(exe, "completed", evidence={**_training_evidence(0.1 + 0.2), "note": "café 日本",
                                                   "tiny": 1.5e-300, "big": 2**62, "nested": [{"x": [1.0, None]}]})
    store.record_decision(run_id, kind="gate", decision="pass", policy=POLICY, results=[])
    store.set_run_status(run_id, "completed", decision="pass", error=None)
    store.append_event("report.rendered", run_id=run_id, payload={"format": "md"})
    store.add_waiver(target="fp-x", rule_id="r", by="a", reason="secret reason", until=date(2099, 1, 1))
    kinds = [e.kind for e in store.events()]
    assert kinds == ["run.created", "stage.started", "stage.finished", "decision.recorded", "run.status",
                     "report.rendered", "waiver.added"]
    assert [e.kind for e in store.events(run_id)] == kinds[:-1]
    events = store.events()
    assert events[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in zip(events, events[1:], strict=False))
    assert "secret reason" not in str(events[-1].payload)  # free text goes in as a digest only
    report = store.verify_chain()
    assert report.ok and report.events == 7 and report.head_event_id == 7 and report.problems == []


def test_default_url_is_sqlite_under_cwd_and_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOVERN_DB_URL", raising=False)
    assert default_db_url() == f"sqlite:///{tmp_path / '.govern' / 'lineage.db'}"
    with LineageStore.open() as store:
        store.create_run(name="a")
        assert store.backend == "sqlite"
    assert (tmp_path / ".govern" / "lineage.db").is_file()
    monkeypatch.setenv("GOVERN_DB_URL", f"sqlite:///{tmp_path / 'other.db'}")
    assert default_db_url().endswith("other.db")


def test_unreachable_or_invalid_databases_raise_lineage_error(tmp_path: Path) -> None:
    with pytest.raises(LineageError, match="invalid lineage DB URL"):
        LineageStore.open("::not a url::")
    with pytest.raises(LineageError, match="unsupported lineage DB backend 'mysql'"):
        LineageStore.open("mysql://u:p@localhost/x")
    with pytest.raises(LineageError, match=r"cannot open lineage DB postgresql\+psycopg://u:\*\*\*@"):
        LineageStore.open(f"postgresql+psycopg://u:hunter2@/db?host={tmp_path / 'no-server'}")
    try:
        LineageStore.open(f"postgresql+psycopg://u:hunter2@/db?host={tmp_path / 'no-server'}")
    except LineageError as exc:
        assert "hunter2" not in str(exc)
