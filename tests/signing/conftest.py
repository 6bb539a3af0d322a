"""Fixtures for the signing tests: a small model folder, a key pair, a throwaway PKI, and a way to run the
real ``govern`` entry point in-process (exit code + output)."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from govern.signing.keys import KeyPair, generate_key_pair


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model-shaped folder: weights, a config, a nested tokenizer file."""
    d = tmp_path / "model"
    (d / "tokenizer").mkdir(parents=True)
    (d / "weights.bin").write_bytes(os.urandom(64 * 1024))
    (d / "config.json").write_text('{"hidden_size": 8}\n')
    (d / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    return d


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return generate_key_pair(tmp_path / "keys")


@pytest.fixture
def other_keys(tmp_path: Path) -> KeyPair:
    return generate_key_pair(tmp_path / "other-keys")


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def _cert(subject: str, issuer_name: str, public_key: object, signing_key: ec.EllipticCurvePrivateKey, *,
          ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Bank"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Bank"),
                                x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False), critical=True,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@dataclass
class PKI:
    ca_cert: Path
    leaf_key: Path
    leaf_cert: Path
    other_ca_cert: Path


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    """An organisation's own PKI, throwaway: a root CA, a code-signing leaf, and an unrelated CA."""
    d = tmp_path / "pki"
    d.mkdir()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Example Bank Model Signing CA", "Example Bank Model Signing CA", ca_key.public_key(), ca_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _cert("ml-release-bot", "Example Bank Model Signing CA", leaf_key.public_key(), ca_key, ca=False)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("Someone Else CA", "Someone Else CA", other_key.public_key(), other_key, ca=True)
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (d / "other-ca.pem").write_bytes(other.public_bytes(pem))
    return PKI(ca_cert=d / "ca.pem", leaf_key=_write_key(leaf_key, d / "leaf-key.pem"), leaf_cert=d / "leaf.pem",
               other_ca_cert=d / "other-ca.pem")


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def govern_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    """Run ``govern ARGS`` through the real console-script entry point, in-process."""
    from govern import cli

    # One check per line, whatever the terminal: wrapped lines would split the messages we assert on.
    monkeypatch.setattr(cli.console, "width", 400)
    monkeypatch.setattr(cli.err_console, "width", 400)

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["govern", *map(str, args)])
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
