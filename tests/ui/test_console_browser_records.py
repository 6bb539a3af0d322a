"""The console's record pages and actions in a real browser (Playwright, Debian's chromium): an admin opens a
data set (its hostile file name shown as text, its PII counts and ε ledger), records a waiver and ends it,
downloads a run's report, sees the model's signature verified live, rolls the deployed model back and
revokes the data set; the pages request nothing outside the server and no script ever runs."""

from __future__ import annotations

import json
import os
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest

from govern.lineage import LineageStore
from govern.registry import approve, promote
from tests.conftest import require_tool, skip_or_fail
from tests.registry.conftest import as_user
from tests.ui.conftest import CHROMIUM_ARGS, HOSTILE_FILE, History, serve

pytestmark = pytest.mark.chromium


def test_an_admin_works_through_data_sets_waivers_reports_and_rollback_in_the_browser(
        history: History, accounts: Path, tmp_path: Path) -> None:
    require_tool("chromium", "Debian chromium; the console's browser test")
    try:
        from playwright.sync_api import Page, sync_playwright

        from govern.ui.app import create_app
    except ImportError as exc:
        skip_or_fail(f"needs the ui extra and playwright ({exc.name})")
    with as_user(history.db, "bob") as store:  # v1 deployed, then v2 (v1 deprecated): something to roll back
        for ref in ("support-intent@v1", "support-intent@v2"):
            approve(store, ref, reason="audits reviewed")
            promote(store, ref, reason="release")
    shots = Path(os.environ.get("GOVERN_TEST_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []
    dialogs: list[str] = []
    with serve(create_app(history.db, accounts_path=accounts)) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        try:
            page: Page = browser.new_page(accept_downloads=True)
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{base}/login")
            page.fill("#username", "ada")
            page.fill("#password", "admin password 12")
            page.click("#login")

            page.click("a[href='/datasets']")
            page.click("#datasets a")
            assert page.inner_text("#dataset-name").endswith(HOSTILE_FILE)  # shown as text, never run
            assert page.inner_text("#dataset-rows") == "3"
            assert page.locator("#pii tbody tr").all_inner_texts() == ["EMAIL_ADDRESS\t2", "PHONE_NUMBER\t1"]
            assert "over 2 training run(s)" in page.inner_text("#ledger-total")
            page.screenshot(path=str(shots / "console-dataset.png"), full_page=True)

            page.click("a[href='/waivers']")
            page.fill("#form-waive input[name=target]", history.fingerprint)
            page.fill("#form-waive input[name=rule_id]", "pii.blocked_entities")
            page.fill("#form-waive input[name=until]", (date.today() + timedelta(days=14)).isoformat())
            page.fill("#form-waive input[name=reason]", "<script>alert('reason')</script> synthetic data")
            page.click("#form-waive button")
            active = page.inner_text("#active-waivers")
            assert "<script>alert('reason')</script> synthetic data" in active and "ada" in active
            page.fill("#active-waivers form.end-waiver input[name=reason]", "the data set changed")
            page.click("#active-waivers form.end-waiver button")
            assert "ended" in page.inner_text("#expired-waivers") and "none" in page.inner_text("#active-waivers")
            page.screenshot(path=str(shots / "console-waivers.png"), full_page=True)

            page.goto(f"{base}/runs/{history.runs[1]}")
            with page.expect_download() as download:
                page.click("#downloads a:text('JSON')")
            report = json.loads(Path(download.value.path()).read_text())
            assert report["run"]["id"] == history.runs[1] and report["registry"][0]["status"] == "deployed"
            assert page.inner_text("#verify-command-1").startswith("govern verify ")

            page.click("a[href='/models/support-intent/v2']")
            assert page.inner_text("#version-signature").startswith("verifies now")
            page.fill("#form-rollback input[name=reason]", "latency regression")
            page.click("#form-rollback button")
            assert page.url == f"{base}/models/support-intent/v1"
            assert page.inner_text("#version-status") == "deployed"

            page.goto(f"{base}/datasets/{history.fingerprint}")
            page.fill("#form-revoke-dataset input[name=reason]", "erasure request")
            page.click("#form-revoke-dataset button")
            assert page.locator("#revoked tbody tr").count() == 2
            assert set(page.locator("#revoked td.status").all_inner_texts()) == {"revoked"}
            page.screenshot(path=str(shots / "console-revoked.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == []
    assert [u for u in requests if not u.startswith(base)] == []
    with LineageStore.open(history.db, read_only=True) as store:
        assert store.verify_chain().ok
