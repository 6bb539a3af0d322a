"""Where a model runs: one rule for training and every audit (``cuda`` when there is one, else ``cpu``)."""

from __future__ import annotations

import os


def pick_device(requested: str | None = "auto", *, required: bool = False) -> str:
    """``cuda`` (this rank's GPU under torchrun) when available or asked for, else ``cpu``.

    ``required``: a ``cuda`` that was asked for but is missing is an error (training must not silently run
    on the CPU for hours); without it the model is judged on the CPU instead (an audit re-run on a machine
    without the GPU the model was trained on). Raises ``ValueError``; callers turn it into their own error.
    """
    import torch

    wanted = (requested or "auto").strip()
    available = torch.cuda.is_available()
    if wanted.startswith("cuda") and not available:
        if required:
            raise ValueError(f"device is '{wanted}' but no CUDA device is available")
        return "cpu"
    if wanted == "auto" or wanted == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if available else "cpu"
    return wanted
