"""Training checkpoints that let a killed run resume with exactly the privacy history it had.

A checkpoint ``checkpoints/step-N/`` holds the trainable weights, the optimizer state, every RNG state
(torch, CUDA, numpy, random, the Poisson sampler's and the DP noise generator's), the loader position
(epoch, step in epoch) and Opacus' accountant history. It is written to a temporary folder and renamed
into place, so a kill during the write leaves the previous checkpoint intact and never a half-written
one that looks complete.

**Loading a checkpoint executes nothing.** Tensors are safetensors (a header of shapes and dtypes, then
raw bytes); everything else is JSON. No pickle — not ``torch.load``, not even with ``weights_only`` — so a
file dropped into a killed run's folder can at worst be refused, never run.

**A checkpoint cannot lower ε.** The accountant history is the privacy record: resuming loads it into
the new ``PrivacyEngine`` so the final ε covers every step taken in every attempt. Inside a governed run
each checkpoint is recorded in the lineage DB's hash-chained audit log as it is written
(:class:`CheckpointRecord`: folder digest, accountant-history digest, DP steps covered), and
:func:`resumable_checkpoint` only hands back a checkpoint that is the newest recorded one, byte for byte.
An edited history, an added or swapped file, a deleted newest checkpoint (falling back to an older one
would forget the steps after it) and a deleted checkpoints folder (starting over would forget them all)
are refused with the folder named and what differs.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from pydantic import BaseModel, Field
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from govern.errors import GovernError, StageError
from govern.stage import digest_of, tree_sha256

STATE_FILE = "state.json"
WEIGHTS_FILE = "trainable.safetensors"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_META = "optimizer.json"
RNG_TENSORS = "rng.safetensors"
RNG_META = "rng.json"
#: Files of the pickle format earlier govern versions wrote: never opened, only named in the refusal.
LEGACY_PICKLE_FILES = ("optimizer.pt", "rng.pt")
#: Version of the on-disk layout (2: safetensors + JSON only).
FORMAT = 2
#: Kind of the audit event recording a written checkpoint.
EVENT_KIND = "checkpoint.saved"
STAGE = "training"


@dataclass
class Checkpoint:
    path: Path
    state: dict[str, Any]
    #: tree_sha256 of the folder as verified: under torchrun the other ranks check their copy against it
    digest: str | None = None

    @property
    def step(self) -> int:
        return int(self.state["step"])


class CheckpointRecord(BaseModel):
    """What the audit chain records for one written checkpoint. Digests and counts only: no text, no data."""

    step: int = Field(ge=0, description="Optimizer steps the checkpoint's state is after.")
    folder: str = Field(description="Folder name under checkpoints/, e.g. step-0000040.")
    tree_sha256: str = Field(description="tree_sha256 of the checkpoint folder (every file, by relative path).")
    accountant_history_sha256: str = Field(description="digest_of(accountant history) in the checkpoint.")
    dp_steps: int = Field(ge=0, description="DP steps the accountant history covers (sum of its step counts).")
    noise_multiplier: float | None = None
    sample_rate: float | None = None


class CheckpointChain(Protocol):
    """Where checkpoints are recorded when written and looked up on resume (the run's audit chain).

    The training module knows only this protocol; the training stage implements it over the lineage DB,
    so ``govern.training`` stays usable without one."""

    def record(self, record: CheckpointRecord) -> None:
        """Record a checkpoint that is fully written but not yet visible. Raising keeps it invisible."""
        ...

    def records(self) -> list[CheckpointRecord]:
        """Every checkpoint recorded for this run, oldest first (each one checked against its chain link)."""
        ...


def checkpoint_root(stage_dir: Path) -> Path:
    return stage_dir / "checkpoints"


def _folder_name(step: int) -> str:
    return f"step-{step:07d}"


#: Folder prefixes of checkpoints govern resumes from: its own recipe's ``step-N`` and the Hugging Face
#: Trainer's ``checkpoint-N`` (:mod:`govern.integrations.transformers` adds govern's state to those).
FOLDER_PREFIXES = ("step", "checkpoint")


def _folder_step(folder: Path) -> int | None:
    prefix, _, digits = folder.name.partition("-")
    return int(digits) if prefix in FOLDER_PREFIXES and digits.isdigit() else None


def read_checkpoint(folder: Path) -> Checkpoint:
    """The checkpoint in ``folder``, its state parsed and checked against the folder name."""
    state_file = folder / STATE_FILE
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StageError(STAGE, f"checkpoint {folder}: {STATE_FILE} is not readable JSON ({type(exc).__name__}); "
                                "the checkpoint is damaged") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or state["step"] != _folder_step(folder):
        raise StageError(STAGE, f"checkpoint {folder}: {STATE_FILE} field 'step' does not match the folder name")
    return Checkpoint(folder, state)


def latest_checkpoint(stage_dir: Path, root: Path | None = None) -> Checkpoint | None:
    """The complete checkpoint with the highest step, or None. Not verified: see :func:`resumable_checkpoint`.

    ``root``: the folder holding the checkpoints (default ``stage_dir/checkpoints``)."""
    root = root if root is not None else checkpoint_root(stage_dir)
    if not root.is_dir():
        return None
    folders = [(step, p) for p in root.iterdir()
               if p.is_dir() and (step := _folder_step(p)) is not None and (p / STATE_FILE).is_file()]
    if not folders:
        return None
    return read_checkpoint(max(folders)[1])


def history_digest(history: list[Any]) -> str:
    return digest_of([[float(s), float(q), int(k)] for s, q, k in history])


def dp_steps(history: list[Any]) -> int:
    return sum(int(entry[2]) for entry in history)


def _refuse(folder: Path, what: str) -> StageError:
    return StageError(STAGE, f"checkpoint {folder} refused: {what}. This run cannot be resumed without "
                             "loading unrecorded state or under-reporting ε: start a new run (`govern run "
                             "CONFIG`); the audit chain keeps the record of the steps this one took")


def resumable_checkpoint(stage_dir: Path, chain: CheckpointChain | None, root: Path | None = None
                         ) -> Checkpoint | None:
    """The checkpoint to resume from, verified against the chain; None to start from step 0.

    ``root``: the folder holding the checkpoints (default ``stage_dir/checkpoints``; a Trainer's output_dir).

    Without a chain (the standalone trainer) this is :func:`latest_checkpoint`. With one:

    - the newest checkpoint on disk must be the newest one recorded, and its folder digest must equal the
      recorded one (so no file was edited, added or removed), and its accountant history the recorded
      history covering the recorded number of DP steps — never fewer than any record of the run covers;
    - no checkpoint on disk while the chain records one, or an older one than the newest recorded, is
      refused rather than resumed: resuming would forget the DP steps after it (ε under-reported).
      Charging them instead would mean re-training those steps on top, for an ε beyond the one σ was
      solved for; a new run is the honest way on, and the chain keeps what this one spent.
    """
    root = root if root is not None else checkpoint_root(stage_dir)
    if chain is None:
        return latest_checkpoint(stage_dir, root)
    records = chain.records()
    recorded = records[-1] if records else None
    if recorded is not None and recorded.dp_steps < max(r.dp_steps for r in records):
        # A legitimate run only ever records more steps; fewer means a record was appended to make an
        # edited checkpoint look recorded. The largest count recorded is what this run has spent.
        most = max(records, key=lambda r: r.dp_steps)
        raise _refuse(root / recorded.folder, f"the newest audit record covers {recorded.dp_steps} DP steps but an "
                                              f"earlier one ({most.folder}) covers {most.dp_steps}")
    if recorded is not None:
        _finish_interrupted_rename(root, recorded)
    found = latest_checkpoint(stage_dir, root)
    if recorded is None:
        if found is None:
            return None
        raise _refuse(found.path, "no audit event records it (it was not written by this run)")
    expected = root / recorded.folder
    if found is None:
        raise _refuse(expected, f"the audit chain records it (step {recorded.step}, {recorded.dp_steps} DP steps) "
                                "but it is missing")
    if found.step < recorded.step:
        raise _refuse(found.path, f"it is older than the newest recorded checkpoint {expected} (step "
                                  f"{recorded.step}), which is missing; resuming from step {found.step} would "
                                  f"forget the privacy cost of steps {found.step + 1} to {recorded.step}")
    if found.step > recorded.step:
        raise _refuse(found.path, f"no audit event records it (the newest recorded is step {recorded.step})")
    actual = tree_sha256(found.path)
    if actual != recorded.tree_sha256:
        raise _refuse(found.path, f"its files do not match the digest recorded when it was written (recorded "
                                  f"sha256 {recorded.tree_sha256[:16]}…, found {actual[:16]}…): a file was "
                                  "edited, added or removed")
    history = found.state.get("accountant_history") or []
    if history_digest(history) != recorded.accountant_history_sha256 or dp_steps(history) != recorded.dp_steps:
        raise _refuse(found.path, f"its accountant history ({dp_steps(history)} DP steps) is not the recorded "
                                  f"one ({recorded.dp_steps} DP steps)")
    found.digest = actual
    return found


def resume_on_every_rank(find: Callable[[], Checkpoint | None], rank: int, world: int) -> Checkpoint | None:
    """The checkpoint to resume from, on every rank: rank 0 calls ``find`` (it holds the audit chain), and
    under torchrun every rank gets what it found — or its refusal — and checks that the folder it will load
    weights and optimizer state from holds the bytes rank 0 verified.

    One function for the recipe, ``govern.session`` and the Trainer. Each rank reads the folder through its
    own view: on a node with its own disk that is another copy, and on a shared one it may have changed after
    rank 0 hashed it. A rank that finds other bytes (or cannot read them) refuses, and so do the others: two
    collectives that every rank reaches on every path, so no rank trains on state the chain does not vouch
    for and none waits on a collective the others left.
    """
    if world == 1:
        return find()
    found: Checkpoint | None = None
    refusal: str | None = None
    error: BaseException | None = None
    if rank == 0:
        try:
            found = find()
            if found is not None and found.digest is None:  # no chain (standalone): still one set of bytes
                found.digest = tree_sha256(found.path)
        except Exception as exc:  # any failure: the other ranks must hear of it, not wait for it
            error = exc
            refusal = (str(exc).removeprefix(f"stage '{STAGE}': ") if isinstance(exc, GovernError)
                       else f"{type(exc).__name__} while verifying the checkpoint")
    from govern.training.distributed import share, sum_over_ranks

    found, refusal = share((found, refusal))
    if refusal is not None:
        raise error if error is not None else StageError(STAGE, f"rank 0 refused to resume: {refusal}")
    problem: str | None = None
    if rank and found is not None:
        try:
            actual = tree_sha256(found.path) if found.path.is_dir() else None
        except OSError as exc:
            actual, problem = None, f"rank {rank} cannot read it ({type(exc).__name__})"
        if problem is None and actual is None:
            problem = f"rank {rank} cannot read it (on its node the folder is missing)"
        elif problem is None and actual != found.digest:
            problem = (f"its files as rank {rank} reads them are not the ones rank 0 verified (sha256 "
                       f"{(found.digest or '')[:16]}…, found {(actual or '')[:16]}…)")
    refused = sum_over_ranks([1 if problem else 0])[0]
    if found is not None and refused:
        what = problem or f"{refused} other rank(s) read other files in it than rank 0 verified, or none"
        raise StageError(STAGE, f"checkpoint {found.path} refused: {what}. Every rank must resume from the bytes "
                                "the audit chain records: keep the run's output folder on storage every node "
                                "reads alike (a shared file system), unchanged while the run resumes")
    return found


def _finish_interrupted_rename(root: Path, recorded: CheckpointRecord) -> None:
    """A kill between recording a checkpoint and renaming it into place leaves ``step-N.tmp`` complete and
    recorded: finish the rename (only when its digest is the recorded one) instead of refusing the run."""
    final = root / recorded.folder
    tmp = root / (recorded.folder + ".tmp")
    if not final.exists() and tmp.is_dir() and tree_sha256(tmp) == recorded.tree_sha256:
        os.replace(tmp, final)


def check_history(checkpoint: Checkpoint, sample_rate: float) -> list[tuple[float, float, int]]:
    """The checkpoint's accountant history, checked to cover exactly its steps at its σ and this run's q.

    A consistency check that holds with or without a chain: a history shortened (or with a larger σ or
    smaller q) while ``step`` says more was trained is refused."""
    history: Any = checkpoint.state.get("accountant_history")
    sigma = checkpoint.state.get("noise_multiplier")
    try:
        entries = [(float(s), float(q), int(k)) for s, q, k in history]
    except (TypeError, ValueError):
        raise StageError(STAGE, f"checkpoint {checkpoint.path}: {STATE_FILE} field 'accountant_history' is not "
                                "a list of [noise_multiplier, sample_rate, steps]") from None
    if (not isinstance(sigma, (int, float)) or dp_steps(entries) != checkpoint.step
            or any(not (math.isclose(s, sigma, rel_tol=1e-12) and math.isclose(q, sample_rate, rel_tol=1e-9)
                        and k >= 0) for s, q, k in entries)):
        raise StageError(STAGE, f"checkpoint {checkpoint.path}: {STATE_FILE} field 'accountant_history' does not "
                                f"cover its {checkpoint.step} steps at σ={sigma}, q={sample_rate}; it was edited")
    return entries


# ------------------------------------------------------------------------------------ RNG states
def rng_state(extra_generators: dict[str, torch.Generator]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG state as (tensors for safetensors, JSON values): nothing that needs pickle."""
    tensors = {"torch": torch.get_rng_state()}
    tensors.update({f"generator.{name}": g.get_state() for name, g in extra_generators.items()})
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    meta = {"numpy": {"kind": kind, "keys": [int(k) for k in keys], "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)},
            "random": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                extra_generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(tensors["torch"])
    n = meta["numpy"]
    np.random.set_state((n["kind"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    r = meta["random"]
    random.setstate((r["version"], tuple(r["internal"]), r["gauss_next"]))
    for name, g in extra_generators.items():
        if f"generator.{name}" in tensors:
            g.set_state(tensors[f"generator.{name}"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len([k for k in tensors if k.startswith("cuda.")]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


# ------------------------------------------------------------------------------- optimizer state
def optimizer_files(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer ``state_dict`` as (tensors, JSON): per-parameter tensors by name, the rest as JSON."""
    tensors: dict[str, torch.Tensor] = {}
    state: dict[str, dict[str, Any]] = {}
    for pid, entries in state_dict["state"].items():
        plain: dict[str, Any] = {}
        named: dict[str, str] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                named[key] = f"state.{pid}.{key}"
                tensors[named[key]] = value.detach().to("cpu").contiguous().clone()
            else:
                plain[key] = value
        state[str(pid)] = {"values": plain, "tensors": named}
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state_dict["param_groups"]]
    tuples = sorted({k for g in state_dict["param_groups"] for k, v in g.items() if isinstance(v, tuple)})
    return tensors, {"state": state, "param_groups": groups, "tuple_keys": tuples}


def optimizer_state_dict(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state = {int(pid): {**entry["values"], **{k: tensors[name] for k, name in entry["tensors"].items()}}
             for pid, entry in meta["state"].items()}
    groups = [{k: tuple(v) if k in meta["tuple_keys"] else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters being trained (LoRA + head, or everything): all a resume needs of the model."""
    return {name: p.detach().to("cpu").contiguous().clone() for name, p in model.named_parameters() if p.requires_grad}


# -------------------------------------------------------------------------------------- save / load
def _write_json(path: Path, value: Any) -> None:
    # allow_nan=False: a NaN/inf would make the file non-standard JSON; fail loudly at save time instead.
    path.write_text(json.dumps(value, indent=1, sort_keys=True, allow_nan=False), encoding="utf-8")


def save_checkpoint(stage_dir: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], generators: dict[str, torch.Generator], keep: int = 2,
                    chain: CheckpointChain | None = None) -> Path:
    """Write ``step-N`` atomically, record it in ``chain`` and drop all but the newest ``keep`` checkpoints.

    The record is made after the files are durable and before the folder becomes visible: a checkpoint a
    resume can see is always one the chain knows (a failed record leaves it invisible)."""
    root = checkpoint_root(stage_dir)
    root.mkdir(parents=True, exist_ok=True)
    step = int(state["step"])
    final = root / _folder_name(step)
    tmp = root / (final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(trainable_state(model), str(tmp / WEIGHTS_FILE))
    opt_tensors, opt_meta = optimizer_files(optimizer.state_dict())
    save_file(opt_tensors, str(tmp / OPTIMIZER_TENSORS))
    _write_json(tmp / OPTIMIZER_META, opt_meta)
    rng_tensors, rng_meta = rng_state(generators)
    save_file(rng_tensors, str(tmp / RNG_TENSORS))
    _write_json(tmp / RNG_META, rng_meta)
    _write_json(tmp / STATE_FILE, {**state, "format": FORMAT})
    for f in tmp.iterdir():  # durable before it is recorded and becomes visible
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if chain is not None:
        history = state.get("accountant_history") or []
        chain.record(CheckpointRecord(step=step, folder=final.name, tree_sha256=tree_sha256(tmp),
                                      accountant_history_sha256=history_digest(history), dp_steps=dp_steps(history),
                                      noise_multiplier=state.get("noise_multiplier"),
                                      sample_rate=state.get("sample_rate")))
    # Rewriting a step (a resumed run's final checkpoint): move the old folder aside in one rename, so a
    # kill never leaves a half-deleted step-N, only the recorded step-N.tmp a resume finishes renaming.
    replaced = root / (final.name + ".old")
    if final.exists():
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(final, replaced)
    os.replace(tmp, final)
    shutil.rmtree(replaced, ignore_errors=True)
    folders = sorted(p for p in root.iterdir() if _folder_step(p) is not None)
    for old in folders[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _tensors(checkpoint: Checkpoint, name: str) -> dict[str, torch.Tensor]:
    path = checkpoint.path / name
    if not path.is_file():
        legacy = [f for f in LEGACY_PICKLE_FILES if (checkpoint.path / f).exists()]
        why = (f"it is in the old pickle format ({', '.join(legacy)}), which govern no longer loads because "
               "unpickling can run code" if legacy else f"{name} is missing")
        raise StageError(STAGE, f"checkpoint {checkpoint.path} cannot be resumed: {why}; delete its checkpoints "
                                "folder to start over")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise StageError(STAGE, f"checkpoint {checkpoint.path}: {name} is not a valid safetensors file "
                                f"({type(exc).__name__}); the checkpoint is damaged") from None


def _json(checkpoint: Checkpoint, name: str) -> dict[str, Any]:
    path = checkpoint.path / name
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StageError(STAGE, f"checkpoint {checkpoint.path}: {name} is not readable JSON "
                                f"({type(exc).__name__}); the checkpoint is damaged") from None
    if not isinstance(value, dict):
        raise StageError(STAGE, f"checkpoint {checkpoint.path}: {name} is not a JSON object")
    return value


def load_weights(checkpoint: Checkpoint, model: torch.nn.Module) -> None:
    """Load the trainable parameters in place (names must match: same base model and adapter)."""
    tensors = _tensors(checkpoint, WEIGHTS_FILE)
    params = dict(model.named_parameters())
    missing = [n for n in tensors if n not in params]
    if missing:
        raise StageError(STAGE, f"checkpoint {checkpoint.path}: parameters not in the model: {missing[:5]}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(params[name].device))


def load_optimizer(checkpoint: Checkpoint, optimizer: torch.optim.Optimizer) -> None:
    tensors = _tensors(checkpoint, OPTIMIZER_TENSORS)
    try:
        optimizer.load_state_dict(optimizer_state_dict(tensors, _json(checkpoint, OPTIMIZER_META)))
    except (KeyError, TypeError, ValueError) as exc:
        raise StageError(STAGE, f"checkpoint {checkpoint.path}: the optimizer state does not fit this "
                                f"optimizer ({type(exc).__name__})") from None


def load_rng(checkpoint: Checkpoint, generators: dict[str, torch.Generator]) -> None:
    tensors = _tensors(checkpoint, RNG_TENSORS)
    try:
        restore_rng(tensors, _json(checkpoint, RNG_META), generators)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise StageError(STAGE, f"checkpoint {checkpoint.path}: the RNG state is not valid "
                                f"({type(exc).__name__})") from None
