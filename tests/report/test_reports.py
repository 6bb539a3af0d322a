"""Audit reports regenerate from the lineage DB alone, in every format, and never leak PII."""

from __future__ import annotations

import json
import os
import re
import subprocess
from html import unescape
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from govern.cli import app
from govern.errors import GovernError
from govern.lineage import LineageStore
from govern.report import (
    SCHEMA_PATH,
    build_report_data,
    render_html,
    render_markdown,
    report_json_schema,
    to_junit,
    to_markdown_summary,
    to_sarif,
)
from tests.conftest import require_tool
from tests.report.conftest import RecordedDB

runner = CliRunner()
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
#: Hosts Chromium itself contacts in the background (updates, time, accounts) whatever the page does.
CHROMIUM_OWN_HOSTS = re.compile(r"^https?://([a-z0-9-]+\.)*(google\.com|googleapis\.com|gvt1\.com|gstatic\.com)(/|$)")


@pytest.fixture(scope="module")
def rendered(recorded: RecordedDB) -> dict[str, Path]:
    """Every format, written once per module by the CLI (the PDF is the slow one)."""
    out = recorded.root / "reports"
    paths = {}
    for fmt in ("html", "md", "json", "pdf"):
        result = runner.invoke(app, ["report", "latest", "--format", fmt, "--db", recorded.url, "--out", str(out)])
        assert result.exit_code == 0, result.output
        paths[fmt] = out / f"{recorded.run.run_id}.{fmt}"
        assert paths[fmt].is_file() and paths[fmt].stat().st_size > 0
    return paths


def _pdf_text(path: Path) -> str:
    out = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True)
    return out.stdout


def test_every_format_regenerates_from_the_db_after_the_run_directory_is_deleted(
        recorded: RecordedDB, rendered: dict[str, Path]) -> None:
    assert not recorded.run.run_dir.exists() and not recorded.run.data_dir.exists()
    html = rendered["html"].read_text()
    md = rendered["md"].read_text()
    doc = json.loads(rendered["json"].read_text())
    pdf = rendered["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF-")
    assert recorded.run.run_id in html and recorded.run.run_id in md and doc["run"]["id"] == recorded.run.run_id
    # The auditor's order: decision first, the regulatory mapping last.
    order = [html.index(f'id="{s}"') for s in ("decision", "policy", "waivers", "data", "pii", "privacy", "membership",
                                                "fairness", "evaluation", "training", "signatures", "lineage",
                                                "reproducibility", "events", "compliance")]
    assert order == sorted(order)
    # Every stage's evidence made it through the DB into the report.
    for key in ("data", "pii", "training", "evaluation", "membership", "fairness", "signing"):
        assert doc[key] is not None, key
    assert doc["privacy"]["epsilon"] == pytest.approx(recorded.run.epsilon)
    assert doc["decision"]["decision"] == recorded.run.decision == "warn"
    waived = [r for r in doc["decision"]["results"] if r["status"] == "waived"]
    assert waived and doc["waivers"][0]["applied_to"] == [waived[0]["rule_id"]]
    assert "not legal advice" in html and "Annex IV" in html and "MEASURE 2.10" in html
    assert "govern verify" in html and "--signature" in html
    assert "LiRA calibration: 4 reference models" in html and doc["membership"]["lira"]["reference_models"] == 4


def test_json_report_validates_against_the_committed_schema(rendered: dict[str, Path]) -> None:
    committed = json.loads(SCHEMA_PATH.read_text())
    assert committed == json.loads(json.dumps(report_json_schema())), (
        "report.schema.json is stale: run `python -m govern.report`")
    doc = json.loads(rendered["json"].read_text())
    jsonschema.Draft202012Validator(committed).validate(doc)
    broken = dict(doc, run={**doc["run"], "started_at": 17})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(committed).validate(broken)


def test_pdf_text_states_the_decision_epsilon_and_policy_digest(recorded: RecordedDB,
                                                                 rendered: dict[str, Path]) -> None:
    require_tool("pdftotext", "Debian poppler-utils; extracts the PDF's text")
    text = _pdf_text(rendered["pdf"])
    assert re.search(r"Decision:\s+WARN", text)
    assert f"{recorded.run.epsilon:.3f}" in text
    squeezed = re.sub(r"\s+", "", text)  # long digests wrap across lines in print
    assert recorded.run.policy_digest in squeezed


def test_html_renders_in_headless_chromium_without_console_errors_or_network(
        rendered: dict[str, Path], tmp_path: Path) -> None:
    require_tool("chromium", "Debian chromium; renders the HTML report headless")
    html_path = rendered["html"]
    html = html_path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "Content-Security-Policy" in html and "default-src 'none'" in unescape(html)
    artifacts = Path(os.environ.get("GOVERN_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)

    def render(page: Path, name: str) -> tuple[str, set[str]]:
        shot, netlog = artifacts / f"{name}.png", tmp_path / f"{name}.netlog.json"
        proc = subprocess.run(
            ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / ('profile-' + name)}",
             "--enable-logging=stderr", "--v=0", f"--log-net-log={netlog}", "--window-size=1200,2000",
             f"--screenshot={shot}", page.as_uri()],
            capture_output=True, text=True, timeout=90)
        assert shot.is_file() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
        urls = set(re.findall(r'"url":"([^"]+)"', netlog.read_text())) if netlog.exists() else set()
        return proc.stderr, {u for u in urls if u.startswith(("http:", "https:")) and not CHROMIUM_OWN_HOSTS.match(u)}

    # Control: a page that requests an image and logs an error is caught by both checks.
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><p>x</p><img src="http://127.0.0.1:9/x.png">'
                   '<script>console.error("boom")</script></body></html>')
    bad_log, bad_requests = render(bad, "control")
    assert "CONSOLE" in bad_log and "http://127.0.0.1:9/x.png" in bad_requests

    log, requests = render(html_path, "report")
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Content Security Policy" in line]
    assert console == []
    assert requests == set()


def test_planted_pii_values_appear_in_no_output(recorded: RecordedDB, rendered: dict[str, Path],
                                                workdir: Path) -> None:
    outputs: dict[str, str] = {fmt: rendered[fmt].read_text() for fmt in ("html", "md", "json")}
    require_tool("pdftotext", "Debian poppler-utils; extracts the PDF's text")
    outputs["pdf"] = _pdf_text(rendered["pdf"])
    result = runner.invoke(app, ["report", "--since", "2000-01-01", "--format", "md", "--db", recorded.url])
    assert result.exit_code == 0, result.output
    outputs["ledger"] = next((workdir / "reports").glob("ledger-since-*.md")).read_text()
    with LineageStore.open(recorded.url) as store:
        data = build_report_data(store, recorded.run.run_id)
        outputs["sarif"] = json.dumps(to_sarif(store.pii_findings(recorded.run.run_id)))
        assert data.pii_summary.findings_total >= len(recorded.run.planted)
    assert data.decision is not None
    outputs["junit"] = to_junit(data.decision.results, data.decision.decision)
    outputs["summary"] = to_markdown_summary(data.decision.results, data.decision.decision)
    outputs["db"] = (recorded.root / "lineage.db").read_bytes().decode("latin-1")
    for name, text in outputs.items():
        for value in recorded.run.planted:
            assert value not in text, f"planted PII value found in the {name} output"
            assert value.replace(" ", "") not in text.replace(" ", ""), f"planted PII (spaceless) in {name}"
    # Counts are there, per entity type: the report did see the findings.
    for entity in ("EMAIL_ADDRESS", "CREDIT_CARD", "IP_ADDRESS"):
        assert entity in outputs["html"] and entity in outputs["md"]


def test_sarif_of_stored_findings_validates(recorded: RecordedDB) -> None:
    schema = json.loads((Path(__file__).parent / "sarif-2.1.0-subset.schema.json").read_text())
    with LineageStore.open(recorded.url) as store:
        findings = store.pii_findings(recorded.run.run_id)
    sarif = to_sarif(findings, tool_version="0.1.0")
    jsonschema.Draft7Validator(schema).validate(sarif)
    results = sarif["runs"][0]["results"]
    assert len(results) == len(findings)
    assert {r["ruleId"] for r in results} == {f"pii/{f.entity_type}" for f in findings}
    assert all(r["level"] == "warning" for r in results)  # every planted type is 'redact' in the default policy
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate({**sarif, "version": "2.0.0"})


def test_sections_a_stage_did_not_produce_say_so(workdir: Path) -> None:
    from govern.lineage import PolicyRef

    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        run_id = store.create_run(name="stopped-early", policy=PolicyRef(name="default", version="1", digest="sha256:00"))
        execution = store.start_stage(run_id, "training", "sha256:11")
        store.finish_stage(execution, "skipped")
        store.set_run_status(run_id, "failed", error="stage 'data': train.jsonl, line 3: not JSON")
        html = render_html(build_report_data(store, run_id))
        md = render_markdown(build_report_data(store, run_id))
    assert "The training stage was skipped" in html and "The training stage was skipped" in md
    for stage in ("data", "pii", "membership", "fairness", "evaluation", "signing"):
        assert f"The {stage} stage did not run in this run" in html
    assert "No policy decision was recorded" in html and "not JSON" in html


def test_report_cli_rejects_bad_input_with_exit_code_2(recorded: RecordedDB, workdir: Path) -> None:
    # An unknown format is refused by the option itself (exit 2, the choices listed), before any DB read.
    result = runner.invoke(app, ["report", "latest", "--format", "docx", "--db", recorded.url])
    assert result.exit_code == 2 and "'docx' is not one of 'html', 'pdf', 'md', 'json'" in result.output
    for args, needle in ((["report", "--since", "yesterday"], "not a date"),
                         (["report"], "give a RUN_ID"),
                         (["report", "run-does-not-exist"], "run-does-not-exist")):
        result = runner.invoke(app, [*args, "--db", recorded.url])
        # CliRunner calls the typer app directly; `govern`'s main() turns GovernError into exit code 2.
        assert isinstance(result.exception, GovernError), (args, result.output)
        assert result.exception.exit_code == 2 and needle in str(result.exception)


def test_signed_report_verifies_and_tampering_is_detected(recorded: RecordedDB, workdir: Path) -> None:
    from govern.signing.keys import generate_key_pair

    pair = generate_key_pair(workdir / "keys")
    result = runner.invoke(app, ["report", "latest", "--format", "md", "--db", recorded.url,
                                 "--sign-key", str(pair.private_key)])
    assert result.exit_code == 0, result.output
    report = workdir / "reports" / f"{recorded.run.run_id}.md"
    bundle = report.with_name(report.name + ".sigstore.json")
    verify = ["verify", str(report), "--signature", str(bundle), "--key", str(pair.public_key)]
    assert runner.invoke(app, verify).exit_code == 0
    with LineageStore.open(recorded.url) as store:
        assert any(s.kind == "report" and s.bundle_path == str(bundle.resolve()) for s in store.signatures(recorded.run.run_id))
    report.write_text(report.read_text().replace("WARN", "PASS"))
    assert runner.invoke(app, verify).exit_code == 1


def test_markdown_key_evidence_quotes_what_the_gate_used(workdir: Path) -> None:
    """The strict policy gates the CI bound of each metric's worst row and TPR at 1 % FPR; the summary
    shows exactly those, not the first rows of the table or the first operating point (0.1 %)."""
    from govern.evidence import Disparity, TprAtFpr
    from tests.report.populate import record_governed_run

    rows = [Disparity(attribute=a, metric=m, value=v, ci_low=lo, ci_high=hi) for a, m, v, lo, hi in (
        ("region", "equalized_odds_difference", 0.04, 0.01, 0.08),
        ("region", "demographic_parity_ratio", 0.95, 0.9, 0.99),
        ("age_band", "equalized_odds_difference", 0.05, 0.02, 0.09),
        ("age_band", "demographic_parity_ratio", 0.93, 0.86, 0.98),
        ("language", "demographic_parity_ratio", 0.9, 0.71, 0.97),  # the ratio the gate uses (lower bound)
        ("language", "equalized_odds_difference", 0.07, 0.03, 0.16))]  # the difference it uses (upper bound)
    points = [TprAtFpr(fpr=0.001, tpr=0.004), TprAtFpr(fpr=0.01, tpr=0.031, ci_low=0.01, ci_high=0.06),
              TprAtFpr(fpr=0.1, tpr=0.14)]
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        run = record_governed_run(store, workdir, policy_ref="strict", waive_fairness=False, disparities=rows,
                                  tpr_at_fpr=points)
        md = render_markdown(build_report_data(store, run.run_id))
    [fairness] = [line for line in md.splitlines() if line.startswith("| Fairness |")]
    assert "equalized_odds_difference for 'language' = 0.16 (upper CI bound)" in fairness
    assert "demographic_parity_ratio for 'language' = 0.71 (lower CI bound)" in fairness
    assert "'region'" not in fairness and "'age_band'" not in fairness
    [membership] = [line for line in md.splitlines() if line.startswith("| Membership inference |")]
    assert "TPR 0.031 at FPR 0.01" in membership and "FPR 0.001" not in membership
