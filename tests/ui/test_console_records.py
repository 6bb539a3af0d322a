"""The console's record pages over HTTP: a data set (fingerprint, rows, PII counts by entity type, the runs
and model versions that used it, its ε ledger) and the waivers, active and expired. A hostile file name is
shown as text, and no planted PII value reaches a page."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from markupsafe import escape

from govern.lineage import LineageStore
from govern.privacy_ledger import composed_epsilon
from tests.ui.conftest import HOSTILE_FILE, PLANTED_EMAIL, History


def test_a_data_set_page_shows_its_pii_its_runs_its_models_and_its_privacy_budget(console_client: Any,
                                                                                  history: History) -> None:
    client = console_client(history.db, read_only=True)
    listing = client.get("/datasets")
    assert listing.status_code == 200 and history.fingerprint[:19] in listing.text
    page = client.get(f"/datasets/{history.fingerprint}")
    assert page.status_code == 200
    text = page.text
    assert history.fingerprint in text and ">3<" in text  # fingerprint and the file's 3 rows
    assert "<script>alert" not in text and str(escape(HOSTILE_FILE)) in text  # inert, as text
    assert PLANTED_EMAIL not in text and PLANTED_EMAIL not in listing.text
    assert "<td>EMAIL_ADDRESS</td><td>2</td>" in text and "<td>PHONE_NUMBER</td><td>1</td>" in text
    for run_id in (history.scan_run, *history.runs):
        assert f'href="/runs/{run_id}"' in text
    assert "support-intent@v1" in text and "support-intent@v2" in text
    # The ledger composes the two DP runs (the scan trained nothing), under the accountant they recorded.
    with LineageStore.open(history.db, read_only=True) as store:
        rows = store.privacy_ledger(history.fingerprint)
    assert sorted(r.run_id for r in rows) == sorted(history.runs)
    expected = composed_epsilon(rows, "rdp", 1e-5)
    alone = rows[0].epsilon["rdp"]
    assert alone < expected < 2 * alone  # composition: more than one run's ε, less than the sum
    assert f"Total ε <strong>{expected:.3f}</strong>" in text and "over 2 training run(s)" in text
    assert client.get("/datasets/sha256:" + "0" * 64).status_code == 404


def test_the_runs_page_filters_by_data_set(console_client: Any, history: History) -> None:
    client = console_client(history.db, read_only=True)
    every = client.get("/runs").text
    only = client.get("/runs", params={"dataset": history.fingerprint}).text
    assert all(r in only for r in (history.scan_run, *history.runs))
    assert "(3)" in only and "(3)" in every
    assert "(0)" in client.get("/runs", params={"dataset": "sha256:" + "0" * 64}).text
    assert client.get("/runs", params={"page": "-1"}).status_code == 400


def test_the_waivers_page_separates_active_from_expired(console_client: Any, history: History) -> None:
    from govern.api import waive

    active = waive(history.fingerprint, "pii.blocked_entities", by="carol", reason="<script>x</script> ok",
                   until=date.today() + timedelta(days=30), db_url=history.db)
    with LineageStore.open(history.db) as store:  # one recorded last year (the API refuses a past date)
        expired = store.add_waiver(target=history.runs[0], rule_id="fairness.min_ratio", by="dave",
                                   reason="old exception", until=date.today() - timedelta(days=1))
    client = console_client(history.db, read_only=True)
    page = client.get("/waivers").text
    active_part, expired_part = page.split('id="expired-waivers"')
    assert f'id="waiver-{active.id}"' in active_part and f'id="waiver-{expired}"' in expired_part
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt; ok" in page
    assert f'id="waiver-{active.id}"' in client.get(f"/datasets/{history.fingerprint}").text
