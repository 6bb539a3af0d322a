"""Renderings of a :class:`~govern.pii.scanner.ScanReport`: JSON, SARIF 2.1.0, and a rich table.

None of them contains a matched value: messages name the entity type, field, score and recognizer.
SARIF fingerprints are keyed hashes of the location and of a keyed hash of the value (see
:func:`finding_fingerprint`) — not even the per-value HMAC leaves the machine, so uploaded alerts
cannot be correlated across repositories, nor a value guessed from them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

    from govern.pii.scanner import ScanReport

SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/govern-dev/govern"
FINGERPRINT_NAME = "governPiiFinding/v2"
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

#: GitHub's ``security-severity`` (0-10; ≥9 critical, ≥7 high, ≥4 medium, else low) per entity type:
#: what a leak of one value costs the person. Identifiers that open accounts or prove identity are
#: critical/high; special-category data (GDPR art. 9: nationality, religion, politics) high; contact
#: details medium; quasi-identifiers low-to-medium. Unknown (custom) types default to medium.
SECURITY_SEVERITY: dict[str, float] = {
    "US_SSN": 9.5, "US_ITIN": 9.5, "CREDIT_CARD": 9.0, "US_PASSPORT": 8.5, "US_BANK_NUMBER": 8.5,
    "IBAN_CODE": 8.0, "US_DRIVER_LICENSE": 8.0, "MEDICAL_LICENSE": 7.0, "NRP": 7.0, "CRYPTO": 6.5,
    "EMAIL_ADDRESS": 5.5, "PHONE_NUMBER": 5.5, "PERSON": 5.0, "LOCATION": 4.0, "IP_ADDRESS": 4.0,
    "DATE_TIME": 2.0, "URL": 2.0,
}
DEFAULT_SECURITY_SEVERITY = 5.0


def _version() -> str:
    from govern.versions import package_version

    return package_version("govern") or "0.0.0"


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


def repository_root(path: Path) -> Path | None:
    """The root of the git work tree holding ``path`` (``$GITHUB_WORKSPACE`` when it holds it, else
    the nearest folder with a ``.git`` entry — a folder, or a file in a worktree or submodule)."""
    resolved = path.resolve()
    workspace = os.environ.get("GITHUB_WORKSPACE")
    if workspace and resolved.is_relative_to(Path(workspace).resolve()):
        return Path(workspace).resolve()
    for folder in resolved.parents:
        if (folder / ".git").exists():
            return folder
    return None


def repository_uri(path: Path, fallback: str) -> str:
    """``path`` relative to its repository root, as code scanning expects (an alert's file is looked
    up in the repository, whatever folder the scan ran in); ``fallback`` outside any repository."""
    root = repository_root(path)
    if root is None:
        return fallback
    return path.resolve().relative_to(root).as_posix()


def finding_fingerprint(uri: str, finding: Any, value_fingerprint: str | None = None) -> str:
    """The ``partialFingerprints`` value code scanning tracks an alert by.

    It covers where the finding is (repository path, line or record, field, entity type, span) and
    which value it is, so a *different* value at a dismissed location is a new alert. The value part:

    * with a fingerprint key (``--fingerprint-key-file`` / ``$GOVERN_SARIF_KEY``): the value's HMAC
      under that key (``value_fingerprint``, computed by the scanner, which alone sees the value) —
      stable across lineage DBs and CI runs as long as the key is, and without the key no way back
      to the value, even for a 9-digit SSN;
    * without one: the stored ``value_hmac`` (keyed by the lineage DB's PII key), hashed again — stable
      while the DB's key is (a local DB), but a fresh DB per CI run makes every alert new.
    """
    def get(key: str) -> Any:  # a finding is a mapping (JSON) or a record object
        return finding.get(key) if isinstance(finding, Mapping) else getattr(finding, key, None)

    where = get("line") if get("line") is not None else get("record_id") or ""
    value = f"fingerprint-key:{value_fingerprint}" if value_fingerprint else f"db-key:{get('value_hmac')}"
    parts = [uri, str(where), str(get("field")), str(get("entity_type")), str(get("start")), str(get("end")), value]
    # The value part is keyed already; hashing it with the location just makes one opaque token.
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def security_severity(entity_type: str) -> str:
    return f"{SECURITY_SEVERITY.get(entity_type, DEFAULT_SECURITY_SEVERITY):.1f}"


def to_sarif(report: ScanReport) -> dict[str, Any]:
    """SARIF 2.1.0 as GitHub code scanning accepts it: one rule per entity type (with its
    ``security-severity``), one result per finding, located by the file's path relative to its
    repository root, the JSONL/CSV line and, where it is exact, the column; fingerprints as in
    :func:`finding_fingerprint`."""
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
            "properties": {"tags": ["privacy", "pii"], "precision": "high",
                           "security-severity": security_severity(entity)},
        })
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    uris = {f.display_path: repository_uri(Path(f.path), f.display_path) for f in report.files}
    values = report.value_fingerprints
    results = []
    for i, finding in enumerate(report.findings):
        uri = uris.get(finding.file, finding.file)
        location: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": uri}}}
        if finding.line is not None:
            region: dict[str, Any] = {"startLine": finding.line}
            column = report.columns[i] if i < len(report.columns) else None
            if column is not None:
                region["startColumn"], region["endColumn"] = column
            location["physicalLocation"]["region"] = region
        else:
            location["logicalLocations"] = [{"name": finding.record_id or "record", "kind": "element"}]
        value = values[i] if i < len(values) else None
        results.append({
            "ruleId": rule_id(finding.entity_type),
            "ruleIndex": index[rule_id(finding.entity_type)],
            "level": _LEVELS[finding.action],
            "message": {"text": f"{finding.entity_type} in field '{finding.field}' (characters "
                                f"{finding.start}-{finding.end}, score {finding.score:.2f}, "
                                f"{finding.recognizer}); policy action: {finding.action}."},
            "locations": [location],
            "partialFingerprints": {FINGERPRINT_NAME: finding_fingerprint(uri, finding, value)},
        })
    properties: dict[str, Any] = {"engine": report.evidence.engine_version, "minScore": report.evidence.min_score,
                                  "recordsScanned": report.evidence.records_scanned, "hmacKeyId": report.key_id}
    if report.fingerprint_key_id is not None:
        properties["fingerprintKeyId"] = report.fingerprint_key_id
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "govern", "version": _version(), "informationUri": INFORMATION_URI,
                                "rules": rules}},
            "columnKind": "unicodeCodePoints",
            "results": results,
            "properties": properties,
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


def quality_table(report: ScanReport) -> Table | str:
    """Detection quality on the labeled sample (``govern scan --quality``), or the sentence saying it
    was not measured."""
    from rich.table import Table

    from govern.pii.quality import NOT_MEASURED, QUALITY_HEADER
    from govern.pii.quality import quality_table as rows

    quality = report.evidence.quality
    if quality is None or not quality.measured:
        return NOT_MEASURED
    table = Table(title=f"Detection quality on {quality.sample_file} ({quality.records} labeled records, "
                        f"{quality.ci_method} {quality.confidence:.0%} intervals)")
    for column in QUALITY_HEADER:
        table.add_column(column, justify="left" if column == "entity" else "right")
    for row in rows(quality):
        table.add_row(*row)
    return table
