"""OpenLineage RunEvents of a governed run, from the lineage DB alone, sent with ``openlineage-python``.

A run becomes one OpenLineage run of the job ``<run name>`` in the namespace ``govern``: a START event at
its start and one terminal event at its end — COMPLETE (completed), ABORT (blocked by the policy) or FAIL
(failed) — with the data sets it read as inputs and the model it wrote as output (both named by their
digests), and a custom ``govern`` run facet: the decision, the policy digest, ε, the membership AUC and
govern's run id. OpenLineage wants a UUID per run; it is derived from govern's run id (uuid5), so
re-sending a run's events never creates a second run in the consumer.

Transports are the client's own (HTTP, file, console…), configured by the caller or by the standard
OpenLineage environment (``OPENLINEAGE_URL``, ``OPENLINEAGE_CONFIG``, ``openlineage.yml``). Emitting never
raises: a consumer that is down is recorded in the run's audit log (``openlineage.failed``), never a
reason for a governed run or an export to fail.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attr

from govern.documents.gpai_form import trained_model_artifact
from govern.errors import GovernError
from govern.report.data import ReportData, epsilon_of

if TYPE_CHECKING:
    from govern.config import OpenLineageConfig
    from govern.lineage.store import LineageStore

NAMESPACE = "govern"
PRODUCER = "https://github.com/govern-dev/govern"
#: uuid5 namespace for govern run ids (fixed: the same govern run is always the same OpenLineage run).
RUN_UUID_NAMESPACE = uuid.UUID("5b0a1c6e-2f7d-4c1e-9a8b-6f3e2d1c0b9a")
FAILED_EVENT = "openlineage.failed"
SENT_EVENT = "openlineage.sent"


class OpenLineageUnavailableError(GovernError):
    """openlineage-python is not installed."""


def _client_modules() -> Any:
    try:
        from openlineage.client import event_v2, facet_v2
    except ImportError as exc:
        raise OpenLineageUnavailableError(f"OpenLineage export needs openlineage-python ({exc}): "
                                          "pip install 'govern[openlineage]'") from None
    return event_v2, facet_v2


def run_uuid(run_id: str) -> str:
    return str(uuid.uuid5(RUN_UUID_NAMESPACE, run_id))


def terminal_state(status: str) -> str | None:
    """The OpenLineage state a finished govern run ends in (None: still running)."""
    return {"completed": "COMPLETE", "blocked": "ABORT", "failed": "FAIL"}.get(status)


def _iso(value: datetime) -> str:
    from datetime import UTC

    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def run_events(data: ReportData) -> list[Any]:
    """START and, for a finished run, its terminal RunEvent (``openlineage.client.event_v2.RunEvent``)."""
    event_v2, facet_v2 = _client_modules()

    @attr.define
    class GovernRunFacet(facet_v2.RunFacet):  # type: ignore[misc,name-defined]  # imported lazily (an optional extra), so Any
        """What govern decided about the run (the custom ``govern`` facet)."""

        runId: str  # noqa: N815 (OpenLineage facets are camelCase)
        decision: str | None = attr.field(default=None)
        status: str | None = attr.field(default=None)
        policyName: str | None = attr.field(default=None)  # noqa: N815
        policyDigest: str | None = attr.field(default=None)  # noqa: N815
        epsilon: float | None = attr.field(default=None)
        delta: float | None = attr.field(default=None)
        membershipAuc: float | None = attr.field(default=None)  # noqa: N815
        modelDigest: str | None = attr.field(default=None)  # noqa: N815

        @staticmethod
        def _get_schema() -> str:
            return "https://govern.dev/spec/openlineage/GovernRunFacet/1-0-0.json"

    t = data.training
    model = trained_model_artifact(data)
    facet = GovernRunFacet(
        runId=data.run.id, decision=data.run.decision, status=data.run.status,
        policyName=data.policy.name if data.policy else None, policyDigest=data.policy.digest if data.policy else None,
        epsilon=epsilon_of(t) if t is not None and t.dp_enabled else None, delta=t.delta if t is not None else None,
        membershipAuc=data.membership.max_auc if data.membership is not None else None,
        modelDigest=model[1] if model else None,
        producer=PRODUCER)  # type: ignore[call-arg]  # attrs' init arg for the base facet's `_producer`
    inputs = [event_v2.InputDataset(namespace=f"{NAMESPACE}/dataset", name=f"{f.role}:{f.fingerprint}")
              for f in (data.data.files if data.data is not None else [])]
    outputs = [event_v2.OutputDataset(namespace=f"{NAMESPACE}/model", name=f"{model[0]}:{model[1]}")] if model else []
    run = event_v2.Run(runId=run_uuid(data.run.id), facets={"govern": facet})
    job = event_v2.Job(namespace=NAMESPACE, name=data.run.name)
    events = [event_v2.RunEvent(eventType=event_v2.RunState.START, eventTime=_iso(data.run.started_at), run=run,
                                job=job, inputs=inputs, outputs=[], producer=PRODUCER)]
    state = terminal_state(data.run.status)
    if state is not None:
        events.append(event_v2.RunEvent(eventType=getattr(event_v2.RunState, state),
                                        eventTime=_iso(data.run.ended_at or data.run.started_at), run=run, job=job,
                                        inputs=inputs, outputs=outputs if state == "COMPLETE" else [],
                                        producer=PRODUCER))
    return events


def event_json(event: Any) -> dict[str, Any]:
    """An event as the JSON document a transport sends."""
    import json

    from openlineage.client.serde import Serde

    document: dict[str, Any] = json.loads(Serde.to_json(event))
    return document


def client_for(url: str | None = None, file: str | None = None, console: bool = False) -> Any:
    """An ``OpenLineageClient``: HTTP to ``url``, appending to ``file``, to the console, or (none given) as
    the standard OpenLineage environment configures it."""
    _client_modules()
    from openlineage.client import OpenLineageClient

    if url:
        # One attempt, short timeout: a consumer that is down must not hold up a run.
        return OpenLineageClient(config={"transport": {"type": "http", "url": url, "timeout": 5.0,
                                                       "retry": {"total": 0}}})
    if file:
        return OpenLineageClient(config={"transport": {"type": "file", "log_file_path": file, "append": True}})
    if console:
        return OpenLineageClient(config={"transport": {"type": "console"}})
    return OpenLineageClient()


def emit_run(store: LineageStore, data: ReportData, client: Any) -> tuple[int, list[str]]:
    """Send a run's events; never raises. Returns (events sent, problems); each outcome lands in the audit log."""
    sent, problems = 0, []
    for event in run_events(data):
        state = str(getattr(event.eventType, "value", event.eventType))
        try:
            client.emit(event)
            sent += 1
        except Exception as exc:  # noqa: BLE001 - any transport failure is recorded, never raised
            problems.append(f"{state}: {type(exc).__name__}: {str(exc)[:300]}")
    kind = FAILED_EVENT if problems else SENT_EVENT
    store.append_event(kind, run_id=data.run.id, payload={"transport": str(getattr(client.transport, "kind", "?")),
                                                          "sent": sent, "problems": problems})
    return sent, problems


def emit_after_run(store: LineageStore, run_id: str, config: OpenLineageConfig | None) -> None:
    """What ``govern run`` does when a run ends (completed, blocked or failed): send its events when the run
    config has an ``openlineage:`` section or the standard OpenLineage environment names a consumer. Never
    raises — a lineage consumer that is down, or a missing extra, must not change the run's outcome — and
    every outcome, a failure to start included, lands in the run's audit log."""
    import os

    if config is None and not (os.environ.get("OPENLINEAGE_URL") or os.environ.get("OPENLINEAGE_CONFIG")):
        return
    try:
        from govern.documents import verified_report_data

        data = verified_report_data(store, run_id)
        client = client_for(config.url if config else None, str(config.file) if config and config.file else None,
                            bool(config and config.console))
    except Exception as exc:  # noqa: BLE001 - recorded, never raised (see above)
        store.append_event(FAILED_EVENT, run_id=run_id, payload={
            "transport": None, "sent": 0, "problems": [f"{type(exc).__name__}: {str(exc)[:300]}"]})
        return
    emit_run(store, data, client)
