"""Who signs, and how: the signing set-up shared by the public API (:mod:`govern.signing.signing`) and the
private signer factory (:mod:`govern.signing._signers`), in a module of its own so neither imports the other
for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

SigningMethod = Literal["key", "certificate", "sigstore"]


class SignerConfig(BaseModel):
    """Who signs, and how. Paths only: key material is read from its file when signing, never held here."""

    method: SigningMethod
    private_key: Path | None = None
    signing_certificate: Path | None = None
    certificate_chain: list[Path] = Field(default_factory=list)
    identity_token: Path | None = Field(default=None, description="File holding an OIDC token (sigstore).")
    staging: bool = Field(default=False, description="Use Sigstore's staging instance (tests only).")
    network_timeout_s: float = Field(default=5.0, gt=0, description="Per-connection timeout for sigstore.")
    key_permissions: Literal["warn", "refuse"] = Field(
        default="warn", description="A private key that group or others can read: warn (in the result's "
                                    "warnings) or refuse to sign with it.",
    )

    @classmethod
    def from_run_config(cls, signing: Any) -> SignerConfig:
        """From a run config's ``signing`` section (``govern.config.SigningConfig``)."""
        return cls(
            method=signing.method,
            private_key=signing.private_key,
            signing_certificate=signing.signing_certificate,
            certificate_chain=list(signing.certificate_chain),
            identity_token=signing.identity_token,
            staging=getattr(signing, "sigstore_staging", False),
        )
