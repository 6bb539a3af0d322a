"""Lineage tests run against both backends: a SQLite file and a real, throwaway PostgreSQL cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from govern.lineage import LineageStore
from tests.pg import drop_database, fresh_database, postgres_url  # noqa: F401  (session fixture)


@pytest.fixture(scope="session")
def migrated_pg_template(postgres_url: str) -> str:  # noqa: F811
    """Name of a PostgreSQL database already migrated to head, copied for each test (saves ~0.5 s each;
    migrations themselves are tested from an empty database in test_migrations.py)."""
    url = fresh_database(postgres_url, prefix="govern_template")
    LineageStore.open(url).close()
    return sa.engine.make_url(url).database or ""


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL where no lineage DB exists yet, on each backend (SQLite file / empty PostgreSQL database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lineage' / 'lineage.db'}"
        return
    server = request.getfixturevalue("postgres_url")
    url = fresh_database(server)
    yield url
    drop_database(server, url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh lineage DB URL on each backend (SQLite file created by open() / PostgreSQL copy of a
    migrated template)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lineage' / 'lineage.db'}"
        return
    server = request.getfixturevalue("postgres_url")
    url = fresh_database(server, template=request.getfixturevalue("migrated_pg_template"))
    yield url
    drop_database(server, url)


@pytest.fixture
def store(db_url: str) -> Iterator[LineageStore]:
    s = LineageStore.open(db_url)
    try:
        yield s
    finally:
        s.close()
