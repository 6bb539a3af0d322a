"""The data stage: validate the train and eval files, fingerprint them, measure train/eval leakage.

It is the first stage of a governed run, so every later stage can trust its inputs: the records have
the configured columns and types, ids are unique, and the evidence says exactly which bytes (file
sha256) and which content (format-independent fingerprint) the run used.
"""

from __future__ import annotations

from pathlib import Path

from govern.data.io import check_data_file
from govern.data.leakage_index import LeakageIndex
from govern.data.validate import LoadedDataset, check_label_sets, load_dataset, record_text
from govern.errors import DataError
from govern.evidence import DataEvidence
from govern.stage import (
    AlwaysEnabled,
    ArtifactOut,
    DataFiles,
    StageContext,
    StageResult,
    artifact_for,
    digest_of,
    file_sha256,
)


class DataOutputs(DataFiles):
    """The validated train and eval files, as later stages read them (unless the PII stage redacts)."""


class DataStage(AlwaysEnabled):
    """Stage ``data``: validation, fingerprints and the leakage check. Always enabled."""

    name = "data"
    outputs_model = DataOutputs

    def input_digest(self, ctx: StageContext) -> str:
        data = ctx.config.data
        digests = [_sha256_or_missing(Path(p)) for p in (data.train, data.eval)]
        return digest_of(digests, data, ctx.config.task)

    def run(self, ctx: StageContext) -> StageResult:
        cfg = ctx.config.data
        task = ctx.config.task
        # The eval file is held (the label check reads it) and indexed for the leakage check; the training
        # file is streamed past that index in the same pass that validates and fingerprints it, holding
        # nothing per record but an 8-byte id key: at millions of records its contents would dominate
        # memory (govern.data.leakage_index).
        eval_ = load_dataset(Path(cfg.eval), cfg, "eval", task)
        index = LeakageIndex(zip(eval_.texts(cfg), eval_.ids, strict=True), threshold=cfg.near_duplicate_threshold)
        train = load_dataset(Path(cfg.train), cfg, "train", task, keep_records=False,
                             visit=lambda record_id, record: index.feed(record_text(record, cfg), record_id))
        if train.format != eval_.format:
            # Later stages write derived copies (the PII-redacted data) in one format and read both
            # files with the outputs' format; one format per run keeps that simple and explicit.
            raise DataError(
                eval_.path, f"the eval file is {eval_.format} but the train file is {train.format}; use one format"
            )
        if task == "classification":
            check_label_sets(train, eval_, cfg)
        leakage = index.evidence()
        evidence = DataEvidence(
            files=[train.file, eval_.file],
            train_rows=len(train),
            eval_rows=len(eval_),
            text_column=cfg.text_column,
            label_column=cfg.label_column if task == "classification" else None,
            labels=train.labels,
            sensitive_columns=list(cfg.sensitive_columns),
            leakage=leakage,
        )
        artifacts = [_dataset_artifact(d) for d in (train, eval_)]
        outputs = DataOutputs(train_path=str(train.path), eval_path=str(eval_.path), format=train.format,
                              train_fingerprint=train.file.fingerprint, eval_fingerprint=eval_.file.fingerprint,
                              label_names=sorted(train.labels))
        return StageResult(evidence=evidence, artifacts=artifacts, outputs=outputs)


def _dataset_artifact(dataset: LoadedDataset) -> ArtifactOut:
    return artifact_for(
        dataset.path, dataset.role, "dataset", role="input",
        dataset_fingerprint=dataset.file.fingerprint, rows=len(dataset),
    )


def _sha256_or_missing(path: Path) -> str:
    """File digest for the input digest; a missing file is reported by ``run``, not here."""
    try:
        return file_sha256(path)
    except FileNotFoundError:
        return f"missing:{path}"
    except IsADirectoryError:
        return f"directory:{path}"
    except OSError as exc:
        check_data_file(path)  # names the problem (a symbolic link loop, permission denied...)
        raise DataError(path, f"cannot read: {exc.strerror}") from None
