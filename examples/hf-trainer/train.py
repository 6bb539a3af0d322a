"""A plain Hugging Face ``Trainer`` DP-LoRA fine-tune of MiniLM, governed by govern: copy it and change the
model, the tokenisation or the TrainingArguments.

    python train.py [govern.yaml]

The governed lines are marked ``# govern``: the session (data and PII gates before any of this runs), the
records training may see (redacted), ``GovernedTrainer`` instead of ``Trainer`` (Poisson sampling,
per-sample clipping across gradient-accumulation chunks, σ from govern's accountant, ε in the logs), and
``finish`` (save, audits, signing, the final decision, all recorded in the lineage DB). Rerun with
``GOVERN_RESUME=<run id>`` after a crash: training resumes from the newest checkpoint the run recorded and
the accountant continues. Exit code 0 when the run passes, 1 when a policy gate blocks it, 2 on bad input.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import TrainingArguments, default_data_collator

import govern
from govern.integrations.transformers import GovernedTrainer


class Encoded(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, enc: dict[str, torch.Tensor], labels: torch.Tensor) -> None:
        self.enc, self.labels = enc, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.enc["input_ids"][i], "attention_mask": self.enc["attention_mask"][i],
                "labels": self.labels[i]}


def main(config: Path) -> None:
    with govern.session(config) as run:                                     # govern: data + PII gates first
        model, tokenizer = run.prepare_model()                              # govern: the config's base model + LoRA
        records = run.training_data()                                       # govern: redacted records only
        enc = tokenizer([r["text"] for r in records], padding="max_length", truncation=True, max_length=48,
                        return_tensors="pt")
        labels = torch.tensor([run.label_names.index(str(r["intent"])) for r in records])
        args = TrainingArguments(
            output_dir=str(run.run_dir / "trainer"), per_device_train_batch_size=32, gradient_accumulation_steps=2,
            num_train_epochs=3, max_steps=run.config.training.max_steps or -1,  # govern: the config's plan, if any
            learning_rate=5e-3, logging_steps=5, save_steps=20,
            report_to=[], dataloader_pin_memory=False,
            use_cpu=not torch.cuda.is_available())  # without CUDA: torchrun's processes train on the CPU
        trainer = GovernedTrainer(run, model=model, args=args,               # govern: DP inside your Trainer
                                  train_dataset=Encoded(enc, labels), data_collator=default_data_collator)
        trainer.train()
        outcome = run.finish(trainer.model, tokenizer=tokenizer)            # govern: audits, decision, lineage
    print(f"run {outcome.run_id}: {outcome.status} ({outcome.decision})")


if __name__ == "__main__":
    govern.script_main(main, __file__)  # config from the command line (default: govern.yaml here); exit 0 / 1 / 2
