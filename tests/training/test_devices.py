"""One device rule for training and audits: CUDA when there is one, else CPU; training refuses a missing
CUDA it was asked for, an audit of a GPU-trained model falls back to the CPU."""

from __future__ import annotations

import pytest
import torch

from govern.devices import pick_device
from govern.errors import StageError
from govern.training.models import pick_device as training_device


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback; this machine has CUDA")
def test_without_cuda_auto_is_cpu_audits_fall_back_and_training_refuses() -> None:
    assert pick_device("auto") == "cpu" and pick_device(None) == "cpu"
    assert pick_device("cuda:0") == "cpu"  # an audit re-judging a model trained on a GPU
    assert str(training_device("auto")) == "cpu"
    with pytest.raises(StageError, match="training.device is 'cuda' but no CUDA device is available"):
        training_device("cuda")
    assert pick_device("cpu") == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CI has no GPU)")
def test_with_cuda_auto_is_this_ranks_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert pick_device("auto") == "cuda:0" and str(training_device("auto")) == "cuda:0"
