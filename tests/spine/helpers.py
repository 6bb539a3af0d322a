"""Small real data sets and configs for the spine tests (no model training here)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import yaml

INTENTS = ["billing", "shipping", "account", "technical"]
WORDS = {
    "billing": ["invoice", "charge", "refund", "payment", "bill", "price"],
    "shipping": ["parcel", "delivery", "courier", "tracking", "package", "shipment"],
    "account": ["password", "login", "profile", "username", "settings", "signup"],
    "technical": ["crash", "error", "bug", "screen", "update", "freeze"],
}


def make_records(n: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        intent = INTENTS[i % len(INTENTS)]
        words = rng.sample(WORDS[intent], 3) + [rng.choice(["please", "today", "again", "now", "still"])]
        rng.shuffle(words)
        text = f"{prefix} {i} " + " ".join(words) + f" number {rng.randint(0, 10**6)}"
        out.append({"id": f"{prefix}-{i}", "text": text, "label": intent,
                    "region": rng.choice(["north", "south"]), "age_band": rng.choice(["18-29", "30-44", "45+"])})
    return out


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def write_project(root: Path, *, policy: str | dict[str, Any] = "default", n_train: int = 200, n_eval: int = 60,
                  extra: dict[str, Any] | None = None) -> Path:
    """A config folder with train/eval JSONL and govern.yaml; returns the config path."""
    write_jsonl(root / "train.jsonl", make_records(n_train, 1, "train"))
    write_jsonl(root / "eval.jsonl", make_records(n_eval, 2, "eval"))
    if isinstance(policy, dict):
        (root / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
        policy_ref = "policy.yaml"
    else:
        policy_ref = policy
    config: dict[str, Any] = {
        "name": "spine-test",
        "task": "classification",
        "data": {"train": "train.jsonl", "eval": "eval.jsonl", "text_column": "text", "label_column": "label",
                 "sensitive_columns": ["region", "age_band"]},
        "policy": policy_ref,
    }
    if extra:
        config.update(extra)
    path = root / "govern.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def policy_doc(**sections: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": "govern.dev/v1", "kind": "Policy",
                           "metadata": {"name": "test", "version": "0.1.0"}}
    doc.update(sections)
    return doc
