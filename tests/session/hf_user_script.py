"""A user's Hugging Face ``Trainer`` script, governed: what the tests run in-process and as a subprocess.

    python hf_user_script.py govern.yaml OUTPUT_DIR [--kill-at STEP] [--max-steps N] [--no-use-cpu]

The governed lines are marked; the rest is a plain Trainer script. ``--kill-at`` sends SIGKILL to this
process right after that optimizer step (the kill -9 test); ``--no-use-cpu`` leaves ``use_cpu`` unset, as a
script written for CUDA does."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainingArguments, default_data_collator

import govern
from govern.errors import GovernError
from govern.integrations.transformers import GovernedTrainer


class PrintWeights(TrainerCallback):  # type: ignore[misc]
    """Prints ``weights RANK DIGEST`` of the trainable parameters when training ends (the torchrun test
    checks that every rank ends with the same model)."""

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> Any:
        from tests.session.ddp_user_script import weights_digest

        print(f"weights {os.environ.get('RANK', '0')} {weights_digest(model)}", flush=True)
        return control


class KillAt(TrainerCallback):  # type: ignore[misc]
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
        return control


def lora_model_and_data(run: Any) -> tuple[Any, Any, dict[str, torch.Tensor], torch.Tensor]:
    """What both test user scripts (this one and test_own_loop's loop) start from: the config's base model
    with LoRA r=4 on query/value, and the redacted training records tokenised to 16 tokens with their labels."""
    from peft import LoraConfig, get_peft_model

    model, tokenizer = run.load_base_model()                                   # governed: the config's base model
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"]))
    records = run.training_data()                                              # governed: redacted records
    enc = tokenizer([r["text"] for r in records], padding="max_length", truncation=True, max_length=16,
                    return_tensors="pt")
    labels = torch.tensor([run.label_names.index(r["label"]) for r in records])
    return model, tokenizer, enc, labels


def train(run: Any, output_dir: Path, *, max_steps: int = 8, accumulation: int = 2, kill_at: int | None = None,
          save_steps: int = 3, lr: float = 0.05, use_cpu: bool = True) -> Any:
    model, tokenizer, enc, labels = lora_model_and_data(run)
    args = TrainingArguments(output_dir=str(output_dir), per_device_train_batch_size=32 // accumulation,
                             gradient_accumulation_steps=accumulation, max_steps=max_steps, learning_rate=lr,
                             optim="sgd", lr_scheduler_type="constant", logging_steps=1, save_steps=save_steps,
                             save_strategy="steps", report_to=[], use_cpu=use_cpu, disable_tqdm=True,
                             dataloader_pin_memory=False)
    # A list of feature dicts is a map-style data set as it stands (examples/hf-trainer wraps one in a class).
    records = [{"input_ids": ids, "attention_mask": mask, "labels": y}
               for ids, mask, y in zip(enc["input_ids"], enc["attention_mask"], labels, strict=True)]
    trainer = GovernedTrainer(run, model=model, args=args, train_dataset=records,  # governed
                              data_collator=default_data_collator)
    if kill_at is not None:
        trainer.add_callback(KillAt(kill_at))
    trainer.add_callback(PrintWeights())
    trainer.train()
    return run.finish(trainer.model, tokenizer=tokenizer)                      # governed: audits, decision


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--no-use-cpu", action="store_true")
    ns = parser.parse_args()
    torch.set_num_threads(1)
    try:
        with govern.session(ns.config) as run:
            print(f"run-id {run.run_id}", flush=True)
            outcome = train(run, ns.output_dir, max_steps=ns.max_steps, kill_at=ns.kill_at,
                            use_cpu=not ns.no_use_cpu)
    except GovernError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    print(f"run {outcome.run_id}: {outcome.status} ({outcome.decision})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
