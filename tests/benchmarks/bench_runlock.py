"""Benchmark: what the run lock (govern.runlock) costs, against baselines measured in the same run.

1. Taking and releasing a run's lock (``hold`` + ``release``: an flock and the owner file), which every
   ``govern run``, ``--resume`` and ``govern.session`` now does once, against recording the run itself
   (``LineageStore.create_run`` on SQLite), the step it accompanies.
2. ``govern runs list`` with 50 runs shown as ``running`` (each probed read-only, ``api.shown_status``),
   against the same listing without the probes (``api.list_runs``).

    .venv/bin/python tests/benchmarks/bench_runlock.py [--repeat 200] [--runs 50]
"""

from __future__ import annotations

import functools
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from govern import api  # noqa: E402
from govern.lineage import LineageStore  # noqa: E402
from govern.runlock import hold  # noqa: E402
from tests.benchmarks._common import int_options, median_time  # noqa: E402

print = functools.partial(print, flush=True)  # noqa: A001


def main() -> None:
    opts = int_options(__doc__, repeat=200, runs=50)
    root = Path(tempfile.mkdtemp(prefix="bench-runlock-"))
    try:
        url = f"sqlite:///{root / 'lineage.db'}"
        store = LineageStore.open(url)
        run_dir = root / "runs" / "r"
        lock = median_time(lambda: hold(run_dir, "r").release(), opts.repeat)
        create = median_time(lambda: store.create_run(name="bench", kind="run"), opts.repeat)
        print(f"[lock] hold + release          : {lock * 1e6:8.1f} µs")
        print(f"       create_run (SQLite)     : {create * 1e6:8.1f} µs")
        print(f"       ratio                   : {lock / create:8.3f}x")

        for i in range(opts.runs):  # runs left "running" by killed processes: each folder has a free lock file
            run_id = store.create_run(name=f"killed-{i}", kind="run")
            folder = root / "runs" / run_id
            hold(folder, run_id).release()
            store.set_run_dir(run_id, str(folder))
        store.close()
        listed = api.list_runs(db_url=url, limit=opts.runs)
        assert all(api.shown_status(r) == "interrupted" for r in listed)

        def plain() -> None:
            api.list_runs(db_url=url, limit=opts.runs)

        def probed() -> None:
            for r in api.list_runs(db_url=url, limit=opts.runs):
                api.shown_status(r)

        base, with_probe = median_time(plain, opts.repeat // 4), median_time(probed, opts.repeat // 4)
        print(f"[runs list] {opts.runs} running runs, probed : {with_probe * 1e3:8.2f} ms")
        print(f"            the same listing, unprobed   : {base * 1e3:8.2f} ms")
        print(f"            ratio                        : {with_probe / base:8.3f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
