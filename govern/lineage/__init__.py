"""The lineage database: the system of record of every governed run.

``LineageStore.open(url)`` connects to SQLite (default ``.govern/lineage.db``) or PostgreSQL, migrates the
schema, and is the only way govern reads or writes it. See :mod:`govern.lineage.store`.
"""

from govern.lineage.records import (
    AncestryGraph,
    ArtifactRecord,
    BaseModelRecord,
    ChainReport,
    DatasetRecord,
    DecisionRecord,
    EventRecord,
    FindingRecord,
    LedgerRow,
    ModelActionRecord,
    ModelVersionRecord,
    PIIFindingRecord,
    PolicyRef,
    RegisteredModelRecord,
    RunRecord,
    SignatureRecord,
    StageRecord,
    WaiverRecord,
)
from govern.lineage.store import LineageStore, default_db_url, new_run_id

__all__ = [
    "AncestryGraph",
    "ArtifactRecord",
    "BaseModelRecord",
    "ChainReport",
    "DatasetRecord",
    "DecisionRecord",
    "EventRecord",
    "FindingRecord",
    "LedgerRow",
    "LineageStore",
    "ModelActionRecord",
    "ModelVersionRecord",
    "PIIFindingRecord",
    "PolicyRef",
    "RegisteredModelRecord",
    "RunRecord",
    "SignatureRecord",
    "StageRecord",
    "WaiverRecord",
    "default_db_url",
    "new_run_id",
]
