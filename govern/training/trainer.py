"""The DP fine-tuning loop: PEFT LoRA (or full) + Opacus DP-SGD, with checkpoints and torchrun support.

Why the loop is written out rather than using ``transformers.Trainer``: DP-SGD needs Opacus to own the
optimizer (per-sample clipping + noise), the data loader (Poisson sampling) and the step accounting;
and a resumable private run needs the sampler position, the noise generator state and the accountant
history saved together. The loop keeps those in one place.

Privacy accounting is never optimistic: σ is solved for the *whole* planned run (all steps) before the
first step, every step goes through Opacus' accountant, and the ε recorded is what the accountant
computes from its history — cross-checked with Google's dp-accounting (RDP and PLD).

Entry point: :func:`train` with a :class:`TrainingSpec`. Under ``torchrun`` (``WORLD_SIZE`` > 1) it
joins the process group (gloo on CPU, NCCL on CUDA), wraps the model in Opacus' ``DPDDP`` and
accounts for the *global* batch; only rank 0 writes checkpoints and the model. ``python -m
govern.training SPEC.json`` runs it from a spec file (what torchrun launches).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, Field
from torch import nn

from govern.config import Task, TrainingConfig, canonical_json
from govern.errors import ConfigError, DataError, StageError
from govern.evidence import TrainingEvidence, TrainingPoint
from govern.stage import NullProgress, Progress, file_sha256
from govern.training import accounting
from govern.training import checkpoints as ckpt
from govern.training.encoding import (
    Columns,
    EncodedDataset,
    EncodedExample,
    collate,
    encode_records,
    per_sequence_lm_loss,
)
from govern.training.inference import MODEL_META
from govern.training.models import (
    apply_lora,
    base_model_digest,
    base_model_facts,
    count_parameters,
    load_base_model,
    lora_targets,
    pick_device,
    resolve_base_model,
)
from govern.training.private import (
    IntegrityTracker,
    PlannedPrivacy,
    accounted_privacy,
    attach_opacus,
    keep_ranks_in_lockstep,
    plan_privacy,
)
from govern.versions import package_versions

# Opacus' hooks on the first adapted layer see inputs that need no gradient; PyTorch warns about it
# on every backward although per-sample gradients are computed correctly.
warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed")

#: Most points kept in the evidence curve (reports plot it; the DB stores it).
MAX_CURVE_POINTS = 500
#: ε is evaluated at this many curve points at most (each is an accountant call).
MAX_EPSILON_POINTS = 20


class DataFile(BaseModel):
    path: str
    format: str = "auto"
    role: str = "train"


def _default_columns() -> dict[str, str | None]:
    # a named function, not a lambda: a lambda's dict is inferred as dict[str, str]
    return {"text": "text", "label": "label"}


class TrainingSpec(BaseModel):
    """Everything one training run needs; JSON so torchrun workers and subprocesses can read it."""

    task: Task = "classification"
    base_model_path: str | None = None
    gguf_file: str | None = None
    base_model_name: str | None = None
    train_files: list[DataFile]
    columns: dict[str, str | None] = Field(default_factory=_default_columns)
    label_names: list[str] | None = None
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    output_dir: str
    allow_non_private: bool = Field(default=False, description="The policy allows training without DP.")
    max_delta: float | None = Field(default=None, description="The policy's δ cap: the default δ stays below it.")

    def fingerprint(self, base_digest: str | None = None) -> str:
        """What a checkpoint must match to be resumed from: the recipe and the bytes it trains on — each
        training file's contents and the base model's digest — not only their paths (not the output folder).

        A checkpoint written before one training record changed is another model's: continuing it would
        produce weights trained on the old data under evidence describing the new data."""
        import hashlib

        data = self.model_dump(mode="json", exclude={"output_dir"})
        contents = [file_sha256(Path(f.path)) for f in self.train_files]
        return "sha256:" + hashlib.sha256(canonical_json([data, contents, base_digest]).encode()).hexdigest()


@dataclass
class TrainingOutcome:
    evidence: TrainingEvidence
    model_dir: Path | None
    base_model_path: Path
    gguf_file: str | None
    base_model_digest: str
    label_names: list[str]
    device: str
    rank: int = 0
    final_checkpoint: Path | None = None
    #: The trained (unwrapped) model in eval mode, for callers that go on to use it in-process.
    model: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- utilities
def seed_everything(seed: int) -> dict[str, int]:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return {"torch": seed, "numpy": seed, "random": seed, "sampler": seed, "noise": seed}


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return world, rank


def _init_distributed(device: torch.device) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def _read_training_records(spec: TrainingSpec) -> list[dict[str, Any]]:
    from govern.data.io import read_records

    records: list[dict[str, Any]] = []
    for f in spec.train_files:
        records.extend(read_records(Path(f.path), f.format))
    return records


def _label_names(spec: TrainingSpec, records: list[dict[str, Any]]) -> list[str]:
    column = spec.columns.get("label") or "label"
    if spec.label_names:
        names = list(spec.label_names)
    else:
        names = sorted({str(r[column]) for r in records if r.get(column) is not None})
    if len(names) < 2:
        source = spec.train_files[0].path if spec.train_files else "<train>"
        raise DataError(source, f"label column has {len(names)} class(es); classification needs at least 2",
                        field=column)
    return names


def _autocast(device: torch.device, precision: str) -> tuple[bool, str]:
    if precision == "fp32" or device.type != "cuda":
        if precision == "bf16" and device.type != "cuda":
            raise ConfigError("training", ["training.precision 'bf16' needs a CUDA device"])
        return False, "fp32"
    if precision == "bf16" or torch.cuda.is_bf16_supported():
        return True, "bf16-autocast"
    return False, "fp32"


# ------------------------------------------------------------------------------ the named steps
@dataclass
class PreparedModel:
    """The base model ready to train (LoRA applied or every weight trainable), on its device, train mode."""

    model: Any
    tokenizer: Any
    label_names: list[str]
    architecture: dict[str, str]
    lora: dict[str, Any]
    trainable_params: int
    total_params: int
    #: Full fine-tuning under Opacus: position / token-type ids to pass per sample (see prepare_model).
    needs_position_ids: bool = False
    needs_token_types: bool = False


def prepare_model(spec: TrainingSpec, folder: Path, gguf: str | None, device: torch.device) -> PreparedModel:
    """Step 1 — the session's ``load_base_model``: the base model, labelled for the task, adapted (LoRA) or
    fully trainable, moved to ``device`` in train mode (Opacus needs train mode before ``make_private``)."""
    records = _read_training_records(spec)
    if not records:
        raise DataError(spec.train_files[0].path, "no training records")
    cfg = spec.training
    label_names = _label_names(spec, records) if spec.task == "classification" else []
    model, tokenizer = load_base_model(folder, gguf, task=spec.task, label_names=label_names or None)
    # What the model is, for the documents that ask (the GPAI form's architecture): from its own config.
    architecture = {k: v for k, v in (("model_type", getattr(model.config, "model_type", None)),
                                      ("architecture", type(model).__name__)) if isinstance(v, str) and v}
    lora_info: dict[str, Any] = {}
    if cfg.method == "lora":
        targets = lora_targets(model, cfg.lora.target_modules)
        model = apply_lora(model, task=spec.task, r=cfg.lora.r, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout,
                           target_modules=targets)
        lora_info = {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "dropout": cfg.lora.dropout, "target_modules": targets}
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    trainable, total = count_parameters(model)
    # Full fine-tuning under Opacus: the position (and token-type) embeddings are trained too, and
    # their default ids are a shared [1, T] buffer — per-sample gradients then get batch size 1. Give
    # every sample its own ids (``repeat``, not ``expand``, which ghost clipping cannot handle).
    import inspect

    forward_params = inspect.signature(model.forward).parameters
    model.to(device)
    model.train()
    return PreparedModel(
        model=model, tokenizer=tokenizer, label_names=label_names, architecture=architecture, lora=lora_info,
        trainable_params=trainable, total_params=total,
        needs_position_ids=cfg.method == "full" and "position_ids" in forward_params,
        needs_token_types=bool(cfg.method == "full" and "token_type_ids" in forward_params
                               and getattr(model.config, "type_vocab_size", 0)))


def encode_training_set(spec: TrainingSpec, tokenizer: Any, label_names: list[str]) -> EncodedDataset:
    """Step 2 — the session's ``training_data``, encoded: every training file (the redacted data, the audit
    canaries) tokenised the way the audits will score it."""
    from govern.data.io import read_records

    cfg = spec.training
    columns = Columns(text=spec.columns.get("text") or "text", label=spec.columns.get("label"),
                      prompt=spec.columns.get("prompt"), completion=spec.columns.get("completion"))
    examples: list[EncodedExample] = []
    for f in spec.train_files:
        examples.extend(encode_records(read_records(Path(f.path), f.format), tokenizer, task=spec.task,
                                       columns=columns, label_names=label_names, max_length=cfg.max_length,
                                       source=f.path))
    return EncodedDataset(examples)


# ------------------------------------------------------------------------------------------- train
@dataclass
class Runtime:
    """Step 0 — where this process trains: its rank in the process group, its device, seeds, precision."""

    world_size: int
    rank: int
    device: torch.device
    seeds: dict[str, int]
    use_bf16: bool
    precision: str


def start_runtime(spec: TrainingSpec, *, single_process: bool = False) -> Runtime:
    """Join the process group under torchrun (gloo on CPU, NCCL on CUDA), pick the device, seed every RNG."""
    world_size, rank = (1, 0) if single_process else _dist_info()
    device = pick_device(spec.training.device)
    if world_size > 1:
        _init_distributed(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    seeds = seed_everything(spec.training.seed)
    use_bf16, precision = _autocast(device, spec.training.precision)
    return Runtime(world_size=world_size, rank=rank, device=device, seeds=seeds, use_bf16=use_bf16,
                   precision=precision)


@dataclass
class ResumePoint:
    """Step 4 — the checkpoint a run continues from (none: a fresh start), vouched for by the chain."""

    checkpoint: ckpt.Checkpoint | None
    #: the σ the checkpoint's history was accrued with (the plan's when starting fresh)
    noise_multiplier: float | None
    history: list[tuple[float, float, int]]


def find_resume_point(spec: TrainingSpec, planned: PlannedPrivacy, fingerprint: str,
                      chain: ckpt.CheckpointChain | None, rt: Runtime) -> ResumePoint:
    """The newest resumable checkpoint of this exact set-up: another config, data or base model is refused.
    Under torchrun rank 0 finds it (it holds ``chain``) and every rank resumes from it, byte for byte."""
    found = ckpt.resume_on_every_rank(lambda: ckpt.resumable_checkpoint(Path(spec.output_dir), chain),
                                      rt.rank, rt.world_size)
    if found is None:
        return ResumePoint(None, planned.noise_multiplier, [])
    if found.state.get("fingerprint") != fingerprint:
        raise StageError("training", f"checkpoint {found.path} was written by a different training set-up "
                                     "(config, data or base model changed); "
                                     + ("start a new run" if chain is not None
                                        else "delete its checkpoints folder to start over"))
    if not spec.training.dp.enabled:
        return ResumePoint(found, planned.noise_multiplier, [])
    return ResumePoint(found, float(found.state["noise_multiplier"]), ckpt.check_history(found, planned.sample_rate))


class RecipeLoop:
    """Steps 5–7 of the built-in recipe: optimizer and loader made private (:meth:`attach`, through the same
    :func:`attach_opacus` and :class:`IntegrityTracker` as ``govern.session``), a checkpoint restored
    (:meth:`restore`), the loop with its checkpoints (:meth:`run`).

    A class rather than one long function so each step is named and testable; the state the steps share
    (step, losses, tokens) lives on it instead of in closures."""

    def __init__(self, spec: TrainingSpec, rt: Runtime, prepared: PreparedModel, dataset: EncodedDataset,
                 planned: PlannedPrivacy, fingerprint: str, chain: ckpt.CheckpointChain | None) -> None:
        self.spec, self.rt, self.prepared, self.dataset = spec, rt, prepared, dataset
        self.planned, self.fingerprint, self.chain = planned, fingerprint, chain
        self.out_dir = Path(spec.output_dir)
        self.plain_model = prepared.model  # the unwrapped (PEFT) model: what gets saved
        self.model: Any = prepared.model
        self.steps_per_epoch, self.total_steps = planned.steps_per_epoch, planned.total_steps
        cfg = spec.training
        self.sampler_gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + rt.rank)
        self.noise_gen = torch.Generator(device=rt.device).manual_seed(cfg.seed + 7919)
        self.generators = {"sampler": self.sampler_gen, "noise": self.noise_gen}
        # Opacus' objects are untyped: its DPOptimizer, loader and (ghost) criterion stay Any
        self.engine: Any = None
        self.optimizer: Any = None
        self.criterion: Any = None
        self.loader: Any = None
        self._bar: Any = None
        self._done = self._steps_this_epoch = 0
        self.step = 0
        self.losses: list[float] = []
        self.checkpoints_written = 0
        self.resumed_from: int | None = None
        self.elapsed_before = 0.0
        self.started = time.perf_counter()
        # Tokens the forward passes read (real, and with padding): the compute estimate's D. A checkpoint from
        # before this count leaves them unknown (None) rather than undercounted.
        self.tokens: list[int] | None = [0, 0]

    # ------------------------------------------------------------------------ step 5: made private
    def attach(self) -> None:
        """The optimizer, the loss, DPDDP under torchrun, Opacus (Poisson loader, σ from the plan) and the
        integrity tracker; a non-private run gets a plain (distributed) sampler instead of Opacus."""
        spec, rt, cfg = self.spec, self.rt, self.spec.training
        dp = cfg.dp
        tokenizer = self.prepared.tokenizer

        def collate_fn(batch: list[EncodedExample]) -> dict[str, torch.Tensor]:
            return collate(batch, tokenizer.pad_token_id, spec.task)

        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad], lr=cfg.learning_rate)
        criterion: Any = nn.CrossEntropyLoss(ignore_index=-100) if spec.task == "causal-lm" else nn.CrossEntropyLoss()
        if rt.world_size > 1:  # plan_privacy refused a DP run without Poisson sampling (Opacus shards only that)
            if dp.enabled:
                from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

                self.model = DPDDP(self.model)
            else:
                self.model = nn.parallel.DistributedDataParallel(
                    self.model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
        if dp.enabled:
            assert self.planned.noise_multiplier is not None  # planned for a DP run
            loader = torch.utils.data.DataLoader(self.dataset, batch_size=cfg.batch_size, collate_fn=collate_fn,
                                                 generator=self.sampler_gen)
            self.engine, self.model, optimizer, criterion, loader = attach_opacus(
                self.model, optimizer, loader, dp, self.planned.noise_multiplier, criterion=criterion,
                noise_generator=self.noise_gen)
            if rt.world_size > 1:
                keep_ranks_in_lockstep(loader)  # an empty draw is a step on every rank, as the accountant assumes
            opacus_rate = getattr(loader, "sample_rate", 1 / len(loader))
            if abs(opacus_rate - self.planned.sample_rate) > 1e-12:
                raise StageError("training",
                                 f"internal: Opacus sample rate {opacus_rate} != planned {self.planned.sample_rate}")
        else:
            per_rank = max(1, cfg.batch_size // rt.world_size)
            if rt.world_size > 1:
                sampler: torch.utils.data.Sampler[int] = torch.utils.data.DistributedSampler(
                    self.dataset, shuffle=True, seed=cfg.seed)
            else:
                sampler = torch.utils.data.RandomSampler(self.dataset, generator=self.sampler_gen)
            loader = torch.utils.data.DataLoader(self.dataset, batch_size=per_rank, sampler=sampler,
                                                 collate_fn=collate_fn)
            self.steps_per_epoch = len(loader)
            self.total_steps = cfg.max_steps or max(1, int(round(cfg.epochs * self.steps_per_epoch)))
        self.optimizer, self.criterion, self.loader = optimizer, criterion, loader
        # Snapshots of the trainable weights across optimizer steps (before a checkpoint is restored: the
        # relative weight change is measured from the initial weights, which the seed makes the same).
        self.tracker = IntegrityTracker(self.model, self._original_optimizer(), engine=self.engine,
                                        dp_optimizer=optimizer if dp.enabled else None, planned=self.planned)

    def _original_optimizer(self) -> Any:
        return getattr(self.optimizer, "original_optimizer", self.optimizer)

    # -------------------------------------------------------------------------- step 6: restored
    def restore(self, resume: ResumePoint) -> None:
        """Weights, optimizer, RNG states, accountant history and counters from the vouched-for checkpoint."""
        found = resume.checkpoint
        if found is None:
            return
        ckpt.load_weights(found, self.plain_model)
        ckpt.load_optimizer(found, self._original_optimizer())
        if self.rt.rank == 0:
            ckpt.load_rng(found, self.generators)
        else:
            torch.manual_seed(self.spec.training.seed + 31 * self.rt.rank + found.step)
        if self.engine is not None:
            self.engine.accountant.history = list(resume.history)
        self.step = found.step
        self.losses = list(found.state["losses"])
        self.checkpoints_written = int(found.state.get("checkpoints_written", 0))
        self.elapsed_before = float(found.state.get("elapsed_s", 0.0))
        self.resumed_from = self.step
        saved_tokens = found.state.get("tokens_processed")
        self.tokens = [int(saved_tokens[0]), int(saved_tokens[1])] if isinstance(saved_tokens, list) else None
        self.tracker.rebase()  # govern loaded these weights itself, from a checkpoint the chain vouched for

    def elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self.started)

    def checkpoint_state(self) -> dict[str, Any]:
        dp, step = self.spec.training.dp, self.step
        history = [list(h) for h in self.engine.accountant.history] if self.engine is not None else []
        return {
            "step": step, "epoch": step // self.steps_per_epoch, "step_in_epoch": step % self.steps_per_epoch,
            "total_steps": self.total_steps, "noise_multiplier": self.planned.noise_multiplier,
            "sample_rate": self.planned.sample_rate, "delta": self.planned.delta,
            "accountant": dp.accountant if dp.enabled else None, "accountant_history": history,
            "accountant_state": {"history": history, "mechanism": dp.accountant} if dp.enabled else None,
            "losses": self.losses, "fingerprint": self.fingerprint, "seeds": self.rt.seeds,
            "world_size": self.rt.world_size, "checkpoints_written": self.checkpoints_written + 1,
            "elapsed_s": self.elapsed(),
            "tokens_processed": list(self.tokens) if self.tokens is not None else None,
        }

    def write_checkpoint(self) -> Path | None:
        """Rank 0 writes; all ranks wait, so nobody runs ahead of a checkpoint being written."""
        path = None
        if self.rt.rank == 0:
            path = ckpt.save_checkpoint(self.out_dir, model=self.plain_model, optimizer=self._original_optimizer(),
                                        state=self.checkpoint_state(), generators=self.generators,
                                        keep=self.spec.training.keep_checkpoints, chain=self.chain)
        self.checkpoints_written += 1
        if self.rt.world_size > 1:
            torch.distributed.barrier()
        return path

    # ------------------------------------------------------------------------------ step 7: the loop
    def forward_loss(self, batch: dict[str, torch.Tensor]) -> Any:
        """The loss of one physical batch: per-record for DP (Opacus' per-sample gradients of its mean)."""
        device, spec, dp = self.rt.device, self.spec, self.spec.training.dp
        batch = {k: v.to(device) for k, v in batch.items()}
        kwargs: dict[str, torch.Tensor] = {"attention_mask": batch["attention_mask"]}
        b, t = batch["input_ids"].shape
        if self.tokens is not None:
            self.tokens[0] += int(batch["attention_mask"].sum().item())
            self.tokens[1] += int(b * t)
        if self.prepared.needs_position_ids:
            kwargs["position_ids"] = torch.arange(t, device=device)[None].repeat(b, 1)
        if self.prepared.needs_token_types:
            kwargs["token_type_ids"] = torch.zeros((b, t), dtype=torch.long, device=device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.rt.use_bf16):
            # input_ids positionally: Opacus' "ew" (expanded weights) mode only sees positional inputs.
            logits = self.model(batch["input_ids"], **kwargs).logits
        logits = logits.float()
        labels = batch["labels"]
        if dp.enabled and dp.grad_sample_mode == "ghost":
            if spec.task == "classification":
                return self.criterion(logits, labels)
            shifted = logits[:, :-1, :].contiguous()
            return self.criterion(shifted.view(-1, shifted.size(-1)), labels[:, 1:].contiguous().view(-1),
                                  shape=shifted.shape)
        if spec.task == "classification":
            return nn.functional.cross_entropy(logits, labels)
        return per_sequence_lm_loss(logits, labels).mean()

    def _finish_step(self, loss_value: float) -> bool:
        """Book one optimizer step (DP or not): loss, counters, progress, periodic checkpoint.
        True when this epoch's share of steps is done."""
        self.losses.append(loss_value)
        self.step += 1
        self._done += 1
        self._bar.advance(1)
        every = self.spec.training.checkpoint_every
        if every and self.step % every == 0 and self.step < self.total_steps:
            self.write_checkpoint()
        return self._done >= self._steps_this_epoch

    def _private_epoch(self, step_in_epoch: int) -> None:
        """Poisson logical batches, split into physical ones by Opacus' BatchMemoryManager."""
        from opacus.utils.batch_memory_manager import BatchMemoryManager

        loader, optimizer = self.loader, self.optimizer
        if step_in_epoch:  # fast-forward the Poisson sampler: same draws, no compute
            assert loader.batch_sampler is not None  # Opacus' DP loader always has its Poisson sampler
            skipped = iter(loader.batch_sampler)
            for _ in range(step_in_epoch):
                next(skipped)
        with BatchMemoryManager(data_loader=loader, max_physical_batch_size=self.spec.training.max_physical_batch_size,
                                optimizer=optimizer) as physical_loader:
            total_loss, total_n = 0.0, 0
            for batch in physical_loader:
                # An empty Poisson draw arrives as Opacus' empty tensors, not our dict.
                size = int(batch["input_ids"].shape[0]) if isinstance(batch, dict) else 0
                if size:
                    loss = self.forward_loss(batch)
                    loss.backward()
                    total_loss += float(loss.item()) * size
                    total_n += size
                optimizer.step()
                optimizer.zero_grad()
                # a DPOptimizer here (Opacus is untyped, so the attribute keeps torch's Optimizer type)
                if optimizer._is_last_step_skipped:  # inside a logical batch: keep accumulating
                    continue
                mean_loss = _global_mean(total_loss, total_n, self.rt.world_size, self.rt.device)
                total_loss, total_n = 0.0, 0
                if self._finish_step(mean_loss):
                    break

    def _plain_epoch(self, step_in_epoch: int) -> None:
        """Non-private: shuffled batches, gradient accumulation over physical chunks of each."""
        physical = self.spec.training.max_physical_batch_size
        for index, batch in enumerate(self.loader):
            if index < step_in_epoch:  # fast-forward: same shuffled order, no compute
                continue
            size = int(batch["input_ids"].shape[0])
            total_loss = 0.0
            for start in range(0, size, physical):
                chunk = {k: v[start:start + physical] for k, v in batch.items()}
                weight = chunk["input_ids"].shape[0] / size
                loss = self.forward_loss(chunk) * weight
                loss.backward()
                total_loss += float(loss.item())
            self.optimizer.step()
            self.optimizer.zero_grad()
            if self._finish_step(_global_mean(total_loss, 1, self.rt.world_size, self.rt.device)):
                break

    def run(self, progress: Progress) -> Path | None:
        """Every remaining step, epoch by epoch, then the final checkpoint (its path on rank 0)."""
        cfg = self.spec.training
        self._bar = progress.task("training", total=self.total_steps, unit="steps")
        self._bar.advance(self.step)
        try:
            while self.step < self.total_steps:
                epoch, step_in_epoch = divmod(self.step, self.steps_per_epoch)
                # Each epoch's sampling is a function of (seed, epoch, rank), so a resumed run draws the
                # same batches as an uninterrupted one.
                self.sampler_gen.manual_seed(cfg.seed * 1_000_003 + 7 * epoch + self.rt.rank)
                samplers: tuple[Any, ...] = (getattr(self.loader, "sampler", None),
                                             getattr(self.loader, "batch_sampler", None))
                for obj in samplers:
                    if hasattr(obj, "set_epoch"):
                        obj.set_epoch(epoch)
                self._steps_this_epoch = min(self.steps_per_epoch - step_in_epoch, self.total_steps - self.step)
                self._done = 0
                if cfg.dp.enabled:
                    self._private_epoch(step_in_epoch)
                else:
                    self._plain_epoch(step_in_epoch)
                if self._done == 0:
                    raise StageError("training", "the data loader yielded no batches (data set too small?)")
            return self.write_checkpoint()
        finally:
            self._bar.close()

    def tokens_all_ranks(self) -> list[int] | None:
        """The tokens every rank read (each read its share of every step)."""
        if self.tokens is None or self.rt.world_size == 1:
            return self.tokens
        counts = torch.tensor(self.tokens, dtype=torch.float64, device=self.rt.device)
        torch.distributed.all_reduce(counts)
        return [int(counts[0].item()), int(counts[1].item())]


def train(spec: TrainingSpec, progress: Progress | None = None, *, single_process: bool = False,
          chain: ckpt.CheckpointChain | None = None) -> TrainingOutcome:
    """Fine-tune as the spec says; resume from the newest checkpoint in ``output_dir`` if any.

    The named steps, in order: :func:`start_runtime`, the base model (:func:`prepare_model`), the encoded
    records (:func:`encode_training_set`), σ planned for every step (:func:`plan_privacy`), the resume point
    (:func:`find_resume_point`), then :class:`RecipeLoop` (attach, restore, run) and the evidence.

    ``single_process``: train in this process only, even under ``torchrun`` — for audit-internal models
    (LiRA's reference models) that rank 0 trains after the other ranks have finished and exited.
    ``chain``: where rank 0 records every checkpoint it writes and verifies the one it resumes from (the
    governed run's audit chain; see :func:`checkpoints.resumable_checkpoint`). Without one, checkpoints
    still load nothing executable and their accountant history must cover their steps, but an edit made
    consistently cannot be told from the real thing.
    """
    progress = progress or NullProgress()
    cfg = spec.training
    dp = cfg.dp
    if not dp.enabled and not spec.allow_non_private:
        raise StageError("training", "training.dp.enabled is false but the policy requires differential privacy "
                                     "(privacy.require_dp); use a policy that allows non-private training")
    rt = start_runtime(spec, single_process=single_process)
    folder, gguf = resolve_base_model(Path(spec.base_model_path) if spec.base_model_path else None, spec.gguf_file)
    digest = base_model_digest(folder, gguf)
    prepared = prepare_model(spec, folder, gguf, rt.device)
    dataset = encode_training_set(spec, prepared.tokenizer, prepared.label_names)
    # sampling and privacy parameters, fixed for the whole run before the first step
    planned = plan_privacy(len(dataset), cfg.batch_size, dp, max_steps=cfg.max_steps, epochs=cfg.epochs,
                           max_delta=spec.max_delta)
    fingerprint = spec.fingerprint(digest)
    chain = chain if rt.rank == 0 else None  # rank 0 alone writes checkpoints (and governs)
    resume = find_resume_point(spec, planned, fingerprint, chain, rt)
    planned = dataclasses.replace(planned, noise_multiplier=resume.noise_multiplier)

    loop = RecipeLoop(spec, rt, prepared, dataset, planned, fingerprint, chain)
    loop.attach()
    loop.restore(resume)
    final_ckpt = loop.run(progress)

    history, epsilons = accounted_privacy(loop.engine, planned.delta, dp.accountant)
    steps = sum(k for _, _, k in history) if history else loop.step
    tokens = loop.tokens_all_ranks()
    integrity = loop.tracker.evidence()
    model_dir: Path | None = None
    if rt.rank == 0:
        model_dir = _export(loop.out_dir, loop.plain_model, prepared.tokenizer, spec, prepared.label_names, digest,
                            folder, gguf)
    evidence = TrainingEvidence(
        dp_enabled=dp.enabled, non_private=not dp.enabled, accountant=dp.accountant if dp.enabled else None,
        epsilon=epsilons, delta=planned.delta if dp.enabled else None, noise_multiplier=planned.noise_multiplier,
        sample_rate=planned.sample_rate, steps=steps, epochs=steps / loop.steps_per_epoch,
        max_grad_norm=dp.max_grad_norm if dp.enabled else None, n_train=len(dataset), batch_size=cfg.batch_size,
        method=cfg.method, trainable_params=prepared.trainable_params, total_params=prepared.total_params,
        base_model={"name": spec.base_model_name or (gguf or folder.name), "path": str(folder),
                    "gguf_file": gguf, "digest": digest, **prepared.architecture, **base_model_facts(folder)},
        curve=_curve(loop.losses, planned.noise_multiplier, planned.sample_rate, planned.delta,
                     dp.accountant if dp.enabled else None),
        device=str(rt.device), world_size=rt.world_size, duration_s=round(loop.elapsed(), 3), seed=cfg.seed,
        versions=package_versions(), resumed_from_step=loop.resumed_from, task=spec.task,
        target_epsilon=dp.target_epsilon if dp.enabled and dp.noise_multiplier is None else None,
        accountant_history=history, steps_per_epoch=loop.steps_per_epoch,
        grad_sample_mode=dp.grad_sample_mode if dp.enabled else None,
        poisson_sampling=dp.poisson_sampling if dp.enabled else None, learning_rate=cfg.learning_rate,
        max_length=cfg.max_length, max_physical_batch_size=cfg.max_physical_batch_size, precision=rt.precision,
        lora=prepared.lora, label_names=prepared.label_names, checkpoints_written=loop.checkpoints_written,
        integrity=integrity, tokens_processed=tokens[0] if tokens is not None else None,
        padded_tokens_processed=tokens[1] if tokens is not None else None,
    )
    return TrainingOutcome(evidence=evidence, model_dir=model_dir, base_model_path=folder, gguf_file=gguf,
                           base_model_digest=digest, label_names=prepared.label_names, device=str(rt.device),
                           rank=rt.rank, final_checkpoint=final_ckpt, model=loop.plain_model.eval(),
                           extra={"seeds": rt.seeds})


def _global_mean(total: float, count: int, world_size: int, device: torch.device) -> float:
    """The loss of a logical step over all ranks (each rank holds part of the global batch)."""
    if world_size == 1:
        return total / max(count, 1)
    t = torch.tensor([total, float(count)], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return float(t[0] / max(t[1].item(), 1.0))


def _curve(losses: list[float], sigma: float | None, sample_rate: float, delta: float,
           accountant: str | None) -> list[TrainingPoint]:
    """Loss per step (mean over ``stride`` steps, ≤ 500 points) and ε after that step.

    ε at step k is the accountant's ε for k steps of (σ, q) — σ and q are constant within a run, so
    this equals what the live accountant reported at step k.
    """
    if not losses:
        return []
    stride = max(1, math.ceil(len(losses) / MAX_CURVE_POINTS))
    points: list[TrainingPoint] = []
    for end in range(stride, len(losses) + stride, stride):
        end = min(end, len(losses))
        window = losses[end - stride:end] if end - stride >= 0 else losses[:end]
        points.append(TrainingPoint(step=end, loss=float(np.mean(window))))
        if end == len(losses):
            break
    if sigma is not None and accountant == "rdp":
        # RDP composes linearly in the number of steps: one per-step RDP vector gives every point,
        # exactly as Opacus' accountant computes it (compute_rdp(steps=k) = k · compute_rdp(steps=1)).
        from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
        from opacus.accountants.rdp import RDPAccountant

        orders = RDPAccountant.DEFAULT_ALPHAS
        per_step = compute_rdp(q=sample_rate, noise_multiplier=sigma, steps=1, orders=orders)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for point in points:
                point.epsilon = float(get_privacy_spent(orders=orders, rdp=per_step * point.step, delta=delta)[0])
    elif sigma is not None and accountant is not None:
        eps_every = max(1, math.ceil(len(points) / MAX_EPSILON_POINTS))
        for i, point in enumerate(points):
            if i % eps_every == 0 or i == len(points) - 1:
                point.epsilon = accounting.epsilon(sigma, sample_rate, point.step, delta, accountant)  # type: ignore[arg-type]  # a name the DP config validated
    return points


def _export(out_dir: Path, model: nn.Module, tokenizer: Any, spec: TrainingSpec, label_names: list[str],
            digest: str, folder: Path, gguf: str | None) -> Path:
    """Write the model folder: weights (safetensors), tokenizer, config, metadata and a model card stub."""
    import shutil

    cfg = spec.training
    model_dir = out_dir / "model"
    tmp = out_dir / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # a transformers model or its PEFT wrapper: nn.Module types their attributes as Tensor | Module
    hf: Any = model
    hf.eval()
    hf.save_pretrained(str(tmp), safe_serialization=True)
    config = hf.base_model.model.config if cfg.method == "lora" else hf.config
    if cfg.method == "lora":
        config.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    meta = {
        "task": spec.task, "method": cfg.method, "label_names": label_names,
        "base_model": {"path": str(folder), "gguf_file": gguf, "digest": digest, "name": spec.base_model_name},
        "columns": spec.columns, "max_length": cfg.max_length,
        "dp": cfg.dp.enabled,
    }
    (tmp / MODEL_META).write_text(json.dumps(meta, indent=1, sort_keys=True))
    (tmp / "README.md").write_text(_model_card(spec, label_names, digest, folder, gguf))
    shutil.rmtree(model_dir, ignore_errors=True)
    os.replace(tmp, model_dir)
    if cfg.merge_adapter and cfg.method == "lora":
        merged_dir = out_dir / "merged"
        shutil.rmtree(merged_dir, ignore_errors=True)
        merged = hf.merge_and_unload()
        merged.save_pretrained(str(merged_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(merged_dir))
        (merged_dir / MODEL_META).write_text(json.dumps({**meta, "method": "full"}, indent=1, sort_keys=True))
    return model_dir


def _model_card(spec: TrainingSpec, label_names: list[str], digest: str, folder: Path, gguf: str | None) -> str:
    """A stub model card: how the model was made. No training text, ever (it may be personal data)."""
    cfg = spec.training
    dp = cfg.dp
    privacy = (f"Differentially private (Opacus DP-SGD, {dp.accountant} accountant, max_grad_norm {dp.max_grad_norm}). "
               "The achieved ε/δ are in the run's evidence (`govern runs show`)."
               if dp.enabled else "**Not differentially private** (allowed by the run's policy).")
    labels = ", ".join(label_names) if label_names else "n/a"
    return (
        f"# {spec.base_model_name or 'govern'} fine-tune\n\n"
        f"- Task: {spec.task}\n- Method: {cfg.method}"
        + (f" (LoRA r={cfg.lora.r}, alpha={cfg.lora.alpha})" if cfg.method == "lora" else "") + "\n"
        f"- Base model: `{gguf or folder.name}` ({digest})\n"
        f"- Labels: {labels}\n- Privacy: {privacy}\n\n"
        "Generated by govern. Evaluation, membership-inference and fairness results live in the run report.\n"
    )
