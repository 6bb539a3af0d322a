"""A plain PyTorch DP-LoRA fine-tune of MiniLM, governed by govern: copy it and change the model/loop.

    python train.py govern.yaml

Five governed lines (marked ``# govern``): the session (data and PII gates before any of this runs),
the records training may see (redacted), Opacus with govern's σ, and ``finish`` (save, audits, signing,
the final decision, all recorded in the lineage DB). Everything else is an ordinary training script.
Exit code 0 when the run passes, 1 when a policy gate blocks it (the reason is printed), 2 on bad input.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch.utils.data import DataLoader, TensorDataset

import govern


def main(config: Path) -> None:
    with govern.session(config) as run:                                      # govern: data + PII gates first
        model, tokenizer = run.prepare_model()                               # govern: the config's base model + LoRA
        records = run.training_data()                                        # govern: redacted records only
        max_length = run.config.training.max_length
        enc = tokenizer([r["text"] for r in records], padding="max_length", truncation=True,
                        max_length=max_length, return_tensors="pt")
        labels = torch.tensor([run.label_names.index(str(r["intent"])) for r in records])
        loader = DataLoader(TensorDataset(enc["input_ids"], enc["attention_mask"], labels),
                            batch_size=run.config.training.batch_size)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=run.config.training.learning_rate)
        model, optimizer, loader = run.make_private(model, optimizer, loader)  # govern: Opacus, govern's σ

        model.train()
        device = next(model.parameters()).device  # prepare_model put it on CUDA where there is one
        # σ was solved for exactly planned_steps; a resumed run (GOVERN_RESUME) starts after its checkpoint
        step, steps = run.completed_steps, run.planned_steps or 1
        while step < steps:
            for input_ids, attention_mask, y in loader:
                if step >= steps:
                    break
                input_ids, attention_mask, y = input_ids.to(device), attention_mask.to(device), y.to(device)
                loss = F.cross_entropy(model(input_ids, attention_mask=attention_mask).logits, y)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                run.log(loss.item())
                step += 1
        outcome = run.finish(model, tokenizer=tokenizer)                     # govern: audits, decision, lineage
    print(f"run {outcome.run_id}: {outcome.status} ({outcome.decision})")


if __name__ == "__main__":
    govern.script_main(main, __file__)  # config from the command line (default: govern.yaml here); exit 0 / 1 / 2
