"""Bundles are interchangeable with the upstream OpenSSF ``model_signing`` library, both ways."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import model_signing
import pytest

from govern.signing import SignerConfig, Trust, sign_model, verify
from govern.signing.keys import KeyPair
from tests.conftest import skip_or_fail


def test_govern_key_bundle_verifies_with_upstream_api(model_dir: Path, keys: KeyPair) -> None:
    result = sign_model(model_dir, SignerConfig(method="key", private_key=keys.private_key))
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=keys.public_key).verify(
        model_dir, result.bundle_path)
    (model_dir / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="Signature mismatch"):
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=keys.public_key).verify(
            model_dir, result.bundle_path)


def test_govern_certificate_bundle_verifies_with_upstream_api(model_dir: Path, pki, tmp_path: Path) -> None:
    result = sign_model(model_dir, SignerConfig(method="certificate", private_key=pki.leaf_key,
                                                signing_certificate=pki.leaf_cert, certificate_chain=[pki.ca_cert]),
                        tmp_path / "cert.json")
    model_signing.verifying.Config().use_certificate_verifier(certificate_chain=[pki.ca_cert]).verify(
        model_dir, result.bundle_path)


def test_govern_bundle_verifies_with_upstream_cli(model_dir: Path, keys: KeyPair) -> None:
    exe = shutil.which("model_signing") or str(Path(sys.executable).with_name("model_signing"))
    if not Path(exe).exists():
        skip_or_fail("the model_signing console script is not installed")
    result = sign_model(model_dir, SignerConfig(method="key", private_key=keys.private_key))
    done = subprocess.run([exe, "verify", "key", str(model_dir), "--signature", result.bundle_path,
                           "--public_key", str(keys.public_key)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verification succeeded" in done.stdout + done.stderr


def test_upstream_bundle_verifies_with_govern(model_dir: Path, keys: KeyPair, tmp_path: Path, govern_cli) -> None:
    bundle = tmp_path / "upstream.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=keys.private_key).sign(model_dir, bundle)
    ok = govern_cli("verify", model_dir, "--signature", bundle, "--key", keys.public_key)
    assert ok.code == 0, ok.out + ok.err
    (model_dir / "weights.bin").write_bytes(b"replaced")
    report = verify(model_dir, bundle, Trust(public_key=keys.public_key))
    assert [f.split(" (")[0] for f in report.failures] == ["changed: weights.bin"]


def test_upstream_certificate_bundle_verifies_with_govern(model_dir: Path, pki, tmp_path: Path) -> None:
    bundle = tmp_path / "upstream-cert.sig"
    model_signing.signing.Config().use_certificate_signer(
        private_key=pki.leaf_key, signing_certificate=pki.leaf_cert, certificate_chain=[pki.ca_cert]
    ).sign(model_dir, bundle)
    report = verify(model_dir, bundle, Trust(certificate_chain=[pki.ca_cert]))
    assert report.verified, report.failures
    assert "CN=ml-release-bot" in (report.signer or "")
