"""The Runs page's decision and date filters over HTTP, with the kind/status/data-set ones: each narrows the
count and the rows, combines with the others, survives paging (the pager's links carry every filter), and bad
input is a 400 naming the parameter, never an empty page that looks like "no runs"."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from govern.lineage import LineageStore


@pytest.fixture
def runs_db(tmp_path: Path) -> tuple[str, dict[str, str], Any]:
    """Six runs: pass, warn, three blocked, one still running (no decision); and the UTC day they started."""
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    ids: dict[str, str] = {}
    with LineageStore.open(url) as store:
        for name, status, decision in (("p", "completed", "pass"), ("w", "completed", "warn"),
                                       ("b1", "blocked", "block"), ("b2", "blocked", "block"),
                                       ("b3", "blocked", "block"), ("open", "running", None)):
            ids[name] = store.create_run(name=name)
            if decision is not None:
                store.set_run_status(ids[name], status, decision=decision)
        days = {r.started_at.date() for r in store.list_runs()}
    assert len(days) == 1, "the runs straddle midnight UTC; run again"
    return url, ids, days.pop()


def _listed(page: str) -> set[str]:
    return set(re.findall(r'<a href="/runs/([^"]+)">', page))


def test_decision_and_date_filters_narrow_combine_and_page(console_client: Any, runs_db: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import govern.ui.app as app_module

    url, ids, day = runs_db
    client = console_client(url, read_only=True)
    blocked = client.get("/runs", params={"decision": "block"}).text
    assert "(3)" in blocked and _listed(blocked) == {ids["b1"], ids["b2"], ids["b3"]}
    assert '<option value="block" selected>' in blocked  # the form shows the filter in force
    assert _listed(client.get("/runs", params={"decision": "warn"}).text) == {ids["w"]}

    same_day = {"from": day.isoformat(), "to": day.isoformat()}  # "to" is inclusive: that whole day
    assert "(6)" in client.get("/runs", params=same_day).text
    assert "(0)" in client.get("/runs", params={"to": (day - timedelta(days=1)).isoformat()}).text
    assert "(0)" in client.get("/runs", params={"from": (day + timedelta(days=1)).isoformat()}).text
    combined = client.get("/runs", params={**same_day, "decision": "pass", "status": "completed"}).text
    assert "(1)" in combined and _listed(combined) == {ids["p"]}
    assert 'value="' + day.isoformat() + '"' in combined

    monkeypatch.setattr(app_module, "PAGE_SIZE", 2)  # three blocked runs: two pages
    first = client.get("/runs", params={**same_day, "decision": "block"}).text
    assert "Page 1 of 2" in first and _listed(first) == {ids["b3"], ids["b2"]}  # newest first
    older = re.search(r'<a href="([^"]+)">older</a>', first)
    assert older, first
    second = client.get(html.unescape(older.group(1))).text
    assert "Page 2 of 2" in second and _listed(second) == {ids["b1"]}

    api = client.get("/api/v1/runs", params={"decision": "warn", **same_day})
    assert api.status_code == 200 and [r["id"] for r in api.json()] == [ids["w"]]


@pytest.mark.parametrize(("params", "message"), [
    ({"decision": "maybe"}, "decision must be one of pass, warn, block, not &#39;maybe&#39;"),
    ({"from": "2026-13-01"}, "from must be a day as YYYY-MM-DD, not &#39;2026-13-01&#39;"),
    ({"from": "2026-02-02", "to": "2026-02-01"}, "from (2026-02-02) is after to (2026-02-01)"),
])
def test_a_bad_filter_is_a_400_naming_it(console_client: Any, runs_db: Any, params: dict[str, str],
                                         message: str) -> None:
    client = console_client(runs_db[0], read_only=True)
    page = client.get("/runs", params=params)
    assert page.status_code == 400 and message in page.text, page.text
    assert client.get("/api/v1/runs", params=params).status_code == 400
