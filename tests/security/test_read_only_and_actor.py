"""Commands that only read never write (a typo in --db is an error, not a new empty DB that "verifies"),
and every audit event records who acted: the CI identity, else the OS user and host, or --actor."""

from __future__ import annotations

import getpass
import hashlib
import socket
import sqlite3
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest

from govern.errors import LineageError
from govern.lineage import LineageStore
from tests.pg import drop_database, fresh_database

Cli = Callable[..., tuple[int, str, str]]


@pytest.mark.parametrize("command", [["lineage", "verify"], ["runs", "list"], ["runs", "show", "latest"],
                                     ["report", "latest", "--format", "json"]])
def test_a_mistyped_sqlite_db_is_an_error_and_nothing_is_created(tmp_path: Path, command: list[str],
                                                                 govern_cli: Cli) -> None:
    missing = tmp_path / "typo" / "lineage.db"
    code, out, err = govern_cli(*command, "--db", f"sqlite:///{missing}")
    assert code == 2, out + err
    assert f"no lineage DB at {missing}" in err and "nothing was created" in err
    assert not missing.parent.exists()


def test_a_file_that_is_not_a_govern_db_is_refused(tmp_path: Path, govern_cli: Cli) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    code, _, err = govern_cli("lineage", "verify", "--db", f"sqlite:///{other}")
    assert code == 2 and "is not a govern lineage DB" in err


def test_read_commands_leave_the_db_file_byte_for_byte_unchanged(tmp_path: Path, govern_cli: Cli) -> None:
    path = tmp_path / "lineage.db"
    url = f"sqlite:///{path}"
    with LineageStore.open(url) as store:
        run_id = store.create_run(name="r")
        store.set_run_status(run_id, "completed", decision="pass")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    files_before = sorted(p.name for p in tmp_path.iterdir())
    for command in (["lineage", "verify"], ["runs", "list"], ["runs", "show", run_id],
                    ["report", run_id, "--format", "md", "--out", str(tmp_path / "reports")]):
        code, out, err = govern_cli(*command, "--db", url)
        assert code == 0, (command, out, err)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    # SQLite's WAL readers may leave its shared-memory index files; nothing else appears.
    assert sorted(p.name for p in tmp_path.iterdir()
                  if p.name not in ("reports", "lineage.db-wal", "lineage.db-shm")) == files_before
    with LineageStore.open(url, read_only=True) as store, pytest.raises(LineageError, match="opened read-only"):
        store.create_run(name="sneaky")


@pytest.mark.postgres
def test_a_missing_or_empty_postgresql_db_is_an_error(postgres_url: str, govern_cli: Cli) -> None:
    empty = fresh_database(postgres_url)
    try:
        code, _, err = govern_cli("lineage", "verify", "--db", empty)
        assert code == 2 and "is not a govern lineage DB" in err
        LineageStore.open(empty).close()  # a recording command creates the schema ...
        code, out, _ = govern_cli("lineage", "verify", "--db", empty)
        assert code == 0 and "intact" in out  # ... and then reads work
    finally:
        drop_database(postgres_url, empty)
    code, _, err = govern_cli("runs", "list", "--db", empty)
    assert code == 2 and "cannot open lineage DB" in err


# -------------------------------------------------------------------------------------------- actors
def _actors(url: str) -> list[dict[str, object]]:
    with LineageStore.open(url, read_only=True) as store:
        return [e.payload["actor"] for e in store.events()]


def test_events_record_the_github_actor_and_workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     govern_cli: Cli) -> None:
    for name in ("GITLAB_CI", "BUILDKITE", "CIRCLECI", "JENKINS_URL", "GOVERN_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    monkeypatch.setenv("GITHUB_WORKFLOW_REF", "acme/models/.github/workflows/gate.yml@refs/heads/main")
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    with LineageStore.open(url) as store:
        run_id = store.create_run(name="r")
    code, _, err = govern_cli("waive", run_id, "fairness.min_ratio.demographic_parity_ratio", "--by", "dpo", "--reason", "ok",
                              "--until", (date.today() + timedelta(days=3)).isoformat(), "--db", url)
    assert code == 0, err
    actors = _actors(url)
    assert len(actors) == 3  # run.created, waiver.added, witness.emitted
    assert all(a["source"] == "github" and a["name"] == "octocat" for a in actors)
    assert actors[1]["context"]["GITHUB_WORKFLOW_REF"].endswith("gate.yml@refs/heads/main")  # type: ignore[index]
    assert actors[1]["context"]["GITHUB_RUN_ID"] == "4242"  # type: ignore[index]


def test_outside_ci_the_os_user_and_host_are_recorded_and_actor_overrides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, govern_cli: Cli) -> None:
    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "JENKINS_URL", "GOVERN_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    with LineageStore.open(url) as store:
        run_id = store.create_run(name="r")
    assert _actors(url)[0] == {"source": "os", "name": getpass.getuser(), "context": {"host": socket.gethostname()}}
    code, _, err = govern_cli("--actor", "Compliance Officer Ada", "waive", run_id, "fairness.min_ratio.demographic_parity_ratio", "--by", "ada",
                              "--reason", "ok", "--until", (date.today() + timedelta(days=3)).isoformat(),
                              "--db", url)
    assert code == 0, err
    assert _actors(url)[-1] == {"source": "explicit", "name": "Compliance Officer Ada", "context": {}}


def test_the_report_says_who_ran_waived_signed_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       govern_cli: Cli) -> None:
    from tests.report.populate import record_governed_run

    for name in ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "JENKINS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOVERN_ACTOR", "ml-engineer-bo")
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    with LineageStore.open(url) as store:
        run = record_governed_run(store, tmp_path)
    monkeypatch.delenv("GOVERN_ACTOR")
    code, _, err = govern_cli("--actor", "auditor-cy", "check", run.run_id, "--db", url)
    assert code in (0, 1), err
    code, _, err = govern_cli("report", run.run_id, "--format", "md", "--out", str(tmp_path / "r"), "--db", url)
    assert code == 0, err
    md = (tmp_path / "r" / f"{run.run_id}.md").read_text()
    section = md[md.index("### Who did what"):]
    assert "| ran | ml-engineer-bo |" in section
    assert "| waived | ml-engineer-bo |" in section and "| signed | ml-engineer-bo |" in section
    assert "| checked | auditor-cy |" in section
