"""One fully recorded run, shared by the report tests of a module (recording it scans real files)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from govern.lineage import LineageStore
from tests.report.populate import RecordedRun, record_governed_run


@dataclass
class RecordedDB:
    url: str
    root: Path
    run: RecordedRun


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordedDB]:
    """A lineage DB holding one governed run whose run directory and data files are then deleted."""
    root = tmp_path_factory.mktemp("recorded")
    url = f"sqlite:///{root / 'lineage.db'}"
    store = LineageStore.open(url)
    try:
        run = record_governed_run(store, root)
    finally:
        store.close()
    shutil.rmtree(run.run_dir)
    shutil.rmtree(run.data_dir)
    yield RecordedDB(url=url, root=root, run=run)
