"""Signing keys: generate an ECDSA P-256 key pair and name a public key by its fingerprint.

The private key is written with mode 0600 before any byte of it reaches the disk (the file is created
with that mode), and it is never printed, logged or returned as text: callers get paths and the public
key's fingerprint only. P-256 is what ``model_signing`` and sigstore bundles expect for key signing.

The API here is stable.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel

from govern.errors import GovernError


class KeyPair(BaseModel):
    """Where a generated key pair was written, and how verifiers will recognise it."""

    private_key: Path
    public_key: Path
    fingerprint: str


def public_key_fingerprint(public_key_pem: bytes) -> str:
    """``sha256:<hex>`` over the SubjectPublicKeyInfo PEM.

    The hex part is exactly the key hint ``model_signing`` writes into a bundle's verification
    material, so a fingerprint shown by ``govern keys generate`` can be compared with a bundle by eye.
    """
    key = serialization.load_pem_public_key(public_key_pem)
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(pem).hexdigest()


def generate_key_pair(directory: str | Path, *, name: str = "signing-key", overwrite: bool = False) -> KeyPair:
    """Write ``<name>.pem`` (private, 0600) and ``<name>.pub.pem`` (public, 0644) into ``directory``.

    Refuses to overwrite an existing key unless ``overwrite`` is true: replacing a signing key silently
    would orphan every signature made with it.
    """
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GovernError(f"{out}: cannot create the key directory ({exc.strerror})") from None
    private_path = out / f"{name}.pem"
    public_path = out / f"{name}.pub.pem"
    for p in (private_path, public_path):
        if p.exists() and not overwrite:
            raise GovernError(f"{p}: already exists; refusing to overwrite a signing key (pass --force to replace)")

    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if private_path.exists():
        private_path.unlink()
    # O_EXCL + mode: the file never exists with wider permissions, whatever the umask.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    os.chmod(private_path, 0o600)
    public_path.write_bytes(public_pem)
    os.chmod(public_path, 0o644)
    return KeyPair(private_key=private_path, public_key=public_path, fingerprint=public_key_fingerprint(public_pem))


def private_key_permission_problem(path: str | Path) -> str | None:
    """Why ``path``'s permissions are unsafe for a private key, or None when they are safe.

    Unsafe: any permission for group or others (the rule OpenSSH applies to ``~/.ssh/id_*``): a key
    that other users can read is a key other users can sign with. The message names the path and the
    mode, never the key. Not checked on Windows, whose ACLs mode bits do not describe.
    """
    if sys.platform.startswith("win"):  # pragma: no cover
        return None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None  # a missing or unreadable key is reported where it is loaded
    if mode & 0o077 == 0:
        return None
    who = " and ".join(w for w, bits in (("group", 0o070), ("others", 0o007)) if mode & bits)
    return (f"{path}: the private key is accessible to {who} (mode {mode:04o}); anyone who can read it can "
            f"sign as you. Restrict it: chmod 600 {path}")
