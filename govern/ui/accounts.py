"""Local console accounts: name, role and an argon2id password hash, in a JSON file beside the lineage DB;
and API tokens for CI, each bound to a role, stored as the SHA-256 of the token.

Why a file and not the lineage DB: accounts are access control for the console, not part of the record of
any run (the record keeps *who* acted, by name, on every audit event); a compliance export of the lineage DB
should not carry password hashes. The file is written 0600; passwords and tokens are never logged or echoed
(a token is printed once, when it is created).

Why SHA-256 for tokens and argon2id for passwords: a password is chosen by a person, so an attacker holding
the file can guess it; argon2id makes each guess expensive. A token is 256 random bits drawn by
``secrets``: no guessing strategy beats 2^255 tries, so a slow hash adds nothing, while verifying every CI
API call with argon2id (tens of milliseconds of CPU and memory each) would make the API easy to overload.
The token's id is in the clear (``gvt_<id>_<secret>``) so a request costs one lookup and one constant-time
compare.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from datetime import UTC, datetime, timedelta
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


class ApiToken(BaseModel):
    """A CI credential for ``/api/v1``: acts as ``name`` with ``role``; only its SHA-256 is kept."""

    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.@\-]+$")
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: datetime
    expires_at: datetime | None = None

    def live(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


class AccountFile(BaseModel):
    accounts: dict[str, Account] = Field(default_factory=dict)
    tokens: dict[str, ApiToken] = Field(default_factory=dict)
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


TOKEN_PREFIX = "gvt_"


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(path: Path, name: str, role: Role, *, expires_days: int | None = None) -> tuple[ApiToken, str]:
    """A new API token for ``name`` with ``role``: (its record, the token itself — shown to the user once)."""
    if expires_days is not None and expires_days < 1:
        raise GovernError("--expires-days must be at least 1")
    if not re.fullmatch(r"[A-Za-z0-9_.@\-]+", name):
        raise GovernError(f"token name '{name}': use letters, digits and _ . @ - only")
    accounts = load_accounts(path)
    if any(t.name == name for t in accounts.tokens.values()):
        raise GovernError(f"an API token named '{name}' already exists (revoke it first, or choose another name)")
    token_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    now = datetime.now(UTC)
    record = ApiToken(id=token_id, name=name, role=role, sha256=_token_digest(token), created_at=now,
                      expires_at=now + timedelta(days=expires_days) if expires_days else None)
    accounts.tokens[token_id] = record
    save_accounts(path, accounts)
    return record, token


def revoke_token(path: Path, id_or_name: str) -> ApiToken:
    """Remove a token (by id or name): the next request that presents it is refused."""
    accounts = load_accounts(path)
    found = accounts.tokens.get(id_or_name) or next(
        (t for t in accounts.tokens.values() if t.name == id_or_name), None)
    if found is None:
        raise GovernError(f"no API token '{id_or_name}' (see `govern users token list`)")
    del accounts.tokens[found.id]
    save_accounts(path, accounts)
    return found


def check_token(accounts: AccountFile, token: str, *, now: datetime | None = None) -> ApiToken | None:
    """The token's record when ``token`` is one of ours and not expired; ``None`` otherwise."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, _, secret = token.removeprefix(TOKEN_PREFIX).partition("_")
    record = accounts.tokens.get(token_id)
    if record is None or not secret or not hmac.compare_digest(record.sha256, _token_digest(token)):
        return None
    return record if record.live(now or datetime.now(UTC)) else None
