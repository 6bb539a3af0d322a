"""A user's plain PyTorch loop (tests/session/test_own_loop.py's), as its own process, with an optional
SIGKILL right after a given optimizer step (the kill -9 test).

    python loop_user_script.py govern.yaml [--kill-at STEP]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch

import govern
from tests.session.test_own_loop import user_loop


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--kill-at", type=int)
    ns = parser.parse_args()
    torch.set_num_threads(1)
    with govern.session(ns.config) as run:
        print(f"run-id {run.run_id}", flush=True)

        def kill(model: Any, optimizer: Any, batch: Any) -> None:
            if ns.kill_at is not None and run.privacy_engine.accountant.history[-1][2] >= ns.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        outcome = user_loop(run, cheat=kill)
    print(f"run {outcome.run_id}: {outcome.status} ({outcome.decision})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
