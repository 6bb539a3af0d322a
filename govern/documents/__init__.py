"""Regulatory documents, generated from the lineage DB alone (like the reports): an aid, not legal advice.

Public API (stable):

- :func:`build_document` — one run's document of a kind (``gpai-form``, ``training-summary``, ``annex-iv``)
  from its :class:`~govern.report.data.ReportData`;
- :func:`render_document` — its Markdown, HTML, PDF or JSON bytes;
- :func:`write_document` — build, render, write ``<out_dir>/<run_id>.<kind>.<fmt>`` and record the file
  as an artifact of the run, with its digest (what ``govern docs`` does);
- :mod:`govern.documents.compute` — the significant-modification check (training compute vs the base
  model's), whose estimate the training stage records in its evidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from govern.documents.model import DISCLAIMER, DOCUMENT_KINDS, TO_BE_COMPLETED, Document, DocumentKind
from govern.documents.render import DOCUMENT_FORMATS, render_document
from govern.errors import GovernError

if TYPE_CHECKING:
    from govern.lineage.store import LineageStore
    from govern.report.data import ReportData
    from govern.stage import ArtifactOut

__all__ = ["DISCLAIMER", "DOCUMENT_FORMATS", "DOCUMENT_KINDS", "TO_BE_COMPLETED", "Document", "DocumentKind",
           "build_document", "render_document", "verified_report_data", "write_document"]


def build_document(data: ReportData, kind: str) -> Document:
    if kind == "gpai-form":
        from govern.documents.gpai_form import build_gpai_form

        return build_gpai_form(data)
    if kind == "training-summary":
        from govern.documents.training_summary import build_training_summary

        return build_training_summary(data)
    if kind == "annex-iv":
        from govern.documents.annex_iv import build_annex_iv

        return build_annex_iv(data)
    raise GovernError(f"unknown document kind '{kind}' (choose one of {', '.join(DOCUMENT_KINDS)})")


def verified_report_data(store: LineageStore, run_id: str) -> ReportData:
    """The run's ReportData, refused (exit 2) when its lineage record does not verify: every value of a
    document or export would come from that record (``govern report`` fails closed the same way)."""
    from govern.report.data import build_report_data

    data = build_report_data(store, run_id)
    if data.chain is not None and data.chain.problems:
        raise GovernError(f"the lineage record of {data.run.id} is broken ({len(data.chain.problems)} problem(s), "
                          f"first: {data.chain.problems[0]}); nothing is drafted from it — run `govern lineage "
                          "verify`")
    return data


def write_document(store: LineageStore, run_id: str, kind: str, fmt: str, out_dir: str | Path = "reports", *,
                   record: bool = True) -> tuple[Path, Document, ArtifactOut | None]:
    """Write ``<out_dir>/<run_id>.<kind>.<fmt>`` from the DB; with ``record``, add it to the run's artifacts.

    Fails closed like ``govern report``'s exit 2: a run whose lineage record does not verify gets no
    document, since every value in it would come from that record."""
    if fmt not in DOCUMENT_FORMATS:
        raise GovernError(f"unknown document format '{fmt}' (choose one of {', '.join(DOCUMENT_FORMATS)})")
    if kind not in DOCUMENT_KINDS:
        raise GovernError(f"unknown document kind '{kind}' (choose one of {', '.join(DOCUMENT_KINDS)})")
    data = verified_report_data(store, run_id)
    document = build_document(data, kind)
    path, artifact = save_run_file(store, data.run.id, out_dir, f"{kind}.{fmt}", render_document(document, fmt),
                                   record=record)
    return path, document, artifact


def save_run_file(store: LineageStore, run_id: str, out_dir: str | Path, name: str, content: bytes, *,
                  record: bool) -> tuple[Path, ArtifactOut | None]:
    """Write ``<out_dir>/<run_id>.<name>`` (a document or BOM drafted from the run's record); with ``record``,
    add it to the run's artifacts as a report named ``name``."""
    from govern.stage import artifact_for

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{run_id}.{name}"
    path.write_bytes(content)
    artifact = None
    if record:
        # Absolute: the DB outlives the working directory of the command.
        artifact = artifact_for(path.resolve(), name, "report")
        store.add_artifacts(run_id, None, [artifact])
    return path, artifact
