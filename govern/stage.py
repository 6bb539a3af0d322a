"""The contract between the pipeline and its stages.

A stage is a thin adapter over a domain module (``govern.pii``, ``govern.training`` ...): it reads its
inputs from the config and from earlier stages' typed outputs (``ctx.find(TrainingOutputs)``: asked for by
*type*, never by another stage's name), writes files only under ``ctx.run_dir``, and returns a
:class:`StageResult`. It never prints, exits, or writes SQL — the pipeline records what it returns in the
lineage DB, and the policy engine gates on its evidence.

Adding a stage = one module with a class satisfying :class:`Stage` (and, when later stages read what it
produced, a :class:`StageOutputs` subclass declared beside it) + one line in ``govern.pipeline.STAGES``.
The pipeline holds no stage names: what it records besides evidence (artifacts, PII findings, the base
model, signatures) travels in fields of :class:`StageResult`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from govern.config import FileFormat, RunConfig, canonical_json
from govern.errors import StageError
from govern.evidence import Evidence, EvidenceModel

if TYPE_CHECKING:
    from govern.policy.schema import Policy


ArtifactKind = Literal["dataset", "model", "adapter", "tokenizer", "checkpoint", "predictions", "bundle",
                       "provenance", "report", "file"]


class ArtifactOut(BaseModel):
    """A file or folder a stage produced (or consumed), with its digest, for the lineage DB."""

    name: str
    kind: ArtifactKind
    path: str
    sha256: str
    size_bytes: int
    role: Literal["input", "output"] = "output"
    dataset_fingerprint: str | None = Field(default=None, description="Set for data sets (links the ledger).")
    rows: int | None = None


class BaseModelOut(BaseModel):
    """The pre-trained model a run started from, for the lineage DB's base-model record."""

    name: str
    path: str
    digest: str


class PIIMatch(BaseModel):
    """What a recognizer matched in one text: type, span, score, who found it and the value's keyed hash.
    Never the matched text.

    The scan workers produce these (where the text sits travels beside them, see
    :class:`govern.pii.scanner.Located`); :class:`PIIFindingRow` is the same facts once the file, record and
    the policy's action are named.
    """

    entity_type: str
    start: int
    end: int
    score: float
    recognizer: str
    value_hmac: str = Field(description="HMAC-SHA256 of the normalised value under the lineage DB's PII key.")


class PIIFindingRow(PIIMatch):
    """One PII finding as stored: where it is, what matched (:class:`PIIMatch`) and the policy's action."""

    dataset: str
    file: str
    record_id: str | None
    line: int | None
    field: str
    action: Literal["block", "redact", "allow"]


class SignatureOut(BaseModel):
    """A signature bundle a stage wrote, for the lineage DB's signature record."""

    kind: Literal["model", "provenance", "audit", "bom"] = "model"
    subject: str
    subject_digest: str
    method: str
    bundle_path: str
    signer: str | None = None


class StageOutputs(BaseModel):
    """What a stage hands to later stages (paths of files it wrote, facts they need), stored with its
    execution so ``--resume`` can hand the same to the stages after a reused one.

    Unknown keys are ignored when a stored execution is read back: a run recorded by an older govern
    still resumes (the keys this version needs are validated, and a missing one fails loudly)."""

    model_config = ConfigDict(extra="ignore")


OutputsT = TypeVar("OutputsT", bound=StageOutputs)


class NoOutputs(StageOutputs):
    """A stage that hands nothing on (its evidence and artifacts are all it produces)."""


class DataFiles(StageOutputs):
    """The data set later stages read. Both the data stage (the validated files) and the PII stage (its
    redacted copy, or the same files when nothing needed redacting) hand one on; the latest wins."""

    train_path: str
    eval_path: str
    format: FileFormat
    train_fingerprint: str
    eval_fingerprint: str
    #: The data stage's sorted train labels (classification; empty otherwise).
    label_names: list[str] = Field(default_factory=list)


class ModelFolder(StageOutputs):
    """A trained model on disk and the digest recorded as it was written: what audits judge and signing
    signs (:func:`judged_model_digest` checks one against the other)."""

    model_dir: str | None = None
    model_digest: str | None = None


class CanaryFiles(StageOutputs):
    """Audit canaries: the pool the membership audit scores and the secretly chosen records that
    training appends (the canary stage hands them on; training and the audit read them by this type)."""

    pool_path: str
    inserted_path: str
    inserted_ids_path: str
    pool_size: int
    inserted: int
    #: causal-lm: the PII canaries (values included: private to the run folder) and the ids of those
    #: inserted; None when the policy asks for none or the task cannot generate text.
    pii_pool_path: str | None = None
    pii_inserted_ids_path: str | None = None


class GateSoFar(BaseModel):
    """The policy decision after the latest gate, waivers applied (what the signing stage attests)."""

    decision: str
    policy_digest: str


class ProgressTask(Protocol):
    def advance(self, n: float = 1) -> None: ...
    def close(self) -> None: ...


class Progress(Protocol):
    """Where long work reports progress. The CLI renders it with rich; the API default is silent."""

    def task(self, description: str, total: float | None = None, unit: str = "") -> ProgressTask: ...


class _NullTask:
    def advance(self, n: float = 1) -> None:
        return None

    def close(self) -> None:
        return None


class NullProgress:
    def task(self, description: str, total: float | None = None, unit: str = "") -> ProgressTask:
        return _NullTask()


@dataclass
class StageContext:
    run_id: str
    config: RunConfig
    run_dir: Path
    policy: Policy
    evidence: Evidence
    #: Each stage's typed outputs in run order (keyed by stage name only to keep that order and to let a
    #: re-run replace its own entry; stages look others up by type with :meth:`find`).
    outputs: dict[str, StageOutputs] = field(default_factory=dict)
    db_url: str = ""
    progress: Progress = field(default_factory=NullProgress)
    #: When the run started (the provenance's start time); None outside a pipeline.
    started_at: datetime | None = None
    #: The decision after the latest gate, waivers applied; None before the first gate / outside a pipeline.
    gate: GateSoFar | None = None
    #: model folder → (stat signature of its files, tree sha256): one hash per folder per process, and a
    #: fresh one whenever a file's size, mtime or inode changes (see :func:`trained_model_digest`).
    digest_cache: dict[str, tuple[tuple[Any, ...], str]] = field(default_factory=dict, repr=False)

    def find(self, kind: type[OutputsT]) -> OutputsT | None:
        """The latest earlier stage's outputs of this type (a subclass counts), or None."""
        for out in reversed(list(self.outputs.values())):
            if isinstance(out, kind):
                return out
        return None

    def require(self, kind: type[OutputsT], stage: str) -> OutputsT:
        """:meth:`find`, for a stage that cannot run without it (a StageError naming what is missing)."""
        out = self.find(kind)
        if out is None:
            raise StageError(stage, f"no earlier stage produced {kind.__name__}: check the order of STAGES")
        return out

    def data_paths(self) -> DataFiles:
        """The data set later stages must read: the PII stage's redacted copy when it made one, else the
        data stage's validated files."""
        return self.require(DataFiles, "data")

    def stage_dir(self, name: str) -> Path:
        d = self.run_dir / name
        d.mkdir(parents=True, exist_ok=True)
        return d


@dataclass
class StageResult:
    evidence: EvidenceModel
    artifacts: list[ArtifactOut] = field(default_factory=list)
    #: What later stages read (e.g. the redacted data's paths); stored with the execution for ``--resume``.
    outputs: StageOutputs = field(default_factory=NoOutputs)
    pii_findings: list[PIIFindingRow] = field(default_factory=list)
    #: The base model the stage started from (recorded once per name and digest, linked to the run).
    base_model: BaseModelOut | None = None
    #: Signature bundles the stage wrote (recorded as signature rows of the run).
    signatures: list[SignatureOut] = field(default_factory=list)


@runtime_checkable
class Stage(Protocol):
    #: Also the evidence key (``Evidence.<name>``) and the name shown to users.
    name: str
    #: The type of ``StageResult.outputs``; a reused execution's stored outputs are read back as it.
    outputs_model: type[StageOutputs]

    def enabled(self, ctx: StageContext) -> bool:
        """False when the config switches the stage off (it is then recorded as skipped)."""
        ...

    def input_digest(self, ctx: StageContext) -> str:
        """Digest of everything that determines this stage's result; ``--resume`` reuses a completed
        execution only when it is unchanged."""
        ...

    def run(self, ctx: StageContext) -> StageResult: ...


class AlwaysEnabled:
    """Base of a stage that no config switches off: its :meth:`Stage.enabled` is always true."""

    def enabled(self, ctx: StageContext) -> bool:
        return True


def digest_of(*parts: Any) -> str:
    """sha256 over the canonical JSON of ``parts`` (for input digests)."""
    return "sha256:" + hashlib.sha256(canonical_json([jsonable(p) for p in parts]).encode()).hexdigest()


def jsonable(value: Any) -> Any:
    """Plain JSON values for digests and attestations: models dumped, paths as text, datetimes as UTC ISO."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_sha256(root: Path) -> str:
    """Digest of a folder: sha256 over sorted (relative path, file sha256) pairs."""
    if root.is_file():
        return file_sha256(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(f"{p.relative_to(root).as_posix()}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def artifact_for(path: Path, name: str, kind: ArtifactKind, role: Literal["input", "output"] = "output",
                 **extra: Any) -> ArtifactOut:
    """Build an :class:`ArtifactOut` for a file or folder, computing digest and size."""
    if path.is_dir():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    else:
        size = path.stat().st_size
    return ArtifactOut(name=name, kind=kind, path=str(path), sha256=tree_sha256(path), size_bytes=size,
                       role=role, **extra)


def _stat_signature(root: Path) -> tuple[Any, ...]:
    files = sorted(q for q in root.rglob("*") if q.is_file()) if root.is_dir() else [root]
    return tuple((p.relative_to(root).as_posix() if root.is_dir() else p.name, st.st_size, st.st_mtime_ns, st.st_ino)
                 for p in files for st in (p.stat(),))


def trained_model_digest(ctx: StageContext) -> str | None:
    """Tree sha256 of the trained model folder *as it is on disk now* (``None`` when training left none).

    Every stage that consumes the model puts this in its input digest, so ``--resume`` never reuses a
    result computed on another model: not after training re-ran, and not after someone replaced the
    folder's files between kill and resume (the digest training recorded would then be stale). Within one
    process the digest is cached per folder and recomputed whenever a file's size, mtime or inode changes;
    a resume is a new process and always reads the bytes again (cost: one pass over the model per resume —
    milliseconds for a LoRA adapter, about a second per GB for a full fine-tune)."""
    trained = ctx.find(ModelFolder)
    model_dir = trained.model_dir if trained is not None else None
    if not model_dir or not Path(model_dir).exists():
        return None
    root = Path(model_dir)
    signature = _stat_signature(root)
    cached = ctx.digest_cache.get(str(root))
    if cached is not None and cached[0] == signature:
        return cached[1]
    digest = tree_sha256(root)
    ctx.digest_cache[str(root)] = (signature, digest)
    return digest


def judged_model_digest(ctx: StageContext, stage: str) -> str:
    """The digest of the model a stage is about to judge (or sign): the bytes on disk, refused when they are
    not the model the training stage recorded — a replaced model folder must never be judged, or signed,
    under this run's name."""
    trained = ctx.find(ModelFolder)
    digest = trained_model_digest(ctx)
    if trained is None or digest is None:
        raise StageError(stage, "no trained model: the training stage did not run or left no model_dir")
    recorded = trained.model_digest
    if recorded is not None and recorded != digest:
        raise StageError(stage, f"the model folder {trained.model_dir} changed after the training stage wrote "
                                f"it (recorded sha256 {recorded}, on disk {digest}): restore it, or start a new run")
    return digest
