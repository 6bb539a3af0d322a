"""Benchmark: report generation for a run with every stage, from the lineage DB.

Goals (2 CPU cores): HTML < 2 s, PDF < 10 s. Baseline in the same process: serialising the same
ReportData with json.dumps (the cheapest possible "report"), so the ratio shows what rendering costs.

    .venv/bin/python tests/benchmarks/bench_report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from govern.report import build_report_data, render_html, render_json, render_markdown, render_pdf  # noqa: E402
from tests.benchmarks._common import median_time, median_times, recorded_run  # noqa: E402


def main() -> None:
    with recorded_run("bench-report-") as (store, run_id):
        data = build_report_data(store, run_id)
        render_html(data)  # warm the template cache, as a second report in one process would be
        baseline = median_time(lambda: json.dumps(data.model_dump(mode="json")), 20)
        build = median_time(lambda: build_report_data(store, run_id), 5)
        html, html_cpu = median_times(lambda: render_html(build_report_data(store, run_id)), 5)
        md = median_time(lambda: render_markdown(build_report_data(store, run_id)), 5)
        js = median_time(lambda: render_json(build_report_data(store, run_id)), 5)
        pdf, pdf_cpu = median_times(lambda: render_pdf(build_report_data(store, run_id)), 3)
    print("report generation for a run with all stages (median; each includes reading the DB)")
    print(f"  baseline json.dumps(ReportData)  {baseline * 1000:8.1f} ms")
    print(f"  build_report_data (DB reads)     {build * 1000:8.1f} ms")
    print(f"  JSON report                      {js * 1000:8.1f} ms   ({js / baseline:6.1f}x baseline)")
    print(f"  Markdown report                  {md * 1000:8.1f} ms   ({md / baseline:6.1f}x baseline)")
    print(f"  HTML report                      {html * 1000:8.1f} ms   ({html / baseline:6.1f}x baseline)  goal < 2000 ms: "
          f"{'met' if html < 2 else 'MISSED'}")
    print(f"  PDF report (WeasyPrint)          {pdf * 1000:8.1f} ms   ({pdf / baseline:6.1f}x baseline)  goal < 10000 ms: "
          f"{'met' if pdf < 10 else 'MISSED'}")
    print(f"  CPU time: HTML {html_cpu * 1000:.1f} ms, PDF {pdf_cpu * 1000:.1f} ms "
          "(wall minus waiting for a core on a shared machine)")


if __name__ == "__main__":
    main()
