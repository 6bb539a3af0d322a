"""The compliance console in a real browser (Playwright driving Debian's chromium, no browser download):
an approver logs in, browses runs, opens a run and approves its model; a viewer sees no action and a forged
POST is refused; a POST without the CSRF token is rejected; record-derived strings render inert; the page
requests nothing outside the server. The server binds loopback and is stopped by the test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from govern.lineage import LineageStore
from govern.registry import register_after_run
from tests.conftest import require_tool, skip_or_fail
from tests.registry.conftest import record_run
from tests.ui.conftest import CHROMIUM_ARGS, serve

pytestmark = pytest.mark.chromium
SCRIPT_NAME = '<script>alert("pwned")</script>.jsonl'


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """A console on loopback over a DB holding a run by alice (signed model) and a run with a hostile name;
    accounts bob (approver) and vera (viewer). Yields (base URL, DB URL, run ids)."""
    require_tool("chromium", "Debian chromium; the console's browser test")
    try:
        from govern.ui.accounts import add_user
        from govern.ui.app import create_app
    except ImportError as exc:
        skip_or_fail(f"needs the ui extra ({exc.name})")
    db = f"sqlite:///{tmp_path / 'lineage.db'}"
    good = record_run(db, tmp_path, by="alice", seed=1)
    hostile = record_run(db, tmp_path, by="alice", seed=2, name=SCRIPT_NAME, sign=False)
    with LineageStore.open(db) as store:  # what the pipeline does when a run completes
        register_after_run(store, good.run_id)
    accounts = tmp_path / "accounts.json"
    add_user(accounts, "bob", "approver", "correct horse battery")
    add_user(accounts, "vera", "viewer", "viewer password 1")
    with serve(create_app(db, accounts_path=accounts)) as base:
        yield base, db, {"good": good.run_id, "hostile": hostile.run_id}


def test_an_approver_approves_a_model_in_the_browser_and_a_viewer_cannot(console: tuple[str, str, dict[str, str]],
                                                                        tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    base, db, runs = console
    artifacts = Path(os.environ.get("GOVERN_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            page.goto(f"{base}/runs")
            assert page.url == f"{base}/login"  # nothing without a session
            page.fill("#username", "bob")
            page.fill("#password", "wrong password")
            page.click("#login")
            assert "wrong user name or password" in page.inner_text("#message")
            page.fill("#username", "bob")
            page.fill("#password", "correct horse battery")
            page.click("#login")
            assert page.url == f"{base}/runs"
            assert page.inner_text("#whoami") == "bob (approver)"
            names = page.locator("#runs td.name").all_inner_texts()
            assert SCRIPT_NAME in names  # the hostile name is shown as text, and never ran
            page.screenshot(path=str(artifacts / "console-runs.png"), full_page=True)

            page.click(f"a[href='/runs/{runs['good']}']")
            assert page.inner_text("#run-status") == "completed"
            page.click("a[href='/models/support-intent/v1']")
            assert page.inner_text("#version-status") == "candidate"
            page.fill("#form-approve input[name=reason]", "audits reviewed in the console")
            page.click("#form-approve button")
            assert page.inner_text("#version-status") == "approved"
            assert "audits reviewed in the console" in page.inner_text("#actions")
            page.screenshot(path=str(artifacts / "console-approved.png"), full_page=True)

            # A POST without the CSRF token (a cross-site form) is rejected, with bob's own session.
            forged = page.request.post(f"{base}/models/support-intent/v1/revoke", form={"reason": "x"})
            assert forged.status == 403

            viewer = browser.new_page()
            viewer.on("request", lambda r: requests.append(r.url))
            viewer.goto(f"{base}/login")
            viewer.fill("#username", "vera")
            viewer.fill("#password", "viewer password 1")
            viewer.click("#login")
            viewer.goto(f"{base}/models/support-intent/v1")
            assert viewer.inner_text("#version-status") == "approved"
            assert viewer.locator("form.action").count() == 0  # a viewer is offered no action
            csrf = page.locator("#form-revoke input[name=csrf]").get_attribute("value")
            denied = viewer.request.post(f"{base}/models/support-intent/v1/revoke",
                                         form={"reason": "forged", "csrf": csrf or ""})
            assert denied.status == 403  # bob's token is no good in vera's session either
        finally:
            browser.close()

    assert dialogs == []
    assert [u for u in requests if not u.startswith(base)] == []
    with LineageStore.open(db, read_only=True) as store:
        version = store.model_versions(model="support-intent")[0]
        assert version.status == "approved" and version.approvers == ["bob"]
        assert store.verify_chain().ok
