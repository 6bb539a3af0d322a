"""The model registry: every model a governed run produces is a *version* of a *registered model*.

Lifecycle: ``candidate → approved → deployed → deprecated``, and ``revoked`` from any of them. Each move is an
action by a named user (:mod:`govern.actor`) with a reason, stored in ``model_actions`` and committed to by a
hash-chained audit event (:meth:`LineageStore.apply_model_steps`), so ``govern lineage verify`` names an
edited approval. Who may approve what is the policy's ``approval:`` section (the policy the run was judged
under, unless another is given): four eyes, the run's decision, a signature that still verifies over the
recorded digest, and how many approvals deployment needs.

The CLI (``govern model …``), the console and CI gates call these functions; none of them writes SQL.
Concurrency: a step applies only if the version still has the status this module decided on (compare-and-
set inside the store's serialised write), so of concurrent approvals exactly one moves a version.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from govern.errors import GovernError, NotFoundError, RecordIntegrityError
from govern.lineage import LineageStore, ModelVersionRecord, RunRecord
from govern.lineage.store import ModelStep, StaleModelStatus
from govern.policy import LoadedPolicy, load_policy
from govern.policy.loader import policy_from_document
from govern.policy.schema import ApprovalPolicy

if TYPE_CHECKING:  # signing pulls in model_signing and sigstore: imported only where a signature is checked
    from govern.signing.verifying import Trust

__all__ = [
    "ApprovalRefused",
    "ModelStatusAnswer",
    "SignatureCheck",
    "approve",
    "check_signature",
    "model_status",
    "promote",
    "register_after_run",
    "register_run",
    "resolve",
    "revoke",
    "revoke_dataset",
    "rollback",
]

Requirement = Literal["registered", "approved", "deployed"]
#: Which statuses satisfy ``model status --require``: deployment implies approval.
SATISFIES: dict[str, frozenset[str]] = {
    "registered": frozenset({"candidate", "approved", "deployed"}),
    "approved": frozenset({"approved", "deployed"}),
    "deployed": frozenset({"deployed"}),
}
#: Output artifact kinds that are "the model" of a run (the signed folder first).
_MODEL_KINDS = ("adapter", "model")
_STALE_RETRIES = 3


class ApprovalRefused(GovernError):
    """The policy or the model's state does not allow this action (a decision, not bad input: exit 1)."""

    exit_code = 1


class ModelStatusAnswer(BaseModel):
    """What ``govern model status`` and the API answer for a digest: the same object for both."""

    digest: str
    status: str = Field(description="unregistered, candidate, approved, deployed, deprecated or revoked")
    versions: list[ModelVersionRecord] = Field(default_factory=list)
    require: str | None = None
    meets: bool | None = None


# ------------------------------------------------------------------------------------------ lookup
def normalise_digest(value: str) -> str:
    """A model tree digest as stored (64 lowercase hex), from ``sha256:HEX`` or ``HEX``."""
    text = value.strip().lower().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise GovernError(f"'{value}' is not a sha256 digest (expected sha256:<64 hex digits>)")
    return text


def _model_of_run(store: LineageStore, run: RunRecord) -> tuple[str, str]:
    """(digest, path) of the model a run produced: the signed one, else its trained model artifact."""
    for signature in store.signatures(run.id):
        if signature.kind == "model":
            return signature.subject_digest, signature.subject
    outputs = [a for a in store.artifacts(run.id) if a.role == "output" and a.kind in _MODEL_KINDS]
    outputs.sort(key=lambda a: (_MODEL_KINDS.index(a.kind), a.id))
    if not outputs:
        raise NotFoundError(f"run {run.id} produced no model (no model or adapter artifact): nothing to register")
    return outputs[0].sha256, outputs[0].path


def _initiator(store: LineageStore, run_id: str) -> tuple[str, str]:
    """Who ran the training: the actor recorded on the run's ``run.created`` event."""
    for event in store.events(run_id):
        if event.kind == "run.created":
            actor = event.payload.get("actor") or {}
            return str(actor.get("name") or "unknown"), str(actor.get("source") or "unknown")
    return "unknown", "unknown"


def register_run(store: LineageStore, run_id: str, *, model: str | None = None) -> ModelVersionRecord:
    """Register the model ``run_id`` produced as a version of ``model`` (default: the run's name)."""
    run = store.get_run(run_id)
    if run.kind != "run":
        raise GovernError(f"run {run.id} is a '{run.kind}' record, not a governed run: only runs produce models")
    if run.status == "running":
        raise GovernError(f"run {run.id} is still running: register its model once it has finished")
    digest, path = _model_of_run(store, run)
    name, source = _initiator(store, run.id)
    return store.register_model_version(model=model or run.name, run_id=run.id, digest=digest, path=path,
                                        initiator=name, initiator_source=source)


def register_after_run(store: LineageStore, run_id: str) -> ModelVersionRecord | None:
    """What the pipeline calls when a run completes: register its model as a candidate, if it produced one."""
    try:
        return register_run(store, run_id)
    except NotFoundError:
        return None


def resolve(store: LineageStore, ref: str) -> ModelVersionRecord:
    """A version from ``NAME@vN``, ``sha256:DIGEST`` (when unambiguous) or a run id (registered on demand)."""
    ref = ref.strip()
    if "@" in ref:
        name, _, number = ref.rpartition("@")
        if not number.lstrip("v").isdigit():
            raise GovernError(f"'{ref}': expected NAME@vN (e.g. support-intent@v3)")
        found = store.model_versions(model=name, version=int(number.lstrip("v")))
        if not found:
            raise NotFoundError(f"no model version {ref} in the registry (see `govern model list`)")
        return found[0]
    if ref.startswith("run-") or ref == "latest":
        run_id = store.resolve_run_id(ref)
        registered = store.model_versions(run_id=run_id)
        return registered[0] if registered else register_run(store, run_id)
    versions = store.model_versions(digest=normalise_digest(ref))
    if not versions:
        raise NotFoundError(f"no model version with digest {ref} in the registry")
    if len(versions) > 1:
        raise GovernError(f"digest {ref} is registered under several models: name one of "
                          f"{', '.join(v.ref for v in versions)}")
    return versions[0]


def _require_intact(store: LineageStore, run_id: str) -> None:
    """Act only on a record that verifies: approving over an edited decision would launder it."""
    report = store.verify_run(run_id)
    if not report.ok:
        raise RecordIntegrityError(f"run {run_id}", report.problems)


def _policy(store: LineageStore, version: ModelVersionRecord, policy: str | Path | None) -> LoadedPolicy:
    if policy is not None:
        return load_policy(policy)
    run = store.get_run(version.run_id)
    if run.policy_document is None:
        raise GovernError(f"run {run.id} records no policy: give --policy to say which approval rules apply")
    return policy_from_document(run.policy_document, run.policy_digest or "", source=f"policy of {run.id}",
                                text=run.policy_source)


def _apply(store: LineageStore, event_kind: str, plan: ModelStep | list[ModelStep]) -> list[ModelVersionRecord]:
    return store.apply_model_steps(event_kind, plan if isinstance(plan, list) else [plan])


# ------------------------------------------------------------------------------------------ approve
class SignatureCheck(BaseModel):
    """A model version's signature verified now: over the recorded digest, against the model on disk, with
    the trust its signing stage recorded (what approval under ``require_signature`` checks)."""

    verified: bool
    problem: str | None = Field(default=None, description="Why it does not verify, in words.")
    signer: str | None = None
    bundle: str | None = None
    files: int = 0


def check_signature(store: LineageStore, version: ModelVersionRecord, trust: Trust | None = None) -> SignatureCheck:
    """The live verification result for ``version`` (the console's model page); never raises for a signature
    that fails — that is the answer."""
    try:
        details = _signature_check(store, version, trust)
    except ApprovalRefused as exc:
        return SignatureCheck(verified=False, problem=str(exc))
    return SignatureCheck.model_validate(details)


def _signature_check(store: LineageStore, version: ModelVersionRecord, trust: Trust | None) -> dict[str, object]:
    """Verify the model's signature now, over the recorded digest; refuse when it does not hold."""
    from govern.signing.verifying import verify_model
    from govern.stage import tree_sha256

    signatures = [s for s in store.signatures(version.run_id) if s.kind == "model"]
    if not signatures:
        raise ApprovalRefused(f"{version.ref} is not signed and the policy requires a signature "
                              "(approval.require_signature)")
    signature = signatures[-1]
    if signature.subject_digest != version.digest:
        raise ApprovalRefused(f"{version.ref}: the recorded signature is over {signature.subject_digest}, not the "
                              f"version's digest {version.digest}")
    model = Path(version.path)
    if not model.exists():
        raise ApprovalRefused(f"{version.ref}: the model at {model} is gone; its signature cannot be verified")
    on_disk = tree_sha256(model)
    if on_disk != version.digest:
        raise ApprovalRefused(f"{version.ref}: the model at {model} changed since it was recorded (sha256 "
                              f"{on_disk}, recorded {version.digest}): it is not the model that was judged")
    chosen = trust if trust is not None else _recorded_trust(store, version.run_id)
    if chosen is None:
        raise ApprovalRefused(f"{version.ref}: no trusted key or identity is recorded for its signature; give "
                              "--key, --cert-chain or --identity/--issuer")
    report = verify_model(model, Path(signature.bundle_path), chosen)
    if not report.verified:
        raise ApprovalRefused(f"{version.ref}: signature verification failed: {'; '.join(report.failures)}")
    return {"verified": True, "signer": report.signer, "bundle": signature.bundle_path, "files": report.files}


def _recorded_trust(store: LineageStore, run_id: str) -> Trust | None:
    """The trust the signing stage named in its ``govern verify`` command (a committed row of the run)."""
    from govern.signing.verifying import Trust

    for stage in reversed(store.stage_executions(run_id)):
        command = (stage.outputs or {}).get("verify_command") if stage.stage == "signing" else None
        if not command:
            continue
        args = shlex.split(str(command))
        values: dict[str, list[str]] = {}
        for flag, value in zip(args, [*args[1:], ""], strict=True):
            if flag in ("--key", "--cert-chain", "--identity", "--issuer"):
                values.setdefault(flag, []).append(value)
        return Trust(public_key=Path(values["--key"][0]) if "--key" in values else None,
                     certificate_chain=[Path(p) for p in values.get("--cert-chain", [])],
                     identity=next(iter(values.get("--identity", [])), None),
                     issuer=next(iter(values.get("--issuer", [])), None),
                     staging="--staging" in args)
    return None


def _decision_check(store: LineageStore, version: ModelVersionRecord, rules: ApprovalPolicy) -> dict[str, object]:
    run = store.get_run(version.run_id)
    final = store.latest_decision(run.id, "final") or store.latest_decision(run.id)
    decision = final.decision if final is not None else run.decision
    waived = sorted({r.rule_id for r in (final.results if final is not None else []) if r.status == "waived"})
    allowed = {"pass": {"pass"}, "warn": {"pass", "warn"}, "any": {"pass", "warn", "block"}}[rules.require_decision]
    if rules.require_decision != "any" and (run.status != "completed" or decision not in allowed):
        raise ApprovalRefused(f"{version.ref}: run {run.id} ended '{run.status}' with decision '{decision}'; the "
                              f"policy requires {' or '.join(sorted(allowed))} (approval.require_decision)")
    if waived and not rules.allow_waived:
        raise ApprovalRefused(f"{version.ref}: run {run.id} passed only because of waived rule(s) "
                              f"{', '.join(waived)}; the policy does not accept waived blocks (approval.allow_waived)")
    return {"decision": decision, "waived_rules": waived}


def approve(store: LineageStore, ref: str, *, reason: str, policy: str | Path | None = None,
            trust: Trust | None = None, role: str | None = None) -> ModelVersionRecord:
    """Approve a model version as ``store.actor``: candidate → approved, or one more approval of an approved
    or deployed version (each user approves a version once). Raises :class:`ApprovalRefused`."""
    _require_reason(reason)
    version = resolve(store, ref)
    _require_intact(store, version.run_id)
    loaded = _policy(store, version, policy)
    rules = loaded.policy.approval
    actor = store.actor.name
    _require_role(rules, role, "approve")
    if rules.approvers and actor not in rules.approvers:
        raise ApprovalRefused(f"{actor} may not approve models: the policy names only "
                              f"{', '.join(rules.approvers)} (approval.approvers)")
    if rules.distinct_approver and actor.casefold() == version.initiator.casefold():
        raise ApprovalRefused(f"{actor} ran the training of {version.ref} (run {version.run_id}) and cannot "
                              "approve it: four eyes (approval.distinct_approver) needs a second person")
    details: dict[str, object] = {"policy": loaded.policy.metadata.name, "policy_digest": loaded.digest,
                                  **_decision_check(store, version, rules)}
    if rules.require_signature:
        details["signature"] = _signature_check(store, version, trust)
    for _ in range(_STALE_RETRIES):
        if version.status in ("deprecated", "revoked"):
            raise ApprovalRefused(f"{version.ref} is {version.status}: it cannot be approved")
        target = "approved" if version.status == "candidate" else version.status
        try:
            return _apply(store, "model.approved", ModelStep(
                version_id=version.id, action="approve", expected_status=version.status, to_status=target,
                reason=reason, details=details, once_per_actor=True))[0]
        except StaleModelStatus as exc:
            if "already did" in str(exc):
                raise ApprovalRefused(f"{actor} already approved {version.ref}: one approval per person") from None
            version = resolve(store, version.ref)
    raise ApprovalRefused(f"{version.ref} keeps changing under concurrent actions; try again")


# ---------------------------------------------------------------------------------- other transitions
def _require_reason(reason: str) -> None:
    if not reason or not reason.strip():
        raise GovernError("--reason is required: every lifecycle action records why")


def _require_role(rules: ApprovalPolicy, role: str | None, what: str) -> None:
    """A console user's role must be one the policy lets act (the CLI passes ``None``: no accounts)."""
    if role is not None and role not in rules.roles:
        raise ApprovalRefused(f"role '{role}' may not {what} models (approval.roles: {', '.join(rules.roles)})")


def promote(store: LineageStore, ref: str, *, reason: str, to: Literal["deployed", "deprecated"] = "deployed",
            policy: str | Path | None = None, role: str | None = None) -> list[ModelVersionRecord]:
    """Deploy an approved version (the model's deployed version, if any, becomes deprecated in the same
    transaction) or deprecate one. Returns the versions changed, the promoted one first."""
    _require_reason(reason)
    version = resolve(store, ref)
    _require_intact(store, version.run_id)
    rules = _policy(store, version, policy).policy.approval
    _require_role(rules, role, "promote")
    if to == "deprecated":
        if version.status not in ("candidate", "approved", "deployed"):
            raise ApprovalRefused(f"{version.ref} is {version.status}: it cannot be deprecated")
        return _apply(store, "model.deprecated", ModelStep(version_id=version.id, action="deprecate",
                                                           expected_status=version.status, to_status="deprecated",
                                                           reason=reason))
    if version.status != "approved":
        raise ApprovalRefused(f"{version.ref} is {version.status}: only an approved version can be deployed")
    if len(version.approvers) < rules.approvals_to_deploy:
        raise ApprovalRefused(f"{version.ref} has {len(version.approvers)} approval(s); the policy needs "
                              f"{rules.approvals_to_deploy} distinct approvers to deploy (approval.approvals_to_deploy)")
    steps = [ModelStep(version_id=version.id, action="promote", expected_status="approved", to_status="deployed",
                       reason=reason)]
    for current in store.model_versions(model=version.model, statuses=["deployed"]):
        steps.append(ModelStep(version_id=current.id, action="supersede", expected_status="deployed",
                               to_status="deprecated", reason=f"superseded by {version.ref}: {reason}"))
    return _apply(store, "model.promoted", steps)


def revoke(store: LineageStore, ref: str, *, reason: str, role: str | None = None,
           policy: str | Path | None = None) -> ModelVersionRecord:
    """Revoke a version from any status (a revoked model never passes ``model status``)."""
    _require_reason(reason)
    version = resolve(store, ref)
    if role is not None:
        _require_role(_policy(store, version, policy).policy.approval, role, "revoke")
    if version.status == "revoked":
        raise ApprovalRefused(f"{version.ref} is already revoked")
    return _apply(store, "model.revoked", ModelStep(version_id=version.id, action="revoke",
                                                    expected_status=version.status, to_status="revoked",
                                                    reason=reason))[0]


def revoke_dataset(store: LineageStore, fingerprint: str, *, reason: str,
                   role: str | None = None) -> list[ModelVersionRecord]:
    """Revoke every model version trained on a data set (an erasure request, a licence problem): the models
    of runs that recorded it are registered first if need be, so none escapes. Returns them all, including
    versions that were revoked already. ``role`` (a console user's): each version's policy must let it revoke,
    checked for all of them before any is revoked."""
    _require_reason(reason)
    fingerprint = fingerprint.strip()
    if not fingerprint.startswith("sha256:"):
        fingerprint = "sha256:" + normalise_digest(fingerprint)
    run_ids = store.runs_using_dataset(fingerprint)
    if not run_ids:
        raise NotFoundError(f"no run in the lineage DB used data set {fingerprint}")
    affected: list[ModelVersionRecord] = []
    for run_id in run_ids:
        versions = store.model_versions(run_id=run_id)
        if not versions:
            try:
                versions = [register_run(store, run_id)]
            except GovernError:
                continue  # a scan or a run that stopped before training: no model to revoke
        affected.extend(versions)
    if role is not None:
        for version in affected:
            _require_role(_policy(store, version, None).policy.approval, role, "revoke")
    steps = [ModelStep(version_id=v.id, action="revoke", expected_status=v.status, to_status="revoked",
                       reason=reason, details={"dataset": fingerprint}) for v in affected if v.status != "revoked"]
    changed = {v.id: v for v in _apply(store, "model.revoked", steps)} if steps else {}
    return [changed.get(v.id, v) for v in affected]


def rollback(store: LineageStore, model: str, *, reason: str, revoke_current: bool = False,
             role: str | None = None) -> tuple[ModelVersionRecord, ModelVersionRecord]:
    """The deployed version of ``model`` steps down (deprecated, or revoked) and the newest earlier approved
    version becomes deployed, in one transaction. Returns (restored, rolled back)."""
    _require_reason(reason)
    versions = store.model_versions(model=model)
    if not versions:
        raise NotFoundError(f"no registered model '{model}' (see `govern model list`)")
    deployed = [v for v in versions if v.status == "deployed"]
    if not deployed:
        raise ApprovalRefused(f"model '{model}' has no deployed version to roll back")
    current = deployed[0]
    if role is not None:
        _require_role(_policy(store, current, None).policy.approval, role, "roll back")
    earlier = [v for v in versions if v.version < current.version and v.status in ("approved", "deprecated")
               and v.approvers]
    if not earlier:
        raise ApprovalRefused(f"model '{model}' has no earlier approved version to roll back to")
    previous = max(earlier, key=lambda v: v.version)
    _require_intact(store, previous.run_id)
    changed = _apply(store, "model.rollback", [
        ModelStep(version_id=current.id, action="rollback", expected_status="deployed",
                  to_status="revoked" if revoke_current else "deprecated", reason=reason,
                  details={"restored": previous.ref}),
        ModelStep(version_id=previous.id, action="rollback", expected_status=previous.status,
                  to_status="deployed", reason=reason, details={"replaces": current.ref}),
    ])
    by_id = {v.id: v for v in changed}
    return by_id[previous.id], by_id[current.id]


# -------------------------------------------------------------------------------------------- gate
_RANK = {"deployed": 4, "approved": 3, "candidate": 2, "deprecated": 1}


def model_status(store: LineageStore, *, digest: str | None = None, path: str | Path | None = None,
                 require: Requirement | None = None, model: str | None = None) -> ModelStatusAnswer:
    """The registry status of a model, by digest or by its folder (digest computed): what a deploy pipeline
    asks before shipping. Fails closed: a version whose record does not verify raises
    :class:`RecordIntegrityError`; a digest registered under several names is ``revoked`` if any is."""
    if (digest is None) == (path is None):
        raise GovernError("give exactly one of --digest sha256:… or --path MODEL_DIR")
    if path is not None:
        from govern.stage import tree_sha256

        folder = Path(path)
        if not folder.exists():
            raise GovernError(f"{folder}: no such model file or directory")
        value = tree_sha256(folder)
    else:
        value = normalise_digest(digest or "")
    versions = store.model_versions(digest=value, model=model)
    for run_id in sorted({v.run_id for v in versions}):
        _require_intact(store, run_id)
    if not versions:
        status = "unregistered"
    elif any(v.status == "revoked" for v in versions):
        status = "revoked"
    else:
        status = max(versions, key=lambda v: _RANK[v.status]).status
    meets = None if require is None else status in SATISFIES[require]
    return ModelStatusAnswer(digest=f"sha256:{value}", status=status, versions=versions, require=require,
                             meets=meets)
