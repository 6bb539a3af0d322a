"""The per-database secret key behind ``value_hmac``.

Findings carry ``HMAC-SHA256(key, normalised value)`` so the same e-mail or card number can be
correlated across data sets without being stored. A *plain* hash would not protect low-entropy values:
there are only 10⁹ SSNs, so anyone holding the DB could hash them all in minutes and read the values
back. The key therefore never goes into the DB. It lives in its own file (mode 0600):

* ``GOVERN_PII_KEY_FILE`` when set (required for PostgreSQL and other server URLs — the DB is shared,
  the key must be distributed to the machines that scan, like any other secret);
* else ``<folder of the SQLite DB>/pii-hmac.key`` — a copy or dump of the ``.db`` file alone does not
  carry it;
* else (no DB URL at all) ``.govern/pii-hmac.key`` under the working directory.

It is created on first use from ``secrets.token_bytes(32)``. Evidence records only its id (first 16
hex digits of sha256(key)), so a report shows which key produced the hashes without revealing it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import stat
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from govern.errors import GovernError

KEY_FILE_ENV = "GOVERN_PII_KEY_FILE"
KEY_FILE_NAME = "pii-hmac.key"
_KEY_BYTES = 32


@dataclass(frozen=True)
class PIIKey:
    """An HMAC key and where it came from. ``repr`` never shows the key bytes."""

    key: bytes = field(repr=False)
    path: Path | None = None

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.key).hexdigest()[:16]

    def hmac(self, entity_type: str, value: str) -> str:
        return value_hmac(self.key, entity_type, value)


_SEPARATORS = re.compile(r"[\s\-.()/]")
_COMPACT_ENTITIES = frozenset({"CREDIT_CARD", "US_SSN", "IBAN_CODE", "PHONE_NUMBER", "US_ITIN", "US_BANK_NUMBER"})


def normalise_value(entity_type: str, value: str) -> str:
    """The form that is hashed, so formatting differences do not split one value into many hashes:
    NFKC, trimmed; separators removed and upper-cased for number-like entities; e-mails lower-cased."""
    text = unicodedata.normalize("NFKC", value).strip()
    if entity_type in _COMPACT_ENTITIES:
        return _SEPARATORS.sub("", text).upper()
    if entity_type == "EMAIL_ADDRESS":
        return text.lower()
    return text


def value_hmac(key: bytes, entity_type: str, value: str) -> str:
    """Hex HMAC-SHA256 of the normalised value (surrogates kept, so no text can make it fail)."""
    data = normalise_value(entity_type, value).encode("utf-8", "surrogatepass")
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def key_path_for(db_url: str | None) -> Path:
    """Where the key for the lineage DB at ``db_url`` lives (see the module docstring)."""
    env = os.environ.get(KEY_FILE_ENV)
    if env:
        return Path(env).expanduser()
    if db_url and db_url.startswith("sqlite"):
        db_path = db_url.split("///", 1)[1] if "///" in db_url else ""
        if db_path and db_path != ":memory:":
            return Path(db_path).expanduser().resolve().parent / KEY_FILE_NAME
        return Path.cwd() / ".govern" / KEY_FILE_NAME
    if db_url:
        scheme = db_url.split(":", 1)[0]
        raise GovernError(
            f"a '{scheme}' lineage DB is shared, so its PII hashing key cannot live beside it: set "
            f"{KEY_FILE_ENV} to a key file (mode 0600) that every scanning machine shares"
        )
    return Path.cwd() / ".govern" / KEY_FILE_NAME


def load_or_create_key(db_url: str | None = None, path: Path | None = None) -> PIIKey:
    """Read the key for ``db_url`` (or at ``path``), creating it atomically on first use."""
    key_path = path if path is not None else key_path_for(db_url)
    if not key_path.exists():
        _create_key_file(key_path)
    return PIIKey(key=_read_key_file(key_path, "PII hashing key"), path=key_path)


def _read_key_file(key_path: Path, what: str) -> bytes:
    """The key bytes in ``key_path`` (hex, mode 0600, at least 32 bytes), or a :class:`GovernError`."""
    try:
        mode = key_path.stat().st_mode
        raw = key_path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise GovernError(f"{key_path}: cannot read the {what} ({type(exc).__name__})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise GovernError(f"{key_path}: the {what} is readable by other users; run `chmod 600 {key_path}`")
    return _key_bytes(raw, str(key_path), what)


def _key_bytes(raw: str, source: str, what: str) -> bytes:
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise GovernError(f"{source}: not a {what} (expected {_KEY_BYTES * 2} hex digits)") from None
    if len(key) < _KEY_BYTES:
        raise GovernError(f"{source}: the {what} is too short (need {_KEY_BYTES} bytes)")
    return key


def ephemeral_key() -> PIIKey:
    """A random key that lives only in memory: for a scan that records nothing (``govern scan
    --no-record``, the pre-commit hook), so no key file is written into the user's repository. Its
    hashes correlate nothing beyond the one scan — there is no DB to correlate with."""
    return PIIKey(key=secrets.token_bytes(_KEY_BYTES))


# ------------------------------------------------------------------------------ SARIF fingerprint key
#: The key behind SARIF ``partialFingerprints`` (hex, like the key files): a CI secret, e.g.
#: ``GOVERN_SARIF_KEY: ${{ secrets.GOVERN_SARIF_KEY }}`` (create one with ``openssl rand -hex 32``).
FINGERPRINT_KEY_ENV = "GOVERN_SARIF_KEY"


def load_fingerprint_key(path: Path | None = None) -> PIIKey | None:
    """The key for SARIF fingerprints: the file ``path`` (``--fingerprint-key-file``, mode 0600), else
    ``$GOVERN_SARIF_KEY``, else None (fingerprints then hash the per-DB ``value_hmac``, stable only as
    long as the lineage DB's key is).

    Why a key of its own: code scanning tracks an alert by its fingerprint across runs, and a CI job
    often starts from a fresh lineage DB — whose new PII key changes every ``value_hmac``, so every
    alert would look new and every dismissal would be lost. The fingerprint must still depend on the
    value (a different card number at a dismissed location is a new alert), and must not be a plain
    hash of it (10⁹ SSNs are hashed in minutes): an HMAC under a stable secret is both. The key never
    leaves the machine, and the value cannot be recovered from a fingerprint without it.
    """
    if path is not None:
        if not path.is_file():
            raise GovernError(f"{path}: fingerprint key file not found (create one with "
                              f"`umask 077; openssl rand -hex 32 > {path}`)")
        return PIIKey(key=_read_key_file(path, "SARIF fingerprint key"), path=path)
    raw = os.environ.get(FINGERPRINT_KEY_ENV, "").strip()
    if not raw:
        return None
    return PIIKey(key=_key_bytes(raw, f"${FINGERPRINT_KEY_ENV}", "SARIF fingerprint key"))


def _create_key_file(key_path: Path) -> None:
    """Write a new key to a private temp file and hard-link it into place: concurrent first uses
    all end up reading the same key (the loser of the race simply reads the winner's file)."""
    key_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = key_path.with_name(f".{key_path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_bytes(_KEY_BYTES).hex() + "\n")
        with contextlib.suppress(FileExistsError):  # another process won the race: use its key
            os.link(tmp, key_path)
    finally:
        tmp.unlink(missing_ok=True)
