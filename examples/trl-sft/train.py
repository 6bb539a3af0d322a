"""A TRL ``SFTTrainer`` DP-LoRA fine-tune, governed by govern: copy it and change the model or the SFTConfig.

    python train.py [govern.yaml]        # or: govern run govern.yaml (training.script)

The governed lines are marked ``# govern``: the session (data and PII gates first), the records training
may see (redacted), ``GovernedSFTTrainer`` instead of ``SFTTrainer`` (Poisson sampling, per-sample clipping,
σ from govern's accountant, each record's loss averaged over its completion tokens), and ``finish``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from datasets import Dataset
from trl import SFTConfig

import govern
from govern.integrations.trl import GovernedSFTTrainer


def main(config: Path) -> None:
    with govern.session(config) as run:                                      # govern: data + PII gates first
        model, tokenizer = run.prepare_model()                               # govern: the config's base model + LoRA
        records = run.training_data()                                        # govern: redacted records only
        data = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in records])
        args = SFTConfig(output_dir=str(run.run_dir / "sft"), per_device_train_batch_size=12,
                         gradient_accumulation_steps=2, num_train_epochs=3,
                         max_steps=run.config.training.max_steps or -1,  # govern: the config's plan, if any
                         learning_rate=2e-3, max_length=96, completion_only_loss=True,
                         gradient_checkpointing=False,  # Opacus needs the activations
                         bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),  # SFTConfig: on
                         logging_steps=5, save_steps=20, report_to=[], dataloader_pin_memory=False,
                         use_cpu=not torch.cuda.is_available())  # without CUDA: torchrun's processes train on the CPU
        trainer = GovernedSFTTrainer(run, model=model, args=args, train_dataset=data,  # govern: DP SFT
                                     processing_class=tokenizer)
        trainer.train()
        outcome = run.finish(trainer.model, tokenizer=tokenizer)             # govern: audits, decision, lineage
    print(f"run {outcome.run_id}: {outcome.status} ({outcome.decision})")


if __name__ == "__main__":
    govern.script_main(main, __file__)  # config from the command line (default: govern.yaml here); exit 0 / 1 / 2
