"""PII scanning for training data: Presidio set up offline, batched over processes, with redaction.

Public API (stable): :func:`scan_paths` (the engine behind ``govern scan``), :class:`ScanReport`,
:func:`to_sarif`, :func:`report_json`, :func:`load_or_create_key`, :class:`PIIKey`, and the pipeline
stage :class:`govern.pii.stage.PIIStage`.

Nothing here downloads anything: the e-mail recognizer's public-suffix list comes from tldextract's
bundled snapshot (``TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS`` is set empty *before* Presidio is imported),
and spaCy models are loaded only when installed.
"""

from __future__ import annotations

import os

# Must happen before anything imports tldextract (Presidio's e-mail recognizer does at import time).
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from govern.pii.keys import PIIKey, key_path_for, load_or_create_key  # noqa: E402
from govern.pii.report import report_json, to_sarif  # noqa: E402
from govern.pii.scanner import FileScan, ScanReport, scan_paths  # noqa: E402

__all__ = [
    "FileScan",
    "PIIKey",
    "ScanReport",
    "key_path_for",
    "load_or_create_key",
    "report_json",
    "scan_paths",
    "to_sarif",
]
