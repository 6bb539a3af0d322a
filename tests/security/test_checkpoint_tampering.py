"""A killed run's checkpoint folder is attacker-reachable: nothing planted there runs, and nothing edited
there lowers the ε the resumed run records.

Each story kills a real governed run (data + DP training stages on a tiny BERT) with SIGKILL once it has
written checkpoints, tampers with what it left, and resumes it with ``Pipeline.resume`` — what
``govern run --resume`` calls.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from govern.data.stage import DataStage
from govern.errors import LineageError, StageError
from govern.lineage import LineageStore
from govern.pipeline import Pipeline
from govern.training import accounting
from govern.training import checkpoints as ckpt
from govern.training.stage import TrainingStage
from govern.training.trainer import train
from tests.conftest import kill_when
from tests.spine.helpers import policy_doc
from tests.training.conftest import build_tiny_bert, sentiment_records, write_jsonl
from tests.training.test_training import make_spec

torch.set_num_threads(1)
PROJECT = Path(__file__).resolve().parents[2]
SIGMA, Q, TOTAL_STEPS = 1.0, 1 / 8, 40  # 256 records, batch 32, 5 epochs

KILL_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    torch.set_num_threads(1)
    from govern.data.stage import DataStage
    from govern.lineage import LineageStore
    from govern.pipeline import Pipeline
    from govern.training.stage import TrainingStage
    store = LineageStore.open(sys.argv[2])
    Pipeline(store, stages=[DataStage(), TrainingStage()]).start(sys.argv[1])
""")


class Planted:
    """Unpickling this calls ``open(marker, "w")``: the file appearing means the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def planted_pickle(marker: Path) -> bytes:
    return pickle.dumps({"torch": Planted(marker)})


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _project(root: Path, tiny_bert: Path) -> Path:
    write_jsonl(root / "train.jsonl", sentiment_records(256, seed=1, prefix="t"))
    write_jsonl(root / "eval.jsonl", sentiment_records(40, seed=2, prefix="e"))
    (root / "policy.yaml").write_text(yaml.safe_dump(policy_doc(
        privacy={"max_epsilon": 50, "max_delta": 1e-3},
        data={"max_near_duplicate_fraction": None, "max_exact_leakage": None})))
    config = {"name": "ckpt", "task": "classification", "base_model": {"path": str(tiny_bert)},
              "data": {"train": "train.jsonl", "eval": "eval.jsonl", "label_column": "label"},
              "training": {"epochs": 5, "batch_size": 32, "max_physical_batch_size": 16, "max_length": 16,
                           "learning_rate": 0.02, "checkpoint_every": 4,
                           "dp": {"noise_multiplier": SIGMA, "accountant": "rdp"}},
              "policy": "policy.yaml"}
    (root / "govern.yaml").write_text(yaml.safe_dump(config))
    return root / "govern.yaml"


def _killed_run(workdir: Path, tiny_bert: Path, *, checkpoints: int = 1) -> tuple[str, Path]:
    """Start a governed run in a subprocess and SIGKILL it once ``checkpoints`` checkpoints are on disk."""
    cfg = _project(workdir, tiny_bert)
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(cfg), os.environ["GOVERN_DB_URL"]],
                            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pattern = ".govern/runs/*/training/checkpoints/step-*[0-9]"
    kill_when(proc, lambda: len(list(workdir.glob(pattern))) >= checkpoints)
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        (run,) = store.list_runs()
        assert run.status == "running"
        assert run.run_dir
        return run.id, Path(run.run_dir) / "training"


def _newest(training_dir: Path) -> Path:
    # The kill may land between recording the newest checkpoint and renaming it into place; resume would
    # finish that rename (the recorded digest matches), so the attack must target that checkpoint.
    try:
        with LineageStore.open(os.environ["GOVERN_DB_URL"], read_only=True) as store:
            recorded = {e.payload["folder"] for e in store.events() if e.kind == ckpt.EVENT_KIND}
    except LineageError:  # the tests of runs without a lineage DB
        recorded = set()
    for tmp in sorted((training_dir / "checkpoints").glob("step-*.tmp")):
        final = tmp.with_name(tmp.name.removesuffix(".tmp"))
        if final.name in recorded and not final.exists():
            tmp.rename(final)
    found = ckpt.latest_checkpoint(training_dir)
    assert found is not None
    return found.path


def _resume(store: LineageStore, run_id: str) -> object:
    return Pipeline(store, stages=[DataStage(), TrainingStage()]).resume(run_id)


def _assert_refused_and_recorded_failed(store: LineageStore, run_id: str, exc: pytest.ExceptionInfo[StageError],
                                        folder: Path, training_dir: Path) -> None:
    assert str(folder) in str(exc.value)
    run = store.get_run(run_id)
    assert run.status == "failed" and run.error and str(folder) in run.error
    assert store.stage_executions(run_id)[-1].status == "failed"
    assert "training" not in store.evidence(run_id)   # no ε recorded from the tampered state
    assert not (training_dir / "model").exists()      # and no model trained from it
    assert store.verify_chain().ok


def test_a_planted_pickle_in_a_killed_runs_checkpoint_runs_nothing_and_is_refused(
        workdir: Path, tiny_bert: Path) -> None:
    # The planted file is armed: unpickled the way govern used to load rng.pt, it runs code.
    proof = workdir / "proof"
    subprocess.run([sys.executable, "-c", "import sys, torch; torch.load(sys.argv[1], weights_only=False)",
                    str(_torch_pickle(workdir / "armed.pt", proof))], check=True, env={**os.environ,
                   "PYTHONPATH": str(PROJECT)}, cwd=workdir)
    assert proof.exists()

    run_id, training_dir = _killed_run(workdir, tiny_bert)
    folder = _newest(training_dir)
    marker = workdir / "pwned"
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        # 1. The old format's file, planted next to the new ones.
        _torch_pickle(folder / "rng.pt", marker)
        with pytest.raises(StageError, match="do not match the digest recorded") as exc:
            _resume(store, run_id)
        _assert_refused_and_recorded_failed(store, run_id, exc, folder, training_dir)
        # 2. A pickle in place of the RNG state govern does read.
        (folder / "rng.pt").unlink()
        (folder / ckpt.RNG_TENSORS).write_bytes(planted_pickle(marker))
        with pytest.raises(StageError, match="do not match the digest recorded") as exc:
            _resume(store, run_id)
        _assert_refused_and_recorded_failed(store, run_id, exc, folder, training_dir)
    assert not marker.exists()


def _torch_pickle(path: Path, marker: Path) -> Path:
    torch.save({"torch": Planted(marker)}, path)
    return path


def test_without_a_lineage_db_a_planted_pickle_is_still_never_unpickled(tiny_bert: Path, tmp_path: Path) -> None:
    train_path = write_jsonl(tmp_path / "train.jsonl", sentiment_records(64))
    out = tmp_path / "out"
    spec = make_spec(tiny_bert, train_path, out, max_steps=4, checkpoint_every=2, dp={"noise_multiplier": 1.0})
    train(spec)
    folder = _newest(out)
    marker = tmp_path / "pwned"
    (folder / ckpt.RNG_TENSORS).write_bytes(planted_pickle(marker))
    with pytest.raises(StageError, match=r"rng.safetensors is not a valid safetensors file"):
        train(spec)
    # A checkpoint of the old pickle format is refused by name, its .pt files never opened.
    (folder / ckpt.RNG_TENSORS).unlink()
    _torch_pickle(folder / "rng.pt", marker)
    with pytest.raises(StageError, match=r"old pickle format \(rng.pt\).*delete its checkpoints folder"):
        train(spec)
    assert not marker.exists()


def test_an_edited_accountant_history_is_refused_so_epsilon_is_never_under_reported(
        workdir: Path, tiny_bert: Path) -> None:
    run_id, training_dir = _killed_run(workdir, tiny_bert)
    folder = _newest(training_dir)
    state_file = folder / ckpt.STATE_FILE
    state = json.loads(state_file.read_text())
    steps = state["step"]
    assert state["accountant_history"] == [[SIGMA, Q, steps]]
    # The attack: the history says 1 DP step was taken (a smaller ε), everything else untouched.
    state["accountant_history"] = state["accountant_state"]["history"] = [[SIGMA, Q, 1]]
    state_file.write_text(json.dumps(state))
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        with pytest.raises(StageError, match="do not match the digest recorded") as exc:
            _resume(store, run_id)
        _assert_refused_and_recorded_failed(store, run_id, exc, folder, training_dir)

        # A stronger attacker also appends a record for the edited checkpoint through govern's own API:
        # the chain already holds a record of more steps than that, so it is still refused.
        forged = ckpt.CheckpointRecord(step=steps, folder=folder.name, tree_sha256=ckpt.tree_sha256(folder),
                                       accountant_history_sha256=ckpt.history_digest([[SIGMA, Q, 1]]), dp_steps=1,
                                       noise_multiplier=SIGMA, sample_rate=Q)
        store.append_event(ckpt.EVENT_KIND, run_id=run_id, payload=forged.model_dump(mode="json"))
        with pytest.raises(StageError, match=f"covers 1 DP steps but an earlier one .* covers {steps}") as exc:
            _resume(store, run_id)
        _assert_refused_and_recorded_failed(store, run_id, exc, training_dir / "checkpoints" / folder.name,
                                            training_dir)


def test_a_deleted_newest_checkpoint_or_checkpoints_folder_is_not_a_way_to_forget_steps(
        workdir: Path, tiny_bert: Path) -> None:
    run_id, training_dir = _killed_run(workdir, tiny_bert, checkpoints=2)
    newest = _newest(training_dir)
    shutil.rmtree(newest)
    older = _newest(training_dir)  # still chained: it was recorded when written
    assert older != newest
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        with pytest.raises(StageError, match="older than the newest recorded checkpoint") as exc:
            _resume(store, run_id)
        _assert_refused_and_recorded_failed(store, run_id, exc, older, training_dir)
        # Starting over from step 0 inside the same run would forget every step taken: refused too.
        shutil.rmtree(training_dir / "checkpoints")
        with pytest.raises(StageError, match="records it .* but it is missing") as exc:
            _resume(store, run_id)
        _assert_refused_and_recorded_failed(store, run_id, exc, newest, training_dir)


def test_an_untouched_checkpoint_resumes_to_the_uninterrupted_epsilon(workdir: Path, tiny_bert: Path) -> None:
    run_id, training_dir = _killed_run(workdir, tiny_bert)
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        # The newest recorded checkpoint (a kill between recording and renaming it is finished on resume).
        interrupted_at = [e for e in store.events(run_id) if e.kind == ckpt.EVENT_KIND][-1].payload["step"]
        assert 0 < interrupted_at < TOTAL_STEPS
        outcome = _resume(store, run_id)
        assert outcome.status == "completed", outcome.error  # type: ignore[attr-defined]
        training = store.evidence(run_id)["training"]
        assert training["resumed_from_step"] == interrupted_at and training["steps"] == TOTAL_STEPS
        assert training["accountant_history"] == [[SIGMA, Q, TOTAL_STEPS]]
        # What an uninterrupted run records (tests/training checks the trainer gives exactly this).
        assert training["epsilon"]["rdp"] == pytest.approx(
            accounting.epsilon(SIGMA, Q, TOTAL_STEPS, training["delta"], "rdp"), abs=1e-9)
        events = [e for e in store.events(run_id) if e.kind == ckpt.EVENT_KIND]
        assert [e.payload["step"] for e in events] == [*range(4, interrupted_at + 1, 4),
                                                      *range(interrupted_at + 4, TOTAL_STEPS, 4), TOTAL_STEPS]
        assert all(e.payload["dp_steps"] == e.payload["step"] for e in events)
        # Digests, counts and the folder name: nothing else (no text of the data) goes into the log.
        assert set(events[-1].payload) - {"actor"} == set(ckpt.CheckpointRecord.model_fields)  # + who acted
        final = ckpt.latest_checkpoint(training_dir)
        assert final is not None and events[-1].payload["tree_sha256"] == ckpt.tree_sha256(final.path)
        assert store.verify_chain().ok


def test_without_a_lineage_db_a_shortened_history_is_still_refused(tiny_bert: Path, tmp_path: Path) -> None:
    train_path = write_jsonl(tmp_path / "train.jsonl", sentiment_records(64))
    out = tmp_path / "out"
    spec = make_spec(tiny_bert, train_path, out, max_steps=4, checkpoint_every=2, dp={"noise_multiplier": 1.0})
    first = train(spec).evidence
    state_file = _newest(out) / ckpt.STATE_FILE
    state = json.loads(state_file.read_text())
    state["accountant_history"] = [[1.0, first.sample_rate, 1]]  # 4 steps trained, 1 claimed
    state_file.write_text(json.dumps(state))
    with pytest.raises(StageError, match="'accountant_history' does not cover its 4 steps"):
        train(spec)
