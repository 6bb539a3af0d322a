"""The run's lineage graph as a layered SVG: inputs on the left, the run and its stages in the middle,
outputs and signatures on the right. Deterministic (no layout engine, no randomness)."""

from __future__ import annotations

from html import escape

from govern.report.data import LineageGraph

_COLUMNS: dict[str, int] = {"parent_run": 0, "policy": 0, "base_model": 0, "dataset": 0, "run": 2, "stage": 3,
                            "signature": 5}
_FILL = {"parent_run": "#eef0f2", "policy": "#f3e8fb", "base_model": "#fff1dc", "dataset": "#e3f2ef",
         "run": "#dde9f7", "stage": "#dde9f7", "artifact": "#ffffff", "signature": "#fde4e7"}
_BOX_W, _BOX_H, _GAP_Y, _COL_W = 150, 34, 10, 178
_PAD = 6
_LABEL_PX, _DETAIL_PX = 10, 9
#: Advance widths (per em) of DejaVu Sans, the report's font, regular and bold, read from the font
#: (matplotlib's copy) for these characters; anything else counts as 1 em. A table rather than measuring
#: at render time: loading a font library costs more than rendering the whole report.
_CHARS = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~ …'
_REGULAR = dict(zip(_CHARS, (
    0.636, 0.636, 0.636, 0.636, 0.636, 0.636, 0.636, 0.636, 0.636, 0.636, 0.613, 0.635, 0.55, 0.635, 0.615,
    0.352, 0.635, 0.634, 0.278, 0.278, 0.579, 0.278, 0.974, 0.634, 0.612, 0.635, 0.635, 0.411, 0.521, 0.392,
    0.634, 0.592, 0.818, 0.592, 0.592, 0.525, 0.684, 0.686, 0.698, 0.77, 0.632, 0.575, 0.775, 0.752, 0.295,
    0.295, 0.656, 0.557, 0.863, 0.748, 0.787, 0.603, 0.787, 0.695, 0.635, 0.611, 0.732, 0.684, 0.989, 0.685,
    0.611, 0.685, 0.401, 0.46, 0.838, 0.636, 0.95, 0.78, 0.275, 0.39, 0.39, 0.5, 0.838, 0.318, 0.361, 0.318,
    0.337, 0.337, 0.337, 0.838, 0.838, 0.838, 0.531, 1.0, 0.39, 0.337, 0.39, 0.838, 0.5, 0.5, 0.636, 0.337,
    0.636, 0.838, 0.318, 1.0,
), strict=True))
_BOLD = dict(zip(_CHARS, (
    0.696, 0.696, 0.696, 0.696, 0.696, 0.696, 0.696, 0.696, 0.696, 0.696, 0.675, 0.716, 0.593, 0.716, 0.678,
    0.435, 0.716, 0.712, 0.343, 0.343, 0.665, 0.343, 1.042, 0.712, 0.687, 0.716, 0.716, 0.493, 0.595, 0.478,
    0.712, 0.652, 0.924, 0.645, 0.652, 0.582, 0.774, 0.762, 0.734, 0.83, 0.683, 0.683, 0.821, 0.837, 0.372,
    0.372, 0.775, 0.637, 0.995, 0.837, 0.85, 0.733, 0.85, 0.77, 0.72, 0.682, 0.812, 0.774, 1.103, 0.771,
    0.724, 0.725, 0.456, 0.521, 0.838, 0.696, 1.002, 0.872, 0.306, 0.457, 0.457, 0.523, 0.838, 0.38, 0.415,
    0.38, 0.365, 0.4, 0.4, 0.838, 0.838, 0.838, 0.58, 1.0, 0.457, 0.365, 0.457, 0.838, 0.5, 0.5, 0.712,
    0.365, 0.712, 0.838, 0.348, 1.0,
), strict=True))


def text_width(text: str, font_px: float, *, bold: bool = False) -> float:
    table = _BOLD if bold else _REGULAR
    return sum(table.get(ch, 1.0) for ch in text) * font_px


def fit(text: str, font_px: float, *, bold: bool = False, width: float = _BOX_W - 2 * _PAD) -> str:
    """``text`` cut (with an ellipsis) so that it fits ``width`` pixels at ``font_px``."""
    if text_width(text, font_px, bold=bold) <= width:
        return text
    while text and text_width(text + "…", font_px, bold=bold) > width:
        text = text[:-1]
    return text + "…"


def lineage_svg(graph: LineageGraph) -> str:
    if not graph.nodes:
        return ""
    inputs = {e.source for e in graph.edges if e.relation == "input to"}
    columns: dict[int, list[str]] = {}
    for n in graph.nodes:
        col = (1 if n.id in inputs else 4) if n.kind == "artifact" else _COLUMNS.get(n.kind, 4)
        columns.setdefault(col, []).append(n.id)
    used = sorted(columns)
    remap = {c: i for i, c in enumerate(used)}
    rows = max(len(v) for v in columns.values())
    width = len(used) * _COL_W + 10
    height = rows * (_BOX_H + _GAP_Y) + 40
    pos: dict[str, tuple[float, float]] = {}
    for col, ids in columns.items():
        x: float = 10 + remap[col] * _COL_W
        offset = (rows - len(ids)) * (_BOX_H + _GAP_Y) / 2
        for i, node_id in enumerate(ids):
            pos[node_id] = (x, 30 + offset + i * (_BOX_H + _GAP_Y))
    kinds = {n.id: n.kind for n in graph.nodes}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart lineage" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="Lineage graph of the run" '
           'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="10">',
           "<title>Lineage graph of the run</title>",
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>']
    for e in graph.edges:
        if e.source not in pos or e.target not in pos or e.relation == "then":
            continue
        (sx, sy), (tx, ty) = pos[e.source], pos[e.target]
        if sx == tx:  # same column: draw a side arc
            x1, y1, x2, y2 = sx + _BOX_W, sy + _BOX_H / 2, tx + _BOX_W, ty + _BOX_H / 2
            out.append(f'<path d="M{x1:.1f},{y1:.1f} C{x1 + 20:.1f},{y1:.1f} {x2 + 20:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" '
                       'fill="none" stroke="#9aa3ab"/>')
            continue
        if sx > tx:
            (sx, sy), (tx, ty) = (tx, ty), (sx, sy)
        x1, y1, x2, y2 = sx + _BOX_W, sy + _BOX_H / 2, tx, ty + _BOX_H / 2
        mid = (x1 + x2) / 2
        out.append(f'<path d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} {x2:.1f},{y2:.1f}" '
                   'fill="none" stroke="#9aa3ab"/>')
    for n in graph.nodes:
        x, y = pos[n.id]
        label = fit(n.label, _LABEL_PX, bold=True)
        detail = fit(n.detail or "", _DETAIL_PX)
        out.append(f'<g><title>{escape(n.kind)}: {escape(n.label)} {escape(n.detail or "")}</title>'
                   f'<rect x="{x}" y="{y:.1f}" width="{_BOX_W}" height="{_BOX_H}" rx="4" '
                   f'fill="{_FILL.get(kinds[n.id], "#ffffff")}" stroke="#7d8791"/>'
                   f'<text x="{x + _PAD}" y="{y + 14:.1f}" font-weight="bold" font-size="{_LABEL_PX}">'
                   f'{escape(label)}</text>'
                   f'<text x="{x + _PAD}" y="{y + 27:.1f}" fill="#5c6770" font-size="{_DETAIL_PX}">'
                   f'{escape(detail)}</text></g>')
    out.append("</svg>")
    return "".join(out)
