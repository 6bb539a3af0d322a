"""The ``pii`` stage: scan train and eval, and make the redacted copy training reads.

Columns scanned: ``data.scan_columns`` when set; otherwise every field of every record except the
label column (class names are not personal data). The id column *is* scanned: ids are copied into
the lineage DB as ``record_id``, so an id that is an e-mail address must be caught — such a record's
findings are stored without its id, and redaction always pseudonymises the id column
(``<EMAIL_ADDRESS_3>``), keeping ids unique even in ``entity_type`` mode. Numbers are scanned as text,
nested objects and lists leaf by leaf (field paths like ``meta.email``, ``tags[2]``). Object keys are
scanned too: a key holding personal data is shown in every field path by its redacted name
(``meta.<EMAIL_ADDRESS>#key`` for the key, ``meta.<EMAIL_ADDRESS>`` for its value), never as itself,
and the redacted copy renames it to exactly that name.

The stage never stops the run itself: findings whose action is ``block`` are counted in
``evidence.blocked`` and the policy gate blocks the run before training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from govern import stage as st  # the stage toolkit's helpers (digests, artifacts), by module
from govern.data.stage import DataOutputs
from govern.pii.keys import load_or_create_key
from govern.pii.redact import PseudonymTable, redact_file
from govern.pii.scanner import KEY_MARKER, ScanInput, ScanSettings, scan_files
from govern.stage import AlwaysEnabled, DataFiles, StageContext, StageResult


class PIIOutputs(DataFiles):
    """The data later stages read: the redacted copy when the stage made one, else the data stage's files."""

    redacted: bool = False


class PIIStage(AlwaysEnabled):
    """Stage ``pii``: Presidio scan of every text field, evidence, findings and redaction."""

    name = "pii"
    outputs_model = PIIOutputs

    def _settings(self, ctx: StageContext) -> ScanSettings:
        data = ctx.config.data
        exclude = [data.label_column] if data.label_column else []
        return ScanSettings(
            policy=ctx.policy.pii,
            engine=ctx.config.pii.engine or ctx.policy.pii.engine,
            spacy_model=ctx.config.pii.spacy_model,
            columns=list(data.scan_columns) if data.scan_columns is not None else None,
            exclude_columns=exclude,
            id_column=data.id_column,
            policy_file=str(ctx.config.policy),
            max_record_bytes=data.max_record_bytes,
        )

    def _data(self, ctx: StageContext) -> DataOutputs:
        # The data stage's validated files, never a redacted copy: what is scanned is what the user gave.
        return ctx.require(DataOutputs, self.name)

    def input_digest(self, ctx: StageContext) -> str:
        data = self._data(ctx)
        key = load_or_create_key(ctx.db_url or None)
        files = [st.file_sha256(Path(p)) for p in (data.train_path, data.eval_path)]
        sample = ctx.policy.pii.quality.sample
        if sample is not None:  # a changed labeled sample must re-score, not reuse the old quality evidence
            from govern.pii.quality import sample_path

            path = sample_path(sample, str(ctx.config.policy))
            files.append(st.file_sha256(path) if path.is_file() else f"missing:{path}")
        return st.digest_of(files, self._settings(ctx), key.key_id)

    def run(self, ctx: StageContext) -> StageResult:
        if ctx.config.pii.backend == "ray":  # one Ray connection for the scan and both redactions
            from govern.pii.ray_backend import ray_address, ray_session

            with ray_session(ray_address(ctx.config.ray.address)):
                return self._run(ctx)
        return self._run(ctx)

    def _run(self, ctx: StageContext) -> StageResult:
        data = self._data(ctx)
        fmt = data.format
        settings = self._settings(ctx)
        key = load_or_create_key(ctx.db_url or None)
        inputs = [ScanInput("train", Path(data.train_path), fmt), ScanInput("eval", Path(data.eval_path), fmt)]
        if ctx.config.pii.backend == "ray":
            from govern.pii.ray_backend import ray_address, scan_files_ray

            report = scan_files_ray(inputs, settings, key, ctx.progress, ray_address(ctx.config.ray.address),
                                    ctx.config.ray.actors)
        else:
            report = scan_files(inputs, settings, key, ctx.progress, ctx.config.pii.workers)
        evidence = report.evidence
        to_redact = [(loc, row) for loc, row in zip(report.record_locations, report.findings, strict=True)
                     if row.action == "redact"]
        if not to_redact or any(evidence.blocked.values()):
            # Blocked PII stops the run at the gate: a "redacted" copy would still hold the blocked values
            # and would be one more place raw PII is persisted, so none is written.
            return StageResult(evidence=evidence, outputs=PIIOutputs(**data.model_dump()),
                               pii_findings=report.findings)

        from govern.data.validate import fingerprint_file

        mode = ctx.policy.pii.redaction
        # one table for train and eval: one data set, whose fingerprint seeds the fake names
        table = PseudonymTable(key, seed=data.train_fingerprint)
        changed: dict[str, str] = {}
        artifacts: list[st.ArtifactOut] = []
        redacted_files: dict[str, str] = {}
        out_dir = ctx.stage_dir(self.name)
        for item in inputs:
            target = out_dir / f"{item.dataset}.redacted{item.path.suffix or '.' + fmt}"
            redaction: dict[str, Any] = dict(
                mode=mode, key=key, table=table, columns=settings.columns, exclude_columns=settings.exclude_columns,
                pseudonym_fields={settings.id_column} if settings.id_column else set(),
                key_findings=[(loc, row) for loc, row in zip(report.record_locations, report.findings, strict=True)
                              if row.dataset == item.dataset and row.field.endswith(KEY_MARKER)],
            )
            mine = [(loc, row) for loc, row in to_redact if row.dataset == item.dataset]
            if ctx.config.pii.backend == "ray":  # shards + manifest, read by later stages as one file
                from govern.pii.ray_backend import ray_address, redact_on_ray

                target, rows = redact_on_ray(
                    item.path, fmt, out_dir / f"{item.dataset}.redacted", f"{item.dataset}.redacted", mine,
                    records=sum(f.records_total for f in report.files if f.dataset == item.dataset),
                    shards=ctx.config.ray.shards, address=ray_address(ctx.config.ray.address), **redaction)
            else:
                rows = redact_file(item.path, target, fmt, mine, **redaction)
            fingerprint = fingerprint_file(target, fmt)
            artifact = st.artifact_for(target, f"{item.dataset}.redacted", "dataset", dataset_fingerprint=fingerprint,
                                    rows=rows)
            artifacts.append(artifact)
            redacted_files[item.dataset] = artifact.sha256
            changed[f"{item.dataset}_path"] = str(target)
            changed[f"{item.dataset}_fingerprint"] = fingerprint
        evidence = evidence.model_copy(update={"redacted": True, "redaction_mode": mode,
                                               "redacted_files": redacted_files})
        outputs = PIIOutputs(**{**data.model_dump(), **changed, "redacted": True})
        return StageResult(evidence=evidence, artifacts=artifacts, outputs=outputs, pii_findings=report.findings)
