"""Read models the lineage store hands out: plain pydantic objects, detached from any DB session.

The CLI, API and report render these; nothing outside ``store.py`` sees a table row or a session. The
``*Core`` classes hold the fields a record shares with the report's view of it (``govern.report.data``
extends them), so each field of a run, decision, artifact, data set and signature is declared once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from govern.decisions import RuleResult, WaiverRef
from govern.stage import BaseModelOut, PIIFindingRow

__all__ = [
    "AncestryGraph",
    "ArtifactCore",
    "ArtifactRecord",
    "BaseModelRecord",
    "ChainReport",
    "DatasetCore",
    "DatasetRecord",
    "DecisionCore",
    "DecisionRecord",
    "EventRecord",
    "FindingRecord",
    "LedgerRow",
    "ModelActionRecord",
    "ModelVersionRecord",
    "PIIFindingRecord",
    "PolicyRef",
    "RegisteredModelRecord",
    "RunCore",
    "RunRecord",
    "SignatureCore",
    "SignatureRecord",
    "StageCore",
    "StageRecord",
    "WaiverRecord",
]


class _Record(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PolicyRef(_Record):
    """Which policy judged a run: name, version, digest of the file, and the parsed document."""

    name: str
    version: str
    digest: str
    document: dict[str, Any] = Field(default_factory=dict)
    #: The policy file as written (its bytes hash to ``digest``); None for stored policies without one.
    source: str | None = Field(default=None, description="The policy file as written (YAML with its comments).")


class RunCore(_Record):
    """What a run is and how it ended: the fields its record and the report's run section share."""

    id: str
    name: str
    kind: str
    status: str
    decision: str | None = None
    started_at: datetime
    ended_at: datetime | None = None


class RunRecord(RunCore):
    error: str | None = None
    config: dict[str, Any] | None = None
    config_digest: str | None = None
    config_path: str | None = None
    policy_name: str | None = None
    policy_version: str | None = None
    policy_digest: str | None = None
    policy_document: dict[str, Any] | None = None
    policy_source: str | None = None
    run_dir: str | None = None
    code_revision: str | None = None
    versions: dict[str, Any] | None = None
    parent_run_id: str | None = None
    base_model_id: int | None = None

    @property
    def policy(self) -> PolicyRef | None:
        if self.policy_name is None:
            return None
        return PolicyRef(name=self.policy_name, version=self.policy_version or "", digest=self.policy_digest or "",
                         document=self.policy_document or {}, source=self.policy_source)


class StageCore(_Record):
    """One execution of a stage and when it ran (the fields its record and the report share)."""

    stage: str
    status: str
    started_at: datetime
    ended_at: datetime | None = None


class StageRecord(StageCore):
    id: int
    run_id: str
    input_digest: str
    error: str | None = None
    outputs: dict[str, Any] | None = None
    #: The evidence this execution produced (from the evidence table), if any.
    evidence: dict[str, Any] | None = None


class ArtifactCore(_Record):
    """One file or folder a run read or wrote, as its record and the report both show it."""

    id: int
    name: str
    kind: str
    role: str
    path: str
    sha256: str
    size_bytes: int


class ArtifactRecord(ArtifactCore):
    run_id: str
    execution_id: int | None = None
    dataset_fingerprint: str | None = None
    rows: int | None = None
    created_at: datetime


class DatasetCore(_Record):
    """A data set by content fingerprint (the fields its record and the report share)."""

    fingerprint: str = Field(description="The content fingerprint that identifies the data set in any format.")
    name: str
    path: str = Field(description="Where the first run that used it read it (the fingerprint, not this, is its id).")
    rows: int | None = None
    first_run_id: str | None = Field(default=None, description="The first run that used it.")


class DatasetRecord(DatasetCore):
    id: int
    first_seen_at: datetime


class BaseModelRecord(BaseModelOut):
    """A recorded base model (the :class:`BaseModelOut` fields a stage reports, plus its row and first sighting)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    first_seen_at: datetime


class FindingRecord(RuleResult):
    """A recorded rule result (the :class:`RuleResult` fields plus its row, decision and run)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    decision_id: int
    run_id: str


class DecisionCore(_Record):
    """One recorded verdict and the policy that gave it (the fields its record and the report share)."""

    id: int
    kind: str = Field(description="gate (after a stage), final, or check.")
    decision: str = Field(description="pass, warn or block.")
    created_at: datetime
    policy_name: str
    policy_version: str
    policy_digest: str = Field(description="Digest of the policy text that gave the verdict (the name and version "
                                           "are as written; this proves which rules applied).")


class DecisionRecord(DecisionCore):
    run_id: str
    results: list[FindingRecord] = Field(default_factory=list)


class WaiverRecord(WaiverRef):
    """A recorded waiver (the :class:`WaiverRef` fields plus when it was granted)."""

    model_config = ConfigDict(from_attributes=True)

    created_at: datetime


class PIIFindingRecord(PIIFindingRow):
    """A stored PII finding (the :class:`PIIFindingRow` fields plus its row id and run)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    run_id: str


class SignatureCore(_Record):
    """One signature over a run's artifact (the fields its record and the report share)."""

    id: int
    kind: str
    subject: str
    subject_digest: str
    method: str
    bundle_path: str
    signer: str | None = None
    created_at: datetime


class SignatureRecord(SignatureCore):
    run_id: str


class ModelActionRecord(_Record):
    """One lifecycle action on a model version (who moved it from which status to which, why, when)."""

    id: int
    version_id: int
    run_id: str
    action: str
    from_status: str | None = None
    to_status: str
    actor: str
    actor_source: str
    reason: str
    details: dict[str, Any] | None = None
    created_at: datetime


class ModelVersionRecord(_Record):
    """A model version with its registered model's name and its actions, oldest first."""

    id: int
    model_id: int
    model: str = ""
    version: int
    run_id: str
    digest: str
    path: str
    initiator: str
    initiator_source: str
    status: str
    created_at: datetime
    updated_at: datetime
    actions: list[ModelActionRecord] = Field(default_factory=list)

    # Computed fields: in every JSON of a version (CLI, API, its OpenAPI schema) without being stored.
    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented stacking
    @property
    def ref(self) -> str:
        """``name@vN``: how the CLI and the console name a version."""
        return f"{self.model}@v{self.version}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def approvers(self) -> list[str]:
        """Distinct users who approved this version, in order."""
        seen: list[str] = []
        for a in self.actions:
            if a.action == "approve" and a.actor not in seen:
                seen.append(a.actor)
        return seen


class RegisteredModelRecord(_Record):
    id: int
    name: str
    created_at: datetime


class LedgerRow(_Record):
    """One training run's privacy spend against one data set, as the accountant computed it.

    ``dp_enabled`` false means the run trained without DP: its spend is unbounded (treat ε as infinite).
    Every data set the run recorded is listed (train, eval, redacted copies) — attributing spend to more
    data sets than strictly needed errs on the safe side.
    """

    run_id: str
    dataset_fingerprint: str
    dataset_name: str | None = None
    dp_enabled: bool
    epsilon: dict[str, float] = Field(default_factory=dict)
    delta: float | None = None
    noise_multiplier: float | None = None
    sample_rate: float | None = None
    steps: int | None = None
    accountant: str | None = None
    started_at: datetime
    run_status: str


class EventRecord(_Record):
    id: int
    created_at: datetime
    kind: str
    run_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str


class ChainReport(_Record):
    """Result of :meth:`LineageStore.verify_chain`: ``ok`` only when every link and the head agree."""

    ok: bool
    events: int
    head_event_id: int
    head_hash: str
    problems: list[str] = Field(default_factory=list)
    #: Witness statements checked (``govern lineage verify --witness``) and remarks that are not problems.
    witnesses: int = 0
    notes: list[str] = Field(default_factory=list)


class AncestryGraph(_Record):
    """Where a model (or any artifact) came from: its run, that run's inputs, base model, policy, config
    and the chain of parent runs (newest first)."""

    artifact: ArtifactRecord
    run: RunRecord
    stages: list[StageRecord] = Field(default_factory=list)
    inputs: list[ArtifactRecord] = Field(default_factory=list)
    outputs: list[ArtifactRecord] = Field(default_factory=list)
    datasets: list[DatasetRecord] = Field(default_factory=list)
    base_model: BaseModelRecord | None = None
    policy: PolicyRef | None = None
    config_digest: str | None = None
    signatures: list[SignatureRecord] = Field(default_factory=list)
    parents: list[RunRecord] = Field(default_factory=list)
