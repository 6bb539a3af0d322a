"""Benchmark: server time of the console's Runs page and a model version page with many runs in the DB
(SQLite), measured through a real HTTP client (httpx) against uvicorn on loopback. Goal: p95 < 150 ms.

Baseline measured in the same run: a static asset from the same server (framework + HTTP cost, no DB), so
the ratio is what reading the lineage DB and rendering the page add. The runs and versions are bulk-
inserted with SQL (their row commitments are irrelevant to page time; the pages read with ``--read-only``).

    .venv/bin/python tests/benchmarks/bench_console.py [--runs 100000] [--requests 50]
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
import uvicorn  # noqa: E402

from govern.lineage import LineageStore  # noqa: E402
from govern.lineage.models import ModelVersion, RegisteredModel, Run, table_of  # noqa: E402
from govern.ui.app import create_app  # noqa: E402
from tests.benchmarks._common import int_options  # noqa: E402


def _seed(url: str, runs: int) -> None:
    store = LineageStore.open(url)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with store.engine.begin() as conn:
        conn.execute(sa.insert(table_of(RegisteredModel)), [{"name": f"model-{m}", "created_at": start}
                                                             for m in range(20)])
        for chunk in range(0, runs, 5000):
            conn.execute(sa.insert(table_of(Run)), [{
                "id": f"run-{i:08d}", "name": f"model-{i % 20}", "kind": "run",
                "status": ("completed", "blocked", "failed")[i % 3], "decision": ("pass", "block", None)[i % 3],
                "started_at": start + timedelta(seconds=i)} for i in range(chunk, min(runs, chunk + 5000))])
        conn.execute(sa.insert(table_of(ModelVersion)), [{
            "model_id": 1 + i % 20, "version": 1 + i // 20, "run_id": f"run-{i:08d}", "digest": f"{i:064x}",
            "path": f"/m/{i}", "initiator": "trainer", "initiator_source": "explicit", "status": "candidate",
            "created_at": start, "updated_at": start} for i in range(0, min(runs, 20000))])
    store.close()


def _p(samples: list[float], q: float) -> float:
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(q * len(samples)))] * 1e3


def main() -> None:
    args = int_options(runs=100_000, requests=50)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'lineage.db'}"
        t0 = time.perf_counter()
        _seed(url, args.runs)
        print(f"seeded {args.runs} runs in {time.perf_counter() - t0:.1f} s")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(url, read_only=True), host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        pages = {"static asset (baseline)": "/static/govern.css", "Runs page": "/runs",
                 "Runs page, filtered, page 40": "/runs?status=blocked&page=40",
                 "Runs, decision + day, page 40": "/runs?decision=block&from=2026-01-01&to=2026-01-01&page=40",
                 "model version page": "/models/model-7/v100"}
        results: dict[str, list[float]] = {}
        with httpx.Client(base_url=base) as client:
            for name, path in pages.items():
                assert client.get(path).status_code == 200, path  # warm-up, and the page exists
                samples = []
                for _ in range(args.requests):
                    t = time.perf_counter()
                    client.get(path).raise_for_status()
                    samples.append(time.perf_counter() - t)
                results[name] = samples
        server.should_exit = True
        thread.join(timeout=10)
    base_p50 = _p(results["static asset (baseline)"], 0.5)
    for name, samples in results.items():
        print(f"{name:34s} p50 {_p(samples, 0.5):7.1f} ms  p95 {_p(samples, 0.95):7.1f} ms  "
              f"ratio p50/baseline {_p(samples, 0.5) / base_p50:5.1f}x")


if __name__ == "__main__":
    main()
