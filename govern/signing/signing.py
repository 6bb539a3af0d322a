"""Sign a model directory (or a single file) into a sigstore bundle, on ``model_signing``.

```python
from govern.signing import SignerConfig, sign_model

result = sign_model("out/model", SignerConfig(method="key", private_key="keys/signing-key.pem"))
result.bundle_path     # out/model.sigstore.json (always outside the signed directory)
result.files           # every file with its sha256, from the same pass that signed it
```

Methods: ``key`` (an ECDSA private key), ``certificate`` (private key + signing certificate + chain: an
organisation's own PKI), ``sigstore`` (keyless: Fulcio + Rekor with an OIDC token; needs network and
fails fast, with a message that says so, without it).

The bundle is exactly what ``model_signing`` writes (sigstore bundle v0.3, DSSE envelope over an
in-toto statement with one sha256 per file), so ``model_signing verify`` accepts it and govern verifies
bundles that ``model_signing`` wrote. The API here is stable.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path, PurePosixPath
from typing import Any

import model_signing
from model_signing._signing import signing as _ms_signing
from pydantic import BaseModel, Field

from govern.errors import GovernError
from govern.signing._signers import SigningError, build_signer
from govern.signing.config import SignerConfig, SigningMethod
from govern.signing.keys import private_key_permission_problem

__all__ = [
    "FileDigest",
    "Signer",
    "SignerConfig",
    "SigningError",
    "SigningMethod",
    "SigningResult",
    "default_bundle_path",
    "hashing_config",
    "sign_artifact",
    "sign_model",
    "tree_digest",
]


class Signer:
    """A signer made ready once (key loaded, or OIDC token exchanged) for several signatures in a row:
    the model and its attestations are then signed by the same identity, with one Fulcio round trip."""

    def __init__(self, config: SignerConfig) -> None:
        self.config = config
        self.method: SigningMethod = config.method
        #: things the user should fix that did not stop signing (a key others can read)
        self.warnings: list[str] = []
        if config.method in ("key", "certificate") and config.private_key is not None:
            problem = private_key_permission_problem(config.private_key)
            if problem is not None and config.key_permissions == "refuse":
                raise SigningError(problem + " (refused: the policy or --strict forbids such keys)")
            if problem is not None:
                self.warnings.append(problem)
        self.backend, self.identity = build_signer(config)

    @classmethod
    def of(cls, signer: SignerConfig | Signer) -> Signer:
        return signer if isinstance(signer, Signer) else cls(signer)


class FileDigest(BaseModel):
    name: str = Field(description="Path relative to the signed directory (the file name for a single file).")
    sha256: str


class SigningResult(BaseModel):
    """What was signed, by whom, where the bundle is. Safe to log and to store: no key material."""

    method: SigningMethod
    subject: str = Field(description="The signed path.")
    subject_name: str
    bundle_path: str
    signer: str = Field(description="Public-key fingerprint or certificate/OIDC identity.")
    files: list[FileDigest]
    manifest_digest: str = Field(description="model_signing's root digest: sha256 over the file digests.")
    model_digest: str = Field(description="govern's tree digest (as in the lineage DB's artifacts table).")
    duration_s: float
    warnings: list[str] = Field(default_factory=list, description="Problems that did not stop signing.")

    def signature_record(self, kind: str = "model") -> dict[str, Any]:
        """Keyword arguments for ``LineageStore.add_signature(run_id, **record)``."""
        return {"subject": self.subject, "subject_digest": self.model_digest, "method": self.method,
                "bundle_path": self.bundle_path, "signer": self.signer, "kind": kind}


def hashing_config() -> model_signing.hashing.Config:
    """One sha256 per file (model_signing's default serialisation), git metadata ignored."""
    return model_signing.hashing.Config().use_file_serialization(hashing_algorithm="sha256")


def default_bundle_path(model_path: str | Path) -> Path:
    """``<model>.sigstore.json`` next to the model: outside it, as a signature of a directory must be."""
    p = Path(model_path).resolve()
    return p.with_name(p.name + ".sigstore.json")


def tree_digest(files: list[FileDigest]) -> str:
    """The digest :func:`govern.stage.tree_sha256` gives the same folder, from already-known file digests.

    Lets verification match the lineage DB's artifact digest without reading the model a second time.
    """
    if len(files) == 1 and files[0].name == ".":
        return files[0].sha256
    h = hashlib.sha256()
    for f in sorted(files, key=lambda f: PurePosixPath(f.name).parts):
        h.update(f"{f.name}\0{f.sha256}\n".encode())
    return h.hexdigest()


def manifest_files(manifest: Any) -> list[FileDigest]:
    return [FileDigest(name=rd.identifier, sha256=rd.digest.digest_hex) for rd in manifest.resource_descriptors()]


def _check_paths(model_path: Path, bundle_path: Path) -> None:
    if not model_path.exists():
        raise GovernError(f"{model_path}: no such model file or directory")
    if model_path.is_dir():
        if bundle_path.resolve().is_relative_to(model_path.resolve()):
            raise GovernError(
                f"{bundle_path}: the bundle must be written outside the signed directory {model_path} "
                "(a signature inside what it signs changes what it signs)"
            )
        if not any(p.is_file() for p in model_path.rglob("*")):
            raise GovernError(f"{model_path}: the directory has no files to sign")
    elif bundle_path.resolve() == model_path.resolve():
        raise GovernError(f"{bundle_path}: the bundle path is the signed file itself")


def sign_model(model_path: str | Path, signer: SignerConfig | Signer,
               bundle_path: str | Path | None = None) -> SigningResult:
    """Hash every file of ``model_path`` and sign the manifest into a sigstore bundle.

    This is ``model_signing.signing.Config().use_…_signer(...).sign(model, bundle)`` step by step, so the
    per-file digests of the very pass that was signed come back in the result (for provenance subjects
    and lineage records) instead of being computed again.
    """
    model = Path(model_path)
    out = Path(bundle_path) if bundle_path is not None else default_bundle_path(model)
    _check_paths(model, out)
    started = time.perf_counter()
    ready = Signer.of(signer)
    try:
        manifest = hashing_config().hash(model)
    except (OSError, ValueError) as exc:
        raise GovernError(f"{model}: cannot hash the model ({exc})") from None
    payload = _ms_signing.Payload(manifest)
    signature = ready.backend.sign(payload)
    out.parent.mkdir(parents=True, exist_ok=True)
    signature.write(out)
    root = payload.statement.pb.subject[0].digest["sha256"]
    files = manifest_files(manifest)
    named = [FileDigest(name=model.name, sha256=f.sha256) if f.name == "." else f for f in files]
    return SigningResult(
        method=ready.method, subject=str(model), subject_name=model.resolve().name, bundle_path=str(out),
        signer=ready.identity, files=named, manifest_digest=f"sha256:{root}", model_digest=tree_digest(files),
        duration_s=time.perf_counter() - started, warnings=list(ready.warnings),
    )


def sign_artifact(
    path: str | Path,
    method: SigningMethod,
    *,
    private_key: str | Path | None = None,
    signing_certificate: str | Path | None = None,
    certificate_chain: list[str | Path] | None = None,
    identity_token: str | Path | None = None,
    staging: bool = False,
    out: str | Path | None = None,
    strict: bool = False,
) -> SigningResult:
    """Sign any model directory or file standalone (``govern sign``): the keyword form of :func:`sign_model`.

    ``strict``: refuse a private key that group or others can read (otherwise: a warning in the result).
    """
    cfg = SignerConfig(
        method=method,
        private_key=Path(private_key) if private_key else None,
        signing_certificate=Path(signing_certificate) if signing_certificate else None,
        certificate_chain=[Path(c) for c in certificate_chain or []],
        identity_token=Path(identity_token) if identity_token else None,
        staging=staging,
        key_permissions="refuse" if strict else "warn",
    )
    return sign_model(path, cfg, out)
