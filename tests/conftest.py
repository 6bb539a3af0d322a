"""Shared test set-up: offline hub, a private working directory and lineage DB per test."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

# No hub is reachable: any accidental download must fail fast instead of hanging.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Wide, plain terminal output so CLI tests can match whole messages.
os.environ["COLUMNS"] = "250"
os.environ["NO_COLOR"] = "1"

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures"


T = TypeVar("T")


def peak_memory(fn: Callable[[], T]) -> tuple[T, int]:
    """``fn()``'s result and the most bytes Python held while it ran (tracemalloc): the streaming tests'
    measure that a reader does not hold a whole file."""
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def kill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], *, within_s: float = 120) -> None:
    """SIGKILL ``proc`` — a real, unannounced kill — as soon as ``ready()`` holds (or after ``within_s``);
    the kill tests' way to interrupt a run at a known point. Fails when the process ends on its own first."""
    try:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline and proc.poll() is None:
            if ready():
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else "exited early"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


def skip_or_fail(reason: str) -> None:
    """Skip for a missing optional tool; under GOVERN_REQUIRE_ALL=1 (CI) that is a failure instead."""
    if os.environ.get("GOVERN_REQUIRE_ALL") == "1":
        pytest.fail(reason + " and GOVERN_REQUIRE_ALL=1 forbids skipping")
    pytest.skip(reason)


def require_fixture(relative: str) -> Path:
    """Path of a ../shared/fixtures file; skip (CI: fail, via GOVERN_REQUIRE_ALL) when it is absent."""
    path = FIXTURES / relative
    if not path.exists():
        reason = f"needs ../shared/fixtures/{relative} (not present on this machine)"
        if os.environ.get("GOVERN_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and GOVERN_REQUIRE_ALL=1 forbids skipping")
        pytest.skip(reason)
    return path


def require_tool(name: str, why: str) -> None:
    """Skip when an external tool is missing; CI sets GOVERN_REQUIRE_ALL=1 to make that a failure."""
    import shutil

    if shutil.which(name) is None and not Path(name).exists():
        reason = f"needs `{name}` ({why})"
        if os.environ.get("GOVERN_REQUIRE_ALL") == "1":
            pytest.fail(reason + " and GOVERN_REQUIRE_ALL=1 forbids skipping")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def isolated_lineage_db(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes to a developer's real lineage DB: the default DB is a fresh temporary one."""
    db = tmp_path_factory.mktemp("lineage") / "lineage.db"
    monkeypatch.setenv("GOVERN_DB_URL", f"sqlite:///{db}")
    # Chain-head witnesses land beside the reports (./reports/witness) by default: never in the checkout.
    monkeypatch.setenv("GOVERN_WITNESS_DIR", str(db.parent / "witness"))
    monkeypatch.delenv("GOVERN_WITNESS_TO", raising=False)
    monkeypatch.delenv("GOVERN_WITNESS_KEY", raising=False)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory with its own SQLite lineage DB (via GOVERN_DB_URL)."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / ".govern" / "lineage.db"
    monkeypatch.setenv("GOVERN_DB_URL", f"sqlite:///{db}")
    return tmp_path


@pytest.fixture
def govern_cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run the real `govern` entry point in-process; returns (exit code, stdout, stderr)."""
    import sys

    from govern.cli import main

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        old = sys.argv
        sys.argv = ["govern", *args]
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        finally:
            sys.argv = old
        out, err = capsys.readouterr()
        return code, out, err

    return invoke
