"""Private: turn a :class:`govern.signing.signing.SignerConfig` into a ``model_signing`` signer, and sign
arbitrary in-toto statements (provenance, audit) as DSSE envelopes in the same bundle format.

Key and certificate signing reuse ``model_signing``'s own signer classes, so a bundle govern writes is
byte-for-byte the format ``model_signing verify key|certificate`` reads. Keyless (sigstore) signing is
wrapped so that it can never hang: the Sigstore hosts are probed with a short timeout first, and the
whole exchange runs under a deadline.

Secrets: the private key stays inside the ``cryptography`` key object and the OIDC token inside
sigstore's ``IdentityToken``; every message raised from here is built from paths and exception
*types*, and anything that could echo a token is scrubbed.
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlparse

from cryptography import x509
from google.protobuf import json_format
from model_signing._signing import sign_certificate, sign_ec_key, sign_sigstore, sign_sigstore_pb, signing
from sigstore_models import intoto as intoto_pb
from sigstore_models.bundle import v1 as bundle_pb

from govern.errors import GovernError
from govern.signing.keys import public_key_fingerprint

if TYPE_CHECKING:
    from govern.signing.config import SignerConfig

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
_JWT_LIKE = re.compile(r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.?[A-Za-z0-9_\-]*")
_T = TypeVar("_T")


class SigningError(GovernError):
    """Signing could not happen (unreadable key, certificate that does not match, no network...)."""


def scrub(message: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove anything token-like from a message that came from a third-party exception."""
    for s in secrets:
        if s:
            message = message.replace(s, "<redacted>")
    return _JWT_LIKE.sub("<redacted-token>", message)


# --------------------------------------------------------------------------------- key / certificate
def _readable(path: Path | None, what: str) -> Path:
    if path is None:
        raise SigningError(f"signing needs {what}")
    p = Path(path)
    if not p.is_file():
        raise SigningError(f"{p}: {what} not found")
    if not os.access(p, os.R_OK):
        raise SigningError(f"{p}: {what} is not readable")
    return p


def _key_signer(private_key: Path | None) -> sign_ec_key.Signer:
    path = _readable(private_key, "a private key (PEM)")
    password = os.environ.get("GOVERN_SIGNING_KEY_PASSWORD")
    try:
        return sign_ec_key.Signer(path, password)
    except TypeError:
        # cryptography: encrypted key without password, or password given for a plain key.
        raise SigningError(
            f"{path}: the private key is encrypted (or not) contrary to GOVERN_SIGNING_KEY_PASSWORD; "
            "set that variable to the key's password, or unset it for an unencrypted key"
        ) from None
    except ValueError as exc:
        if "Unsupported key" in str(exc):
            raise SigningError(f"{path}: only ECDSA keys on P-256, P-384 or P-521 can sign") from None
        raise SigningError(f"{path}: not a PEM ECDSA private key (or wrong password)") from None
    except Exception as exc:  # e.g. UnsupportedAlgorithm for RSA/Ed25519 keys
        raise SigningError(f"{path}: cannot load the private key ({type(exc).__name__})") from None


def _certificate_signer(cfg: SignerConfig) -> sign_certificate.Signer:
    key = _readable(cfg.private_key, "a private key (PEM)")
    cert = _readable(cfg.signing_certificate, "a signing certificate (PEM)")
    chain = [_readable(c, "a certificate-chain file (PEM)") for c in cfg.certificate_chain]
    _key_signer(key)  # precise errors for the key itself
    try:
        return sign_certificate.Signer(key, cert, chain)
    except ValueError as exc:
        if "does not match" in str(exc):
            raise SigningError(f"{cert}: the certificate's public key does not match the private key {key}") from None
        raise SigningError(f"{cert} / chain: not PEM X.509 certificates ({type(exc).__name__})") from None


def certificate_identity(cert: x509.Certificate) -> str:
    """How a certificate signer is named in records: subject DN, plus SAN e-mails/URIs when present."""
    names = [cert.subject.rfc4514_string()]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += san.get_values_for_type(x509.RFC822Name) + san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        pass
    return " ".join(n for n in names if n)


# -------------------------------------------------------------------------------------------- keyless
def _run_with_deadline(fn: Callable[[], _T], seconds: float, what: str) -> _T:
    """Run ``fn`` in a daemon thread; give up after ``seconds`` (a stuck socket must not hang govern)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="govern-sigstore")
    future = pool.submit(fn)
    try:
        return future.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        raise SigningError(
            f"sigstore unreachable: {what} did not answer within {seconds:.0f} s (no network, or a firewall "
            "drops the traffic). Keyless signing needs Fulcio, Rekor and an OIDC token; use --key or --cert "
            "offline."
        ) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _sigstore_call(fn: Callable[[], _T], seconds: float, what: str, failed: Callable[[Exception], str]) -> _T:
    """Run one Sigstore call under a deadline: govern's own SigningError (the deadline's) passes as is, any
    other error becomes a SigningError worded by ``failed`` (which scrubs secrets from the library's text)."""
    try:
        return _run_with_deadline(fn, seconds, what)
    except SigningError:
        raise
    except Exception as exc:
        raise SigningError(failed(exc)) from None


def probe_hosts(urls: list[str], timeout_s: float) -> None:
    """Fail fast, with a clear message, when the Sigstore services cannot be reached at all."""

    def connect(host: str, port: int) -> None:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass

    for url in urls:
        parsed = urlparse(url)
        host, port = parsed.hostname or url, parsed.port or 443
        try:
            _run_with_deadline(lambda h=host, p=port: connect(h, p), timeout_s + 1, f"{host}:{port}")  # type: ignore[misc]  # mypy cannot infer a lambda with default-bound args
        except OSError as exc:
            raise SigningError(
                f"no network: sigstore unreachable ({host}:{port}: {exc.strerror or type(exc).__name__}). "
                "Keyless signing needs Fulcio, Rekor and an OIDC identity; sign offline with --key or --cert."
            ) from None


class KeylessSigner(signing.Signer):
    """Keyless signing through Fulcio + Rekor, never interactive: the OIDC token comes from a file,
    ``SIGSTORE_ID_TOKEN``, or an ambient CI credential (GitHub Actions, GCP...)."""

    def __init__(self, cfg: SignerConfig) -> None:
        from sigstore import oidc
        from sigstore.models import ClientTrustConfig
        from sigstore.sign import SigningContext

        self._timeout = cfg.network_timeout_s
        raw_token: str | None = None
        if cfg.identity_token is not None:
            raw_token = _readable(cfg.identity_token, "an OIDC identity-token file").read_text().strip()
            if not raw_token:
                raise SigningError(f"{cfg.identity_token}: the identity-token file is empty")
        self._secrets = (raw_token or "",)

        offline = ClientTrustConfig.staging(offline=True) if cfg.staging else ClientTrustConfig.production(offline=True)
        from sigstore._internal.tuf import DEFAULT_TUF_URL, STAGING_TUF_URL

        probe_hosts([STAGING_TUF_URL if cfg.staging else DEFAULT_TUF_URL, offline.signing_config.get_fulcio().url],
                    self._timeout)

        if raw_token is None:
            raw_token = os.environ.get("SIGSTORE_ID_TOKEN") or None
        if raw_token is None:
            raw_token = _sigstore_call(oidc.detect_credential, self._timeout, "ambient OIDC credential",
                                       lambda exc: f"ambient OIDC credential: {scrub(str(exc))}")
        if not raw_token:
            raise SigningError(
                "keyless signing needs an OIDC identity token: pass --identity-token FILE (or set "
                "signing.identity_token), set SIGSTORE_ID_TOKEN, or run in CI with an ambient credential"
            )
        self._secrets = (raw_token,)
        try:
            self._token = oidc.IdentityToken(raw_token)
        except Exception as exc:
            raise SigningError(f"OIDC identity token rejected: {scrub(str(exc), self._secrets)}") from None
        self.identity = f"{self._token.identity} ({self._token.issuer})"

        def trust() -> Any:
            return ClientTrustConfig.staging() if cfg.staging else ClientTrustConfig.production()

        trust_config = _sigstore_call(
            trust, self._timeout * 3, "the Sigstore TUF repository",
            lambda exc: f"no network: sigstore unreachable (TUF refresh failed: {type(exc).__name__})")
        self._context = SigningContext.from_trust_config(trust_config)

    def _sign_dsse(self, payload: bytes) -> sign_sigstore.Signature:
        from sigstore import dsse

        def run() -> Any:
            with self._context.signer(self._token) as signer:
                return signer.sign_dsse(dsse.Statement(payload))

        bundle = _sigstore_call(
            run, self._timeout * 6, "Fulcio/Rekor",
            lambda exc: f"sigstore signing failed ({type(exc).__name__}): {scrub(str(exc), self._secrets)}")
        return sign_sigstore.Signature(bundle)

    def sign(self, payload: signing.Payload) -> signing.Signature:
        return self._sign_dsse(json_format.MessageToJson(payload.statement.pb).encode("utf-8"))


# ---------------------------------------------------------------------------------------------- API
def build_signer(cfg: SignerConfig) -> tuple[signing.Signer, str]:
    """The ``model_signing`` signer for ``cfg`` and the signer's public name (fingerprint / identity)."""
    if cfg.method == "key":
        key_signer = _key_signer(cfg.private_key)
        return key_signer, _fingerprint(key_signer)
    if cfg.method == "certificate":
        cert_signer = _certificate_signer(cfg)
        return cert_signer, certificate_identity(cert_signer._signing_certificate)  # noqa: SLF001
    if cfg.method == "sigstore":
        keyless = KeylessSigner(cfg)
        return keyless, keyless.identity
    raise SigningError(f"unknown signing method '{cfg.method}' (expected key, certificate or sigstore)")


def _fingerprint(signer: sign_ec_key.Signer) -> str:
    from cryptography.hazmat.primitives import serialization

    pub = signer._private_key.public_key()  # noqa: SLF001
    return public_key_fingerprint(pub.public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))


def sign_payload(signer: signing.Signer, payload: bytes) -> signing.Signature:
    """Sign raw in-toto statement bytes as a DSSE envelope in a sigstore bundle v0.3.

    For key and certificate signers this mirrors ``model_signing``'s own envelope (same PAE, same
    verification material), so its verifiers accept it; the bytes are signed exactly as given (no
    protobuf round trip that would turn integers into floats).
    """
    if isinstance(signer, KeylessSigner):
        return signer._sign_dsse(payload)  # noqa: SLF001
    if isinstance(signer, sign_ec_key.Signer):
        from cryptography.hazmat.primitives.asymmetric import ec

        private_key = cast(ec.EllipticCurvePrivateKey, signer._private_key)  # noqa: SLF001 (checked EC on load)
        sig = private_key.sign(sign_sigstore_pb.pae(payload),
                               ec.ECDSA(sign_ec_key.get_ec_key_hash(private_key.public_key())))
        envelope = intoto_pb.Envelope(
            payload=base64.b64encode(payload),
            payload_type=IN_TOTO_PAYLOAD_TYPE,
            signatures=[intoto_pb.Signature(sig=base64.b64encode(sig), keyid="")],
        )
        return sign_sigstore_pb.Signature(
            bundle_pb.Bundle(
                media_type=sign_sigstore_pb._BUNDLE_MEDIA_TYPE,  # type: ignore[arg-type]  # noqa: SLF001
                verification_material=signer._get_verification_material(),  # noqa: SLF001
                dsse_envelope=envelope,
            )
        )
    raise SigningError(f"cannot sign statements with {type(signer).__name__}")
