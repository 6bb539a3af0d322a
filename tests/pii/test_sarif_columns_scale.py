"""SARIF columns of a large scan: ``locate_columns`` reads the file once, in time linear in its lines.

It once recomputed the last finding line for every line read, so 1M lines with 100k finding lines never
finished (``govern scan --format sarif`` hung after the scan itself was done). Here 300k lines with 30k
finding lines: linear takes about a second, the quadratic version took 106 s on the development machine."""

from __future__ import annotations

import json
import time
from pathlib import Path

from govern.evidence import PIIEvidence
from govern.pii.keys import PIIKey
from govern.pii.scanner import FileScan, ScanReport, display_path, locate_columns
from govern.stage import PIIFindingRow

LINES, EVERY = 300_000, 10


def test_columns_of_a_large_scan_are_exact_and_found_in_linear_time(tmp_path: Path) -> None:
    key = PIIKey(b"k" * 32)
    path = tmp_path / "big.jsonl"
    findings: list[PIIFindingRow] = []
    with path.open("w", encoding="utf-8") as fh:
        for n in range(1, LINES + 1):
            email = f"user{n}@example.org" if n % EVERY == 0 else None
            text = f"record {n}" + (f" mail {email} now" if email else "")
            fh.write(json.dumps({"id": str(n), "text": text}) + "\n")
            if email:
                start = text.index(email)
                findings.append(PIIFindingRow(
                    dataset="train", file=display_path(path), record_id=str(n), line=n, field="text",
                    entity_type="EMAIL_ADDRESS", start=start, end=start + len(email), score=1.0,
                    recognizer="EmailRecognizer", value_hmac=key.hmac("EMAIL_ADDRESS", email), action="redact"))
    evidence = PIIEvidence(engine="patterns", engine_version="test", entities=["EMAIL_ADDRESS"], min_score=0.5,
                           records_total=LINES, records_scanned=LINES)
    report = ScanReport(evidence=evidence, findings=findings, key_id=key.key_id,
                        files=[FileScan(dataset="train", path=str(path), display_path=display_path(path),
                                        format="jsonl", sha256="0" * 64, records_total=LINES,
                                        records_scanned=LINES)])
    began = time.perf_counter()
    columns = locate_columns(report, key)
    elapsed = time.perf_counter() - began
    assert elapsed < 20, f"{elapsed:.1f}s for {LINES} lines: no longer linear"
    assert len(columns) == len(findings) == LINES // EVERY
    lines = path.read_text(encoding="utf-8").splitlines()
    for finding, column in zip(findings, columns, strict=True):
        assert column is not None
        email = f"user{finding.line}@example.org"
        # 1-based, end exclusive: exactly the address in its JSON line
        assert lines[finding.line - 1][column[0] - 1:column[1] - 1] == email
