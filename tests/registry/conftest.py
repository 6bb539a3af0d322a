"""A governed run's record as the pipeline writes it — run, trained adapter folder, data set, final decision,
and (optionally) a real key signature over the model — written through the lineage store by a named user.
No training: the registry judges records and files, and these are real ones."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from govern.actor import Actor
from govern.gate import policy_ref
from govern.lineage import LineageStore
from govern.policy import load_policy
from govern.signing.commands import verify_command
from govern.signing.config import SignerConfig
from govern.signing.keys import generate_key_pair
from govern.signing.signing import sign_model
from govern.stage import ArtifactOut, artifact_for
from tests.lineage.conftest import db_url, empty_db_url, migrated_pg_template  # noqa: F401
from tests.pg import postgres_url  # noqa: F401

DATASET = "sha256:" + "d" * 64


@dataclass
class RecordedRun:
    run_id: str
    model_dir: Path
    public_key: Path | None


def record_run(db: str, root: Path, *, by: str, name: str = "support-intent", decision: str = "pass",
               sign: bool = True, waived: bool = False, policy: str = "default", seed: int = 0,
               dataset: str = DATASET, training_evidence: dict[str, object] | None = None) -> RecordedRun:
    """Record one finished governed run by user ``by`` whose model is a small adapter folder under ``root``
    (``training_evidence``: the training stage's evidence, e.g. its DP accounting; default a non-DP run)."""
    loaded = load_policy(policy)
    model_dir = root / f"model-{seed}" / "adapter"
    model_dir.mkdir(parents=True)
    (model_dir / "adapter_config.json").write_text(f'{{"r": 8, "seed": {seed}}}')
    (model_dir / "adapter_model.safetensors").write_bytes(os.urandom(2048))
    with LineageStore.open(db, actor=Actor(source="explicit", name=by)) as store:
        run_id = store.create_run(name=name, policy=policy_ref(loaded))
        training = store.start_stage(run_id, "training", "sha256:in")
        store.finish_stage(training, "completed", evidence=training_evidence or {"steps": 10}, outputs={"model_dir": str(model_dir)})
        store.add_artifacts(run_id, training, [
            artifact_for(model_dir, f"{name}-lora", "adapter"),
            ArtifactOut(name="train", kind="dataset", path=str(root / "train.jsonl"), sha256="e" * 64,
                        size_bytes=10, role="input", dataset_fingerprint=dataset, rows=200)])
        public_key = None
        if sign:
            keys = generate_key_pair(root / f"keys-{seed}")
            public_key = keys.public_key
            result = sign_model(model_dir, SignerConfig(method="key", private_key=keys.private_key),
                                root / f"model-{seed}" / "model.sigstore.json")
            signing = store.start_stage(run_id, "signing", "sha256:sign")
            store.finish_stage(signing, "completed", evidence={"signed": True}, outputs={
                "verify_command": verify_command(model_dir, Path(result.bundle_path), ["--key", str(public_key)])})
            store.add_signature(run_id, **result.signature_record("model"))
        results = [{"rule_id": "pii.blocked_entities", "severity": "block",
                    "status": "waived" if waived else ("fail" if decision == "block" else "pass")}]
        store.record_decision(run_id, kind="final", decision=decision, policy=policy_ref(loaded), results=results)
        store.set_run_status(run_id, "blocked" if decision == "block" else "completed", decision=decision)
    return RecordedRun(run_id=run_id, model_dir=model_dir, public_key=public_key)


def as_user(db: str, name: str) -> LineageStore:
    return LineageStore.open(db, actor=Actor(source="explicit", name=name))


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lineage.db'}"
