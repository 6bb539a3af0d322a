"""Governed training inside the frameworks teams already use: thin adapters over :mod:`govern.sessions`.

- :mod:`govern.integrations.transformers` — :class:`~govern.integrations.transformers.GovernedTrainer`, a
  Hugging Face ``Trainer`` that trains with govern's DP (Poisson sampling, per-sample clipping, σ from
  govern's accountant) and records into the session.
- :mod:`govern.integrations.trl` — :class:`~govern.integrations.trl.GovernedSFTTrainer`, the same for TRL's
  ``SFTTrainer`` (causal-LM SFT, loss on completions only).

Imported only where used: the core package does not need transformers' Trainer or TRL.
"""
