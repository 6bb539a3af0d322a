"""One fully recorded run, shared by the report tests of a module (recording it scans real files)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.report.populate import RecordedDB, record_governed_db

__all__ = ["RecordedDB", "recorded"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordedDB]:
    """A lineage DB holding one governed run whose run directory and data files are then deleted."""
    db = record_governed_db(tmp_path_factory.mktemp("recorded"))
    shutil.rmtree(db.run.run_dir)
    shutil.rmtree(db.run.data_dir)
    yield db
