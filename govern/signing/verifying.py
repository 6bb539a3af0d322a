"""Verify a signed model — or any sigstore-signed artifact — and say exactly what failed.

```python
from govern.signing import Trust, verify

report = verify("out/model", "out/model.sigstore.json", Trust(public_key="keys/signing-key.pub.pem"),
                provenance=["out/signing/provenance.sigstore.json"])
report.verified     # True only if every check passed
report.failures     # e.g. ["changed: weights.bin (signed sha256 95adafc2…, now 1b2c3d4e…)"]
```

Checks, in order: the bundle's signature against the trusted signer (a public key, a certificate chain,
or a Sigstore identity + OIDC issuer verified offline against the trust root shipped with
``sigstore``); every file's digest against the signed manifest (changed, added and removed files are
named); each provenance statement's signature and subjects against the files (a signed CycloneDX BOM's
model digest too); and, with a lineage DB, that the DB records the same model digest and the same decision
for the run, and the data-set and base-model digests a signed BOM lists.

A bundle holding a plain message signature (``sigstore sign FILE``) is verified as an artifact: its
digest and its Sigstore identity. Failing checks are results (exit 1); unreadable input is a
:class:`govern.errors.GovernError` (exit 2). The API here is stable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import model_signing
from cryptography import exceptions as crypto_exceptions
from cryptography import x509
from model_signing._signing import sign_certificate, sign_ec_key, sign_sigstore_pb
from model_signing._signing import signing as _ms_signing
from pydantic import BaseModel, Field

from govern.errors import GovernError
from govern.signing._signers import IN_TOTO_PAYLOAD_TYPE, certificate_identity
from govern.signing.keys import public_key_fingerprint
from govern.signing.provenance import CYCLONEDX_BOM, GOVERN_AUDIT_V1, SLSA_PROVENANCE_V1, read_statement
from govern.signing.signing import FileDigest, tree_digest

__all__ = ["Check", "Trust", "VerificationReport", "verify", "verify_artifact", "verify_model"]

MODEL_SIGNATURE_PREDICATES = ("https://model_signing/signature/v1.0", "https://model_signing/Digests/v0.1")


class Trust(BaseModel):
    """Whom to trust: exactly one of a public key, a certificate chain, or a Sigstore identity + issuer."""

    public_key: Path | None = None
    certificate_chain: list[Path] = Field(default_factory=list)
    identity: str | None = None
    issuer: str | None = None
    staging: bool = Field(default=False, description="Sigstore's staging trust root instead of production.")

    def kind(self) -> str:
        given = [k for k, on in (("key", self.public_key is not None), ("certificate", bool(self.certificate_chain)),
                                 ("sigstore", self.identity is not None or self.issuer is not None)) if on]
        if len(given) != 1:
            raise GovernError(
                "say whom to trust with exactly one of: --key PUBLIC_KEY, --cert-chain CA_FILE, "
                "or --identity ID --issuer URL" + (f" (got {', '.join(given)})" if given else "")
            )
        if given[0] == "sigstore" and not (self.identity and self.issuer):
            raise GovernError("Sigstore verification needs both --identity and --issuer")
        return given[0]


class Check(BaseModel):
    name: str
    ok: bool
    detail: str


class VerificationReport(BaseModel):
    subject: str
    kind: str = Field(description="model or artifact")
    signer: str | None = None
    files: int = 0
    model_digest: str | None = None
    run_id: str | None = None
    decision: str | None = None
    checks: list[Check] = Field(default_factory=list)

    @property
    def verified(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[str]:
        return [c.detail for c in self.checks if not c.ok]

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name=name, ok=ok, detail=detail))
        return ok


class _Failed(Exception):
    """A verification check failed (a result, not an error)."""


def _short(hex_digest: str) -> str:
    return hex_digest[:12] + "…"


# ------------------------------------------------------------------------------------ bundle reading
def _load_bundle_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise GovernError(f"{path}: signature bundle not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise GovernError(f"{path}: not a sigstore bundle (not JSON)") from None
    if not isinstance(doc, dict) or "verificationMaterial" not in doc:
        raise GovernError(f"{path}: not a sigstore bundle (no verificationMaterial)")
    return doc


def _material_kind(doc: dict[str, Any]) -> str:
    vm = doc["verificationMaterial"]
    if "publicKey" in vm:
        return "key"
    if "x509CertificateChain" in vm:
        return "certificate"
    if "certificate" in vm:
        return "sigstore"
    return "unknown"


def _open_signed_payload(path: Path, trust: Trust, report: VerificationReport, label: str) -> bytes:
    """Verify a DSSE bundle's signature against ``trust``; return its payload. Raises _Failed."""
    doc = _load_bundle_json(path)
    if "dsseEnvelope" not in doc:
        raise _Failed(f"{label}: {path} holds a plain message signature, not a signed statement")
    material, wanted = _material_kind(doc), trust.kind()
    if material != wanted:
        raise _Failed(f"{label}: the bundle was signed with {material} material, but {wanted} trust was given "
                      f"(verify with the matching --key / --cert-chain / --identity)")
    if wanted == "key":
        payload_type, payload = _verify_key_bundle(path, trust.public_key, report, label)  # type: ignore[arg-type]  # key trust always carries public_key
    elif wanted == "certificate":
        payload_type, payload = _verify_certificate_bundle(path, trust.certificate_chain, report, label)
    else:
        payload_type, payload = _verify_sigstore_dsse(path, trust, report, label)
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise _Failed(f"{label}: DSSE payload type is {payload_type}, expected {IN_TOTO_PAYLOAD_TYPE}")
    return payload


def _read_pb_signature(path: Path) -> sign_sigstore_pb.Signature:
    try:
        return sign_sigstore_pb.Signature.read(path)
    except Exception as exc:
        raise GovernError(f"{path}: malformed sigstore bundle ({type(exc).__name__})") from None


def _verify_key_bundle(path: Path, public_key: Path, report: VerificationReport, label: str) -> tuple[str, bytes]:
    if not public_key.is_file():
        raise GovernError(f"{public_key}: public key not found")
    try:
        verifier = sign_ec_key.Verifier(public_key)
        fingerprint = public_key_fingerprint(public_key.read_bytes())
    except Exception:
        raise GovernError(f"{public_key}: not a PEM ECDSA public key (P-256/384/521)") from None
    signature = _read_pb_signature(path)
    hint = signature.bundle.verification_material.public_key.hint if \
        signature.bundle.verification_material.public_key else None
    try:
        payload_type, payload = verifier._verify_signed_content(signature)  # noqa: SLF001
    except ValueError as exc:
        if "Key mismatch" in str(exc):
            raise _Failed(f"{label}: wrong key: the bundle was signed by key sha256:{hint}, "
                          f"not by {public_key} ({fingerprint})") from None
        raise _Failed(f"{label}: invalid bundle: {exc}") from None
    except crypto_exceptions.InvalidSignature:
        raise _Failed(f"{label}: the signature does not verify with {public_key} ({fingerprint}): "
                      "the signed statement was altered or another key signed it") from None
    report.signer = report.signer or fingerprint
    return payload_type, payload


def _verify_certificate_bundle(path: Path, chain: list[Path], report: VerificationReport,
                               label: str) -> tuple[str, bytes]:
    from OpenSSL import crypto

    for c in chain:
        if not c.is_file():
            raise GovernError(f"{c}: certificate-chain file not found")
    try:
        verifier = sign_certificate.Verifier(chain)
    except Exception:
        raise GovernError(f"{', '.join(map(str, chain))}: not PEM X.509 certificates") from None
    signature = _read_pb_signature(path)
    try:
        chain_material = signature.bundle.verification_material.x509_certificate_chain
        assert chain_material is not None
        leaf = x509.load_der_x509_certificate(chain_material.certificates[0].raw_bytes)
        signer = certificate_identity(leaf)
    except Exception:
        raise _Failed(f"{label}: the bundle's signing certificate cannot be read") from None
    try:
        payload_type, payload = verifier._verify_signed_content(signature)  # noqa: SLF001
    except crypto.X509StoreContextError as exc:
        raise _Failed(f"{label}: untrusted certificate: '{signer}' does not chain to "
                      f"{', '.join(map(str, chain))} ({exc})") from None
    except crypto_exceptions.InvalidSignature:
        raise _Failed(f"{label}: the signature does not verify with the certificate of '{signer}': "
                      "the signed statement was altered") from None
    except ValueError as exc:
        raise _Failed(f"{label}: certificate '{signer}': {exc}") from None
    report.signer = report.signer or signer
    return payload_type, payload


def _sigstore_verifier(trust: Trust) -> Any:
    import logging

    from sigstore.verify import Verifier

    # Offline is the point here: sigstore's "TUF ... offline mode" warning would only be noise.
    logging.getLogger("sigstore._internal.tuf").setLevel(logging.ERROR)
    try:
        return Verifier.staging(offline=True) if trust.staging else Verifier.production(offline=True)
    except Exception as exc:
        raise GovernError(f"cannot load sigstore's shipped trust root ({type(exc).__name__})") from None


def _sigstore_bundle(path: Path) -> Any:
    from sigstore.models import Bundle

    try:
        return Bundle.from_json(path.read_bytes())
    except Exception as exc:
        raise GovernError(f"{path}: malformed sigstore bundle ({type(exc).__name__}: {exc})") from None


def _sigstore_failure(label: str, trust: Trust, exc: Exception) -> _Failed:
    msg = str(exc)
    if "SAN" in msg or "issuer" in msg.lower() or "OIDC" in msg:
        return _Failed(f"{label}: wrong identity: expected '{trust.identity}' issued by '{trust.issuer}': {msg}")
    if "digest mismatch" in msg:
        return _Failed(f"{label}: the artifact does not match the bundle: its bytes changed since signing")
    if "chain" in msg or "root" in msg.lower():
        where = "staging" if trust.staging else "production"
        hint = "" if trust.staging else " (signed on Sigstore's staging instance? pass --staging)"
        return _Failed(f"{label}: the certificate does not chain to Sigstore's {where} trust root{hint}: {msg}")
    return _Failed(f"{label}: sigstore verification failed: {msg}")


def _sigstore_identity(bundle: Any) -> str | None:
    try:
        cert = bundle.signing_certificate
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.RFC822Name) + san.get_values_for_type(x509.UniformResourceIdentifier)
        return names[0] if names else None
    except Exception:
        return None


def _verify_sigstore_dsse(path: Path, trust: Trust, report: VerificationReport, label: str) -> tuple[str, bytes]:
    from sigstore.verify import policy

    verifier, bundle = _sigstore_verifier(trust), _sigstore_bundle(path)
    try:
        payload_type, payload = verifier.verify_dsse(bundle, policy.Identity(identity=trust.identity or "",
                                                                              issuer=trust.issuer))
    except Exception as exc:
        raise _sigstore_failure(label, trust, exc) from None
    report.signer = report.signer or (f"{_sigstore_identity(bundle)} ({trust.issuer})")
    return payload_type, payload


# ----------------------------------------------------------------------------------------- manifests
def _actual_manifest(model: Path, expected: Any) -> Any:
    args = expected.serialization_type
    if args["method"] == "files":
        cfg = model_signing.hashing.Config().use_file_serialization(
            hashing_algorithm=args["hash_type"], allow_symlinks=args["allow_symlinks"])
    elif args["method"] == "shards":
        cfg = model_signing.hashing.Config().use_shard_serialization(
            hashing_algorithm=args["hash_type"], shard_size=args["shard_size"], allow_symlinks=args["allow_symlinks"])
    else:
        raise GovernError(f"unknown model_signing serialisation method '{args['method']}'")
    if args.get("ignore_paths"):
        cfg.add_ignored_paths(model_path=model, paths=args["ignore_paths"])
    try:
        return cfg.hash(model)
    except (OSError, ValueError) as exc:
        raise GovernError(f"{model}: cannot hash the model ({exc})") from None


def _digests(manifest: Any) -> dict[str, str]:
    return {rd.identifier: rd.digest.digest_hex for rd in manifest.resource_descriptors()}


def _file_diff(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    problems = []
    for name in sorted(expected.keys() & actual.keys()):
        if expected[name] != actual[name]:
            problems.append(f"changed: {name} (signed sha256 {_short(expected[name])}, now {_short(actual[name])})")
    problems += [f"added: {n} (not in the signature)" for n in sorted(actual.keys() - expected.keys())]
    problems += [f"removed: {n} (signed, now missing)" for n in sorted(expected.keys() - actual.keys())]
    return problems


def _sha256_files(model: Path, actual_manifest: Any) -> dict[str, str]:
    """sha256 per file (relative name): from the manifest when it is already sha256 per file."""
    manifest = actual_manifest
    if not _is_sha256_per_file(actual_manifest):
        manifest = model_signing.hashing.Config().use_file_serialization(hashing_algorithm="sha256").hash(model)
    digests = _digests(manifest)
    if list(digests) == ["."]:
        return {model.name: digests["."]}
    return digests


# ----------------------------------------------------------------------------------------- provenance
def _check_provenance(path: Path, trust: Trust, files: dict[str, str], report: VerificationReport) -> dict[str, Any] | None:
    label = f"provenance {path.name}"
    try:
        statement = read_statement(_open_signed_payload(path, trust, report, label))
    except _Failed as failed:
        report.add("provenance-signature", False, str(failed))
        return None
    except GovernError as exc:
        if not path.is_file():
            raise
        report.add("provenance-signature", False, f"{label}: {exc}")
        return None
    ptype = statement.get("predicateType", "?")
    report.add("provenance-signature", True, f"{label}: {ptype} statement signed by {report.signer}")
    subjects = {s.get("name"): (s.get("digest") or {}).get("sha256") for s in statement.get("subject", [])}
    problems = []
    for name in sorted(subjects.keys() & files.keys()):
        if subjects[name] != files[name]:
            problems.append(f"{label}: subject digest mismatch for '{name}': statement says sha256 "
                            f"{_short(str(subjects[name]))}, the file is {_short(files[name])}")
    problems += [f"{label}: subject '{n}' is not a file of the model" for n in sorted(subjects.keys() - files.keys())]
    problems += [f"{label}: file '{n}' is not among the statement's subjects" for n in sorted(files.keys() - subjects.keys())]
    for p in problems:
        report.add("provenance-subjects", False, p)
    if not problems:
        report.add("provenance-subjects", True, f"{label}: all {len(subjects)} subjects match the files")
    return statement


def _bom_digests(statement: dict[str, Any]) -> Any:
    from govern.export.bom import cyclonedx_digests

    predicate = statement.get("predicate")
    return cyclonedx_digests(predicate if isinstance(predicate, dict) else {})


def _check_bom(path: Path, statement: dict[str, Any], report: VerificationReport) -> None:
    """A signed BOM must describe the model on disk: its model component's sha256 is the files' tree digest."""
    label = f"bom {path.name}"
    claimed = _bom_digests(statement).model
    if claimed is None:
        report.add("bom-digest", False, f"{label}: the BOM names no model sha256")
    elif claimed != report.model_digest:
        report.add("bom-digest", False, f"{label}: the BOM describes model sha256 {_short(claimed)}, but the files "
                                        f"hash to {_short(report.model_digest or '')}")
    else:
        report.add("bom-digest", True, f"{label}: the BOM describes this model (tree sha256 {_short(claimed)})")


def _check_bom_lineage(store: Any, run: Any, statement: dict[str, Any], report: VerificationReport) -> None:
    """The data sets and base model a signed BOM lists are the ones the lineage DB records for the run."""
    claimed = _bom_digests(statement)
    problems = []
    if claimed.run_id is not None and claimed.run_id != run.id:
        problems.append(f"lineage: the BOM is about run {claimed.run_id}, not {run.id}")
    # The data sets of each stage's latest completed execution: a resumed run that re-read changed data keeps
    # the earlier execution's artifacts too, and the BOM (like the evidence) describes the latest.
    latest: dict[str, int] = {}
    for e in store.stage_executions(run.id):
        if e.status == "completed" and e.id is not None:
            latest[e.stage] = max(latest.get(e.stage, e.id), e.id)
    recorded = {a.sha256.removeprefix("sha256:"): a.name for a in store.artifacts(run.id)
                if a.kind == "dataset" and (a.execution_id is None or a.execution_id in latest.values())}
    for ref, digest in sorted(claimed.datasets.items()):
        if digest not in recorded:
            problems.append(f"lineage: the BOM's data set '{ref.removeprefix('dataset:')}' has sha256 "
                            f"{_short(str(digest))}, which run {run.id} does not record")
    listed = set(claimed.datasets.values())
    problems += [f"lineage: data set '{name}' (sha256 {_short(digest)}) of run {run.id} is not in the BOM"
                 for digest, name in sorted(recorded.items()) if digest not in listed]
    base = store.base_model(run.base_model_id) if run.base_model_id is not None else None
    base_digest = (base.digest or "").removeprefix("sha256:") if base is not None else None
    if claimed.base_model != (base_digest or None):
        problems.append(f"lineage: the BOM's base model sha256 {_short(claimed.base_model or 'none')} is not "
                        f"the one run {run.id} records ({_short(base_digest or 'none')})")
    for problem in problems:
        report.add("lineage-bom", False, problem)
    if not problems:
        report.add("lineage-bom", True, f"lineage: the BOM's {len(claimed.datasets)} data-set digests and base "
                                        f"model match run {run.id}'s record")


# ------------------------------------------------------------------------------------------- lineage
def _check_lineage(db_url: str, run_id: str | None, statements: list[dict[str, Any]],
                   report: VerificationReport) -> None:
    try:
        from govern.lineage.store import LineageStore
    except ImportError:
        raise GovernError("--db: the lineage store is not available in this installation") from None
    attested_run = attested_decision = None
    for s in statements:
        pred = s.get("predicate") or {}
        if s.get("predicateType") == SLSA_PROVENANCE_V1:
            attested_run = ((pred.get("runDetails") or {}).get("metadata") or {}).get("invocationId") or attested_run
        if s.get("predicateType") == GOVERN_AUDIT_V1:
            attested_run = attested_run or pred.get("runId")
            attested_decision = pred.get("decision")
        if s.get("predicateType") == CYCLONEDX_BOM:
            attested_run = attested_run or _bom_digests(s).run_id
    run_id = run_id or attested_run
    if not run_id:
        raise GovernError("--db needs --run RUN_ID, or a --provenance statement that names the run")
    if attested_run and run_id != attested_run:
        report.add("lineage-run", False, f"lineage: --run {run_id} but the provenance names run {attested_run}")
    report.run_id = run_id
    from govern.errors import NotFoundError

    _require_existing_db(db_url)
    store = LineageStore.open(db_url, read_only=True)
    try:
        try:
            run = store.get_run(run_id)
        except NotFoundError:
            report.add("lineage-run", False, f"lineage: run {run_id} is not in {store.display_url}")
            return
        # Fail closed: the digest and decision below are only worth what the record's integrity is.
        integrity = store.verify_run(run.id)
        if integrity.ok:
            report.add("lineage-integrity", True, f"lineage: record of run {run.id} intact ({integrity.events} "
                                                  "events; every row it reads matches its audit event)")
        else:
            for problem in integrity.problems:
                report.add("lineage-integrity", False, f"lineage: record broken: {problem}")
        recorded = {a.sha256 for a in store.artifacts(run.id) if a.kind in ("model", "adapter")}
        recorded |= {s.subject_digest for s in store.signatures(run.id) if s.kind == "model"}
        if report.model_digest in recorded:
            report.add("lineage-digest", True, f"lineage: run {run.id} records this model (tree sha256 "
                                               f"{_short(report.model_digest or '')})")
        elif recorded:
            report.add("lineage-digest", False, f"lineage: run {run.id} records model digest(s) "
                       f"{', '.join(_short(d) for d in sorted(recorded))}, but the files hash to "
                       f"{_short(report.model_digest or '')}")
        else:
            report.add("lineage-digest", False, f"lineage: run {run.id} records no model or signature")
        for s in statements:
            if s.get("predicateType") == CYCLONEDX_BOM:
                _check_bom_lineage(store, run, s, report)
        final = store.latest_decision(run.id, "final")
        decision = final.decision if final is not None else run.decision
        report.decision = decision
        if attested_decision is not None:
            report.add("lineage-decision", decision == attested_decision,
                       f"lineage: decision '{decision}'" + (" matches the audit attestation" if decision == attested_decision
                                                            else f" but the audit attestation says '{attested_decision}'"))
        else:
            report.add("lineage-decision", decision != "block",
                       f"lineage: run {run.id} decision '{decision}'" + (" (blocked by policy)" if decision == "block" else ""))
    finally:
        store.close()


def _require_existing_db(db_url: str) -> None:
    """Verification reads the system of record; opening a mistyped SQLite path would create an empty one."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(db_url)
    except Exception:
        raise GovernError("--db: not a database URL (expected e.g. sqlite:///path/lineage.db)") from None
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not Path(database).is_file():
        raise GovernError(f"--db: no lineage DB at {url.database}")


# ------------------------------------------------------------------------------------------ entry points
def verify_model(model_path: str | Path, signature: str | Path, trust: Trust, *,
                 provenance: list[str | Path] | tuple[str | Path, ...] = (), db_url: str | None = None,
                 run_id: str | None = None) -> VerificationReport:
    """Verify a model directory or file against its ``model_signing`` bundle (see module docstring)."""
    model, bundle_path = Path(model_path), Path(signature)
    if not model.exists():
        raise GovernError(f"{model}: no such model file or directory")
    trust.kind()
    report = VerificationReport(subject=str(model), kind="model")
    try:
        payload = _open_signed_payload(bundle_path, trust, report, "signature")
        statement = read_statement(payload)
        ptype = statement.get("predicateType")
        if ptype not in MODEL_SIGNATURE_PREDICATES:
            raise _Failed(f"signature: {bundle_path} holds a {ptype} statement, not a model signature")
        try:
            expected = _ms_signing.dsse_payload_to_manifest(statement)
        except (KeyError, ValueError) as exc:
            raise _Failed(f"signature: the signed manifest is inconsistent: {exc}") from None
    except _Failed as failed:
        report.add("signature", False, str(failed))
        return report
    report.add("signature", True, f"signature: valid, signed by {report.signer}")

    actual = _actual_manifest(model, expected)
    problems = _file_diff(_digests(expected), _digests(actual))
    files = [FileDigest(name=n, sha256=d) for n, d in _digests(actual).items()]
    report.files = len(files)
    for p in problems:
        report.add("files", False, p)
    if not problems:
        report.add("files", True, f"files: all {len(files)} files match the signed digests")

    statements: list[dict[str, Any]] = []
    sha_files: dict[str, str] = {}
    if provenance or db_url or _is_sha256_per_file(actual):
        sha_files = _sha256_files(model, actual)  # free when the manifest is already sha256 per file
        report.model_digest = (tree_digest([FileDigest(name=n, sha256=d) for n, d in sha_files.items()])
                               if model.is_dir() else next(iter(sha_files.values()), None))
    for prov in provenance:
        st = _check_provenance(Path(prov), trust, sha_files, report)
        if st is not None:
            statements.append(st)
            if st.get("predicateType") == GOVERN_AUDIT_V1:
                report.decision = (st.get("predicate") or {}).get("decision")
            if st.get("predicateType") == CYCLONEDX_BOM:
                _check_bom(Path(prov), st, report)
    if db_url:
        _check_lineage(db_url, run_id, statements, report)
    return report


def _is_sha256_per_file(manifest: Any) -> bool:
    args = manifest.serialization_type
    return bool(args["method"] == "files" and args["hash_type"] == "sha256")


def verify_artifact(artifact: str | Path, bundle: str | Path, *, identity: str, issuer: str,
                    staging: bool = False) -> VerificationReport:
    """Verify a plain sigstore bundle (``sigstore sign FILE``) offline: the artifact's digest, the
    certificate chain to the shipped trust root, the Rekor inclusion proof, and the identity."""
    from sigstore.verify import policy

    path, bundle_path = Path(artifact), Path(bundle)
    if not path.is_file():
        raise GovernError(f"{path}: artifact not found (a plain sigstore bundle signs one file)")
    trust = Trust(identity=identity, issuer=issuer, staging=staging)
    _load_bundle_json(bundle_path)
    report = VerificationReport(subject=str(path), kind="artifact", files=1)
    verifier, sig_bundle = _sigstore_verifier(trust), _sigstore_bundle(bundle_path)
    try:
        verifier.verify_artifact(path.read_bytes(), sig_bundle, policy.Identity(identity=identity, issuer=issuer))
    except Exception as exc:
        report.add("signature", False, str(_sigstore_failure("signature", trust, exc)))
        return report
    report.signer = f"{_sigstore_identity(sig_bundle)} ({issuer})"
    report.add("signature", True, f"signature: valid for {path.name}, signed by {report.signer} "
                                  f"({'staging' if staging else 'production'} trust root, offline)")
    return report


def verify(path: str | Path, signature: str | Path, trust: Trust, *,
           provenance: list[str | Path] | tuple[str | Path, ...] = (), db_url: str | None = None,
           run_id: str | None = None) -> VerificationReport:
    """Verify ``path`` against ``signature``: a model signature (DSSE) or a plain artifact bundle."""
    doc = _load_bundle_json(Path(signature))
    if "messageSignature" in doc and "dsseEnvelope" not in doc:
        if trust.kind() != "sigstore":
            raise GovernError(f"{signature}: a plain sigstore bundle is verified with --identity and --issuer")
        if provenance or db_url:
            raise GovernError("--provenance and --db apply to model signatures, not to plain artifact bundles")
        return verify_artifact(path, signature, identity=trust.identity or "", issuer=trust.issuer or "",
                               staging=trust.staging)
    return verify_model(path, signature, trust, provenance=provenance, db_url=db_url, run_id=run_id)
