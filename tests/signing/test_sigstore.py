"""Sigstore: a real public bundle verifies offline against the shipped trust root, and keyless signing
without network fails fast with a message that says so."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import shutil
import socket
import time
from pathlib import Path

import pytest

from govern.errors import GovernError
from govern.signing import SignerConfig, sign_model, verify_artifact
from tests.conftest import require_fixture

IDENTITY = "william@yossarian.net"
ISSUER = "https://github.com/login/oauth"


@pytest.fixture
def public_bundle() -> tuple[Path, Path]:
    return require_fixture("sigstore/bundle_v3.txt"), require_fixture("sigstore/bundle_v3.txt.sigstore")


def test_public_bundle_verifies_offline_with_its_identity(public_bundle, govern_cli) -> None:
    artifact, bundle = public_bundle
    out = govern_cli("verify", artifact, "--signature", bundle, "--identity", IDENTITY, "--issuer", ISSUER,
                     "--staging")
    assert out.code == 0, out.out + out.err
    assert f"signed by {IDENTITY}" in out.out and "offline" in out.out


def test_public_bundle_fails_with_a_wrong_identity(public_bundle, govern_cli) -> None:
    artifact, bundle = public_bundle
    out = govern_cli("verify", artifact, "--signature", bundle, "--identity", "mallory@example.com", "--issuer",
                     ISSUER, "--staging")
    assert out.code == 1
    assert "wrong identity: expected 'mallory@example.com'" in out.out
    wrong_issuer = verify_artifact(artifact, bundle, identity=IDENTITY, issuer="https://accounts.google.com",
                                   staging=True)
    assert not wrong_issuer.verified and "wrong identity" in wrong_issuer.failures[0]


def test_tampered_copy_of_the_artifact_fails(public_bundle, tmp_path: Path) -> None:
    artifact, bundle = public_bundle
    copy = tmp_path / artifact.name
    shutil.copyfile(artifact, copy)
    copy.write_bytes(copy.read_bytes() + b"!")
    report = verify_artifact(copy, bundle, identity=IDENTITY, issuer=ISSUER, staging=True)
    assert not report.verified
    assert report.failures == ["signature: the artifact does not match the bundle: its bytes changed since signing"]


def test_staging_bundle_does_not_verify_against_production_root(public_bundle) -> None:
    artifact, bundle = public_bundle
    report = verify_artifact(artifact, bundle, identity=IDENTITY, issuer=ISSUER)
    assert not report.verified and "production trust root" in report.failures[0]


def _network_reachable(host: str = "fulcio.sigstore.dev") -> bool:
    def connect() -> None:
        socket.create_connection((host, 443), timeout=3).close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(connect).result(timeout=5)
            return True
        except Exception:
            return False


def _fake_token() -> str:
    def b64(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {"iss": "https://oauth2.sigstore.dev/auth", "sub": "ci", "aud": "sigstore", "iat": now,
              "exp": now + 600, "email": "ci@example.com", "email_verified": True}
    return f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.c2lnbmF0dXJl"


def test_keyless_signing_without_network_fails_fast(model_dir: Path, tmp_path: Path, govern_cli) -> None:
    if _network_reachable():
        pytest.skip("Sigstore is reachable from here; this test checks the offline behaviour")
    token = _fake_token()
    token_file = tmp_path / "oidc-token"
    token_file.write_text(token)
    started = time.monotonic()
    with pytest.raises(GovernError) as info:
        sign_model(model_dir, SignerConfig(method="sigstore", identity_token=token_file), tmp_path / "k.json")
    assert time.monotonic() - started < 20
    message = str(info.value)
    assert "no network" in message and "sigstore unreachable" in message
    assert token not in message and token.split(".")[1] not in message

    started = time.monotonic()
    out = govern_cli("sign", model_dir, "--sigstore", "--identity-token", token_file)
    assert time.monotonic() - started < 20
    assert out.code == 2 and "sigstore unreachable" in out.err
    assert token.split(".")[1] not in out.out + out.err
    assert not (tmp_path / "k.json").exists()
