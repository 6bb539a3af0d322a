"""Benchmark: DP inside a Hugging Face Trainer — govern's integration vs Opacus wired into the same Trainer
by hand, and DP vs non-DP under the Trainer.

    .venv/bin/python tests/benchmarks/bench_hf_trainer.py [--steps 10] [--batch 32] [--seq 48] [--rounds 2]

All three train all-MiniLM-L6-v2 + LoRA r=8 (query/value) + a 5-class head on the same records with the
same TrainingArguments (CPU, SGD, no accumulation):

- **governed**: :class:`govern.integrations.transformers.GovernedTrainer` in a real ``govern.session`` (the
  session's data/PII stages run before and are not timed): Poisson sampling, per-sample clipping, the
  integrity tracker, ε in the logs;
- **by hand**: a ``Trainer`` subclass with Opacus' ``make_private(wrap_model=False)`` in ``create_optimizer``,
  Opacus' Poisson loader as the train loader and ``zero_grad`` after each step (the least a correct hand
  wiring needs);
- **non-DP**: the plain ``Trainer``.

Step time is the median over optimizer steps (a callback timestamps each step, the first of each run
is dropped as warm-up); rounds alternate the three so background load hits them alike. Prints
governed / by hand (goal ≤ 1.05) and governed / non-DP (goal ≤ 1.10).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
ROOT = Path(__file__).resolve().parents[2]


def _records(n: int) -> list[dict[str, str]]:
    lines = (ROOT / "examples" / "quickstart" / "train.jsonl").read_text().splitlines()[:n]
    return [json.loads(line) for line in lines]


class Encoded:
    def __init__(self, enc: dict[str, Any], labels: Any) -> None:
        self.enc, self.labels = enc, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.enc["input_ids"][i], "attention_mask": self.enc["attention_mask"][i],
                "labels": self.labels[i]}


def _step_times() -> tuple[Any, list[float]]:
    from transformers import TrainerCallback

    times: list[float] = []

    class Timer(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            times.append(time.perf_counter() - self.t)

    return Timer(), times


def _model(labels: list[str]) -> Any:
    import torch

    from govern.training.models import apply_lora, load_base_model

    torch.manual_seed(0)
    model, tokenizer = load_base_model(None, task="classification", label_names=labels)
    return apply_lora(model, task="classification", r=8, alpha=16, dropout=0.0, target_modules=None), tokenizer


def _args(out: Path, steps: int, batch: int) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(out), per_device_train_batch_size=batch, max_steps=steps,
                             learning_rate=5e-3, optim="sgd", lr_scheduler_type="constant", logging_steps=steps,
                             save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                             dataloader_pin_memory=False)


def by_hand_trainer() -> Any:
    from opacus import PrivacyEngine
    from transformers import Trainer

    class OpacusTrainer(Trainer):  # type: ignore[misc]
        """Opacus wired into a Trainer by hand: what a user writes without govern."""

        def create_optimizer(self, model: Any = None) -> Any:
            if getattr(self, "_dp", None) is not None:
                return self.optimizer
            optimizer = super().create_optimizer(model)
            loader = super().get_train_dataloader()
            self._engine = PrivacyEngine(accountant="rdp")
            _, self.optimizer, self._dp = self._engine.make_private(
                module=self.model, optimizer=optimizer, data_loader=loader, noise_multiplier=self.sigma,
                max_grad_norm=1.0, poisson_sampling=True, wrap_model=False)
            return self.optimizer

        def get_train_dataloader(self) -> Any:
            if getattr(self, "_dp", None) is None:
                self.create_optimizer()
            return self._dp

        def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
            return None

        def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> Any:
            loss = super().training_step(model, inputs, num_items_in_batch)
            return loss

    return OpacusTrainer


def main() -> None:
    import torch
    import yaml
    from transformers import Trainer, TrainerCallback, default_data_collator

    import govern
    from govern.integrations.transformers import GovernedTrainer

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    ns = parser.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="bench-hf-"))
    os.environ["GOVERN_DB_URL"] = f"sqlite:///{work / 'lineage.db'}"
    n = ns.batch * 8
    records = _records(n + 64)
    (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:n]))
    (work / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[n:]))
    policy = {"apiVersion": "govern.dev/v1", "kind": "Policy", "metadata": {"name": "bench", "version": "1"},
              "data": {"max_exact_leakage": None},
              "pii": {"engine": "patterns", "entities": {}}, "privacy": {"require_dp": True, "max_epsilon": 50.0}}
    (work / "policy.yaml").write_text(yaml.safe_dump(policy))
    config = {"name": "bench-hf", "task": "classification",
              "data": {"train": "train.jsonl", "eval": "eval.jsonl", "id_column": "id", "text_column": "text",
                       "label_column": "intent"},
              "training": {"dp": {"noise_multiplier": 1.0, "accountant": "rdp"}, "seed": 0},
              "audits": {"membership": {"enabled": False}, "fairness": {"enabled": False}},
              "policy": "policy.yaml"}
    (work / "govern.yaml").write_text(yaml.safe_dump(config))
    labels = sorted({str(r["intent"]) for r in records[:n]})

    def encoded(tokenizer: Any, rows: list[dict[str, Any]]) -> Encoded:
        enc = tokenizer([r["text"] for r in rows], padding="max_length", truncation=True, max_length=ns.seq,
                        return_tensors="pt")
        return Encoded(enc, torch.tensor([labels.index(str(r["intent"])) for r in rows]))

    times: dict[str, list[float]] = {"governed": [], "by hand": [], "non-DP": []}
    OpacusTrainer = by_hand_trainer()  # noqa: N806 (a class)
    for round_ in range(ns.rounds):
        for kind in times:
            timer, step_times = _step_times()
            model, tokenizer = _model(labels)
            args = _args(work / f"out-{kind}-{round_}", ns.steps, ns.batch)
            if kind == "governed":
                with govern.session(work / "govern.yaml") as run:
                    trainer = GovernedTrainer(run, model=model, args=args,
                                              train_dataset=encoded(tokenizer, run.training_data()),
                                              data_collator=default_data_collator, callbacks=[timer])
                    trainer.train()
                    run.fail("benchmark: timing only")
            else:
                cls = OpacusTrainer if kind == "by hand" else Trainer
                trainer = cls(model=model, args=args, train_dataset=encoded(tokenizer, records[:n]),
                              data_collator=default_data_collator, callbacks=[timer])
                if kind == "by hand":
                    trainer.sigma = 1.0

                    class ZeroGrad(TrainerCallback):  # type: ignore[misc]
                        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                            kw["optimizer"].optimizer.zero_grad(set_to_none=True)  # Opacus' DPOptimizer

                    trainer.add_callback(ZeroGrad())
                trainer.train()
            times[kind].extend(step_times[1:])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"MiniLM+LoRA under a Hugging Face Trainer, batch {ns.batch}, seq {ns.seq}, {ns.steps} steps x "
          f"{ns.rounds} rounds each (median step):")
    for k, v in med.items():
        print(f"  {k:9s} {v * 1000:8.1f} ms/step")
    print(f"ratio governed / by hand: {med['governed'] / med['by hand']:.3f} (goal <= 1.05)")
    print(f"ratio governed / non-DP:  {med['governed'] / med['non-DP']:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
