"""JUnit XML and the job summary: one test case per rule, outcomes CI dashboards understand."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from govern.policy.engine import RuleResult
from govern.report import to_junit, to_markdown_summary

XSD = xmlschema.XMLSchema(Path(__file__).parent / "junit.xsd")

RESULTS = [
    {"rule_id": "privacy.max_epsilon", "severity": "block", "status": "fail", "message": "ε = 9.1; maximum 8",
     "evidence_path": "training.epsilon.rdp", "observed": 9.1, "threshold": 8.0, "waiver_id": None},
    {"rule_id": "fairness.insufficient_data", "severity": "warn", "status": "fail",
     "message": "1 group(s) below min_group_size 30", "evidence_path": "fairness.insufficient_groups",
     "observed": ["age_band=45+"], "threshold": 30, "waiver_id": None},
    {"rule_id": "fairness.max_difference.equalized_odds_difference", "severity": "block", "status": "waived",
     "message": "0.14; maximum 0.1 <WAIVED> & reviewed", "evidence_path": "fairness.disparities", "observed": 0.14,
     "threshold": 0.1, "waiver_id": 3},
    {"rule_id": "signing.required", "severity": "block", "status": "skipped", "message": "not signed yet",
     "evidence_path": None, "observed": None, "threshold": True, "waiver_id": None},
    {"rule_id": "no-gpl-base", "severity": "block", "status": "error", "message": "CEL: no such key 'license'\x00",
     "evidence_path": None, "observed": None, "threshold": None, "waiver_id": None},
    {"rule_id": "data.min_train_rows", "severity": "block", "status": "pass", "message": "train rows 240 (minimum 100)",
     "evidence_path": "data.train_rows", "observed": 240, "threshold": 100, "waiver_id": None},
]
META = {"run_id": "run-20261125T101500-3f9a2c", "run_status": "completed", "decision": "block",
        "policy": {"name": "default", "version": "1.0.0", "digest": "sha256:" + "ab" * 32}}


def test_junit_has_one_case_per_rule_and_validates_against_the_xsd() -> None:
    xml = to_junit(RESULTS, META)  # the call `govern check --junit` makes
    XSD.validate(xml)
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases) == [r["rule_id"] for r in RESULTS]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("6", "1", "1", "2")
    assert cases["privacy.max_epsilon"].find("failure").get("type") == "block"  # type: ignore[union-attr]
    assert "observed: 9.1" in (cases["privacy.max_epsilon"].find("failure").text or "")  # type: ignore[union-attr]
    warn = cases["fairness.insufficient_data"]
    assert warn.find("failure") is None and (warn.findtext("system-out") or "").startswith("WARNING:")
    waived = cases["fairness.max_difference.equalized_odds_difference"].find("skipped")
    assert waived is not None and waived.get("type") == "waived" and "waiver #3" in waived.get("message", "")
    assert cases["signing.required"].find("skipped") is not None
    assert cases["no-gpl-base"].find("error") is not None
    assert len(cases["data.min_train_rows"]) == 0
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["decision"] == "block" and props["policy.digest"] == META["policy"]["digest"]  # type: ignore[index]


def test_junit_accepts_engine_results_and_the_xsd_rejects_a_broken_document() -> None:
    engine_results = [RuleResult.model_validate(r) for r in RESULTS]
    XSD.validate(to_junit(engine_results, "block", run_id="run-x"))
    broken = to_junit(RESULTS, META).replace('tests="6"', 'tests="six"', 1)
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        XSD.validate(broken)


def test_markdown_summary_puts_blocking_findings_first_and_folds_the_passes() -> None:
    md = to_markdown_summary(RESULTS, META)
    assert md.startswith("### ⛔ govern policy check: **BLOCK**")
    assert md.index("privacy.max_epsilon") < md.index("no-gpl-base") < md.index("fairness.insufficient_data")
    assert "waiver #3" in md and "<details>" in md and "data.min_train_rows" in md.split("<details>")[1]
    assert "&lt;WAIVED&gt; & reviewed" in md and "<WAIVED>" not in md  # raw HTML would vanish on GitHub
    assert to_markdown_summary([r for r in RESULTS if r["status"] == "pass"], "pass").startswith("### ✅")


def test_a_run_that_failed_before_any_rule_gives_one_failing_case_naming_the_failure(
        workdir: Path, tmp_path: Path) -> None:
    import os

    from typer.testing import CliRunner

    from govern.cli import app
    from govern.errors import GovernError
    from govern.lineage import LineageStore, PolicyRef

    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        run_id = store.create_run(name="stopped-early", policy=PolicyRef(name="default", version="1",
                                                                         digest="sha256:00"))
        store.set_run_status(run_id, "failed", error="stage 'data': train.jsonl, line 3: not JSON")
    junit, summary = tmp_path / "junit.xml", tmp_path / "summary.md"
    result = CliRunner().invoke(app, ["check", run_id, "--policy", "default", "--junit", str(junit),
                                      "--summary", str(summary)])
    assert result.exit_code == 1, result.output
    XSD.validate(junit.read_text())
    suite = ET.fromstring(junit.read_text()).find("testsuite")
    assert suite is not None and int(suite.get("failures", "0")) >= 1
    failure = suite.find("testcase[@name='run']/failure")
    assert failure is not None and failure.get("type") == "run-failed"
    assert "line 3: not JSON" in failure.get("message", "") and run_id in failure.get("message", "")
    assert "line 3: not JSON" in summary.read_text()

    # With no rule results at all, the file still holds one failing test, not zero tests.
    xml = to_junit([], {"run_id": run_id, "run_status": "failed", "decision": "block",
                        "run_error": "stage 'config': govern.yaml: no such file"})
    XSD.validate(xml)
    suite = ET.fromstring(xml).find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures")) == ("1", "1")
    assert "govern.yaml: no such file" in to_markdown_summary([], {"run_id": run_id, "run_status": "failed",
                                                                   "decision": "block",
                                                                   "run_error": "govern.yaml: no such file"})

    # `govern check` that cannot judge at all (no such run) still says why, in both files.
    junit.unlink()
    missing = CliRunner().invoke(app, ["check", "run-missing", "--junit", str(junit), "--summary", str(summary)])
    assert isinstance(missing.exception, GovernError)  # exit 2 through the console script
    failure = ET.fromstring(junit.read_text()).find("testsuite/testcase[@name='run']/failure")
    assert failure is not None and failure.get("type") == "check-error" and "run-missing" in failure.get("message", "")
    assert "run-missing" in summary.read_text().split("###")[-1]
