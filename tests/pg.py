"""A throwaway PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` on a unix socket in a temp dir.

Use it from any test package::

    from tests.pg import postgres_url  # noqa: F401  (registers the session fixture)
    from tests.pg import fresh_database

    def test_something(postgres_url: str) -> None:
        url = fresh_database(postgres_url)   # an empty database of its own

The server binaries come from Debian's ``postgresql`` package (``/usr/lib/postgresql/<v>/bin``). Without
them the tests skip with the reason; with ``GOVERN_REQUIRE_ALL=1`` (CI) they fail instead. ``initdb``
refuses to run as root, so as root the cluster runs as the ``postgres`` user (``runuser``).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALL_HINT = "apt-get install -y postgresql"


def find_postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL server bin dir with initdb and pg_ctl, else one on PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    for directory in reversed(candidates):
        d = Path(directory)
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).parent == Path(pg_ctl).parent:
        return Path(initdb).parent
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("GOVERN_REQUIRE_ALL") == "1":
        pytest.fail(reason + " and GOVERN_REQUIRE_ALL=1 forbids skipping")
    pytest.skip(reason)


def _cluster_user() -> tuple[list[str], int, int] | None:
    """Prefix to run server commands as a non-root user (when we are root), with that user's uid/gid."""
    if os.geteuid() != 0:
        return [], os.geteuid(), os.getegid()
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        runner = shutil.which("runuser")
        if runner:
            return [runner, "-u", name, "--"], entry.pw_uid, entry.pw_gid
        setpriv = shutil.which("setpriv")
        if setpriv:
            return ([setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"],
                    entry.pw_uid, entry.pw_gid)
    return None


def _scratch_dir() -> str:
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 << 30:
            return str(shm)
    except OSError:
        pass
    return "/tmp"


class PostgresCluster:
    """One running throwaway cluster; ``url`` connects to its ``postgres`` database over the socket."""

    def __init__(self, bindir: Path) -> None:
        user = _cluster_user()
        if user is None:
            raise RuntimeError("running as root but found no 'postgres'/'nobody' user and no runuser/setpriv "
                               "to start PostgreSQL as (initdb refuses root)")
        self.bindir = bindir
        self.prefix, uid, gid = user
        # Short path: unix socket paths are limited to ~107 bytes. RAM-backed when possible: each test
        # database is a ~8 MB file copy, and tmpfs keeps that off a disk shared with other jobs.
        self.base = Path(tempfile.mkdtemp(prefix="govpg-", dir=_scratch_dir()))
        os.chown(self.base, uid, gid)
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.url = f"postgresql+psycopg://postgres@/postgres?host={self.base}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        proc = subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=timeout,
                              cwd=self.base)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}")

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        options = (f"-k {self.base} -c listen_addresses='' -F -c max_connections=200 "
                   "-c shared_buffers=32MB -c full_page_writes=off")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", options, "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop",
                      timeout=60)
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def fresh_database(server_url: str, prefix: str = "govern_test", template: str = "template0") -> str:
    """Create an empty database on the test cluster (a copy of ``template``) and return its URL.

    FILE_COPY is the fastest strategy with fsync off (about 0.2 s against 0.5 s for WAL_LOG)."""
    import sqlalchemy as sa

    name = f"{prefix}_{secrets.token_hex(4)}"
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            strategy = " STRATEGY FILE_COPY" if (conn.dialect.server_version_info or (0,)) >= (15,) else ""
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
    finally:
        engine.dispose()
    return str(sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False))


def drop_database(server_url: str, database_url: str) -> None:
    """Drop a database made by :func:`fresh_database` (closing any connections still open to it)."""
    import sqlalchemy as sa

    name = sa.engine.make_url(database_url).database
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL cluster's ``postgres`` DB (started once per test session)."""
    bindir = find_postgres_bin()
    if bindir is None:
        _skip_or_fail("needs the PostgreSQL server binaries initdb and pg_ctl (Debian package `postgresql`: "
                      f"{INSTALL_HINT}); none under /usr/lib/postgresql/*/bin or on PATH")
    assert bindir is not None
    cluster = PostgresCluster(bindir)
    try:
        cluster.start()
    except Exception:
        cluster.stop()
        raise
    try:
        yield cluster.url
    finally:
        cluster.stop()
