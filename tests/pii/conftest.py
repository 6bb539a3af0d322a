"""Shared PII test material: planted values (all synthetic), a fixed key, a default policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from govern.pii.keys import PIIKey
from govern.policy.schema import Policy

#: Values that must be found (all fake: test card numbers, an unassigned-but-valid-format SSN, ...).
PLANTED = {
    "CREDIT_CARD": "4111 1111 1111 1111",
    "US_SSN": "536-22-8726",
    "IBAN_CODE": "GB82 WEST 1234 5698 7654 32",
    "EMAIL_ADDRESS": "jane.roe@example.org",
    "PHONE_NUMBER": "(415) 555-2671",
    "IP_ADDRESS": "192.168.14.27",
}
#: Look-alikes that must *not* be reported as that entity.
DECOYS = {
    "CREDIT_CARD": "4111 1111 1111 1112",          # Luhn check fails
    "US_SSN": "078-05-1120",                        # the famous invalid (advertised) SSN
    "IBAN_CODE": "GB82 WEST 1234 5698 7654 33",     # mod-97 checksum fails
}


def make_policy(**pii: Any) -> Policy:
    return Policy.model_validate({"apiVersion": "govern.dev/v1", "kind": "Policy",
                                  "metadata": {"name": "test", "version": "1"}, "pii": pii})


@pytest.fixture
def key() -> PIIKey:
    return PIIKey(key=bytes(range(32)))


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def planted_records() -> list[dict[str, Any]]:
    """One record per planted value, in plain sentences without context words, plus clean records."""
    sentences = {
        "CREDIT_CARD": "I paid with {} yesterday.",
        "US_SSN": "Here it is: {}.",
        "IBAN_CODE": "Send it to {} please.",
        "EMAIL_ADDRESS": "Write to {} about the order.",
        "PHONE_NUMBER": "Jane's is {} if needed.",
        "IP_ADDRESS": "The server {} went down.",
    }
    records = [{"id": f"r{i}", "text": sentences[e].format(v), "label": "pos"} for i, (e, v) in enumerate(PLANTED.items())]
    records += [{"id": f"d{i}", "text": f"Not real: {v}.", "label": "neg"} for i, v in enumerate(DECOYS.values())]
    records += [{"id": f"c{i}", "text": "The delivery was late but the product is fine.", "label": "neg"} for i in range(3)]
    return records
