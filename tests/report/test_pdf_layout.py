"""The PDF an auditor prints: A4 pages, no text outside the page, no words drawn over each other (a status
badge over a rule id, two column headers run together), no value broken inside a token (``1.00e-0`` /
``5``), and lineage-graph labels that fit their boxes. Checked on the real PDF with poppler's
``pdftotext -bbox-layout`` (word boxes) and rendered with ``pdftoppm`` for a person to look at."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from govern.lineage import LineageStore
from govern.report import build_report_data, write_report
from tests.conftest import require_tool
from tests.report.conftest import RecordedDB

A4_PT = (595.28, 841.89)
NS = "{http://www.w3.org/1999/xhtml}"


@pytest.fixture(scope="module")
def pdf(recorded: RecordedDB, tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tool("pdftotext", "checks the PDF layout")
    out = tmp_path_factory.mktemp("pdf")
    with LineageStore.open(recorded.url, read_only=True) as store:
        return write_report(store, recorded.run.run_id, "pdf", out)


def _pages(pdf: Path) -> list[tuple[float, float, list[tuple[str, float, float, float, float]]]]:
    xml = subprocess.run(["pdftotext", "-bbox-layout", str(pdf), "-"], capture_output=True, text=True,
                         check=True).stdout
    root = ET.fromstring(xml)
    pages = []
    for page in root.iter(f"{NS}page"):
        words = [(w.text or "", float(w.get("xMin", 0)), float(w.get("yMin", 0)), float(w.get("xMax", 0)),
                  float(w.get("yMax", 0))) for w in page.iter(f"{NS}word")]
        pages.append((float(page.get("width", 0)), float(page.get("height", 0)), words))
    return pages


def test_every_page_is_a4_and_no_text_leaves_it(pdf: Path) -> None:
    pages = _pages(pdf)
    assert len(pages) > 3
    for number, (width, height, words) in enumerate(pages, start=1):
        assert (round(width), round(height)) == (round(A4_PT[0]), round(A4_PT[1])), f"page {number} is not A4"
        for text, x0, y0, x1, y1 in words:
            assert x0 >= 0 and x1 <= width - 20 and y0 >= 0 and y1 <= height, \
                f"page {number}: '{text}' lies outside the printable page ({x0:.0f}..{x1:.0f} of {width:.0f})"


def test_no_two_words_are_drawn_over_each_other(pdf: Path) -> None:
    for number, (_, _, words) in enumerate(_pages(pdf), start=1):
        boxes = sorted(words, key=lambda w: (w[2], w[1]))
        for i, (text, x0, y0, x1, y1) in enumerate(boxes):
            for other, u0, v0, u1, v1 in boxes[i + 1:]:
                if v0 >= y1:
                    break
                overlap_x = min(x1, u1) - max(x0, u0)
                overlap_y = min(y1, v1) - max(y0, v0)
                smaller = min((x1 - x0) * (y1 - y0), (u1 - u0) * (v1 - v0))
                assert overlap_x <= 0.5 or overlap_y <= 0.5 or overlap_x * overlap_y < 0.15 * smaller, \
                    f"page {number}: '{text}' and '{other}' overlap"


def test_values_and_identifiers_are_never_broken_inside_a_token(pdf: Path, recorded: RecordedDB) -> None:
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    words = set(re.split(r"\s+", text))
    assert "1.00e-05" in words  # δ, as observed and as the limit
    assert not any(re.fullmatch(r"\d+\.\d*e-0?", w) for w in words), "a number in scientific notation was split"
    with LineageStore.open(recorded.url, read_only=True) as store:
        data = build_report_data(store, recorded.run.run_id)
    for rule in {r.rule_id for r in data.decision.results} if data.decision else set():
        # An id may wrap, but only after one of its separators: every piece is a whole segment.
        for piece in re.findall(r"[A-Za-z0-9_.\[\]]+", rule):
            assert any(piece.startswith(w) or w.startswith(piece) or w in piece for w in words if w), rule


def test_pages_render_for_a_person_to_look_at(pdf: Path) -> None:
    require_tool("pdftoppm", "renders the PDF pages")
    out = pdf.parent / "pages"
    out.mkdir(exist_ok=True)
    subprocess.run(["pdftoppm", "-r", "60", "-png", str(pdf), str(out / "page")], check=True)
    pngs = sorted(out.glob("page-*.png"))
    assert len(pngs) == len(_pages(pdf))
    for png in pngs:
        width = int.from_bytes(png.read_bytes()[16:20], "big")  # PNG IHDR width
        assert abs(width - A4_PT[0] / 72 * 60) <= 1, f"{png.name} is {width} px wide, not A4"
    artifacts = os.environ.get("GOVERN_TEST_ARTIFACTS")
    if artifacts:
        target = Path(artifacts) / "report-pages"
        shutil.copytree(out, target, dirs_exist_ok=True)


def test_lineage_graph_labels_fit_their_boxes(recorded: RecordedDB) -> None:
    """Measured with the real font (matplotlib's copy of DejaVu Sans), not with the renderer's own table."""
    from matplotlib.font_manager import FontProperties, findfont
    from matplotlib.ft2font import FT2Font

    from govern.report.lineage_svg import _BOX_W, _PAD, lineage_svg

    with LineageStore.open(recorded.url, read_only=True) as store:
        data = build_report_data(store, recorded.run.run_id)
    svg = lineage_svg(data.lineage)
    fonts = {weight: FT2Font(findfont(FontProperties(family="DejaVu Sans", weight=weight)))
             for weight in ("normal", "bold")}
    texts = re.findall(r'<text ([^>]*font-size="(\d+)"[^>]*)>([^<]*)</text>', svg)
    assert len(texts) >= 2 * len(data.lineage.nodes)
    for attributes, size, text in texts:
        font = fonts["bold" if 'font-weight="bold"' in attributes else "normal"]
        font.set_size(float(size) * 10, 72)  # measured large and scaled: the PDF's glyphs are not hinted
        font.set_text(text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
        width = font.get_width_height()[0] / 64 / 10
        assert width <= _BOX_W - 2 * _PAD + 0.5, f"'{text}' is {width:.1f} px wide in a {_BOX_W - 2 * _PAD} px box"


def test_the_report_shows_the_policy_as_written_and_proves_it_is_that_file(recorded: RecordedDB) -> None:
    from govern.policy import load_policy
    from govern.report import render

    with LineageStore.open(recorded.url, read_only=True) as store:
        data = build_report_data(store, recorded.run.run_id)
    html = render(data, "html").decode()
    source = load_policy("default").source or ""
    comment = next(line for line in source.splitlines() if line.startswith("#") and len(line) > 20)
    assert data.policy is not None and data.policy.source == source and data.policy.source_matches_digest
    assert "The policy as written" in html and comment.replace('"', "&#34;").replace("'", "&#39;") in html
    assert "so this is exactly that file" in html
