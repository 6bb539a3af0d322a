"""Provenance attestations: what a model was built from, and what its audits found, signed.

Two in-toto Statements v1 share the same subjects (every model file, named by its relative path, with
its sha256):

- **SLSA provenance v1** (``https://slsa.dev/provenance/v1``): the build definition (govern's build type;
  external parameters = the run config and the policy, each with its digest; resolved dependencies = the
  data sets, original and redacted, the base model and the Python environment) and the run details
  (builder, run id, start and end).
- **govern audit v1** (``https://govern.dev/audit/v1``): the policy decision, ε/δ as the accountant
  computed them, membership-inference figures, the fairness summary and PII *counts* — never PII values.

A third, when the run's BOM extra is installed, shares them too:

- **CycloneDX BOM** (``https://cyclonedx.org/bom``, in-toto's predicate type for a CycloneDX document): the
  run's ML-BOM (:mod:`govern.export.bom`), built from the lineage DB; the signing stage attests it.

Each is signed as a DSSE envelope in a sigstore bundle v0.3 (the same format ``model_signing`` writes),
so ``govern verify --provenance`` — or any in-toto/SLSA tool that reads sigstore bundles — can check
that the statement is authentic and that its subjects are the files on disk.

The API here is stable; the predicate layouts are versioned by their URIs.
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from govern.config import canonical_json
from govern.errors import GovernError
from govern.evidence import Evidence
from govern.signing._signers import sign_payload
from govern.signing.signing import FileDigest, Signer, SignerConfig, hashing_config, manifest_files
from govern.stage import jsonable

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
GOVERN_AUDIT_V1 = "https://govern.dev/audit/v1"
CYCLONEDX_BOM = "https://cyclonedx.org/bom"
GOVERN_BUILD_TYPE = "https://govern.dev/build/fine-tune/v1"
GOVERN_BUILDER_ID = "https://govern.dev/builder/cli/v1"

__all__ = [
    "CYCLONEDX_BOM",
    "GOVERN_AUDIT_V1",
    "GOVERN_BUILD_TYPE",
    "SLSA_PROVENANCE_V1",
    "STATEMENT_TYPE",
    "SignedStatement",
    "audit_predicate",
    "build_provenance",
    "sign_statement",
    "statement_bytes",
    "subjects_for",
]


class SignedStatement(BaseModel):
    bundle_path: str
    predicate_type: str
    payload_digest: str
    subjects: int
    signer: str


def _iso(value: datetime | str | None) -> str:
    if value is None:
        return datetime.now(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _hex(digest: str | None) -> str | None:
    """'sha256:ab..' or 'ab..' → 'ab..' (in-toto digest sets carry bare hex under the algorithm key)."""
    if not digest:
        return None
    return digest.split(":", 1)[1] if digest.startswith("sha256:") else digest


def _doc_digest(document: Any) -> str:
    return hashlib.sha256(canonical_json(jsonable(document)).encode()).hexdigest()


def subjects_for(model_path: str | Path, files: list[FileDigest] | None = None) -> list[dict[str, Any]]:
    """in-toto subjects: one per model file (relative path, sha256). Hashes the model unless given."""
    model = Path(model_path)
    if files is None:
        files = manifest_files(hashing_config().hash(model))
    subjects = []
    for f in files:
        name = model.name if f.name == "." else f.name
        subjects.append({"name": name, "digest": {"sha256": f.sha256}})
    return sorted(subjects, key=lambda s: s["name"])


def _dependency(entry: dict[str, Any], kind: str) -> dict[str, Any]:
    """A SLSA ResourceDescriptor from a loose dict (name, path/uri, digest/sha256, anything else)."""
    digest = _hex(entry.get("sha256") or entry.get("digest"))
    out: dict[str, Any] = {"name": str(entry.get("name") or entry.get("role") or kind)}
    uri = entry.get("uri") or entry.get("path")
    if uri:
        out["uri"] = str(uri)
    if digest:
        out["digest"] = {"sha256": digest}
    annotations = {k: jsonable(v) for k, v in entry.items()
                   if k not in ("name", "uri", "path", "sha256", "digest") and v is not None}
    annotations["kind"] = kind
    out["annotations"] = annotations
    return out


def build_provenance(
    model_dir: str | Path,
    *,
    run: dict[str, Any],
    config: Any,
    policy: Any,
    datasets: list[dict[str, Any]],
    base_model: dict[str, Any] | None,
    versions: dict[str, str],
    audit: dict[str, Any],
    files: list[FileDigest] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build the SLSA provenance statement and the audit statement for a model.

    ``run``: ``id`` (the invocation id), ``name``, ``started_at``, ``finished_at`` (default now), optional
    ``internal`` (internal parameters: device, seed, stage input digests...).
    ``config``: the validated run config (model or dict). ``policy``: ``name``, ``version``, ``digest`` and
    ``document`` (a dict or the Policy model). ``datasets``: dicts with ``name``/``role``, ``path``,
    ``sha256`` and e.g. ``fingerprint``, ``rows``, ``redacted``. ``base_model``: ``name``, ``path``,
    ``digest``. ``versions``: package → version. ``audit``: the audit predicate (see
    :func:`audit_predicate`). ``files``: the model's file digests when already known (from signing).
    """
    if "id" not in run:
        raise GovernError("provenance: run needs an 'id' (the run id becomes the SLSA invocationId)")
    subjects = subjects_for(model_dir, files)
    config_doc = jsonable(config)
    policy_doc = jsonable(policy) if isinstance(policy, dict) else {"document": jsonable(policy)}
    policy_document = policy_doc.get("document", {})
    policy_param = {
        "name": policy_doc.get("name") or (policy_document.get("metadata") or {}).get("name"),
        "version": policy_doc.get("version") or (policy_document.get("metadata") or {}).get("version"),
        "digest": {"sha256": _hex(policy_doc.get("digest")) or _doc_digest(policy_document)},
        "document": policy_document,
    }
    dependencies = [_dependency(d, "dataset") for d in datasets]
    if base_model:
        dependencies.append(_dependency(base_model, "base-model"))
    dependencies += [
        {"name": f"pypi:{pkg}", "uri": f"pkg:pypi/{pkg}@{ver}", "annotations": {"kind": "python-package"}}
        for pkg, ver in sorted(versions.items())
    ]
    dependencies.append({"name": "python", "uri": f"pkg:generic/python@{platform.python_version()}",
                         "annotations": {"kind": "runtime", "implementation": platform.python_implementation()}})
    slsa = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": GOVERN_BUILD_TYPE,
                "externalParameters": {
                    "config": {"digest": {"sha256": _doc_digest(config_doc)}, "document": config_doc},
                    "policy": policy_param,
                },
                "internalParameters": jsonable(run.get("internal") or {}),
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": run.get("builder_id") or GOVERN_BUILDER_ID,
                            "version": {"govern": versions.get("govern", "unknown")}},
                "metadata": {
                    "invocationId": str(run["id"]),
                    "startedOn": _iso(run.get("started_at")),
                    "finishedOn": _iso(run.get("finished_at")),
                },
                "byproducts": [{"name": "host", "annotations": {"hostname": socket.gethostname()}}],
            },
        },
    }
    audit_statement = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": GOVERN_AUDIT_V1,
        "predicate": {"runId": str(run["id"]), "policy": {k: policy_param[k] for k in ("name", "version", "digest")},
                      **jsonable(audit)},
    }
    return slsa, audit_statement


def audit_predicate(evidence: Evidence, decision: str, *, decision_basis: str = "policy") -> dict[str, Any]:
    """The audit figures from the evidence document: numbers and counts only.

    PII appears as counts per entity type (never values); ε is the accountant's, never the configured
    target.
    """
    out: dict[str, Any] = {"decision": decision, "decisionBasis": decision_basis}
    t = evidence.training
    if t is not None:
        out["privacy"] = {"dpEnabled": t.dp_enabled, "epsilon": t.epsilon, "delta": t.delta,
                          "accountant": t.accountant, "noiseMultiplier": t.noise_multiplier,
                          "sampleRate": t.sample_rate, "steps": t.steps, "maxGradNorm": t.max_grad_norm}
    m = evidence.membership
    if m is not None:
        out["membership"] = {
            "maxAuc": m.max_auc, "members": m.n_members, "nonMembers": m.n_nonmembers,
            "attacks": [{"name": a.name, "auc": a.auc, "aucCi": [a.auc_ci_low, a.auc_ci_high],
                         "tprAtFpr": [{"fpr": p.fpr, "tpr": p.tpr} for p in a.tpr_at_fpr]} for a in m.attacks],
            "canaryEpsilonLowerBound": m.canaries.epsilon_lower_bound if m.canaries else None,
        }
        if m.extraction is not None:
            out["membership"]["extraction"] = {
                "prefixTokens": m.extraction.prefix_tokens, "suffixTokens": m.extraction.suffix_tokens,
                "memberExactMatchRate": m.extraction.members.exact_match_rate,
                "nonMemberExactMatchRate": m.extraction.nonmembers.exact_match_rate,
                "excessExactMatchRate": m.extraction.excess_exact_match_rate}
        if m.pii_regurgitation is not None:  # rates and counts: the values and their hashes stay out
            r = m.pii_regurgitation
            out["membership"]["piiRegurgitation"] = {
                "inserted": r.inserted, "insertedReproduced": r.inserted_reproduced, "insertedRate": r.inserted_rate,
                "heldOut": r.held_out, "heldOutReproduced": r.held_out_reproduced}
    f = evidence.fairness
    if f is not None:
        out["fairness"] = {
            "sensitiveColumns": f.sensitive_columns,
            "disparities": [{"attribute": d.attribute, "metric": d.metric, "value": d.value,
                             "ci": [d.ci_low, d.ci_high]} for d in f.disparities],
            "insufficientGroups": f.insufficient_groups,
        }
    p = evidence.pii
    if p is not None:
        out["pii"] = {"engine": p.engine, "recordsScanned": p.records_scanned, "recordsAffected": p.records_affected,
                      "byEntity": p.by_entity, "blocked": p.blocked, "redacted": p.redacted,
                      "redactionMode": p.redaction_mode}
    e = evidence.evaluation
    if e is not None:
        out["evaluation"] = {"task": e.task, "n": e.n, "accuracy": e.accuracy, "macroF1": e.macro_f1,
                             "ece": e.ece, "perplexity": e.perplexity}
    return out


def statement_bytes(statement: dict[str, Any]) -> bytes:
    """The exact bytes that are signed: canonical JSON (sorted keys), so digests are reproducible."""
    if statement.get("_type") != STATEMENT_TYPE:
        raise GovernError(f"not an in-toto Statement v1 (_type must be {STATEMENT_TYPE})")
    if not statement.get("subject"):
        raise GovernError("an in-toto statement needs at least one subject")
    return canonical_json(statement).encode()


def sign_statement(statement: dict[str, Any], signer: SignerConfig | Signer, out_path: str | Path) -> SignedStatement:
    """Sign ``statement`` as a DSSE envelope and write the sigstore bundle to ``out_path``."""
    ready = Signer.of(signer)
    payload = statement_bytes(statement)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    sign_payload(ready.backend, payload).write(out)
    return SignedStatement(bundle_path=str(out), predicate_type=statement["predicateType"],
                           payload_digest="sha256:" + hashlib.sha256(payload).hexdigest(),
                           subjects=len(statement["subject"]), signer=ready.identity)


def read_statement(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except ValueError:
        raise GovernError("the DSSE payload is not JSON") from None
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        raise GovernError(f"the DSSE payload is not an in-toto Statement v1 ({STATEMENT_TYPE})")
    return doc
