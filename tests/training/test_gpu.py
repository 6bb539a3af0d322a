"""On a CUDA GPU (``make gpu-check``): govern's DP training runs there, in bf16 where the GPU supports it,
through the built-in recipe and a Hugging Face Trainer. Skipped without CUDA (CI has no GPU: the one skip
GOVERN_REQUIRE_ALL leaves a skip)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import govern
from govern import api
from govern.lineage import LineageStore
from tests.session.conftest import Project

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CI has no GPU)")]


def test_the_builtin_recipe_trains_with_dp_on_the_gpu(project: Project) -> None:
    project.edit_config(device="cuda")
    outcome = api.run(project.config)
    assert outcome.status == "completed", outcome.error
    with LineageStore.open() as store:
        training = store.evidence(outcome.run_id)["training"]
    assert training["device"].startswith("cuda") and training["steps"] == 8 and training["dp_enabled"]


def test_a_trainer_script_trains_with_dp_on_the_gpu(project: Project, workdir: Path) -> None:
    from tests.session.hf_user_script import train

    with govern.session(project.config) as run:
        outcome = train(run, workdir / "out", max_steps=4, use_cpu=False)
    with LineageStore.open() as store:
        training = store.evidence(outcome.run_id)["training"]
    assert training["device"].startswith("cuda") and training["integrity"]["violations"] == 0
