"""Audit reports and CI-gate outputs, generated from the lineage DB alone.

Public API (stable):

- :func:`build_report_data` — one run's :class:`ReportData` from a :class:`~govern.lineage.store.LineageStore`;
- :func:`render_html`, :func:`render_pdf`, :func:`render_markdown`, :func:`render_json` — its renderings;
- :func:`write_report` — render and write ``<out_dir>/<run_id>.<ext>`` (what ``govern report`` does);
- :func:`build_ledger`, :func:`composed_epsilon` — runs, waivers and the per-data-set privacy ledger;
- :func:`to_junit`, :func:`to_markdown_summary`, :func:`to_sarif` — CI outputs (pure functions).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from govern.errors import GovernError
from govern.privacy_ledger import composed_epsilon, ledger_delta
from govern.report.ci import to_junit, to_markdown_summary, to_sarif
from govern.report.data import ReportData, build_report_data, explain_epsilon
from govern.report.ledger import LedgerReport, build_ledger, dataset_budgets

if TYPE_CHECKING:
    from govern.lineage.store import LineageStore

ReportFormat = Literal["html", "pdf", "md", "json"]
LedgerFormat = Literal["html", "md", "json"]
REPORT_FORMATS: tuple[str, ...] = ("html", "pdf", "md", "json")
LEDGER_FORMATS: tuple[str, ...] = ("html", "md", "json")
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")

__all__ = [
    "LedgerReport", "ReportData", "build_ledger", "build_report_data", "composed_epsilon", "dataset_budgets", "write_report_data",
    "explain_epsilon", "ledger_delta", "render_html", "render_json", "render_ledger", "render_markdown",
    "render_pdf", "report_json_schema", "to_junit", "to_markdown_summary", "to_sarif", "write_ledger",
    "write_report",
]


def render_html(data: ReportData) -> str:
    from govern.report.html import render_html as _render

    return _render(data)


def render_pdf(data: ReportData, *, html: str | None = None) -> bytes:
    from govern.report.pdf import render_pdf as _render

    return _render(data, html=html)


def render_markdown(data: ReportData) -> str:
    from govern.report.markdown import render_markdown as _render

    return _render(data)


def render_json(data: ReportData) -> str:
    """The machine-readable report; validates against ``report.schema.json``."""
    return data.model_dump_json(indent=2) + "\n"


def report_json_schema() -> dict[str, object]:
    """The JSON Schema of :func:`render_json`'s output (committed as ``govern/report/report.schema.json``)."""
    schema = ReportData.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "urn:govern:report:v1"
    return schema


def render(data: ReportData, fmt: str) -> bytes:
    if fmt == "html":
        return render_html(data).encode()
    if fmt == "pdf":
        return render_pdf(data)
    if fmt == "md":
        return render_markdown(data).encode()
    if fmt == "json":
        return render_json(data).encode()
    raise GovernError(f"unknown report format '{fmt}' (choose one of {', '.join(REPORT_FORMATS)})")


def write_report(store: LineageStore, run_id: str, fmt: str, out_dir: str | Path = "reports") -> Path:
    """Render one run's report from the DB and write ``<out_dir>/<run_id>.<fmt>``; returns the path."""
    if fmt not in REPORT_FORMATS:
        raise GovernError(f"unknown report format '{fmt}' (choose one of {', '.join(REPORT_FORMATS)})")
    return write_report_data(build_report_data(store, run_id), fmt, out_dir)


def write_report_data(data: ReportData, fmt: str, out_dir: str | Path = "reports") -> Path:
    """Write an already built report as ``<out_dir>/<run_id>.<fmt>``; returns the path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{data.run.id}.{fmt}"
    path.write_bytes(render(data, fmt))
    return path


def render_ledger(report: LedgerReport, fmt: str) -> str:
    if fmt == "json":
        return report.model_dump_json(indent=2) + "\n"
    if fmt == "md":
        from govern.report.ledger_md import render_ledger_markdown

        return render_ledger_markdown(report)
    if fmt == "html":
        from govern.report.html import CSP, _environment, fmt_number

        return _environment().get_template("ledger.html.j2").render(l=report, csp=CSP, num=fmt_number)
    raise GovernError(f"unknown ledger format '{fmt}' (choose one of {', '.join(LEDGER_FORMATS)})")


def write_ledger(store: LineageStore, since: date, fmt: str, out_dir: str | Path = "reports", *,
                 accountant: str = "rdp", cap: float | None = None) -> Path:
    """Build the ledger since ``since`` and write ``<out_dir>/ledger-since-<date>.<fmt>``."""
    if fmt not in LEDGER_FORMATS:
        raise GovernError(f"unknown ledger format '{fmt}' (choose one of {', '.join(LEDGER_FORMATS)})")
    report = build_ledger(store, since, accountant=accountant, cap=cap)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"ledger-since-{since.isoformat()}.{fmt}"
    path.write_text(render_ledger(report, fmt), encoding="utf-8")
    return path


def _dump_schema() -> None:  # pragma: no cover - `python -m govern.report` regenerates the committed schema
    SCHEMA_PATH.write_text(json.dumps(report_json_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
