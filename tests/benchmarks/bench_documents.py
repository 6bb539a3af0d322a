"""Benchmark: EU AI Act documents, the CycloneDX and SPDX BOMs and OpenLineage events of a recorded run, from
the DB.

Baseline in the same process: building the run's ReportData (what every document is a view of, and what
``govern report`` pays first), so each ratio shows what a document adds on top of reading the DB. Also
the compute estimate's cost per call (it runs once per training stage).

    .venv/bin/python tests/benchmarks/bench_documents.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from govern.documents import build_document, render_document  # noqa: E402
from govern.documents.compute import estimate_compute  # noqa: E402
from govern.report import build_report_data  # noqa: E402
from tests.benchmarks._common import median_time as timed  # noqa: E402
from tests.benchmarks._common import recorded_run  # noqa: E402


def main() -> None:
    with recorded_run("bench-documents-") as (store, run_id):
        baseline = timed(lambda: build_report_data(store, run_id), 5)
        rows = []
        for kind in ("gpai-form", "training-summary", "annex-iv"):
            for fmt in ("md", "html", "json"):
                t = timed(lambda k=kind, f=fmt: render_document(build_document(build_report_data(store, run_id),
                                                                               k), f), 5)
                rows.append((f"{kind} {fmt}", t))
        try:
            from govern.export.bom import build_cyclonedx

            rows.append(("cyclonedx bom (validated)",
                         timed(lambda: build_cyclonedx(build_report_data(store, run_id)), 5)))
        except ImportError:
            print("cyclonedx-python-lib missing: BOM not measured")
        from govern.export.spdx import build_spdx  # no extra: validated against the committed SPDX schema

        rows.append(("spdx 3.0.1 bom (validated)", timed(lambda: build_spdx(build_report_data(store, run_id)), 3)))
        # Its validation alone, with govern's short-circuiting anyOf and with the stock jsonschema validator.
        import json

        import jsonschema

        from govern.export.spdx import SPDX_SCHEMA, validate_spdx

        document = build_spdx(build_report_data(store, run_id))
        stock = jsonschema.Draft202012Validator(json.loads(SPDX_SCHEMA.read_text()))
        rows.append(("  its schema validation", timed(lambda: validate_spdx(document), 3)))
        rows.append(("  the same, stock jsonschema", timed(lambda: stock.is_valid(document), 3)))
        try:
            from govern.export.openlineage import event_json, run_events

            rows.append(("openlineage events (json)", timed(
                lambda: [event_json(e) for e in run_events(build_report_data(store, run_id))], 5)))
        except ImportError:
            print("openlineage-python missing: events not measured")
        training = build_report_data(store, run_id).training
        assert training is not None
        compute = timed(lambda: estimate_compute(training), 200)
    print(f"baseline: ReportData from the DB {baseline * 1000:.1f} ms")
    for name, t in rows:
        print(f"{name:32s} {t * 1000:8.1f} ms   ratio to baseline {t / baseline:5.2f}x")
    print(f"{'compute estimate (one call)':32s} {compute * 1e6:8.1f} µs   ratio to baseline {compute / baseline:.2e}x")


if __name__ == "__main__":
    main()
