"""MLflow export: against a real local MLflow tracking store (SQLite backend), a governed run's params,
metrics, tags and artifacts are there; a passed run registers a model version, a blocked one none."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from govern.lineage import LineageStore
from tests.conftest import skip_or_fail
from tests.report.conftest import RecordedDB


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow SQLite store for the module (creating its tables costs MLflow ~20 s)."""
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        skip_or_fail("needs MLflow (pip install 'govern[mlflow]')")
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    # The experiment's artifacts in the test's folder (MLflow's default is ./mlruns in the working directory).
    MlflowClient(tracking_uri=uri).create_experiment("govern", artifact_location=(root / "artifacts").as_uri())
    return uri


def test_a_run_is_logged_with_its_evidence_and_the_passed_model_registered(
        recorded: RecordedDB, mlflow_uri: str, govern_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    code, out, err = govern_cli("export", "mlflow", recorded.run.run_id, "--tracking-uri", mlflow_uri,
                                "--db", recorded.url)
    assert code == 0, err
    assert recorded.run.decision == "warn" and "version 1" in out
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    [run] = client.search_runs([client.get_experiment_by_name("govern").experiment_id],
                               filter_string=f"tags.`govern.run_id` = '{recorded.run.run_id}'")
    assert run.info.status == "FINISHED"
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    assert tags["govern.decision"] == "warn" and tags["govern.policy_digest"] == recorded.run.policy_digest
    assert metrics["epsilon"] == pytest.approx(recorded.run.epsilon)
    assert metrics["accuracy"] == pytest.approx(0.8125)
    assert metrics["fairness.region.equalized_odds_difference"] == pytest.approx(0.14)
    assert 0.4 < metrics["membership_auc"] < 0.7 and metrics["base_compute_ratio"] > 0
    assert params["method"] == "lora" and params["noise_multiplier"] == "0.9"
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 12  # the loss curve, by step
    names = {a.path for a in client.list_artifacts(run.info.run_id, "govern")}
    assert names == {"govern/report.md", "govern/report.json", "govern/evidence.json", "govern/pii.sarif"}
    evidence = json.loads(Path(client.download_artifacts(run.info.run_id, "govern/evidence.json", str(tmp_path)))
                          .read_text())
    assert evidence["training"]["epsilon"]["rdp"] == pytest.approx(recorded.run.epsilon)
    for name in names:
        text = Path(client.download_artifacts(run.info.run_id, name, str(tmp_path))).read_text()
        for value in recorded.run.planted:
            assert value not in text, name
    [version] = client.search_model_versions(f"name = '{run.info.run_name}'")
    with LineageStore.open(recorded.url, read_only=True) as store:
        adapter = next(a for a in store.artifacts(recorded.run.run_id) if a.kind == "adapter")
        exported = [e for e in store.events(recorded.run.run_id) if e.kind == "mlflow.exported"]
        registered = store.model_versions(run_id=recorded.run.run_id)
    assert version.run_id == run.info.run_id and version.tags["govern.model_digest"] == adapter.sha256
    # The approval status comes from govern's registry (the source of truth), as it stood at export time.
    assert version.tags["govern.registry_status"] == (registered[0].status if registered else "unregistered")
    assert exported and exported[-1].payload["mlflow_run_id"] == run.info.run_id


def test_a_blocked_run_registers_no_model_version(workdir: Path, mlflow_uri: str, govern_cli) -> None:  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    from tests.report.populate import record_governed_run

    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        run = record_governed_run(store, workdir, name="blocked-intents", waive_fairness=False)
    assert run.decision == "block"
    code, out, err = govern_cli("export", "mlflow", run.run_id, "--tracking-uri", mlflow_uri)
    assert code == 0, err
    assert "no model version registered" in out
    client = MlflowClient(tracking_uri=mlflow_uri, registry_uri=mlflow_uri)
    [logged] = client.search_runs([client.get_experiment_by_name("govern").experiment_id],
                                  filter_string=f"tags.`govern.run_id` = '{run.run_id}'")
    assert logged.info.status == "KILLED" and logged.data.tags["govern.decision"] == "block"
    assert client.search_model_versions("name = 'blocked-intents'") == []


def test_no_tracking_uri_is_a_clear_error(recorded: RecordedDB, govern_cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, err = govern_cli("export", "mlflow", recorded.run.run_id, "--db", recorded.url)
    assert code == 2 and "--tracking-uri" in err
