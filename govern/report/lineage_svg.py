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
        x = 10 + remap[col] * _COL_W
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
        label = n.label if len(n.label) <= 26 else n.label[:25] + "…"
        detail = n.detail or ""
        if len(detail) > 26:
            detail = detail[:25] + "…"
        out.append(f'<g><title>{escape(n.kind)}: {escape(n.label)} {escape(n.detail or "")}</title>'
                   f'<rect x="{x}" y="{y:.1f}" width="{_BOX_W}" height="{_BOX_H}" rx="4" '
                   f'fill="{_FILL.get(kinds[n.id], "#ffffff")}" stroke="#7d8791"/>'
                   f'<text x="{x + 6}" y="{y + 14:.1f}" font-weight="bold">{escape(label)}</text>'
                   f'<text x="{x + 6}" y="{y + 27:.1f}" fill="#5c6770">{escape(detail)}</text></g>')
    out.append("</svg>")
    return "".join(out)
