"""Engines and schema migrations of the lineage DB (SQLite and PostgreSQL).

Why these choices (what a concurrent, provable record needs):
- SQLite: WAL mode, ``foreign_keys=ON`` and a busy timeout on every connection; writes begin ``IMMEDIATE``
  (one writer at a time, so the audit chain never forks); a read-only open uses ``mode=ro`` and creates
  nothing; migrations are serialised by a file lock next to the DB file.
- PostgreSQL: writes take ``pg_advisory_xact_lock`` (:data:`PG_WRITE_LOCK`, in the store); migrations a
  session-level ``pg_advisory_lock``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from filelock import FileLock
from sqlalchemy.engine import URL, Engine

from govern.errors import LineageError

#: pg_advisory_xact_lock key serialising writers (ASCII "govern" as an integer).
PG_WRITE_LOCK = 0x676F7665726E
#: pg_advisory_lock key serialising schema migrations.
_PG_MIGRATE_LOCK = 0x676F7665726F
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 60.0


def is_lock_error(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return ("database is locked" in text or "database table is locked" in text or "busy" in text
            or "deadlock detected" in text or "could not serialize" in text)


def reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def migrate(url: URL, backend: str, write_engine: Engine) -> None:
    """Create the schema or bring it to the newest revision, serialised across processes (a file lock
    beside a SQLite DB; a session-level advisory lock on PostgreSQL)."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%"))
    head = ScriptDirectory.from_config(cfg).get_current_head()

    def current(conn: sa.Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    def upgrade(conn: sa.Connection) -> None:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")

    if backend == "sqlite":
        database = url.database
        lock: Any = _null_lock()
        if database and database != ":memory:":
            lock = FileLock(f"{database}.lock", timeout=300)
        with lock:
            migrate_engine = sa.create_engine(url, poolclass=sa.pool.NullPool,
                                              connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
            try:
                with migrate_engine.connect() as conn:
                    if database and database != ":memory:":
                        # Persistent: readers never block the writer, nor the writer readers.
                        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
                    if current(conn) != head:
                        upgrade(conn)
                        conn.commit()
            finally:
                migrate_engine.dispose()
        if database in (None, "", ":memory:"):
            # An in-memory DB lives in the one pooled connection: migrate through it.
            with write_engine.connect() as conn:
                if current(conn) != head:
                    upgrade(conn)
                    conn.commit()
    else:
        with write_engine.connect() as conn:
            if current(conn) == head:
                return
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATE_LOCK})
            conn.commit()
            try:
                if current(conn) != head:
                    upgrade(conn)
                conn.commit()
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATE_LOCK})
                conn.commit()



def require_schema(read_engine: Engine, display_url: str) -> None:
    """A read-only open: the DB must exist and be a govern lineage DB at this govern's schema."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    with read_engine.connect() as conn:
        if "alembic_version" not in sa.inspect(conn).get_table_names():
            raise LineageError(f"{display_url} is not a govern lineage DB (no govern schema in it)")
    with read_engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    if revision != head:
        raise LineageError(f"lineage DB {display_url} is at schema revision {revision}, this govern "
                           f"expects {head}: run a recording command (e.g. `govern check`) to upgrade it")



@contextmanager
def _null_lock() -> Iterator[None]:
    yield None


def sqlite_engines(url: URL, *, read_only: bool = False) -> tuple[Engine, Engine]:
    """Two engines over one SQLite file: writes begin ``IMMEDIATE`` (take the write lock up front, so two
    writers never deadlock upgrading read locks); reads begin deferred (WAL readers never block).

    Read-only: the file must exist (nothing is created, not even its folder) and SQLite opens it with
    ``mode=ro``, so no command that only reads can change the DB."""
    database = url.database
    if read_only:
        if not database or database == ":memory:":
            raise LineageError("a read-only command needs an existing lineage DB file, not an in-memory one")
        path = Path(database).expanduser()
        if not path.is_file():
            raise LineageError(f"no lineage DB at {path} (check --db / GOVERN_DB_URL; nothing was created)")
        engine = _sqlite_engine(url, immediate=False, read_only_path=path)
        return engine, engine
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engines = (_sqlite_engine(url, immediate=True), _sqlite_engine(url, immediate=False))
        return engines
    # In-memory: one shared connection, used for both.
    engine = _sqlite_engine(url, immediate=True, memory=True)
    return engine, engine


def _sqlite_engine(url: URL, *, immediate: bool, memory: bool = False, read_only_path: Path | None = None) -> Engine:
    kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}}
    if memory:
        kwargs["poolclass"] = sa.pool.StaticPool
    if read_only_path is not None:
        import sqlite3
        from urllib.parse import quote

        uri = f"file:{quote(str(read_only_path.resolve()))}?mode=ro"
        kwargs["creator"] = lambda: sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S,
                                                    check_same_thread=False)
        kwargs.pop("connect_args")
    engine = sa.create_engine(url, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (not the sqlite3 module) emit BEGIN, so we can choose IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        if read_only_path is None:
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
