"""The console tests share the registry tests' recorded runs and DB fixture, and one recorded history of a
data set (a real PII scan of a file with a hostile name, then two DP training runs on it), built once per
session and copied for each test that uses it."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from govern.lineage import LineageStore
from govern.registry import register_after_run
from tests.conftest import skip_or_fail
from tests.registry.conftest import record_run, sqlite_db  # noqa: F401

#: A data-set file name a hostile contributor could choose (no "/" fits in a file name).
HOSTILE_FILE = "<script>alert('file')<script>.jsonl"
PLANTED_EMAIL = "jane.doe@example.com"


def dp_training(steps: int) -> dict[str, object]:
    """A DP training stage's evidence as the accountant records it (q, σ, steps, and the ε they give at δ)."""
    from datetime import UTC, datetime

    from govern.lineage.records import LedgerRow
    from govern.privacy_ledger import composed_epsilon

    accounting = {"delta": 1e-5, "noise_multiplier": 1.1, "sample_rate": 0.01, "steps": steps}
    alone = LedgerRow(run_id="r", dataset_fingerprint="f", dp_enabled=True, started_at=datetime.now(UTC),
                      run_status="completed", **accounting)  # type: ignore[arg-type]  # literal values
    return {"dp_enabled": True, "epsilon": {"rdp": composed_epsilon([alone], "rdp", 1e-5)}, "accountant": "rdp",
            **accounting}


@dataclass(frozen=True)
class History:
    db: str
    fingerprint: str
    scan_run: str
    runs: tuple[str, str]  # two training runs by alice, registered as support-intent v1 and v2 (signed)


def record_history(db: str, root: Path) -> History:
    """Record the history in the lineage DB at ``db`` (SQLite or PostgreSQL), its files under ``root``."""
    from govern import api

    data = root / HOSTILE_FILE
    data.write_text(f'{{"text": "mail {PLANTED_EMAIL} or call 212-555-0199", "label": 1}}\n'
                    '{"text": "nothing to see", "label": 0}\n{"text": "bob@example.org wrote", "label": 0}\n')
    scan_run, _ = api.scan([data], db_url=db)
    with LineageStore.open(db, read_only=True) as store:
        fingerprint = store.datasets()[0].fingerprint
    runs = tuple(record_run(db, root, by="alice", seed=seed, dataset=fingerprint,
                            training_evidence=dp_training(100)) for seed in (1, 2))
    with LineageStore.open(db) as store:
        for run in runs:
            register_after_run(store, run.run_id)
    assert scan_run is not None
    return History(db=db, fingerprint=fingerprint, scan_run=scan_run, runs=(runs[0].run_id, runs[1].run_id))


@pytest.fixture(scope="session")
def history_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    root = tmp_path_factory.mktemp("history")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOVERN_WITNESS_DIR", str(root / "witness"))
        history = record_history(f"sqlite:///{root / 'lineage.db'}", root)
    yield history


@pytest.fixture
def history(history_template: History, tmp_path: Path) -> History:
    """A copy of the recorded history this test may change (the model folders and keys stay shared)."""
    source = Path(history_template.db.removeprefix("sqlite:///"))
    target = tmp_path / "lineage.db"
    for suffix in ("", "-wal", "-shm"):  # SQLite may keep recent pages beside the file
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")
    return replace(history_template, db=f"sqlite:///{target}")


#: Console users every console test may log in as: (name, role, password).
USERS = (("bob", "approver", "correct horse battery"), ("vera", "viewer", "viewer password 1"),
         ("ada", "admin", "admin password 12"))


@pytest.fixture(scope="session")
def accounts_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An accounts file with bob (approver), vera (viewer) and ada (admin); argon2id hashing is slow on
    purpose, so it is done once."""
    try:
        from govern.ui.accounts import add_user
    except ImportError as exc:
        skip_or_fail(f"needs the ui extra ({exc.name})")
    path = tmp_path_factory.mktemp("accounts") / "accounts.json"
    for name, role, password in USERS:
        add_user(path, name, role, password)  # type: ignore[arg-type]  # literal roles
    return path


@pytest.fixture
def accounts(accounts_template: Path, tmp_path: Path) -> Path:
    """A copy a test may change (add a token, a user)."""
    path = tmp_path / "accounts.json"
    shutil.copyfile(accounts_template, path)
    path.chmod(0o600)
    return path


def login(client: Any, user: str) -> str:
    """Log ``user`` in through the form with an HTTP client (a TestClient, or httpx against a real server);
    returns the session's CSRF token, read from the landing page as a browser would."""
    password = next(p for n, _, p in USERS if n == user)
    landed = client.post("/login", data={"username": user, "password": password}, follow_redirects=True)
    assert landed.status_code == 200 and landed.url.path == "/runs", landed.text
    found = re.search(r'name="csrf" value="([^"]+)" id="session-csrf"', landed.text)
    assert found, "a logged-in page carries the session's CSRF token"
    return found.group(1)


@pytest.fixture
def console_client(accounts: Path) -> Callable[..., Any]:
    """``make(db, user=None, **create_app kwargs)``: a TestClient over a real console app; with ``user``, logged
    in through the login form, its CSRF token (read from the page, as a browser would) at ``client.csrf``."""
    try:
        from starlette.testclient import TestClient

        from govern.ui.app import create_app
    except ImportError as exc:
        skip_or_fail(f"needs the ui extra ({exc.name})")

    def make(db: str, user: str | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("accounts_path", accounts)
        client = TestClient(create_app(db, **kwargs))
        if user is not None:
            client.csrf = login(client, user)
        return client

    return make


#: What headless chromium needs in this environment (no sandbox in containers, no GPU, no background traffic).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL; stops it after."""
    import socket
    import threading
    import time

    try:
        import uvicorn
    except ImportError as exc:
        skip_or_fail(f"needs the ui extra ({exc.name})")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the console did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
