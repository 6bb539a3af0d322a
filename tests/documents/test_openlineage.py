"""OpenLineage: a run's START and terminal events reach a local HTTP receiver, validate against the
RunEvent requirements of the spec, and an unreachable consumer is recorded, never fatal."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from govern.lineage import LineageStore
from tests.conftest import skip_or_fail
from tests.report.conftest import RecordedDB

#: The RunEvent requirements of the OpenLineage 2-0-2 spec (required fields, the state enum, UUID run ids,
#: namespaced jobs and data sets, facets carrying _producer and _schemaURL), restated for this test.
RUN_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["eventType", "eventTime", "run", "job", "producer", "schemaURL"],
    "properties": {
        "eventType": {"enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]},
        "eventTime": {"type": "string", "format": "date-time"},
        "producer": {"type": "string", "format": "uri"},
        "schemaURL": {"type": "string", "format": "uri"},
        "run": {"type": "object", "required": ["runId"], "properties": {
            "runId": {"type": "string", "format": "uuid"},
            "facets": {"type": "object", "additionalProperties": {"$ref": "#/$defs/facet"}}}},
        "job": {"type": "object", "required": ["namespace", "name"],
                "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}}},
        "inputs": {"type": "array", "items": {"$ref": "#/$defs/dataset"}},
        "outputs": {"type": "array", "items": {"$ref": "#/$defs/dataset"}},
    },
    "$defs": {
        "facet": {"type": "object", "required": ["_producer", "_schemaURL"]},
        "dataset": {"type": "object", "required": ["namespace", "name"]},
    },
}


@pytest.fixture(autouse=True)
def _needs_openlineage() -> None:
    import importlib.util

    if importlib.util.find_spec("openlineage") is None:
        skip_or_fail("needs openlineage-python (pip install 'govern[openlineage]')")


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local OpenLineage HTTP endpoint that keeps what it receives."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        server.shutdown()
        server.server_close()


def _validate(event: dict[str, Any]) -> None:
    jsonschema.validate(event, RUN_EVENT_SCHEMA, format_checker=jsonschema.FormatChecker())
    import uuid

    uuid.UUID(event["run"]["runId"])  # the format checker accepts what it cannot check: check it here


def test_completed_run_sends_start_and_complete_with_data_sets_model_and_govern_facet(
        recorded: RecordedDB, receiver: tuple[str, list[dict[str, Any]]], govern_cli) -> None:  # type: ignore[no-untyped-def]
    url, received = receiver
    code, out, err = govern_cli("export", "openlineage", recorded.run.run_id, "--url", url, "--db", recorded.url)
    assert code == 0, err
    assert [e["eventType"] for e in received] == ["START", "COMPLETE"]
    for event in received:
        _validate(event)
    start, complete = received
    assert start["run"]["runId"] == complete["run"]["runId"] and start["job"] == complete["job"]
    assert (complete["job"]["namespace"], complete["job"]["name"]) == ("govern", "support-intents")
    facet = complete["run"]["facets"]["govern"]
    assert facet["runId"] == recorded.run.run_id and facet["decision"] == recorded.run.decision
    assert facet["policyDigest"] == recorded.run.policy_digest
    assert facet["epsilon"] == pytest.approx(recorded.run.epsilon)
    assert 0.4 < facet["membershipAuc"] < 0.7
    assert sorted(i["name"].split(":")[0] for i in complete["inputs"]) == ["eval", "train"]
    assert any(recorded.run.train_fingerprint in i["name"] for i in complete["inputs"])
    with LineageStore.open(recorded.url, read_only=True) as store:
        adapter = next(a for a in store.artifacts(recorded.run.run_id) if a.kind == "adapter")
        kinds = [e.kind for e in store.events(recorded.run.run_id)]
    assert complete["outputs"][0]["name"].endswith(adapter.sha256)
    assert "openlineage.sent" in kinds
    for value in recorded.run.planted:
        assert value not in json.dumps(received)


def test_failed_and_blocked_runs_end_in_fail_and_abort(workdir: Path, receiver: tuple[str, list[dict[str, Any]]],
                                                       govern_cli) -> None:  # type: ignore[no-untyped-def]
    url, received = receiver
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        failed = store.create_run(name="broken-data", config={})
        store.set_run_status(failed, "failed", error="train.jsonl line 3: field 'text' is missing")
        blocked = store.create_run(name="pii-blocked", config={})
        store.set_run_status(blocked, "blocked", decision="block")
    assert govern_cli("export", "openlineage", failed, "--url", url)[0] == 0
    assert govern_cli("export", "openlineage", blocked, "--url", url)[0] == 0
    assert [e["eventType"] for e in received] == ["START", "FAIL", "START", "ABORT"]
    for event in received:
        _validate(event)
    assert received[1]["run"]["facets"]["govern"]["status"] == "failed"


def test_an_unreachable_endpoint_is_recorded_and_reported_not_raised(recorded: RecordedDB, govern_cli,
                                                                     tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    db = tmp_path / "copy.db"
    shutil.copy(recorded.url.removeprefix("sqlite:///"), db)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = govern_cli("export", "openlineage", recorded.run.run_id, "--url", f"http://127.0.0.1:{port}",
                              "--db", f"sqlite:///{db}")
    assert code == 2 and "OpenLineage: START" in err and "Traceback" not in err
    with LineageStore.open(f"sqlite:///{db}") as store:
        failures = [e for e in store.events(recorded.run.run_id) if e.kind == "openlineage.failed"]
        assert failures and failures[-1].payload["sent"] == 0 and len(failures[-1].payload["problems"]) == 2
        assert store.verify_chain().ok  # the DB stays consistent


def test_events_can_go_to_a_file_transport(recorded: RecordedDB, govern_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "events.jsonl"
    code, _, err = govern_cli("export", "openlineage", recorded.run.run_id, "--file", str(path), "--db", recorded.url)
    assert code == 0, err
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        _validate(event)


def _blocked_project(root: Path, openlineage: dict[str, Any]) -> Path:
    """A project whose training data holds a US SSN (the default policy blocks it at the PII gate, before any
    training) and whose run config sends OpenLineage events."""
    import yaml

    from tests.spine.helpers import make_records, write_jsonl, write_project

    config = write_project(root)
    records = make_records(200, 1, "train")
    records[3]["text"] += " my ssn is 388-40-1362"
    write_jsonl(root / "train.jsonl", records)
    doc = yaml.safe_load(config.read_text())
    doc["openlineage"] = openlineage
    config.write_text(yaml.safe_dump(doc))
    return config


def test_govern_run_sends_its_events_when_the_run_ends(workdir: Path, receiver: tuple[str, list[dict[str, Any]]],
                                                        govern_cli) -> None:  # type: ignore[no-untyped-def]
    url, received = receiver
    config = _blocked_project(workdir, {"url": url})
    code, out, err = govern_cli("run", str(config), "--format", "json")
    assert code == 1, err  # blocked at the PII gate
    run_id = json.loads(out)["run_id"]
    assert [e["eventType"] for e in received] == ["START", "ABORT"]
    for event in received:
        _validate(event)
        assert "388-40-1362" not in json.dumps(event)
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        sent = [e for e in store.events(run_id) if e.kind == "openlineage.sent"]
        assert sent and sent[-1].payload["sent"] == 2
        assert store.verify_run(run_id).ok


def test_an_unreachable_consumer_does_not_change_the_runs_outcome(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = _blocked_project(workdir, {"url": f"http://127.0.0.1:{port}"})
    code, out, err = govern_cli("run", str(config), "--format", "json")
    assert code == 1 and "Traceback" not in err  # still "blocked", not an error
    run_id = json.loads(out)["run_id"]
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        assert store.get_run(run_id).status == "blocked"
        failed = [e for e in store.events(run_id) if e.kind == "openlineage.failed"]
        assert failed and failed[-1].payload["sent"] == 0
        assert store.verify_chain().ok
