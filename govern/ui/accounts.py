"""Local console accounts: name, role and an argon2id password hash, in a JSON file beside the lineage DB.

Why a file and not the lineage DB: accounts are access control for the console, not part of the record of
any run (the record keeps *who* acted, by name, on every audit event); a compliance export of the lineage DB
should not carry password hashes. The file is written 0600; passwords are never logged or echoed.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from govern.errors import GovernError

Role = Literal["viewer", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "approver", "admin")


class Account(BaseModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.@\-]+$")
    role: Role
    password_hash: str


class AccountFile(BaseModel):
    accounts: dict[str, Account] = Field(default_factory=dict)
    #: Signs session cookies; created with the file, so sessions survive a restart of ``govern ui``.
    session_secret: str = Field(default_factory=lambda: secrets.token_hex(32))


def default_accounts_path() -> Path:
    return Path(os.environ.get("GOVERN_UI_ACCOUNTS", str(Path.cwd() / ".govern" / "ui-accounts.json")))


def _hasher() -> Any:  # argon2-cffi is an optional extra (ui), imported where used
    try:
        from argon2 import PasswordHasher
    except ImportError:
        raise GovernError("the console needs the 'ui' extra: pip install 'govern[ui]'") from None
    return PasswordHasher()  # argon2id, the library's (RFC 9106) defaults


def load_accounts(path: Path) -> AccountFile:
    if not path.exists():
        return AccountFile()
    try:
        return AccountFile.model_validate_json(path.read_text())
    except ValueError as exc:
        raise GovernError(f"{path}: not a govern console accounts file ({str(exc).splitlines()[0]})") from None


def save_accounts(path: Path, accounts: AccountFile) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(accounts.model_dump_json(indent=2))
    os.replace(tmp, path)


def add_user(path: Path, name: str, role: Role, password: str) -> Account:
    if len(password) < 8:
        raise GovernError("a console password needs at least 8 characters")
    accounts = load_accounts(path)
    if name in accounts.accounts:
        raise GovernError(f"console user '{name}' already exists (use set-role, or remove it first)")
    account = Account(name=name, role=role, password_hash=_hasher().hash(password))
    accounts.accounts[name] = account
    save_accounts(path, accounts)
    return account


def remove_user(path: Path, name: str) -> None:
    accounts = load_accounts(path)
    if accounts.accounts.pop(name, None) is None:
        raise GovernError(f"no console user '{name}'")
    save_accounts(path, accounts)


def set_role(path: Path, name: str, role: Role) -> Account:
    accounts = load_accounts(path)
    if name not in accounts.accounts:
        raise GovernError(f"no console user '{name}'")
    accounts.accounts[name] = accounts.accounts[name].model_copy(update={"role": role})
    save_accounts(path, accounts)
    return accounts.accounts[name]


def check_password(accounts: AccountFile, name: str, password: str) -> Account | None:
    """The account when the password matches; ``None`` otherwise (same work for unknown names)."""
    hasher = _hasher()
    account = accounts.accounts.get(name)
    digest = account.password_hash if account else hasher.hash("not-a-user-" + secrets.token_hex(4))
    try:
        hasher.verify(digest, password)
    except Exception:  # argon2's VerifyMismatchError / InvalidHashError: a failed login either way
        return None
    return account
