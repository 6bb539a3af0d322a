"""`govern users …`: console accounts with argon2id hashes; the password is never stored or printed."""

from __future__ import annotations

import io
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import skip_or_fail


def test_users_add_list_set_role_remove(govern_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import argon2  # noqa: F401
    except ImportError:
        skip_or_fail("needs the ui extra (argon2-cffi)")
    accounts = tmp_path / "accounts.json"
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-passphrase\n"))
    code, out, err = govern_cli("users", "add", "bob", "--role", "approver", "--password-stdin",
                                "--accounts", str(accounts))
    assert code == 0, err
    assert "s3cret-passphrase" not in out + err + accounts.read_text()
    assert "$argon2id$" in accounts.read_text()
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o600
    assert govern_cli("users", "set-role", "bob", "admin", "--accounts", str(accounts))[0] == 0
    code, out, _ = govern_cli("users", "list", "--accounts", str(accounts))
    assert out.split() == ["bob", "admin"]
    code, _, err = govern_cli("users", "set-role", "bob", "root", "--accounts", str(accounts))
    assert code == 2 and "--role must be one of viewer, approver, admin" in err
    assert govern_cli("users", "remove", "bob", "--accounts", str(accounts))[0] == 0
    code, _, err = govern_cli("ui", "--accounts", str(accounts), "--db", f"sqlite:///{tmp_path / 'l.db'}")
    assert code == 2 and "no console users yet" in err
