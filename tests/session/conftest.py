"""A tiny governed project for session tests: a 2-layer random BERT, a sentiment data set, a policy.

Seconds per run on 2 cores: the real stages (data, PII with Presidio patterns, evaluation, membership),
real Opacus, a model small enough that a DP step costs milliseconds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.training.conftest import build_tiny_bert, sentiment_records, write_jsonl

POLICY: dict[str, Any] = {
    "apiVersion": "govern.dev/v1", "kind": "Policy", "metadata": {"name": "session-test", "version": "1"},
    "data": {"max_exact_leakage": None},
    "pii": {"engine": "patterns", "entities": {"US_SSN": "block", "EMAIL_ADDRESS": "redact"}},
    "privacy": {"require_dp": True, "max_epsilon": 8.0, "max_delta": 1e-5},
}


@dataclass
class Project:
    root: Path
    config: Path
    train: Path

    def edit_config(self, **training: Any) -> None:
        data = yaml.safe_load(self.config.read_text())
        data["training"].update(training)
        self.config.write_text(yaml.safe_dump(data, sort_keys=False))

    def edit_policy(self, section: str, **values: Any) -> None:
        path = self.root / "policy.yaml"
        data = yaml.safe_load(path.read_text())
        data.setdefault(section, {}).update(values)
        path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="session")
def session_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("session-bert"))


def make_project(root: Path, base_model: Path, extra_train: list[dict[str, str]] = ()) -> Project:  # type: ignore[assignment]
    root.mkdir(parents=True, exist_ok=True)
    train = write_jsonl(root / "train.jsonl", sentiment_records(254, seed=1) + list(extra_train))
    write_jsonl(root / "eval.jsonl", sentiment_records(64, seed=2, prefix="e"))
    (root / "policy.yaml").write_text(yaml.safe_dump(POLICY, sort_keys=False))
    config = {
        "name": "own-loop", "task": "classification", "base_model": {"path": str(base_model), "name": "tiny-bert"},
        "data": {"train": "train.jsonl", "eval": "eval.jsonl", "id_column": "id", "text_column": "text",
                 "label_column": "label"},
        "training": {"method": "lora", "batch_size": 32, "max_steps": 8, "max_length": 16, "learning_rate": 0.05,
                     "dp": {"target_epsilon": 4.0, "max_grad_norm": 1.0, "accountant": "rdp", "delta": 1e-5}},
        "audits": {"membership": {"max_records": 60, "bootstrap": 0}, "fairness": {"enabled": False}},
        "policy": "policy.yaml",
    }
    path = root / "govern.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return Project(root=root, config=path, train=train)


@pytest.fixture
def project(workdir: Path, session_bert: Path) -> Project:
    return make_project(workdir / "proj", session_bert)


def planted(value: str, index: int) -> dict[str, str]:
    return {"id": f"pii{index}", "text": f"good movie mail {value} please", "label": "pos"}


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
