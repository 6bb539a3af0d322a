"""DP fine-tuning: transformers + PEFT LoRA + Opacus, privacy accounting, checkpoints.

Modules: :mod:`~govern.training.accounting` (ε/σ planning, pure functions), :mod:`~govern.training.models`
(local base models, LoRA), :mod:`~govern.training.trainer` (the DP training loop, checkpoints, DDP),
:mod:`~govern.training.inference` (per-example loss / probabilities for the audits) and
:mod:`~govern.training.stage` (the pipeline stage). Importing this package loads no torch.
"""
