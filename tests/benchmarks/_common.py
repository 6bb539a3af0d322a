"""What the benchmark scripts share: median timing and their ``--name N`` command lines.

Each script stays runnable on its own (``.venv/bin/python tests/benchmarks/bench_x.py``); it puts the
repository root on ``sys.path`` and imports this module as ``tests.benchmarks._common``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # govern is imported where it is used: a script puts the repository on sys.path first
    from govern.lineage import LineageStore


def median_times(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall time and median CPU time of this process over ``repeat`` calls, in seconds.

    Both, because on a shared, loaded machine wall time includes waiting for a core and CPU time does not."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls, in seconds."""
    return median_times(fn, repeat)[0]


@contextmanager
def recorded_run(prefix: str) -> Iterator[tuple[LineageStore, str]]:
    """A temporary lineage DB holding one governed run with every stage (``tests.report.populate``) and the
    run's id; the run folder is deleted first, since reports and documents must be built from the DB alone."""
    from govern.lineage import LineageStore
    from tests.report.populate import record_governed_run

    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        store = LineageStore.open(f"sqlite:///{root / 'lineage.db'}")
        run = record_governed_run(store, root)
        shutil.rmtree(run.run_dir)
        yield store, run.run_id
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def int_options(description: str | None = None, **defaults: int) -> argparse.Namespace:
    """Parse the command line's whole-number options, one per keyword (``max_records=500``: ``--max-records``).

    ``description`` (the script's docstring) is shown as written by ``--help``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in defaults.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=default)
    return parser.parse_args()
