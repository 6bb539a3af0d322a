"""A governed run logged to MLflow: params, metrics, tags and govern's artifacts, from the lineage DB alone.

Platform teams look for models in MLflow; this puts govern's evidence there without making MLflow the
system of record. One export creates one MLflow run (tagged with govern's run id) holding the training
settings as params; ε, membership AUC, task metrics, fairness disparities, the compute estimate and the
loss curve as metrics; the decision and policy digest as tags; and as artifacts the report (Markdown and
JSON), the evidence document and the PII findings as SARIF. A model version is registered only when the
decision let the model through (pass or warn): a blocked or failed run registers nothing.

MLflow is an optional extra (``govern[mlflow]``), imported only here.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from govern.documents.gpai_form import trained_model_artifact
from govern.errors import GovernError
from govern.report.data import ReportData, epsilon_of

if TYPE_CHECKING:
    from govern.lineage.store import LineageStore

EXPORTED_EVENT = "mlflow.exported"
#: Decisions that let a model through the gate: only those register a model version.
REGISTERED_DECISIONS = ("pass", "warn")


class MLflowUnavailableError(GovernError):
    """MLflow is not installed."""


@dataclass
class MLflowExport:
    mlflow_run_id: str
    experiment_id: str
    model_version: str | None
    registered_model: str | None


def _ms(value: datetime | None) -> int | None:
    if value is None:
        return None
    return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp() * 1000)


def params_of(data: ReportData) -> dict[str, str]:
    t = data.training
    values: dict[str, Any] = {"task": t.task if t else None, "base_model": data.model.base_model}
    if t is not None:
        values |= {"method": t.method, "epochs": t.epochs, "steps": t.steps, "batch_size": t.batch_size,
                   "learning_rate": t.learning_rate, "max_length": t.max_length, "seed": t.seed, "n_train": t.n_train,
                   "dp_enabled": t.dp_enabled, "noise_multiplier": t.noise_multiplier, "delta": t.delta,
                   "max_grad_norm": t.max_grad_norm, "accountant": t.accountant, "lora_r": t.lora.get("r"),
                   "lora_alpha": t.lora.get("alpha"), "trainable_params": t.trainable_params,
                   "total_params": t.total_params}
    return {k: str(v) for k, v in values.items() if v is not None}


def metrics_of(data: ReportData) -> dict[str, float]:
    t, e, m, fa = data.training, data.evaluation, data.membership, data.fairness
    values: dict[str, float | None] = {}
    if t is not None:
        values["epsilon"] = epsilon_of(t) if t.dp_enabled else None
        if t.compute is not None:
            values["training_flops"] = t.compute.flops
            values["base_compute_ratio"] = t.compute.base_compute_ratio
    if e is not None:
        values |= {"accuracy": e.accuracy, "macro_f1": e.macro_f1, "ece": e.ece, "perplexity": e.perplexity,
                   "eval_loss": e.loss}
    if m is not None:
        values["membership_auc"] = m.max_auc
        for a in m.attacks:
            values[f"membership_auc.{a.name}"] = a.auc
    if fa is not None:
        for d in fa.disparities:
            values[f"fairness.{d.attribute}.{d.metric}"] = d.value
    return {k.replace("&", "_and_"): float(v) for k, v in values.items() if v is not None}


def export_run(store: LineageStore, data: ReportData, tracking_uri: str, *, registry_uri: str | None = None,
               experiment: str = "govern") -> MLflowExport:
    """Log the run to MLflow at ``tracking_uri``; register a model version when its decision passed."""
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise MLflowUnavailableError(f"the MLflow export needs MLflow ({exc}): pip install 'govern[mlflow]'") from None
    from govern.report import render_json, render_markdown, to_sarif

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    model = trained_model_artifact(data)
    tags = {"govern.run_id": data.run.id, "govern.status": data.run.status,
            "govern.decision": data.run.decision or "none",
            "govern.policy": f"{data.policy.name} {data.policy.version}" if data.policy else "none",
            "govern.policy_digest": data.policy.digest if data.policy else "none",
            "govern.model_digest": model[1] if model else "none", "govern.generator": data.generator}
    run = client.create_run(experiment_id, start_time=_ms(data.run.started_at), tags=tags, run_name=data.run.name)
    run_id = run.info.run_id
    now = _ms(data.run.ended_at) or _ms(data.run.started_at) or 0
    metrics = [Metric(k, v, now, 0) for k, v in metrics_of(data).items()]
    if data.training is not None:
        metrics += [Metric("train_loss", p.loss, now, p.step) for p in data.training.curve]
    client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params_of(data).items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    with tempfile.TemporaryDirectory(prefix="govern-mlflow-") as tmp:
        folder = Path(tmp)
        (folder / "report.md").write_text(render_markdown(data), encoding="utf-8")
        (folder / "report.json").write_text(render_json(data), encoding="utf-8")
        (folder / "evidence.json").write_text(json.dumps(store.evidence(data.run.id), indent=2, sort_keys=True),
                                              encoding="utf-8")
        sarif = to_sarif(store.pii_findings(data.run.id), tool_version=data.generator.removeprefix("govern "))
        (folder / "pii.sarif").write_text(json.dumps(sarif, indent=2), encoding="utf-8")
        client.log_artifacts(run_id, str(folder), artifact_path="govern")
    status = {"completed": "FINISHED", "blocked": "KILLED", "failed": "FAILED"}.get(data.run.status, "FINISHED")
    client.set_terminated(run_id, status=status, end_time=_ms(data.run.ended_at))

    version = registered = None
    if model is not None and data.run.decision in REGISTERED_DECISIONS:
        registered = data.run.name
        try:
            client.get_registered_model(registered)
        except Exception:  # noqa: BLE001 - MLflow raises its own RESOURCE_DOES_NOT_EXIST; create it then
            client.create_registered_model(registered)
        artifact_path = next(a.path for a in data.artifacts if a.sha256 == model[1])
        # govern's registry is the source of truth for approval; MLflow gets its status at export time.
        versions = store.model_versions(run_id=data.run.id)
        registry_status = versions[0].status if versions else "unregistered"
        mv = client.create_model_version(registered, source=artifact_path, run_id=run_id, tags={
            "govern.run_id": data.run.id, "govern.decision": data.run.decision or "none",
            "govern.model_digest": model[1], "govern.registry_status": registry_status})
        version = str(mv.version)
    store.append_event(EXPORTED_EVENT, run_id=data.run.id, payload={
        "tracking_uri": _mask(tracking_uri), "mlflow_run_id": run_id, "experiment_id": experiment_id,
        "registered_model": registered, "model_version": version})
    return MLflowExport(mlflow_run_id=run_id, experiment_id=experiment_id, model_version=version,
                        registered_model=registered)


def _mask(uri: str) -> str:
    """A tracking URI without its password (``https://user:secret@host`` → ``https://user:***@host``)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri
