"""DP supervised fine-tuning inside TRL's ``SFTTrainer``, governed: :class:`GovernedSFTTrainer`.

``GovernedSFTTrainer(run, model=..., args=SFTConfig(...), train_dataset=..., processing_class=tokenizer)``
is TRL's ``SFTTrainer`` with govern's DP training of :mod:`govern.integrations.transformers` (Poisson
logical batches split for gradient accumulation, per-sample clipping, σ from govern's accountant, resumable
checkpoints recorded in the audit chain). TRL prepares the data as usual — a prompt/completion data set with
``completion_only_loss`` (TRL's default for that format) gives labels of -100 on the prompt — and govern's
per-record loss averages each record's mean loss over its completion tokens only.

TRL's own loss (a token mean over the whole batch, with its entropy and token-accuracy metrics) is not
used under DP: per-sample gradients of a batch-wide token mean are not per-sample (see the integration's
module docstring), so those extra metrics are not logged.
"""

from __future__ import annotations

from trl.trainer.sft_trainer import SFTTrainer

from govern.integrations.transformers import DPTrainerMixin


class GovernedSFTTrainer(DPTrainerMixin, SFTTrainer):
    """TRL's ``SFTTrainer`` under govern (see the module docstring)."""
