"""value_hmac correlates values across files without revealing them, and the key never sits in the DB."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from govern.errors import GovernError
from govern.pii import PIIKey, key_path_for, load_or_create_key, scan_paths
from tests.pii.conftest import PLANTED, make_policy, write_jsonl


def _hashes(report) -> dict[str, str]:
    return {f.entity_type: f.value_hmac for f in report.findings}


def test_same_value_same_hash_across_files_and_formatting(tmp_path: Path, key: PIIKey) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [{"text": f"card {PLANTED['CREDIT_CARD']} and mail Jane.Roe@Example.org"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"note": "x", "body": "card 4111-1111-1111-1111, mail jane.roe@example.org"}])
    report = scan_paths([a, b], make_policy(), key=key)
    by_file: dict[str, dict[str, str]] = {}
    for f in report.findings:
        by_file.setdefault(f.file, {})[f.entity_type] = f.value_hmac
    values = list(by_file.values())
    assert len(values) == 2 and values[0] == values[1]


def test_different_key_different_hash_and_not_a_plain_hash(tmp_path: Path, key: PIIKey) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"text": f"ssn {PLANTED['US_SSN']}"}])
    h1 = _hashes(scan_paths([path], make_policy(), key=key))["US_SSN"]
    h2 = _hashes(scan_paths([path], make_policy(), key=PIIKey(key=b"\x01" * 32)))["US_SSN"]
    assert h1 != h2
    value = PLANTED["US_SSN"]
    plain = {hashlib.sha256(v.encode()).hexdigest() for v in (value, value.replace("-", ""))}
    assert h1 not in plain and h2 not in plain


def test_key_file_beside_sqlite_db_is_private_and_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVERN_PII_KEY_FILE", raising=False)
    url = f"sqlite:///{tmp_path / 'db' / 'lineage.db'}"
    assert key_path_for(url) == tmp_path / "db" / "pii-hmac.key"
    first = load_or_create_key(url)
    again = load_or_create_key(url)
    assert first.key == again.key and len(first.key) == 32
    mode = stat.S_IMODE((tmp_path / "db" / "pii-hmac.key").stat().st_mode)
    assert mode == 0o600
    assert first.key.hex() not in repr(first)
    assert first.key_id == hashlib.sha256(first.key).hexdigest()[:16]


def test_postgres_needs_an_explicit_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVERN_PII_KEY_FILE", raising=False)
    with pytest.raises(GovernError, match="GOVERN_PII_KEY_FILE"):
        key_path_for("postgresql+psycopg://u:p@db/govern")
    monkeypatch.setenv("GOVERN_PII_KEY_FILE", str(tmp_path / "shared.key"))
    assert load_or_create_key("postgresql+psycopg://u:p@db/govern").path == tmp_path / "shared.key"


def test_world_readable_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    load_or_create_key(path=path)
    path.chmod(0o644)
    with pytest.raises(GovernError, match="chmod 600"):
        load_or_create_key(path=path)
