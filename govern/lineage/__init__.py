"""The lineage database: the system of record of every governed run.

``LineageStore.open(url)`` connects to SQLite (default ``.govern/lineage.db``) or PostgreSQL, migrates the
schema, and is the only way govern reads or writes it. See :mod:`govern.lineage.store`.
"""

# The read models are re-exported as records.py lists them (its ``__all__``), so the names stand in one list.
from govern.lineage import records
from govern.lineage.records import *  # noqa: F403  # re-export: records.__all__ is the list
from govern.lineage.store import LineageStore, default_db_url, new_run_id

__all__ = [*records.__all__, "LineageStore", "default_db_url", "new_run_id"]
