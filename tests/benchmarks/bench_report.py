"""Benchmark: report generation for a run with every stage, from the lineage DB.

Goals (2 CPU cores): HTML < 2 s, PDF < 10 s. Baseline in the same process: serialising the same
ReportData with json.dumps (the cheapest possible "report"), so the ratio shows what rendering costs.

    .venv/bin/python tests/benchmarks/bench_report.py
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from govern.lineage import LineageStore  # noqa: E402
from govern.report import build_report_data, render_html, render_json, render_markdown, render_pdf  # noqa: E402
from tests.report.populate import record_governed_run  # noqa: E402

CPU: dict[int, float] = {}


def timed(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    """Median wall time; the median CPU time of this process goes into CPU[id(fn)] (on a shared, loaded
    machine wall time includes waiting for a core, CPU time does not)."""
    times, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    CPU[id(fn)] = statistics.median(cpu)
    return statistics.median(times)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        store = LineageStore.open(f"sqlite:///{root / 'lineage.db'}")
        run = record_governed_run(store, root)
        shutil.rmtree(run.run_dir)
        data = build_report_data(store, run.run_id)
        render_html(data)  # warm the template cache, as a second report in one process would be
        baseline = timed(lambda: json.dumps(data.model_dump(mode="json")), 20)
        build = timed(lambda: build_report_data(store, run.run_id), 5)
        html_fn = lambda: render_html(build_report_data(store, run.run_id))  # noqa: E731
        html = timed(html_fn, 5)
        md = timed(lambda: render_markdown(build_report_data(store, run.run_id)), 5)
        js = timed(lambda: render_json(build_report_data(store, run.run_id)), 5)
        pdf_fn = lambda: render_pdf(build_report_data(store, run.run_id))  # noqa: E731
        pdf = timed(pdf_fn, 3)
        store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print("report generation for a run with all stages (median; each includes reading the DB)")
    print(f"  baseline json.dumps(ReportData)  {baseline * 1000:8.1f} ms")
    print(f"  build_report_data (DB reads)     {build * 1000:8.1f} ms")
    print(f"  JSON report                      {js * 1000:8.1f} ms   ({js / baseline:6.1f}x baseline)")
    print(f"  Markdown report                  {md * 1000:8.1f} ms   ({md / baseline:6.1f}x baseline)")
    print(f"  HTML report                      {html * 1000:8.1f} ms   ({html / baseline:6.1f}x baseline)  goal < 2000 ms: "
          f"{'met' if html < 2 else 'MISSED'}")
    print(f"  PDF report (WeasyPrint)          {pdf * 1000:8.1f} ms   ({pdf / baseline:6.1f}x baseline)  goal < 10000 ms: "
          f"{'met' if pdf < 10 else 'MISSED'}")
    print(f"  CPU time: HTML {CPU[id(html_fn)] * 1000:.1f} ms, PDF {CPU[id(pdf_fn)] * 1000:.1f} ms "
          "(wall minus waiting for a core on a shared machine)")


if __name__ == "__main__":
    main()
