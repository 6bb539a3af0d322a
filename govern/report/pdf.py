"""PDF rendering: WeasyPrint over the same HTML (its print stylesheet lays out A4 pages).

WeasyPrint needs Pango at run time; on Debian/Ubuntu: ``apt-get install libpango-1.0-0
libpangoft2-1.0-0 fonts-dejavu-core`` (the report names DejaVu fonts first). The import happens
here, lazily, so the other formats work on a machine without those libraries.
"""

from __future__ import annotations

import logging

from govern.errors import GovernError
from govern.report.data import ReportData
from govern.report.html import render_html


class PDFUnavailableError(GovernError):
    """WeasyPrint or its system libraries (Pango) are missing."""


def render_pdf(data: ReportData, *, html: str | None = None) -> bytes:
    """The report as PDF bytes. Pass ``html`` when it is already rendered (saves a render)."""
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: the Pango shared libraries are missing
        raise PDFUnavailableError(
            f"PDF output needs WeasyPrint and Pango ({exc}). Install them: pip install 'govern[pdf]' and "
            "apt-get install libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core"
        ) from None
    # WeasyPrint logs every unsupported CSS property at WARNING; the report's CSS targets browsers too.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    document = weasyprint.HTML(string=html if html is not None else render_html(data), base_url=None)
    pdf: bytes | None = document.write_pdf()  # weasyprint is untyped: its result is Any
    assert pdf is not None  # write_pdf without a target returns the bytes
    return pdf
