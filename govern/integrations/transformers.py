"""DP training inside a Hugging Face ``Trainer``, governed: :class:`GovernedTrainer`.

A user's Trainer script changes by a few lines::

    with govern.session("govern.yaml") as run:
        records = run.training_data()                          # redacted; canaries appended
        trainer = GovernedTrainer(run, model=model, args=args, train_dataset=tokenized(records),
                                  data_collator=collator)
        trainer.train()
        run.finish(trainer.model, tokenizer=tokenizer)

What the Trainer does differently, and why (dp-transformers' ``OpacusDPTrainer`` is the prior art; its users
hit stale pins and gradient-accumulation bugs, which the design below avoids by construction):

- **Poisson sampling of the logical batch.** Each optimizer step draws a Poisson sample of the training
  records (each independently with probability q = logical batch / n — the amplification the accountant
  assumes), then splits it into exactly ``gradient_accumulation_steps`` physical chunks. The Trainer's own
  accumulation loop therefore sees the number of micro-batches it expects, and one optimizer step is one
  logical (Poisson) batch: the accountant steps once per logical step, never per micro-batch.
- **Per-sample clipping across chunks.** After every chunk but the last, the per-sample gradients are
  clipped and summed into Opacus' accumulator and released (memory stays one chunk's worth); the Trainer's
  ``optimizer.step()`` clips the last chunk, adds the noise once and divides by the expected logical batch.
- **A per-sample loss.** Opacus' per-sample gradients are only per-sample when the loss is a mean of
  per-sample losses. A causal LM's own loss averages over every token of the batch, so one record's
  gradient would depend on the other records' lengths; govern computes each record's mean token loss and
  averages those. Classification losses are already per-sample means.
- **σ and ε are govern's.** σ is solved by govern's accountant for the run config's ε over the steps the
  Trainer will take (``max_steps``, or epochs × steps per epoch); Opacus' accountant records every step,
  and ε is logged with the loss. The Trainer's own ``max_grad_norm`` (clipping of the already-noised
  gradient) is turned off: the per-sample norm is ``training.dp.max_grad_norm``.
- **Opacus' hooks on the user's module** (``wrap_model=False``): the Trainer keeps the model it was given,
  so saving, device placement and column inspection work as without DP.
- **Resumable.** Every Trainer checkpoint gets govern's state (accountant history, σ, q, generator states)
  and is recorded in the run's hash-chained audit log as it is written. Rerunning the script with the run's
  id (``GOVERN_RESUME``) resumes from the newest recorded checkpoint, verified byte for byte before the
  Trainer opens any file of it, and the accountant continues from the recorded history.

- **torchrun.** The logical batch is the Trainer's: per device × accumulation steps × processes, so q is
  global. Each rank Poisson-samples its own shard of the records (rows ``rank::world``) with that q and its
  own random stream, split into the accumulation chunks; govern's loader is not handed to accelerate,
  whose batch sharding would undo the sampling. Opacus is attached through its DPDDP, so the optimizer is
  Opacus' distributed one: rank 0 alone adds the noise (σ·C), the clipped sums are all-reduced, and rank
  0's accountant — the one recorded — counts one step of the global q per logical step: the one-process
  ε for those q, σ and steps. (The Trainer's own DDP wrapper also all-reduces the raw gradients in
  backward; Opacus discards them: wasted communication, nothing released.) Resuming under torchrun:
  rank 0 verifies the newest recorded checkpoint against the audit chain and every rank resumes from it
  (the accountant's history, rank 0's noise and sampler states; the other ranks' Poisson streams start
  afresh, so their draws differ from an uninterrupted run's but are Poisson with the same q).

Not yet: Opacus' ghost clipping (``grad_sample_mode: ghost``) under the Trainer: a
:class:`~govern.errors.SessionError` naming the setting.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from govern.errors import SessionError
from govern.stage import tree_sha256
from govern.training import checkpoints as ckpt
from govern.training.private import resumed_stream_seed, trainable_snapshot

if TYPE_CHECKING:
    from govern.sessions import GovernedRun

#: Keys govern adds to a collated chunk (removed before the model sees it).
LAST_CHUNK = "govern_last_chunk"
EMPTY_CHUNK = "govern_empty_chunk"
#: Batch keys that are targets or masks for the loss, never model inputs.
LOSS_ONLY_KEYS = ("labels", "completion_mask", "assistant_masks")
#: govern's generator states in a Trainer checkpoint (safetensors: loading it executes nothing).
RNG_FILE = "govern-rng.safetensors"


#: Why GovernedTrainer (and GovernedSFTTrainer) refuse a multi-process launch the session cannot see.
TORCHRUN_UNSUPPORTED = (
    "GovernedTrainer runs in one process or under torchrun (WORLD_SIZE set); this launcher set up "
    "processes the session does not see, so govern cannot shard the Poisson sampling or add the noise once")


class ChunkedPoissonSampler:
    """Batch sampler: per logical step one Poisson sample (Opacus' ``UniformWithReplacementSampler``),
    split into ``chunks`` consecutive physical batches of near-equal size (some may be empty)."""

    def __init__(self, n: int, sample_rate: float, chunks: int, generator: torch.Generator, *,
                 indices: list[int] | None = None) -> None:
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        self.poisson = UniformWithReplacementSampler(num_samples=n, sample_rate=sample_rate, generator=generator)
        self.chunks = chunks
        #: The dataset rows this sampler draws from (a rank's shard under torchrun); None: rows 0..n-1.
        self.indices = indices

    def __len__(self) -> int:
        return len(self.poisson) * self.chunks

    def __iter__(self) -> Iterator[list[int]]:
        for drawn in self.poisson:
            batch = list(drawn) if self.indices is None else [self.indices[i] for i in drawn]
            size, extra = divmod(len(batch), self.chunks)
            start = 0
            for i in range(self.chunks):
                end = start + size + (1 if i < extra else 0)
                yield batch[start:end]
                start = end


class ChunkCollator:
    """The user's collator, plus an explicit marker for an empty chunk (collators fail on ``[]``)."""

    def __init__(self, collate: Callable[[list[Any]], Any]) -> None:
        self.collate = collate

    def __call__(self, features: list[Any]) -> Any:
        if not features:
            return {EMPTY_CHUNK: True}
        return self.collate(features)


def per_sample_mean_loss(logits: torch.Tensor, labels: torch.Tensor, *, shift: bool) -> torch.Tensor:
    """Mean over records of each record's mean token cross-entropy (positions labelled -100 ignored)."""
    if shift:
        logits, labels = logits[:, :-1, :], labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                                               labels.reshape(-1), ignore_index=-100, reduction="none")
    losses = losses.view(labels.shape)
    counts = (labels != -100).sum(dim=1)
    per_record = losses.sum(dim=1) / counts.clamp(min=1)
    return per_record.mean()


class DPTrainerMixin:
    """What :class:`GovernedTrainer` and :class:`govern.integrations.trl.GovernedSFTTrainer` add to a
    ``Trainer`` (see the module docstring). Put it first in the bases: ``class T(DPTrainerMixin, Trainer)``."""

    # Attributes of transformers' Trainer this mixin relies on (declared for the type checker).
    args: Any
    model: Any
    optimizer: Any
    state: Any
    train_dataset: Any
    data_collator: Any

    def __init__(self, run: GovernedRun, *args: Any, **kwargs: Any) -> None:
        _drop_gguf_marker(kwargs.get("model", args[0] if args else None))
        super().__init__(*args, **kwargs)
        self.governed_run = run
        cfg = run.config.training
        self._private = bool(cfg.dp.enabled)
        #: Processes training together; under torchrun each samples its shard of the records.
        self._world = int(self.args.world_size)
        self._rank = int(self.args.process_index)
        if self._world == 1 and run.world_size > 1:  # torchrun started us, but the Trainer stayed single-process
            raise SessionError(f"started by torchrun with {run.world_size} processes, but the Trainer did not join "
                               "the process group (on a machine without CUDA, set use_cpu=True in the training "
                               "arguments: transformers only trains multi-process on the CPU when told so)")
        if self._world != run.world_size:  # a launcher other than torchrun (accelerate's) with its own env
            raise SessionError(TORCHRUN_UNSUPPORTED)
        if self._private and cfg.dp.grad_sample_mode == "ghost":
            raise SessionError("training.dp.grad_sample_mode: ghost is not supported under the Trainer yet: use "
                               "hooks (the default)")
        if self._private and getattr(self.args, "gradient_checkpointing", False):
            raise SessionError("gradient_checkpointing is on in the training arguments (TRL's SFTConfig turns it on "
                               "by default): Opacus' per-sample gradients need the forward activations it discards; "
                               "set gradient_checkpointing=False")
        if self.train_dataset is None:
            raise SessionError("GovernedTrainer needs train_dataset: the records run.training_data() returned")
        self._n = len(self.train_dataset)
        expected = len(run.training_data())
        if self._n != expected:
            raise SessionError(f"train_dataset holds {self._n} records but run.training_data() returned {expected}: "
                               "train on exactly the records the session hands out (one row per record)")
        self._chunks = int(self.args.gradient_accumulation_steps)
        # The Trainer's own meaning: per device × accumulation × processes records per optimizer step.
        self._logical_batch = int(self.args.per_device_train_batch_size) * self._chunks * self._world
        # The Trainer's clipping would clip the noised mean gradient: meaningless under DP-SGD.
        if self._private:
            self.args.max_grad_norm = 0.0
        self._initial = trainable_snapshot(self.model)
        # One Poisson stream per rank: the same script runs everywhere, and alike-seeded ranks would tie one
        # record's inclusion to another's (the accountant assumes independent draws).
        self._sampler_generator = torch.Generator().manual_seed(int(cfg.seed) + 104729 + 7 * self._rank)
        self._resume_from: ckpt.Checkpoint | None = None
        self._chunk_losses: list[tuple[float, int]] = []
        self._attached = False
        self.add_callback(StepCallback(self))  # type: ignore[attr-defined]  # the Trainer's method

    # ------------------------------------------------------------------------------ plan and sampler
    def _steps_per_epoch(self) -> int:
        from govern.training import accounting

        return accounting.steps_per_epoch(accounting.poisson_sample_rate(self._n, self._logical_batch))

    def _planned_steps(self) -> int:
        """The optimizer steps this Trainer will take, counted the way the Trainer counts them."""
        if self.args.max_steps and self.args.max_steps > 0:
            return int(self.args.max_steps)
        return max(1, math.ceil(float(self.args.num_train_epochs) * self._steps_per_epoch()))

    def get_train_dataloader(self) -> DataLoader[Any]:
        if not self._private:
            return super().get_train_dataloader()  # type: ignore[misc, no-any-return]  # Trainer's method
        from govern.training import accounting

        dataset = self.train_dataset
        collate: Any = self.data_collator
        try:  # a 🤗 datasets.Dataset (TRL installs the package; a plain Trainer script may not have it)
            from datasets import Dataset as HFDataset
        except ImportError:
            HFDataset = None  # noqa: N806 (a class, or None)
        if HFDataset is not None and isinstance(dataset, HFDataset):
            dataset = self._remove_unused_columns(dataset, description="training")  # type: ignore[attr-defined]
        else:
            collate = self._get_collator_with_removed_columns(collate, description="training")  # type: ignore[attr-defined]
        rate = accounting.poisson_sample_rate(self._n, self._logical_batch)
        # Under torchrun each rank draws from its own shard with the *global* rate (Opacus' distributed
        # scheme); this loader is not handed to accelerate, whose batch sharding would undo the sampling.
        shard = list(range(self._rank, self._n, self._world))
        sampler = ChunkedPoissonSampler(len(shard), rate, self._chunks, self._sampler_generator,
                                        indices=shard if self._world > 1 else None)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=ChunkCollator(collate),
                          num_workers=self.args.dataloader_num_workers, pin_memory=self.args.dataloader_pin_memory)

    def get_batch_samples(self, epoch_iterator: Iterator[Any], num_batches: int, device: Any
                          ) -> tuple[list[Any], Any]:
        """The chunks of one logical batch, the last one marked. No token count: govern's loss is a mean of
        per-record means, which the Trainer's loss normalisation across chunks must not rescale."""
        if not self._private:  # the Trainer's own batching and token-count normalisation, unchanged
            return super().get_batch_samples(epoch_iterator, num_batches, device)  # type: ignore[misc, no-any-return]
        batches: list[Any] = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        if batches:
            if len(batches) != self._chunks:
                raise SessionError(f"the Trainer asked for {len(batches)} micro-batches where govern's sampler split "
                                   f"the logical batch into {self._chunks}: keep gradient_accumulation_steps fixed")
            for i, batch in enumerate(batches):
                batch[LAST_CHUNK] = i == len(batches) - 1
        return batches, None

    # -------------------------------------------------------------------------------- optimizer
    def create_optimizer(self, model: Any = None) -> Any:
        optimizer = super().create_optimizer(model)  # type: ignore[misc]  # the user's optimizer choice
        if self._attached:
            return self.optimizer
        run = self.governed_run
        if not self._private:
            run.track(self.model, optimizer, batch_size=self._logical_batch, initial=self._initial)
            self._attached = True
            return optimizer
        # A loader over the record indices fixes Opacus' q and expected batch; govern's sampler draws the batches.
        index_loader: DataLoader[tuple[torch.Tensor]] = DataLoader(_Indices(self._n), batch_size=self._logical_batch)
        _, dp_optimizer, _, _ = run.attach_private(
            self.model, optimizer, index_loader, n=self._n, batch_size=self._logical_batch,
            max_steps=self._planned_steps(), epochs=float(self.args.num_train_epochs), wrap_model=False,
            initial=self._initial)
        self.optimizer = dp_optimizer
        self._attached = True
        if self._resume_from is not None:
            self._restore_privacy(self._resume_from)
        return self.optimizer

    def _dp_optimizer(self) -> Any:
        opt = self.optimizer
        while opt is not None and opt.__class__.__name__ != "DPOptimizer" and hasattr(opt, "optimizer"):
            opt = opt.optimizer  # accelerate's AcceleratedOptimizer
        return opt

    # ---------------------------------------------------------------------------------- one chunk
    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        if not self._private:
            return super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc, no-any-return]
        last = bool(inputs.pop(LAST_CHUNK, True))
        empty = bool(inputs.pop(EMPTY_CHUNK, False))
        model.train()
        dp_opt = self._dp_optimizer()
        loss = torch.zeros((), device=self.args.device)
        size = 0
        if not empty:
            inputs = self._prepare_inputs(inputs)  # type: ignore[attr-defined]  # moves tensors to the device
            with self.compute_loss_context_manager():  # type: ignore[attr-defined]  # autocast (bf16 on GPU)
                loss, size = self.private_loss(model, inputs)
            loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
            self._chunk_losses.append((float(loss.detach()), size))
        if not last:
            if not empty:
                dp_opt.clip_and_accumulate()  # clipped and summed now; the next chunk starts afresh
                for p in dp_opt.params:
                    p.grad_sample = None
        else:
            for p in dp_opt.params:  # an empty last chunk: zero rows, so Opacus still noises and steps
                if getattr(p, "grad_sample", None) is None:
                    p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
            total = sum(n for _, n in self._chunk_losses)
            if total:
                self.governed_run.log(sum(v * n for v, n in self._chunk_losses) / total)
            self._chunk_losses = []
        return loss.detach() / self._chunks

    def private_loss(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, int]:
        """(mean of per-record losses, records) for one chunk (see the module docstring)."""
        labels = inputs.get("labels")
        ids = inputs.get("input_ids")
        size = int(labels.shape[0]) if labels is not None else int(ids.shape[0]) if ids is not None else 0
        token_level = (labels is not None and ids is not None and not labels.is_floating_point()
                       and labels.shape == ids.shape)
        if token_level:
            assert labels is not None
            outputs = model(**{k: v for k, v in inputs.items() if k not in LOSS_ONLY_KEYS})
            return per_sample_mean_loss(outputs.logits, labels, shift=self._shifts_labels(model)), size
        outputs = model(**{k: v for k, v in inputs.items() if k not in LOSS_ONLY_KEYS[1:]})
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]
        return loss, size

    def _shifts_labels(self, model: Any) -> bool:
        """Causal LMs predict the next token (labels shift by one); token classifiers label each position."""
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        return inner.__class__.__name__ in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()

    # ------------------------------------------------------------------------------- log and ε
    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        """Not logged under DP: before the optimizer step p.grad holds the *non-private* summed gradient, and
        its norm in the logs would be a release that ε does not cover."""
        if self._private:
            return None
        return super()._get_grad_norm(model, grad_norm=grad_norm)  # type: ignore[misc]

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        engine, delta = self.governed_run.privacy_engine, self.governed_run.delta
        if engine is not None and delta is not None and "loss" in logs:
            logs["epsilon"] = float(engine.get_epsilon(delta))
        super().log(logs, *args, **kwargs)  # type: ignore[misc]

    def optimizer_step_done(self) -> None:
        """After each logical step: Opacus keeps per-sample gradients until ``zero_grad``, which the Trainer
        leaves to ``model.zero_grad()`` (p.grad only); clear them or the next step would see two batches."""
        dp_opt = self._dp_optimizer()
        if dp_opt is not None and self._private:
            dp_opt.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)  # type: ignore[misc]
        if self._private and self._world > 1:
            # Every process writes its own RNG file into the folder: wait for all of them, so the digest rank 0
            # records covers the folder as it will stay.
            torch.distributed.barrier()
        if not self._private or not self.args.should_save:
            return
        run = self.governed_run
        engine = run.privacy_engine
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"  # type: ignore[attr-defined]
        history = [[float(s), float(q), int(k)] for s, q, k in engine.accountant.history]
        state = {"step": int(self.state.global_step), "accountant_history": history, "format": ckpt.FORMAT,
                 "noise_multiplier": run.noise_multiplier, "sample_rate": float(history[-1][1]) if history else None,
                 "trainer": "transformers"}
        from safetensors.torch import save_file

        generators = {"sampler": self._sampler_generator}
        if run.noise_generator is not None:
            generators["noise"] = run.noise_generator
        save_file({name: g.get_state() for name, g in generators.items()}, str(folder / RNG_FILE))
        (folder / ckpt.STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True, allow_nan=False),
                                              encoding="utf-8")
        for f in (folder / RNG_FILE, folder / ckpt.STATE_FILE):
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        run.checkpoint_chain().record(ckpt.CheckpointRecord(
            step=int(self.state.global_step), folder=folder.name, tree_sha256=tree_sha256(folder),
            accountant_history_sha256=ckpt.history_digest(history), dp_steps=ckpt.dp_steps(history),
            noise_multiplier=run.noise_multiplier, sample_rate=state["sample_rate"]))

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        """The Trainer's ``train``; in a resumed session (``GOVERN_RESUME``) it resumes from the newest
        checkpoint the run recorded, verified against the audit chain before any file of it is opened."""
        run = self.governed_run
        if self._private and (run.resumed or resume_from_checkpoint):
            found = self._vouched_checkpoint(resume_from_checkpoint)
            self._resume_from = found
            resume_from_checkpoint = str(found.path) if found is not None else None
        return super().train(resume_from_checkpoint, *args, **kwargs)  # type: ignore[misc]

    def _vouched_checkpoint(self, asked: str | bool | None) -> ckpt.Checkpoint | None:
        """The newest checkpoint the run's audit chain records, verified byte for byte. Under torchrun rank 0
        verifies (it holds the chain) and every rank resumes from what it found, its own copy checked against
        those bytes — or every rank refuses, so none waits on a collective the others left."""

        def find() -> ckpt.Checkpoint | None:
            found = ckpt.resumable_checkpoint(Path(self.args.output_dir), self.governed_run.checkpoint_chain(),
                                              root=Path(self.args.output_dir))
            if isinstance(asked, str) and (found is None or Path(asked).resolve() != found.path.resolve()):
                raise SessionError(f"resume_from_checkpoint={asked} is not this run's newest recorded "
                                   f"checkpoint ({found.path if found else 'none recorded'})")
            return found

        return ckpt.resume_on_every_rank(find, self._rank, self._world)

    def _restore_privacy(self, found: ckpt.Checkpoint) -> None:
        """The recorded accountant history (the privacy already spent) and generator states, into this run."""
        from safetensors.torch import load_file

        run = self.governed_run
        engine = run.privacy_engine
        assert run.sample_rate is not None  # attached before a checkpoint is restored
        engine.accountant.history = list(ckpt.check_history(found, run.sample_rate))
        states = load_file(str(found.path / RNG_FILE)) if (found.path / RNG_FILE).is_file() else {}
        if self._rank:  # the saved states are rank 0's: this rank's Poisson stream starts afresh, per step
            self._sampler_generator.manual_seed(resumed_stream_seed(
                int(self.governed_run.config.training.seed) + 104729, self._rank, found.step))
        elif "sampler" in states:
            self._sampler_generator.set_state(states["sampler"])
        if "noise" in states and run.noise_generator is not None and not self._rank:
            run.noise_generator.set_state(states["noise"])
        run.rebase_tracker()


def _drop_gguf_marker(model: Any) -> None:
    """A model loaded from a GGUF file (``gguf_file=``) is dequantized into ordinary float weights, but keeps
    transformers' quantizer marker, and the Trainer refuses to fine-tune a "quantized" model. govern's own
    recipe trains such models; drop the marker so the Trainer does too (only for GGUF, which is dequantized)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    quantizer = getattr(inner, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is not None and str(getattr(method, "value", method)).lower() == "gguf":
        inner.hf_quantizer = None
        inner.is_quantized = False


class _Indices(torch.utils.data.Dataset[tuple[torch.Tensor]]):
    """Record indices as one-tensor tuples (Opacus' loader reads the shapes of its first item)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor]:
        return (torch.tensor(i),)


class GovernedTrainer(DPTrainerMixin, Trainer):
    """A Hugging Face ``Trainer`` under govern: ``GovernedTrainer(run, model=..., args=..., train_dataset=...)``
    with every other ``Trainer`` argument as usual (see the module docstring for what changes)."""


class StepCallback(TrainerCallback):
    """Tells the trainer when an optimizer step is done (the Trainer's ``on_optimizer_step`` event)."""

    def __init__(self, trainer: DPTrainerMixin) -> None:
        self.trainer = trainer

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self.trainer.optimizer_step_done()
        return control
