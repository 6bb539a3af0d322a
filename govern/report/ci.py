"""CI outputs: JUnit XML (one test case per policy rule), a Markdown job summary for
``$GITHUB_STEP_SUMMARY``, and SARIF 2.1.0 for PII findings (GitHub code scanning).

Pure functions over rule results — dicts with the policy engine's keys (``rule_id``, ``severity``,
``status``, ``message``, ``evidence_path``, ``observed``, ``threshold``, ``waiver_id``) or any object
with those attributes (the engine's ``RuleResult``, the store's ``FindingRecord``) — so ``govern
check`` calls them right after evaluating, without touching the DB.

How rule outcomes map to JUnit (CI dashboards know only passed / failed / errored / skipped):

=================================  ===========================================================
rule result                        JUnit test case
=================================  ===========================================================
pass                               passed
fail, severity ``block``           ``<failure type="block">`` (this is what blocks the merge)
fail, severity ``warn``/``info``   passed, with ``WARNING:``/``INFO:`` and the message in
                                   ``<system-out>``: a warning does not fail the gate (exit 0), so it
                                   must not turn the build red; the Markdown summary lists it
error                              ``<error>`` (the rule could not be evaluated)
waived                             ``<skipped message="waived by waiver #N ...">``: it did fail, a
                                   recorded waiver let it pass; dashboards count skips visibly
skipped                            ``<skipped>`` (its evidence does not exist yet, e.g. before training)
=================================  ===========================================================

A run that failed (or never finished), or a ``govern check`` that could not judge it at all, adds one
more case, ``govern.run`` / ``run``, with a ``<failure type="run-failed">`` (or ``check-error``) naming
the recorded error: otherwise a run that failed before any rule would give a file with zero tests
— green on most dashboards — and a summary with no reason.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_FIELDS = ("rule_id", "severity", "status", "message", "evidence_path", "observed", "threshold", "waiver_id")


def _as_dict(result: Any) -> dict[str, Any]:
    if isinstance(result, Mapping):
        return {k: result.get(k) for k in _FIELDS}
    return {k: getattr(result, k, None) for k in _FIELDS}


def _clean(text: Any) -> str:
    return _XML_INVALID.sub("\ufffd", text if isinstance(text, str) else json.dumps(text, default=str))


def _policy_fields(policy: Any) -> dict[str, str]:
    if policy is None:
        return {}
    if isinstance(policy, Mapping):
        return {k: str(policy.get(k, "")) for k in ("name", "version", "digest")}
    return {k: str(getattr(policy, k, "")) for k in ("name", "version", "digest")}


def outcome(result: Mapping[str, Any]) -> str:
    """blocking / warning / info / error / waived / passed / skipped."""
    status, severity = result.get("status"), result.get("severity")
    if status == "fail":
        return {"block": "blocking", "warn": "warning"}.get(str(severity), "info")
    return {"pass": "passed", "waived": "waived", "skipped": "skipped", "error": "error"}.get(str(status),
                                                                                           str(status))


def _meta(meta: str | Mapping[str, Any], run_id: str | None, policy: Any) -> tuple[str, str | None, Any]:
    """``meta`` is the decision itself or ``govern check``'s dict (decision, run_id, policy, run_status)."""
    if isinstance(meta, Mapping):
        return str(meta.get("decision", "")), run_id or meta.get("run_id"), policy or meta.get("policy")
    return meta, run_id, policy


def gate_failure(meta: str | Mapping[str, Any], rows: Sequence[Any] = ()) -> tuple[str, str] | None:
    """(type, message) of the reason the gate failed outside the rules, or None: ``govern check`` could
    not run (``check_error``), the run did not complete (``run_status`` failed/running, with its
    recorded ``run_error``), or no rule was evaluated at all (nothing judged is not a pass)."""
    if not isinstance(meta, Mapping):
        return None if rows else ("no-rules", "no policy rule was evaluated")
    if meta.get("check_error"):
        return "check-error", f"govern check could not judge the run: {meta['check_error']}"
    status = meta.get("run_status")
    if status in ("failed", "running"):
        what = "failed" if status == "failed" else "did not finish (still marked running)"
        reason = f": {meta['run_error']}" if meta.get("run_error") else " (no error was recorded)"
        return "run-failed", f"run {meta.get('run_id') or ''} {what}{reason}".replace("  ", " ")
    if not rows:
        return "no-rules", "no policy rule was evaluated"
    return None


def to_junit(results: Iterable[Any], meta: str | Mapping[str, Any], *, suite_name: str = "govern policy",
             run_id: str | None = None, policy: Any = None, timestamp: datetime | None = None,
             time_s: float = 0.0) -> str:
    """JUnit XML, one ``<testcase>`` per rule (see the module docstring for the outcome mapping).

    ``meta``: the decision (pass/warn/block) or a dict with ``decision``, ``run_id`` and ``policy``
    (name, version, digest) — what ``govern check`` has at hand.
    """
    decision, run_id, policy = _meta(meta, run_id, policy)
    rows = [_as_dict(r) for r in results]
    failed = gate_failure(meta, rows)
    timestamp = timestamp or datetime.now(UTC)
    failures = sum(1 for r in rows if outcome(r) == "blocking") + (failed is not None)
    errors = sum(1 for r in rows if outcome(r) == "error")
    skipped = sum(1 for r in rows if outcome(r) in ("waived", "skipped"))
    tests = len(rows) + (failed is not None)
    suites = ET.Element("testsuites", {"name": "govern", "tests": str(tests), "failures": str(failures),
                                       "errors": str(errors), "time": f"{time_s:.3f}"})
    suite = ET.SubElement(suites, "testsuite", {
        "name": _clean(suite_name), "tests": str(tests), "failures": str(failures), "errors": str(errors),
        "skipped": str(skipped), "time": f"{time_s:.3f}",
        "timestamp": timestamp.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
    })
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "decision", "value": decision})
    if run_id:
        ET.SubElement(props, "property", {"name": "run_id", "value": _clean(run_id)})
    for k, v in _policy_fields(policy).items():
        ET.SubElement(props, "property", {"name": f"policy.{k}", "value": _clean(v)})
    if failed is not None:
        case = ET.SubElement(suite, "testcase", {"classname": "govern.run", "name": "run", "time": "0"})
        el = ET.SubElement(case, "failure", {"type": failed[0], "message": _clean(failed[1])})
        el.text = _clean(failed[1])
    for r in rows:
        rule_id = str(r["rule_id"])
        section = rule_id.split(".", 1)[0] if "." in rule_id else "custom"
        case = ET.SubElement(suite, "testcase", {"classname": f"govern.policy.{_clean(section)}",
                                                 "name": _clean(rule_id), "time": "0"})
        detail = _detail(r)
        o = outcome(r)
        if o == "blocking":
            el = ET.SubElement(case, "failure", {"type": "block", "message": _clean(r["message"] or "")})
            el.text = detail
        elif o == "error":
            el = ET.SubElement(case, "error", {"type": "rule-error", "message": _clean(r["message"] or "")})
            el.text = detail
        elif o == "waived":
            ET.SubElement(case, "skipped", {"type": "waived", "message": _clean(
                f"waived by waiver #{r['waiver_id']}: {r['message'] or ''}")})
        elif o == "skipped":
            ET.SubElement(case, "skipped", {"type": "skipped", "message": _clean(r["message"] or "")})
        elif o in ("warning", "info"):
            out = ET.SubElement(case, "system-out")
            out.text = f"{'WARNING' if o == 'warning' else 'INFO'}: {_clean(r['message'] or '')}\n{detail}"
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _detail(r: Mapping[str, Any]) -> str:
    parts = [f"rule: {r['rule_id']}", f"severity: {r['severity']}", f"status: {r['status']}"]
    if r.get("evidence_path"):
        parts.append(f"evidence: {r['evidence_path']}")
    parts.append(f"observed: {json.dumps(r.get('observed'), default=str)}")
    parts.append(f"threshold: {json.dumps(r.get('threshold'), default=str)}")
    return _clean("\n".join(parts))


_ICON = {"pass": "✅", "warn": "⚠️", "block": "⛔"}
_OUTCOME_ICON = {"blocking": "⛔", "error": "❗", "warning": "⚠️", "waived": "🔕", "passed": "✅", "skipped": "⏭️",
                 "info": "ℹ️"}
_ORDER = {"blocking": 0, "error": 1, "warning": 2, "waived": 3, "info": 4, "passed": 5, "skipped": 6}


def _md(value: Any) -> str:
    """A Markdown table cell: pipes escaped, no newlines, no raw HTML (GitHub would render or hide it)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def to_markdown_summary(results: Iterable[Any], meta: str | Mapping[str, Any], *,
                        title: str = "govern policy check", run_id: str | None = None, policy: Any = None,
                        report_path: str | None = None, max_rows: int = 100) -> str:
    """A job summary: the decision, counts, then every non-passing rule (and the passing ones,
    folded), for ``$GITHUB_STEP_SUMMARY`` (GitHub renders Markdown and ``<details>``). ``meta`` as in
    :func:`to_junit`."""
    decision, run_id, policy = _meta(meta, run_id, policy)
    rows = sorted((_as_dict(r) for r in results), key=lambda r: (_ORDER.get(outcome(r), 9), str(r["rule_id"])))
    counts: dict[str, int] = {}
    for r in rows:
        counts[outcome(r)] = counts.get(outcome(r), 0) + 1
    lines = [f"### {_ICON.get(decision, '❔')} {title}: **{decision.upper()}**", ""]
    failed = gate_failure(meta, rows)
    if failed is not None:
        lines += [f"❗ **{_md(failed[1])}**", ""]
    header = []
    if run_id:
        header.append(f"run `{run_id}`")
    pol = _policy_fields(policy)
    if pol:
        header.append(f"policy **{_md(pol['name'])}** {_md(pol['version'])} (`{pol['digest'][:19]}…`)")
    if header:
        lines += [" · ".join(header), ""]
    lines += [" · ".join(f"{_OUTCOME_ICON[k]} {counts[k]} {k}" for k in _ORDER if counts.get(k)) or "no rules", ""]
    attention = [r for r in rows if outcome(r) not in ("passed", "skipped")]
    if attention:
        lines += ["| | Rule | Finding | Evidence | Observed | Threshold |", "|---|---|---|---|---|---|"]
        for r in attention[:max_rows]:
            o = outcome(r)
            waiver = f" (waiver #{r['waiver_id']})" if r.get("waiver_id") is not None else ""
            lines.append(f"| {_OUTCOME_ICON.get(o, '')} {o} | `{_md(r['rule_id'])}` | {_md(r['message'] or '')}{waiver} "
                         f"| `{_md(r['evidence_path'] or '—')}` | {_md(r['observed'])} | {_md(r['threshold'])} |")
        if len(attention) > max_rows:
            lines.append(f"\n_… {len(attention) - max_rows} more; see the JUnit file or report._")
        lines.append("")
    rest = [r for r in rows if outcome(r) in ("passed", "skipped")]
    if rest:
        lines += [f"<details><summary>{len(rest)} passed or skipped rules</summary>", ""]
        lines += [f"- {_OUTCOME_ICON[outcome(r)]} `{_md(r['rule_id'])}` — {_md(r['message'] or '')}"
                  for r in rest[:max_rows]]
        lines += ["", "</details>", ""]
    if report_path:
        lines += [f"Full audit report: `{report_path}`", ""]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- SARIF
SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"block": "error", "redact": "warning", "allow": "note"}


def to_sarif(findings: Sequence[Any], *, tool_version: str = "0", information_uri: str | None = None) -> dict[str, Any]:
    """SARIF 2.1.0 for PII findings: one result per finding with its file, line and field — never the
    matched text (the store has none). ``level``: block → error, redact → warning, allow → note.
    ``partialFingerprints`` hash the location with the keyed hash (never the keyed hash itself: it would
    let anyone who can read the alerts correlate values across repositories); see
    :func:`govern.pii.report.finding_fingerprint`."""
    from govern.pii.report import FINGERPRINT_NAME, finding_fingerprint, security_severity

    rules: dict[str, dict[str, Any]] = {}
    results = []
    for f in findings:
        def get(key: str, _f: Any = f) -> Any:  # a finding is a mapping (JSON) or a record object
            return _f.get(key) if isinstance(_f, Mapping) else getattr(_f, key, None)

        entity = str(get("entity_type"))
        rule_id = f"pii/{entity}"
        rules.setdefault(rule_id, {
            "id": rule_id, "name": entity.title().replace("_", ""),
            "shortDescription": {"text": f"Personal data of type {entity} in training data"},
            "help": {"text": "Remove or redact the value (govern redacts entities whose policy action is 'redact'); "
                             "the policy's pii.entities sets the action per type."},
            "properties": {"tags": ["privacy", "pii"], "security-severity": security_severity(entity)},
        })
        action = str(get("action"))
        where = f"field '{get('field')}'" + (f", record {get('record_id')}" if get("record_id") else "")
        region: dict[str, Any] = {}
        if get("line") is not None:
            region["startLine"] = int(get("line"))
        location: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": str(get("file"))}}}
        if region:
            location["physicalLocation"]["region"] = region
        location["logicalLocations"] = [{"name": str(get("field")), "kind": "member"}]
        results.append({
            "ruleId": rule_id,
            "level": _LEVEL.get(action, "warning"),
            "message": {"text": f"{entity} in {where} (score {float(get('score')):.2f}, policy action: {action})"},
            "locations": [location],
            "partialFingerprints": {FINGERPRINT_NAME: finding_fingerprint(str(get("file")), f)},
            "properties": {"dataset": get("dataset"), "field": get("field"), "recognizer": get("recognizer"),
                           "start": get("start"), "end": get("end"), "action": action},
        })
    driver: dict[str, Any] = {"name": "govern", "version": tool_version, "rules": list(rules.values())}
    if information_uri:
        driver["informationUri"] = information_uri
    return {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0",
            "runs": [{"tool": {"driver": driver}, "results": results}]}
