"""Under ``torchrun`` every rank resumes from the checkpoint rank 0 verified against the audit chain, and
from those bytes only: a rank that reads other files (its node's own copy, or a folder changed after rank 0
hashed it) refuses, and so does every other rank, so none trains on state the chain does not vouch for and
none waits on a collective the others left (2 gloo processes, real ``torch.distributed``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from govern.errors import StageError
from govern.stage import tree_sha256
from govern.training.checkpoints import read_checkpoint, resume_on_every_rank
from tests.conftest import PROJECT_ROOT, skip_or_fail

TORCHRUN = Path(sys.executable).with_name("torchrun")
SCRIPT = Path(__file__).with_name("resume_ranks_script.py")


def _checkpoint(tmp_path: Path) -> Path:
    folder = tmp_path / "checkpoints" / "step-0000004"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"step": 4, "accountant_history": [[1.0, 0.1, 4]]}))
    (folder / "trainable.safetensors").write_bytes(b"recorded weights")
    return folder


def _agree(folder: Path, mode: str, port: str) -> dict[int, dict[str, Any]]:
    if not TORCHRUN.exists():
        skip_or_fail("torchrun is installed with torch; it is missing next to the interpreter")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    out = folder.parents[1] / f"ranks-{mode}"
    out.mkdir()
    result = subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--master_port", port, str(SCRIPT),
                             str(folder), mode, str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return {rank: json.loads((out / f"rank-{rank}.json").read_text(encoding="utf-8")) for rank in (0, 1)}


def test_every_rank_resumes_from_the_bytes_rank_0_verified(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path)
    seen = _agree(folder, "same", "29563")
    assert seen == {rank: {"rank": rank, "step": 4, "digest": tree_sha256(folder)} for rank in (0, 1)}


def test_a_rank_that_reads_other_bytes_refuses_and_so_does_every_other(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path)
    seen = _agree(folder, "edited", "29565")
    assert all(r["type"] == "StageError" for r in seen.values())
    assert f"checkpoint {folder} refused" in seen[1]["error"]
    assert "as rank 1 reads them are not the ones rank 0 verified" in seen[1]["error"]
    assert "1 other rank(s) read other files in it than rank 0 verified" in seen[0]["error"]


def test_a_rank_that_cannot_read_the_folder_refuses_and_names_shared_storage(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path)
    seen = _agree(folder, "missing", "29571")
    assert "rank 1 cannot read it (on its node the folder is missing)" in seen[1]["error"]
    assert "other rank(s) read other files in it than rank 0 verified, or none" in seen[0]["error"]
    assert all("on storage every node reads alike" in r["error"] for r in seen.values())


def test_rank_0_refusing_stops_every_rank_with_its_reason(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path)
    seen = _agree(folder, "refused", "29567")
    reason = f"checkpoint {folder} refused: its files do not match the digest"
    assert seen[0] == {"rank": 0, "error": f"stage 'training': {reason}", "type": "StageError"}
    assert seen[1] == {"rank": 1, "error": f"stage 'training': rank 0 refused to resume: {reason}",
                       "type": "StageError"}


def test_rank_0_failing_otherwise_still_releases_every_rank(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path)
    seen = _agree(folder, "crash", "29573")
    assert seen[0]["type"] == "PermissionError"
    assert seen[1]["error"] == "stage 'training': rank 0 refused to resume: PermissionError while verifying the " \
                               "checkpoint"


def test_one_process_gets_what_it_found_without_a_collective_or_a_second_hash(tmp_path: Path) -> None:
    folder = _checkpoint(tmp_path)
    found = resume_on_every_rank(lambda: read_checkpoint(folder), 0, 1)  # no process group: none is needed
    assert found is not None and found.step == 4 and found.digest is None  # no one to compare bytes with

    def refuse() -> None:
        raise StageError("training", "refused: its files")

    with pytest.raises(StageError, match="refused: its files"):  # a refusal is raised as it is
        resume_on_every_rank(refuse, 0, 1)
