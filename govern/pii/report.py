"""Renderings of a :class:`~govern.pii.scanner.ScanReport`: JSON, SARIF 2.1.0, and a rich table.

None of them contains a matched value: messages name the entity type, field, score and recognizer,
and SARIF fingerprints are a hash of the (file, field, entity, keyed hash) — not even the per-value
HMAC leaves the machine, so uploaded alerts cannot be correlated across repositories.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

    from govern.pii.scanner import ScanReport

SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/govern-dev/govern"
_LEVELS = {"block": "error", "redact": "warning", "allow": "note"}

_DESCRIPTIONS = {
    "CREDIT_CARD": "Payment card number (Luhn-valid)",
    "US_SSN": "US Social Security number",
    "IBAN_CODE": "International bank account number (checksum-valid)",
    "EMAIL_ADDRESS": "E-mail address",
    "PHONE_NUMBER": "Phone number",
    "IP_ADDRESS": "IP address",
    "PERSON": "Person name (NER)",
    "LOCATION": "Location (NER)",
    "NRP": "Nationality, religious or political group (NER)",
}


def _version() -> str:
    try:
        return metadata.version("govern")
    except metadata.PackageNotFoundError:  # pragma: no cover (running from a source tree)
        return "0.0.0"


def report_json(report: ScanReport) -> dict[str, Any]:
    """The machine-readable report (``govern scan --format json``)."""
    return {
        "blocked": report.blocked,
        "evidence": report.evidence.model_dump(mode="json"),
        "files": [f.model_dump(mode="json") for f in report.files],
        "findings": [f.model_dump(mode="json") for f in report.findings],
    }


def rule_id(entity_type: str) -> str:
    return f"pii/{entity_type}"


def to_sarif(report: ScanReport) -> dict[str, Any]:
    """SARIF 2.1.0 as GitHub code scanning accepts it: one rule per entity type, one result per finding,
    located by the file's path relative to the working directory and the JSONL/CSV line."""
    entities = sorted(set(report.evidence.entities) | {f.entity_type for f in report.findings})
    actions = report.evidence.actions
    rules = []
    for entity in entities:
        action = actions.get(entity, "allow")
        description = _DESCRIPTIONS.get(entity, f"{entity} (custom or Presidio recognizer)")
        rules.append({
            "id": rule_id(entity),
            "name": "".join(part.capitalize() for part in entity.split("_")),
            "shortDescription": {"text": f"Personal data: {description}"},
            "fullDescription": {"text": f"{description} found in a data file. The policy's action for "
                                        f"{entity} is '{action}'."},
            "help": {"text": "Remove or redact the value before the data is used for training, or change the "
                             "policy's pii.entities action (block, redact, allow)."},
            "defaultConfiguration": {"level": _LEVELS.get(action, "warning")},
            "properties": {"tags": ["privacy", "pii"], "precision": "high"},
        })
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    results = []
    for finding in report.findings:
        location: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": finding.file}}}
        if finding.line is not None:
            location["physicalLocation"]["region"] = {"startLine": finding.line}
        else:
            location["logicalLocations"] = [{"name": finding.record_id or "record", "kind": "element"}]
        fingerprint = hashlib.sha256(
            f"{finding.file}\0{finding.field}\0{finding.entity_type}\0{finding.value_hmac}".encode()
        ).hexdigest()[:32]
        results.append({
            "ruleId": rule_id(finding.entity_type),
            "ruleIndex": index[rule_id(finding.entity_type)],
            "level": _LEVELS[finding.action],
            "message": {"text": f"{finding.entity_type} in field '{finding.field}' (characters "
                                f"{finding.start}-{finding.end}, score {finding.score:.2f}, "
                                f"{finding.recognizer}); policy action: {finding.action}."},
            "locations": [location],
            "partialFingerprints": {"governPiiFinding/v1": fingerprint},
        })
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "govern", "version": _version(), "informationUri": INFORMATION_URI,
                                "rules": rules}},
            "results": results,
            "properties": {"engine": report.evidence.engine_version, "minScore": report.evidence.min_score,
                           "recordsScanned": report.evidence.records_scanned,
                           "hmacKeyId": report.key_id},
        }],
    }


def summary_table(report: ScanReport, max_rows: int = 200) -> Table:
    """Counts per file, field and entity, then the first findings by location (``--format table``)."""
    from rich.table import Table

    table = Table(title=f"PII findings ({report.evidence.engine}, min score {report.evidence.min_score})")
    for column in ("file", "field", "entity", "findings", "records", "action"):
        table.add_column(column, justify="right" if column in ("findings", "records") else "left")
    for count in report.evidence.counts:
        style = {"block": "bold red", "redact": "yellow", "allow": "dim"}[count.action]
        table.add_row(count.dataset, count.field, count.entity_type, str(count.count), str(count.records),
                      f"[{style}]{count.action}[/]")
    return table


def locations_table(report: ScanReport, max_rows: int = 50) -> Table:
    from rich.table import Table

    table = Table(title=f"First {min(max_rows, len(report.findings))} of {len(report.findings)} findings")
    for column in ("file", "line/record", "field", "span", "entity", "score", "recognizer"):
        table.add_column(column)
    for f in report.findings[:max_rows]:
        where = str(f.line) if f.line is not None else (f.record_id or "")
        table.add_row(f.file, where, f.field, f"{f.start}-{f.end}", f.entity_type, f"{f.score:.2f}", f.recognizer)
    return table
