"""The console tests share the registry tests' recorded runs and DB fixture."""

from tests.registry.conftest import sqlite_db  # noqa: F401
