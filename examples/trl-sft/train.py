"""A TRL ``SFTTrainer`` DP-LoRA fine-tune, governed by govern: copy it and change the model or the SFTConfig.

    python train.py [govern.yaml] [--max-steps N]        # or: govern run govern.yaml (training.script)

The governed lines are marked ``# govern``: the session (data and PII gates first), the records training
may see (redacted), ``GovernedSFTTrainer`` instead of ``SFTTrainer`` (Poisson sampling, per-sample clipping,
σ from govern's accountant, each record's loss averaged over its completion tokens), and ``finish``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from trl import SFTConfig

import govern
from govern.errors import GovernError
from govern.integrations.trl import GovernedSFTTrainer


def main(config: Path, max_steps: int) -> int:
    with govern.session(config) as run:                                      # govern: data + PII gates first
        model, tokenizer = run.load_base_model()                             # govern: the config's base model
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16,
                                                 target_modules=["q_proj", "v_proj"]))
        records = run.training_data()                                        # govern: redacted records only
        data = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in records])
        args = SFTConfig(output_dir=str(run.run_dir / "sft"), per_device_train_batch_size=12,
                         gradient_accumulation_steps=2, num_train_epochs=3, max_steps=max_steps,
                         learning_rate=2e-3, max_length=96, completion_only_loss=True,
                         gradient_checkpointing=False,  # Opacus needs the activations
                         bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),  # SFTConfig: on
                         logging_steps=5, save_steps=20, report_to=[], dataloader_pin_memory=False)
        trainer = GovernedSFTTrainer(run, model=model, args=args, train_dataset=data,  # govern: DP SFT
                                     processing_class=tokenizer)
        trainer.train()
        outcome = run.finish(trainer.model, tokenizer=tokenizer)             # govern: audits, decision, lineage
    print(f"run {outcome.run_id}: {outcome.status} ({outcome.decision})")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, nargs="?", default=Path(__file__).with_name("govern.yaml"))
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after N optimizer steps (default: epochs)")
    ns = parser.parse_args()
    try:
        sys.exit(main(ns.config, ns.max_steps))
    except GovernError as exc:  # a policy block (1) or bad input (2): the message says which rule / file
        print(exc, file=sys.stderr)
        sys.exit(exc.exit_code)
