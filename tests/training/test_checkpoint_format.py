"""Checkpoint files: safetensors and JSON only, and every state a resume needs comes back exactly."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from govern.lineage import LineageStore
from govern.training import checkpoints as ckpt
from govern.training.stage import LineageCheckpointChain

STATE = {"step": 2, "accountant_history": [[1.0, 0.125, 2]], "noise_multiplier": 1.0, "sample_rate": 0.125}


def _trained_pair() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, betas=(0.8, 0.95))
    for _ in range(2):
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def _draws(generators: dict[str, torch.Generator]) -> list[object]:
    return [torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.standard_normal(), random.random(),
            random.gauss(0, 1), *(torch.rand(2, generator=g).tolist() for g in generators.values())]


def test_every_rng_state_round_trips_exactly_through_the_files(tmp_path: Path) -> None:
    model, optimizer = _trained_pair()
    generators = {"sampler": torch.Generator().manual_seed(3), "noise": torch.Generator().manual_seed(5)}
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's state
    random.gauss(0, 1)           # and one in random's
    folder = ckpt.save_checkpoint(tmp_path, model=model, optimizer=optimizer, state=STATE, generators=generators)
    expected = _draws(generators)
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    fresh = {"sampler": torch.Generator().manual_seed(0), "noise": torch.Generator().manual_seed(0)}
    ckpt.load_rng(ckpt.read_checkpoint(folder), fresh)
    assert _draws(fresh) == expected


def test_optimizer_state_round_trips_and_the_folder_holds_no_pickle(tmp_path: Path) -> None:
    model, optimizer = _trained_pair()
    folder = ckpt.save_checkpoint(tmp_path, model=model, optimizer=optimizer, state=STATE, generators={})
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [ckpt.STATE_FILE, ckpt.WEIGHTS_FILE, ckpt.OPTIMIZER_TENSORS, ckpt.OPTIMIZER_META, ckpt.RNG_TENSORS,
         ckpt.RNG_META])
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=0.5)
    ckpt.load_optimizer(ckpt.read_checkpoint(folder), fresh)
    saved, loaded = optimizer.state_dict(), fresh.state_dict()
    assert loaded["param_groups"] == saved["param_groups"] and loaded["param_groups"][0]["betas"] == (0.8, 0.95)
    assert saved["state"].keys() == loaded["state"].keys()
    for pid, entries in saved["state"].items():
        for key, value in entries.items():
            assert torch.equal(loaded["state"][pid][key], value), (pid, key)


def test_a_kill_between_recording_and_renaming_resumes_from_the_recorded_checkpoint(tmp_path: Path) -> None:
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        chain = LineageCheckpointChain(store, store.create_run(name="kill", kind="run"))
        model, optimizer = _trained_pair()
        folder = ckpt.save_checkpoint(tmp_path, model=model, optimizer=optimizer, state=STATE, generators={},
                                      chain=chain)
        os.replace(folder, folder.with_name(folder.name + ".tmp"))  # what a kill before the rename leaves
        resumed = ckpt.resumable_checkpoint(tmp_path, chain)
        assert resumed is not None and resumed.path == folder and resumed.step == 2
        assert chain.records()[-1].tree_sha256 == ckpt.tree_sha256(folder)
