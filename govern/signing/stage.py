"""The signing stage: sign the trained model, then its provenance, audit and BOM attestations.

The third attestation (``signing.attest_bom``) is the run's CycloneDX ML-BOM, built from the lineage DB as
it stands when signing starts (every earlier stage is recorded by then), as an in-toto statement whose
subjects are the model files, like the other two; the BOM's own model digest must be the one just signed.

Reads the trained model folder (:class:`govern.stage.ModelFolder`) and the evidence so far; writes every
bundle into the run's ``signing/`` folder (never into the model directory, which would change what was
signed); returns :class:`govern.evidence.SigningEvidence`, the bundles as artifacts and as
``StageResult.signatures`` (one signature row per bundle), and :class:`SigningOutputs` (the bundles and the
exact ``govern verify`` command a compliance officer runs).

Optional inputs the pipeline provides: ``ctx.gate`` (the gate decision so far, waivers applied, and the
policy file's digest) and ``ctx.started_at``.
"""

from __future__ import annotations

import json
import logging
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from govern.errors import GovernError, StageError
from govern.evidence import SigningEvidence
from govern.signing.commands import verify_command
from govern.signing.keys import public_key_fingerprint
from govern.signing.provenance import (
    CYCLONEDX_BOM,
    GOVERN_AUDIT_V1,
    SLSA_PROVENANCE_V1,
    STATEMENT_TYPE,
    audit_predicate,
    build_provenance,
    sign_statement,
    subjects_for,
)
from govern.signing.signing import Signer, SignerConfig, sign_model
from govern.stage import (
    ArtifactOut,
    DataFiles,
    ModelFolder,
    SignatureOut,
    StageContext,
    StageOutputs,
    StageResult,
    artifact_for,
    digest_of,
    judged_model_digest,
    trained_model_digest,
)
from govern.versions import package_versions

log = logging.getLogger("govern.signing")
#: The lineage DB's signature kind of each attestation.
_SIGNATURE_KINDS = {SLSA_PROVENANCE_V1: "provenance", GOVERN_AUDIT_V1: "audit", CYCLONEDX_BOM: "bom"}


def environment_versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    """What the provenance lists as resolved dependencies: govern's one list, plus what training recorded."""
    return {**package_versions(), **(extra or {})}


class SigningOutputs(StageOutputs):
    bundle: str
    provenance: list[str]
    verify_command: str
    model_digest: str
    signer: str | None = None
    warnings: list[str] = []


def _decision_so_far(ctx: StageContext) -> tuple[str, str]:
    if ctx.gate is not None:
        return ctx.gate.decision, "policy gates with waivers (pipeline)"
    from govern.policy.engine import evaluate

    return evaluate(ctx.policy, ctx.evidence.document(), final=False).decision, "policy gates without waivers"


def _datasets(ctx: StageContext) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if ctx.evidence.data is not None:
        for f in ctx.evidence.data.files:
            out.append({"name": f.role, "path": f.path, "sha256": f.sha256, "fingerprint": f.fingerprint,
                        "rows": f.rows, "format": f.format, "redacted": False})
    if ctx.evidence.pii is not None:
        paths = ctx.find(DataFiles)
        for role, digest in sorted(ctx.evidence.pii.redacted_files.items()):
            path = {"train": paths.train_path, "eval": paths.eval_path}.get(role) if paths is not None else None
            out.append({"name": f"{role}.redacted", "path": path, "sha256": digest,
                        "redacted": True, "redaction_mode": ctx.evidence.pii.redaction_mode})
    return out


def _public_key_for(signer: Signer, private_key: Path, out_dir: Path) -> Path:
    """The public half to name in the verify command: the sibling ``.pub.pem`` when it matches, else
    written (public material only) next to the bundles."""
    from cryptography.hazmat.primitives import serialization

    key = signer.backend._private_key  # type: ignore[attr-defined]  # noqa: SLF001 (already loaded to sign)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    stem = private_key.name.removesuffix(".pem")
    for candidate in (private_key.with_name(stem + ".pub.pem"), private_key.with_name(stem + ".pub")):
        if candidate.is_file():
            try:
                if public_key_fingerprint(candidate.read_bytes()) == public_key_fingerprint(pem):
                    return candidate
            except Exception:
                continue
    target = out_dir / "signing-key.pub.pem"
    target.write_bytes(pem)
    return target


class SigningStage:
    """Stage ``signing``: enabled when ``signing.method`` is not ``none``."""

    name = "signing"
    outputs_model = SigningOutputs

    def enabled(self, ctx: StageContext) -> bool:
        return ctx.config.signing.method != "none"

    def input_digest(self, ctx: StageContext) -> str:
        doc = ctx.evidence.document()
        doc.pop("signing", None)
        # The bytes to be signed as they are on disk now: a reused signature must be over this very model.
        trained = ctx.find(ModelFolder)
        return digest_of(ctx.config.signing, trained, trained_model_digest(ctx), doc,
                         ctx.gate.decision if ctx.gate is not None else None)

    def run(self, ctx: StageContext) -> StageResult:
        trained = ctx.find(ModelFolder)
        if trained is None or not trained.model_dir:
            raise StageError(self.name, "no trained model to sign: the training stage produced no model_dir")
        model_dir = Path(trained.model_dir)
        judged_model_digest(ctx, self.name)  # only the folder training wrote (and the audits judged) is signed
        out_dir = ctx.stage_dir(self.name)
        cfg = ctx.config.signing
        try:
            signer_config = SignerConfig.from_run_config(cfg).model_copy(
                update={"key_permissions": ctx.policy.signing.private_key_permissions})
            signer = Signer(signer_config)
            for warning in signer.warnings:  # a stage never prints: logging reaches stderr, outputs the DB
                log.warning("%s", warning)
            task = ctx.progress.task("signing model", total=None, unit="files")
            result = sign_model(model_dir, signer, out_dir / "model.sigstore.json")
            task.advance(len(result.files))
            task.close()
            warnings = list(signer.warnings)
            signatures = [SignatureOut(**result.signature_record("model"))]
            artifacts: list[ArtifactOut] = [artifact_for(Path(result.bundle_path), "model.sigstore.json", "bundle")]
            statements: list[tuple[str, dict[str, Any]]] = []
            if cfg.provenance:
                statements += self._provenance_statements(ctx, model_dir, result)
            bom = self._bom_statement(ctx, model_dir, result, warnings)
            if bom is not None:
                statements.append(("provenance.bom", bom))
                (out_dir / "bom.cdx.json").write_text(json.dumps(bom["predicate"], indent=2) + "\n", encoding="utf-8")
                artifacts.append(artifact_for(out_dir / "bom.cdx.json", "bom.cdx.json", "report"))
            bundles, attestations = self._sign_statements(statements, signer, out_dir, artifacts)
            signatures += [SignatureOut(**{**result.signature_record(_SIGNATURE_KINDS[a]), "bundle_path": b})
                           for b, a in zip(bundles, attestations, strict=True)]
            trust_args = self._trust_args(cfg, signer, out_dir)
        except StageError:
            raise
        except GovernError as exc:
            raise StageError(self.name, str(exc)) from None

        command = verify_command(model_dir, Path(result.bundle_path), trust_args, bundles, ctx.db_url, ctx.run_id)
        evidence = SigningEvidence(
            method=result.method, signed=True, bundle=result.bundle_path, signer=result.signer,
            files=len(result.files), manifest_digest=result.manifest_digest, provenance_bundles=bundles,
            model_digest=result.model_digest, attestations=attestations,
        )
        return StageResult(
            evidence=evidence,
            artifacts=artifacts,
            outputs=SigningOutputs(bundle=result.bundle_path, provenance=bundles, verify_command=command,
                                   model_digest=result.model_digest, signer=result.signer,
                                   warnings=warnings),
            signatures=signatures,
        )

    def _provenance_statements(self, ctx: StageContext, model_dir: Path, result: Any
                               ) -> list[tuple[str, dict[str, Any]]]:
        decision, basis = _decision_so_far(ctx)
        training = ctx.evidence.training
        started = ctx.started_at or datetime.fromtimestamp(ctx.run_dir.stat().st_ctime, UTC)
        slsa, audit = build_provenance(
            model_dir,
            run={"id": ctx.run_id, "name": ctx.config.name, "started_at": started, "finished_at": datetime.now(UTC),
                 "internal": {"task": ctx.config.task, "device": training.device if training else None,
                              "seed": training.seed if training else ctx.config.training.seed,
                              "signingMethod": result.method}},
            config=ctx.config,
            policy={"name": ctx.policy.metadata.name, "version": ctx.policy.metadata.version,
                    "digest": ctx.gate.policy_digest if ctx.gate is not None else None, "document": ctx.policy.model_dump(mode="json")},
            datasets=_datasets(ctx),
            base_model=dict(training.base_model) if training and training.base_model else None,
            versions=environment_versions(training.versions if training else None),
            audit=audit_predicate(ctx.evidence, decision, decision_basis=basis),
            files=result.files,
        )
        return [("provenance.slsa", slsa), ("provenance.audit", audit)]

    def _bom_statement(self, ctx: StageContext, model_dir: Path, result: Any, warnings: list[str]
                       ) -> dict[str, Any] | None:
        """The CycloneDX BOM as an in-toto statement, or None when ``attest_bom`` is off — or ``auto`` and the
        BOM cannot be built here (no bom extra, no lineage DB), which is said in the stage's warnings."""
        mode = ctx.config.signing.attest_bom
        if mode is False:
            return None
        from govern.export.bom import BOMUnavailableError, cyclonedx_digests, cyclonedx_of_run

        reason = "the stage runs without a lineage DB, which the BOM is built from"
        if ctx.db_url:
            try:
                document = cyclonedx_of_run(ctx.db_url, ctx.run_id)
            except BOMUnavailableError as exc:
                reason = str(exc)
            else:
                claimed = cyclonedx_digests(document).model
                if claimed != result.model_digest:
                    raise StageError(self.name, f"the BOM built from the lineage DB names model sha256 {claimed}, "
                                                f"not the model just signed ({result.model_digest})")
                return {"_type": STATEMENT_TYPE, "subject": subjects_for(model_dir, result.files),
                        "predicateType": CYCLONEDX_BOM, "predicate": document}
        if mode is True:
            raise StageError(self.name, f"signing.attest_bom is true, but the BOM cannot be attested: {reason}")
        warnings.append(f"no BOM attestation (signing.attest_bom: auto): {reason}")
        log.warning("%s", warnings[-1])
        return None

    def _sign_statements(self, statements: list[tuple[str, dict[str, Any]]], signer: Signer, out_dir: Path,
                         artifacts: list[ArtifactOut]) -> tuple[list[str], list[str]]:
        bundles, types = [], []
        for stem, statement in statements:
            (out_dir / f"{stem}.json").write_text(json.dumps(statement, indent=2, sort_keys=True))
            signed = sign_statement(statement, signer, out_dir / f"{stem}.sigstore.json")
            bundles.append(signed.bundle_path)
            types.append(signed.predicate_type)
            artifacts.append(artifact_for(Path(signed.bundle_path), f"{stem}.sigstore.json", "provenance"))
        return bundles, types

    def _trust_args(self, cfg: Any, signer: Signer, out_dir: Path) -> list[str]:
        if cfg.method == "key":
            return ["--key", shlex.quote(str(_public_key_for(signer, Path(cfg.private_key), out_dir)))]
        if cfg.method == "certificate":
            chain = list(cfg.certificate_chain)
            if not chain:
                return ["--cert-chain", "CA_BUNDLE.pem"]
            return [a for c in chain for a in ("--cert-chain", shlex.quote(str(c)))]
        identity, _, issuer = signer.identity.partition(" (")
        args = ["--identity", shlex.quote(identity), "--issuer", shlex.quote(issuer.rstrip(")"))]
        return args + (["--staging"] if cfg.sigstore_staging else [])
