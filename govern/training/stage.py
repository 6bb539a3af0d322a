"""The ``training`` stage: a thin adapter from the run config and earlier stages to :func:`train`.

Reads the data the PII stage left (its redacted copy when it made one, via ``ctx.data_paths()``), the
data stage's sorted train labels, and — when the membership audit's canary stage ran first — the
canary records it wants inserted (audit canaries: extra training records whose memorisation the
membership audit measures). Resuming is automatic: ``govern run --resume`` calls the stage again with
the same run folder, and the trainer continues from the newest checkpoint with the same accountant
history — only after checking that checkpoint against the ``checkpoint.saved`` event the run's audit
chain recorded when it was written (:class:`LineageCheckpointChain`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from govern.config import Task
from govern.errors import StageError
from govern.stage import (
    AlwaysEnabled,
    ArtifactOut,
    BaseModelOut,
    CanaryFiles,
    ModelFolder,
    StageContext,
    StageResult,
    artifact_for,
    digest_of,
    file_sha256,
)
from govern.training.checkpoints import EVENT_KIND, CheckpointRecord
from govern.training.trainer import DataFile, TrainingSpec, train

if TYPE_CHECKING:
    from govern.lineage import LineageStore


class TrainingOutputs(ModelFolder):
    """The trained model and how it was made: what the audits load and retrain with."""

    task: Task
    base_model_path: str | None = None
    gguf_file: str | None = None
    label_names: list[str] | None = None
    device: str | None = Field(default=None, description="Where it trained (audits judge on the same device when "
                                                         "there is one, else on the CPU).")
    method: str | None = None
    max_length: int | None = None
    dp: bool | None = None
    spec_path: str | None = Field(default=None, description="The exact recipe (paths and settings, no records), for "
                                                            "audits that retrain with it (LiRA).")
    merged_dir: str | None = None


class TrainingStage(AlwaysEnabled):
    name = "training"
    outputs_model = TrainingOutputs
    #: The stage that trains the model: ``govern.session`` runs the user's own loop in its place.
    trains_model = True

    def spec(self, ctx: StageContext) -> TrainingSpec:
        cfg = ctx.config
        paths = ctx.data_paths()
        files = [DataFile(path=paths.train_path, format=paths.format or cfg.data.format)]
        canaries = ctx.find(CanaryFiles)
        if canaries is not None:
            files.append(DataFile(path=canaries.inserted_path, format="jsonl", role="canaries"))
        base_path = str(cfg.base_model.path) if cfg.base_model.path else None
        gguf_file = cfg.base_model.gguf_file
        if cfg.base_model.package:
            from govern.training.models import packaged_model

            folder, gguf_file = packaged_model(cfg.base_model.package, gguf_file)
            base_path = str(folder)
        return TrainingSpec(
            task=cfg.task,
            base_model_path=base_path,
            gguf_file=gguf_file,
            base_model_name=cfg.base_model.name,
            train_files=files,
            columns={"text": cfg.data.text_column, "label": cfg.data.label_column,
                     "prompt": cfg.data.prompt_column, "completion": cfg.data.completion_column},
            label_names=(list(paths.label_names) or None) if cfg.task == "classification" else None,
            training=cfg.training,
            output_dir=str(ctx.stage_dir(self.name)),
            allow_non_private=not ctx.policy.privacy.require_dp,
            max_delta=ctx.policy.privacy.max_delta,
        )

    def input_digest(self, ctx: StageContext) -> str:
        spec = self.spec(ctx)
        file_digests = [file_sha256(Path(f.path)) for f in spec.train_files]
        parts: list[Any] = [spec.model_dump(mode="json", exclude={"output_dir", "train_files"}), file_digests,
                            ctx.policy.privacy.require_dp]
        if ctx.config.training.script is not None:  # the user's script is the recipe: its bytes count
            from govern.training.script import script_digest

            parts.append(script_digest(ctx.config.training.script))
        return digest_of(*parts)

    def run(self, ctx: StageContext) -> StageResult:
        cfg = ctx.config.training
        if cfg.script is not None:  # the user's own training script, joined to this run (govern.session)
            from govern.training.script import run_script

            return run_script(ctx, self.name)
        if not cfg.dp.enabled and ctx.policy.privacy.require_dp:
            raise StageError(self.name, "training.dp.enabled is false but the policy requires differential "
                                        "privacy (privacy.require_dp: true); enable DP or use a policy that "
                                        "allows non-private training (e.g. dev)")
        spec = self.spec(ctx)
        from govern.training.distributed import share_spec

        with _chain(ctx) as chain:
            # Under torchrun the other ranks train this exact spec; a checkpoint rank 0 refuses on resume stops
            # them all in train() (checkpoints.resume_on_every_rank), so it is verified there once.
            share_spec(spec.model_dump_json())
            outcome = train(spec, progress=ctx.progress, chain=chain)
        # The exact recipe, for audits that retrain with it (LiRA's reference models): paths and
        # settings only, no records.
        spec_path = ctx.stage_dir(self.name) / "spec.json"
        spec_path.write_text(spec.model_dump_json(indent=1), encoding="utf-8")
        evidence = outcome.evidence
        evidence.canaries_inserted = _count_canaries(spec)
        from govern.documents.compute import estimate_compute

        evidence.compute = estimate_compute(evidence, ctx.config.base_model.training_flops)
        outputs = TrainingOutputs(
            model_dir=str(outcome.model_dir) if outcome.model_dir else None,
            base_model_path=str(outcome.base_model_path), gguf_file=outcome.gguf_file,
            label_names=outcome.label_names, task=spec.task, device=outcome.device, method=cfg.method,
            max_length=cfg.max_length, dp=cfg.dp.enabled, spec_path=str(spec_path),
        )
        artifacts: list[ArtifactOut] = []
        if outcome.model_dir is not None:  # rank 0 only under torchrun
            model_dir = outcome.model_dir
            model = artifact_for(model_dir, f"{ctx.config.name}-{cfg.method}", "adapter" if cfg.method == "lora"
                                 else "model")
            artifacts.append(model)
            # Hashed once, as the model is written: what every later stage checks the folder against
            # before it judges or signs it (govern.stage.judged_model_digest).
            outputs.model_digest = evidence.model_digest = model.sha256
            tokenizer_file = next((model_dir / n for n in ("tokenizer.json", "tokenizer_config.json")
                                   if (model_dir / n).is_file()), None)
            if tokenizer_file is not None:
                artifacts.append(artifact_for(tokenizer_file, "tokenizer", "tokenizer"))
            merged = model_dir.parent / "merged"
            if cfg.merge_adapter and merged.is_dir():
                artifacts.append(artifact_for(merged, f"{ctx.config.name}-merged", "model"))
                outputs.merged_dir = str(merged)
            base = outcome.base_model_path / outcome.gguf_file if outcome.gguf_file else outcome.base_model_path
            artifacts.append(artifact_for(base, evidence.base_model.get("name") or base.name, "model", role="input"))
            if outcome.final_checkpoint is not None:
                artifacts.append(artifact_for(outcome.final_checkpoint, f"checkpoint-{evidence.steps}", "checkpoint"))
        base_model = BaseModelOut(name=str(evidence.base_model.get("name") or outcome.base_model_path.name),
                                  path=str(outcome.base_model_path / outcome.gguf_file if outcome.gguf_file
                                           else outcome.base_model_path),
                                  digest=outcome.base_model_digest)
        return StageResult(evidence=evidence, artifacts=artifacts, outputs=outputs, base_model=base_model)


class LineageCheckpointChain:
    """The run's checkpoints in the lineage DB's hash-chained audit log (``checkpoint.saved`` events).

    What the trainer records when it writes a checkpoint and checks before it resumes from one: a
    checkpoint whose files or accountant history differ from the recorded ones is refused, so neither a
    planted file nor an edited history reaches the trainer."""

    def __init__(self, store: LineageStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def record(self, record: CheckpointRecord) -> None:
        self.store.append_event(EVENT_KIND, run_id=self.run_id, payload=record.model_dump(mode="json"))

    def records(self) -> list[CheckpointRecord]:
        from govern.lineage.chain import event_hash

        out = []
        for event in self.store.events(self.run_id):
            if event.kind != EVENT_KIND:
                continue
            # An edited payload no longer matches its own link (a re-hashed one breaks the next link, which
            # `govern lineage verify` reports): never trust a record the chain does not vouch for.
            if event_hash(event.prev_hash, event.id, event.created_at, event.kind, event.run_id,
                          event.payload) != event.hash:
                raise StageError("training", f"audit event #{event.id} ({EVENT_KIND}) of run {self.run_id} does "
                                             "not match its hash: the lineage DB was edited; run `govern lineage "
                                             "verify`")
            try:
                out.append(CheckpointRecord.model_validate(event.payload))
            except ValueError:
                raise StageError("training", f"audit event #{event.id} ({EVENT_KIND}) of run {self.run_id} is "
                                             "not a checkpoint record") from None
        return out


@contextmanager
def _chain(ctx: StageContext) -> Iterator[LineageCheckpointChain | None]:
    """The run's checkpoint chain; None when the stage runs without a lineage DB (``db_url`` empty)."""
    if not ctx.db_url:
        yield None
        return
    from govern.lineage import LineageStore

    store = LineageStore.open(ctx.db_url)
    try:
        yield LineageCheckpointChain(store, ctx.run_id)
    finally:
        store.close()


def _count_canaries(spec: TrainingSpec) -> int:
    from govern.data.io import read_records

    return sum(len(read_records(Path(f.path), f.format)) for f in spec.train_files if f.role == "canaries")
