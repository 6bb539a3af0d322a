"""DP fine-tuning: transformers + PEFT LoRA + Opacus, privacy accounting, checkpoints.

Modules: :mod:`~govern.training.accounting` (ε/σ planning, pure functions), :mod:`~govern.training.models`
(local base models, LoRA), :mod:`~govern.training.trainer` (the DP training loop, checkpoints, DDP),
:mod:`~govern.training.inference` (the one model loader and per-record scorer
the audits use) and
:mod:`~govern.training.stage` (the pipeline stage). Importing this package loads no torch.
"""

import warnings

# transformers 5 calls its own deprecated `is_gradient_checkpointing` from PEFT/Opacus code paths; the
# warning is about library internals a user cannot act on, and it would clutter every run's output.
warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
