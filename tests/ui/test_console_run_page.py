"""The Run page is the report's content from the report's own view model, with downloads rendered by
`govern report`'s renderer, and the exact `govern verify` command (which, run, verifies); the model version
page verifies the signature live, so a model changed on disk shows as not verifying."""

from __future__ import annotations

import html
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from govern.lineage import LineageStore
from govern.registry import register_after_run
from tests.conftest import skip_or_fail
from tests.registry.conftest import record_run
from tests.ui.conftest import HOSTILE_FILE, History


def test_the_run_page_downloads_the_same_report_as_govern_report(console_client: Callable[..., Any],
                                                                 govern_cli: Any, history: History,
                                                                 tmp_path: Path) -> None:
    from govern.ui.app import _report_formats

    client = console_client(history.db, "vera")
    run_id = history.runs[0]
    page = client.get(f"/runs/{run_id}").text
    assert "support-intent@v1" in page and "verifies (" in page
    code, _, err = govern_cli("report", run_id, "--format", "json", "--out", str(tmp_path), "--db", history.db)
    assert code == 0, err
    expected = json.loads((tmp_path / f"{run_id}.json").read_text())
    download = client.get(f"/runs/{run_id}/report.json")
    assert download.headers["content-disposition"] == f'attachment; filename="{run_id}.json"'
    got = download.json()
    assert {k: v for k, v in got.items() if k != "generated_at"} == \
        {k: v for k, v in expected.items() if k != "generated_at"}
    markdown = client.get(f"/runs/{run_id}/report.md")
    assert markdown.headers["content-type"].startswith("text/markdown") and run_id in markdown.text
    report_html = client.get(f"/runs/{run_id}/report.html")
    assert "<html" in report_html.text and "script-src" not in report_html.headers["content-security-policy"]
    if "pdf" not in _report_formats():
        skip_or_fail("PDF downloads need WeasyPrint and Pango")
    assert 'report.pdf"' in page and client.get(f"/runs/{run_id}/report.pdf").content.startswith(b"%PDF-")
    assert client.get(f"/runs/{run_id}/report.exe").status_code == 404


def test_the_verify_command_on_the_run_page_verifies(console_client: Callable[..., Any], govern_cli: Any,
                                                     history: History) -> None:
    page = console_client(history.db, "vera").get(f"/runs/{history.runs[1]}").text
    commands = [html.unescape(c) for c in re.findall(r'<pre class="command" id="verify-[a-z]+-1">([^<]+)</pre>',
                                                      page)]
    assert len(commands) == 2 and commands[1].startswith(commands[0]) and "--run " + history.runs[1] in commands[1]
    for command in commands:
        argv = shlex.split(command)
        assert argv[:2] == ["govern", "verify"]
        code, out, err = govern_cli(*argv[1:])
        assert code == 0, out + err


def test_the_version_page_verifies_the_signature_live(console_client: Callable[..., Any], sqlite_db: str,
                                                      tmp_path: Path) -> None:
    run = record_run(sqlite_db, tmp_path, by="alice")
    with LineageStore.open(sqlite_db) as store:
        register_after_run(store, run.run_id)
    client = console_client(sqlite_db, read_only=True)
    assert "verifies now: 2 file(s)" in client.get("/models/support-intent/v1").text
    (run.model_dir / "adapter_model.safetensors").write_bytes(b"swapped weights")
    after = client.get("/models/support-intent/v1").text
    assert "does not verify" in after and "changed since it was recorded" in after


def test_a_hostile_data_set_name_on_the_run_page_is_text(console_client: Callable[..., Any], history: History) -> None:
    page = console_client(history.db, read_only=True).get(f"/runs/{history.scan_run}").text
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#39;file&#39;)" in page
    assert HOSTILE_FILE.startswith("<script>")


def test_the_run_page_says_what_a_causal_lm_wrote_out_verbatim(console_client: Callable[..., Any],
                                                                 history: History, tmp_path: Path) -> None:
    """The extraction and PII-regurgitation sentences of the report are on the Run page, under Privacy."""
    from govern.evidence import ExtractionAudit, ExtractionRate, MembershipEvidence, PIIRegurgitation

    run = record_run(history.db, tmp_path, by="alice", name="support-lm", seed=7, dataset=history.fingerprint)
    membership = MembershipEvidence(
        n_members=16, n_nonmembers=16, seed=0, attacks=[], max_auc=0.5, task="causal-lm",
        extraction=ExtractionAudit(
            prefix_tokens=4, suffix_tokens=8, excess_exact_match_rate=15 / 16,
            members=ExtractionRate(records=16, exact_matches=16, exact_match_rate=1.0, mean_prefix_match=1.0),
            nonmembers=ExtractionRate(records=16, exact_matches=1, exact_match_rate=1 / 16, mean_prefix_match=0.1)),
        pii_regurgitation=PIIRegurgitation(pool_size=30, repetitions=2, inserted=15, inserted_reproduced=14,
                                           inserted_rate=14 / 15, held_out=15, held_out_reproduced=0,
                                           held_out_rate=0.0))
    with LineageStore.open(history.db) as store:
        stage = store.start_stage(run.run_id, "membership", "sha256:membership")
        store.finish_stage(stage, "completed", evidence=membership.model_dump(mode="json"))
    page = html.unescape(console_client(history.db, "vera").get(f"/runs/{run.run_id}").text)
    privacy = page.split("<h2>Privacy</h2>")[1].split("<h2>")[0]
    lines = re.findall(r'<p class="run-memorization">([^<]+)</p>', privacy)
    assert len(lines) == 2
    assert "continued 16 of them (100%) word for word" in lines[0] and "1 of 16 similar records" in lines[0]
    assert "wrote out 14 of them exactly (93%)" in lines[1] and "0 of 15 made-up values" in lines[1]
    # A run without those audits shows neither.
    other = html.unescape(console_client(history.db, "vera").get(f"/runs/{history.runs[0]}").text)
    assert 'class="run-memorization"' not in other
