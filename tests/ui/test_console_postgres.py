"""The console on PostgreSQL: served by uvicorn on loopback over a throwaway cluster's lineage DB, read by a
real HTTP client. Every page renders from the same recorded history the SQLite tests use (a PII scan of a
hostile file name, two DP training runs, their model versions), the Runs page's filters and paging work on
PostgreSQL's planner, and two actions (approve a model, record a waiver) change the record with the
logged-in user as the actor while the hash chain still verifies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from govern.lineage import LineageStore
from tests.lineage.conftest import migrated_pg_template  # noqa: F401  (session fixture)
from tests.pg import drop_database, fresh_database, postgres_url  # noqa: F401  (session fixture)
from tests.ui.conftest import HOSTILE_FILE, PLANTED_EMAIL, History, login, record_history, serve

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_history(postgres_url: str, migrated_pg_template: str, tmp_path: Path,  # noqa: F811
               monkeypatch: pytest.MonkeyPatch) -> Iterator[History]:
    # A shared DB's PII hashing key lives where every scanning machine can read it, never beside the DB.
    monkeypatch.setenv("GOVERN_PII_KEY_FILE", str(tmp_path / "pii.key"))
    url = fresh_database(postgres_url, template=migrated_pg_template)
    try:
        yield record_history(url, tmp_path)
    finally:
        drop_database(postgres_url, url)


def test_every_page_and_two_actions_work_on_postgresql(pg_history: History, accounts: Path) -> None:
    import httpx

    from govern.ui.app import create_app

    history = pg_history
    assert history.db.startswith("postgresql")
    with serve(create_app(history.db, accounts_path=accounts)) as base, httpx.Client(base_url=base) as client:
        csrf = login(client, "bob")

        def get(path: str, **params: str) -> str:
            response = client.get(path, params=params)
            assert response.status_code == 200, (path, response.status_code, response.text[:500])
            assert "<script>alert" not in response.text and PLANTED_EMAIL not in response.text
            return response.text

        runs = get("/runs")
        assert "(3)" in runs and all(f'href="/runs/{r}"' in runs for r in (history.scan_run, *history.runs))
        today = date.today().isoformat()
        trained = get("/runs", decision="pass", kind="run", **{"from": today, "to": today})  # the filters, on PG
        assert "(2)" in trained and history.scan_run not in trained
        assert "(0)" in get("/runs", decision="block")
        assert history.runs[0] in get(f"/runs/{history.runs[0]}")
        models = get("/models")
        assert "support-intent" in models and "candidate" in models
        assert history.runs[0] in get("/models/support-intent/v1")
        datasets = get("/datasets")
        assert history.fingerprint[:19] in datasets
        dataset = get(f"/datasets/{history.fingerprint}")
        assert "<td>EMAIL_ADDRESS</td><td>2</td>" in dataset and "over 2 training run(s)" in dataset
        assert HOSTILE_FILE not in dataset  # shown escaped, as text
        get("/waivers")
        assert 'class="ok"' in get("/audit") and "hash chain intact" in get("/audit")

        approved = client.post("/models/support-intent/v1/approve",
                               data={"csrf": csrf, "reason": "audits reviewed on PG"}, follow_redirects=True)
        assert approved.status_code == 200 and approved.url.path == "/models/support-intent/v1", approved.text
        assert "approved" in approved.text and "bob" in approved.text

        until = (date.today() + timedelta(days=30)).isoformat()
        waived = client.post("/waivers/new", data={
            "csrf": csrf, "target": history.fingerprint, "rule_id": "pii.blocked_entities", "until": until,
            "reason": "consented test data"}, follow_redirects=True)
        assert waived.status_code == 200 and waived.url.path == "/waivers" and "consented test data" in waived.text

    with LineageStore.open(history.db, read_only=True) as store:
        assert {v.ref: v.status for v in store.model_versions()} == {
            "support-intent@v1": "approved", "support-intent@v2": "candidate"}
        [waiver] = store.waivers()
        assert waiver.by == "bob" and waiver.target == history.fingerprint
        kinds = {e.kind: e.payload.get("actor") for e in store.recent_events(limit=10)}
        assert kinds["model.approved"] == {"source": "console", "name": "bob", "context": {}}
        chain = store.verify_chain()
        assert chain.ok, chain.problems
