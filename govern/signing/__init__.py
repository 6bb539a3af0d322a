"""Signing, provenance attestations and verification of models (on ``model_signing`` / sigstore).

Public modules, each with a stable API:

- :mod:`govern.signing.keys` — ``generate_key_pair``, ``public_key_fingerprint``;
- :mod:`govern.signing.signing` — ``SignerConfig``, ``Signer``, ``sign_model``, ``sign_artifact``;
- :mod:`govern.signing.provenance` — ``build_provenance``, ``audit_predicate``, ``sign_statement``;
- :mod:`govern.signing.verifying` — ``Trust``, ``verify``, ``verify_model``, ``verify_artifact``;
- :mod:`govern.signing.stage` — ``SigningStage`` (the pipeline's ``signing`` stage).

The implementation lives in private modules (``_signers``). Private keys and OIDC tokens are read from
their files at the moment of signing and never returned, stored, logged or put into messages.
"""

from govern.signing.keys import KeyPair, generate_key_pair, public_key_fingerprint
from govern.signing.provenance import SignedStatement, audit_predicate, build_provenance, sign_statement
from govern.signing.signing import (
    FileDigest,
    Signer,
    SignerConfig,
    SigningError,
    SigningResult,
    sign_artifact,
    sign_model,
)
from govern.signing.verifying import Check, Trust, VerificationReport, verify, verify_artifact, verify_model

__all__ = [
    "Check",
    "FileDigest",
    "KeyPair",
    "SignedStatement",
    "Signer",
    "SignerConfig",
    "SigningError",
    "SigningResult",
    "Trust",
    "VerificationReport",
    "audit_predicate",
    "build_provenance",
    "generate_key_pair",
    "public_key_fingerprint",
    "sign_artifact",
    "sign_model",
    "sign_statement",
    "verify",
    "verify_artifact",
    "verify_model",
]
