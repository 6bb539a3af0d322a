"""Pipeline stages for the held-out evaluation and the fairness audit.

``EvaluationStage`` scores the eval set once with the trained model and writes the predictions
(ids, labels, predictions, probabilities or losses, sensitive attributes — never the text) to
``<run>/evaluation/predictions.parquet``; ``FairnessStage`` audits that file, exactly as
``govern audit fairness`` audits a file from a model trained elsewhere.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from govern.config import Task
from govern.errors import DataError, StageError
from govern.stage import (
    AlwaysEnabled,
    NoOutputs,
    StageContext,
    StageOutputs,
    StageResult,
    artifact_for,
    digest_of,
    file_sha256,
    judged_model_digest,
    trained_model_digest,
)

if TYPE_CHECKING:
    from govern.training.stage import TrainingOutputs

PREDICTIONS_FILE = "predictions.parquet"
#: Columns of the predictions file; sensitive columns keep their own names next to them.
RESERVED_COLUMNS = ("id", "label", "pred", "score", "probabilities", "loss", "tokens")
_CHUNK = 256


def _device(ctx: StageContext, training: TrainingOutputs) -> str:
    from govern.devices import pick_device

    return pick_device(training.device or ctx.config.training.device)


def _cell(value: Any) -> str | None:
    """A sensitive attribute as stored in the predictions file: text, or None when missing."""
    from govern.audits.fairness import label_text

    return label_text(value)


class EvaluationOutputs(StageOutputs):
    """The per-record predictions file and the model that made it (what the fairness audit reads)."""

    predictions_path: str
    label_names: list[str] = []
    task: Task
    model_digest: str


class EvaluationStage(AlwaysEnabled):
    name = "evaluation"
    outputs_model = EvaluationOutputs

    def input_digest(self, ctx: StageContext) -> str:
        paths = ctx.data_paths()
        d = ctx.config.data
        # The model's bytes on disk, not only what the training stage said it wrote: a resume after training
        # re-ran, or after the folder was replaced, must score the model that is there now.
        from govern.training.stage import TrainingOutputs

        return digest_of(self.name, ctx.find(TrainingOutputs), trained_model_digest(ctx),
                         file_sha256(Path(paths.eval_path)),
                         ctx.config.task, d.text_column, d.label_column, d.id_column, d.prompt_column,
                         d.completion_column, d.sensitive_columns, ctx.config.training.max_length)

    def run(self, ctx: StageContext) -> StageResult:
        from govern.audits.metrics import causal_lm_metrics, classification_metrics
        from govern.data.io import iter_records
        from govern.training.inference import load_model
        from govern.training.stage import TrainingOutputs

        training = ctx.require(TrainingOutputs, self.name)
        if not training.model_dir:
            raise StageError(self.name, "no trained model: the training stage did not run or left no model_dir")
        model_digest = judged_model_digest(ctx, self.name)
        started = time.perf_counter()
        cfg, data = ctx.config, ctx.config.data
        task = training.task or cfg.task
        paths = ctx.data_paths()
        eval_path = Path(paths.eval_path)
        located = list(iter_records(eval_path, paths.format or data.format))
        if not located:
            raise DataError(eval_path, "the eval set is empty")
        records = [r for _, r in located]
        for col in data.sensitive_columns:
            if col in RESERVED_COLUMNS:
                raise StageError(self.name, f"sensitive column '{col}' clashes with a predictions column; rename it")
            if not any(col in r for r in records):
                raise DataError(eval_path, "sensitive column not found in any eval record", field=col)

        device = _device(ctx, training)
        model, tokenizer = load_model(training.model_dir, task=task, base_path=training.base_model_path,
                                      gguf_file=training.gguf_file, stage=self.name)
        progress = ctx.progress.task("evaluating", total=len(records), unit="records")
        columns: dict[str, Any] = {
            "id": [str(r.get(data.id_column)) if data.id_column and r.get(data.id_column) is not None else str(loc)
                   for loc, r in located],
        }
        label_names: list[str] = []
        if task == "classification":
            label_names = [str(n) for n in (training.label_names or [])]
            if not label_names:
                raise StageError(self.name, "the training stage recorded no label_names")
            y = self._label_indices(located, data.label_column or "label", label_names, eval_path,
                                    paths.format or data.format)
            probabilities = self._in_chunks(records, progress, lambda chunk: _predict(
                model, tokenizer, chunk, label_names, device, data.text_column, cfg.training.max_length))
            evidence = classification_metrics(y, probabilities, label_names, source=str(eval_path))
            pred = probabilities.argmax(axis=1)
            columns |= {
                "label": [label_names[i] for i in y],
                "pred": [label_names[i] for i in pred],
                "score": probabilities.max(axis=1).tolist(),
                "probabilities": probabilities.tolist(),
            }
        else:
            losses = self._in_chunks(records, progress, lambda chunk: _losses(
                model, tokenizer, chunk, task, device, cfg))
            tokens = _scored_tokens(tokenizer, records, task, cfg)
            evidence = causal_lm_metrics(losses, tokens, source=str(eval_path))
            columns |= {"loss": losses.tolist(), "tokens": tokens.tolist()}
        progress.close()
        for col in data.sensitive_columns:
            columns[col] = [_cell(r.get(col)) for r in records]

        out_path = ctx.stage_dir(self.name) / PREDICTIONS_FILE
        _write_parquet(out_path, columns, data.sensitive_columns)
        evidence.device = device
        evidence.duration_s = time.perf_counter() - started
        evidence.model_digest = model_digest
        return StageResult(
            evidence=evidence,
            artifacts=[artifact_for(out_path, "predictions", "predictions", rows=len(records))],
            outputs=EvaluationOutputs(predictions_path=str(out_path), label_names=label_names, task=task,
                                      model_digest=model_digest),
        )

    @staticmethod
    def _label_indices(located: list[tuple[int, dict[str, Any]]], column: str, label_names: list[str], path: Path,
                       fmt: str) -> np.ndarray:
        from govern.data.io import detect_format, location_kwargs

        index = {n: i for i, n in enumerate(label_names)}
        resolved = detect_format(path, fmt)
        out = np.empty(len(located), dtype=np.int64)
        for row, (loc, record) in enumerate(located):
            value = record.get(column)
            if value is None:
                raise DataError(path, "missing label", field=column, **location_kwargs(resolved, loc))
            code = index.get(str(value))
            if code is None:
                raise DataError(path, "label is not one of the trained classes", field=column,
                                **location_kwargs(resolved, loc))
            out[row] = code
        return out

    @staticmethod
    def _in_chunks(records: list[dict[str, Any]], progress: Any, score: Any) -> np.ndarray:
        parts = []
        for start in range(0, len(records), _CHUNK):
            chunk = records[start:start + _CHUNK]
            parts.append(score(chunk))
            progress.advance(len(chunk))
        return np.concatenate(parts)


def _predict(model: Any, tokenizer: Any, records: list[dict[str, Any]], label_names: list[str], device: str,
             text_column: str, max_length: int) -> np.ndarray:
    from govern.training.inference import predict_proba

    return predict_proba(model, tokenizer, records, label_names, batch_size=32, device=device,
                         text_column=text_column, max_length=max_length)


def _losses(model: Any, tokenizer: Any, records: list[dict[str, Any]], task: str, device: str, cfg: Any) -> np.ndarray:
    from govern.training.inference import per_example_loss

    d = cfg.data
    return per_example_loss(model, tokenizer, records, task, None, batch_size=16, device=device,
                            text_column=d.text_column, label_column=d.label_column, prompt_column=d.prompt_column,
                            completion_column=d.completion_column, max_length=cfg.training.max_length)


def _scored_tokens(tokenizer: Any, records: list[dict[str, Any]], task: str, cfg: Any) -> np.ndarray:
    from govern.training.encoding import Columns
    from govern.training.inference import scored_token_counts

    d = cfg.data
    return scored_token_counts(tokenizer, records, task=task, max_length=cfg.training.max_length,
                               columns=Columns(text=d.text_column, label=d.label_column, prompt=d.prompt_column,
                                               completion=d.completion_column))


def _write_parquet(path: Path, columns: dict[str, Any], sensitive: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = []
    for name, values in columns.items():
        if name in sensitive or name in ("id", "label", "pred"):
            fields.append(pa.array(values, type=pa.string()))
        elif name == "probabilities":
            fields.append(pa.array(values, type=pa.list_(pa.float64())))
        elif name == "tokens":
            fields.append(pa.array(values, type=pa.int64()))
        else:
            fields.append(pa.array(values, type=pa.float64()))
    pq.write_table(pa.Table.from_arrays(fields, names=list(columns)), path)


class FairnessStage:
    name = "fairness"
    outputs_model = NoOutputs

    def enabled(self, ctx: StageContext) -> bool:
        return ctx.config.audits.fairness.enabled and bool(ctx.config.data.sensitive_columns)

    def input_digest(self, ctx: StageContext) -> str:
        evaluation = ctx.find(EvaluationOutputs)
        path = evaluation.predictions_path if evaluation else None
        # The predictions' bytes and the model they came from: equal predictions from another model are
        # still another model's audit.
        return digest_of(self.name, file_sha256(Path(path)) if path and Path(path).exists() else None,
                         evaluation.model_digest if evaluation else None,
                         ctx.config.audits.fairness, ctx.config.data.sensitive_columns,
                         ctx.policy.fairness.min_group_size)

    def run(self, ctx: StageContext) -> StageResult:
        from govern.audits.fairness import (
            compute_fairness,
            prepare_classification,
            prepare_perplexity,
            read_predictions,
        )

        evaluation = ctx.find(EvaluationOutputs)
        if evaluation is None:
            raise StageError(self.name, "no predictions: the evaluation stage did not run")
        path = Path(evaluation.predictions_path)
        cfg = ctx.config.audits.fairness
        sensitive = list(ctx.config.data.sensitive_columns)
        frame = read_predictions(path)
        task = evaluation.task or ctx.config.task
        if task == "classification":
            prep = prepare_classification(frame, label="label", pred="pred", sensitive=sensitive,
                                          classes=evaluation.label_names or None,
                                          positive_label=cfg.positive_label, multiclass=cfg.multiclass,
                                          source=str(path))
        else:
            prep = prepare_perplexity(frame, loss="loss", sensitive=sensitive,
                                      tokens="tokens" if "tokens" in frame.columns else None, source=str(path))
        evidence = compute_fairness(prep, min_group_size=ctx.policy.fairness.min_group_size,
                                    intersections=cfg.intersections,
                                    max_intersection_size=cfg.max_intersection_size,
                                    bootstrap=cfg.bootstrap, seed=cfg.seed,
                                    ci_level=cfg.ci_level)
        evidence.model_digest = evaluation.model_digest
        return StageResult(evidence=evidence,
                           artifacts=[artifact_for(path, "predictions", "predictions", role="input",
                                                   rows=len(frame))])
