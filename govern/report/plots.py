"""Small hand-written SVG charts for reports (line charts and bar charts with confidence intervals).

Why not matplotlib: a report has five or six small charts, and hand-written SVG renders them in
microseconds, embeds in HTML and WeasyPrint's PDF alike, needs no font files (it names generic
families the viewer already has), and makes the HTML byte-for-byte deterministic. Every chart has a
``<title>`` and an ``aria-label`` so screen readers and text extraction see what it shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f5fa8", "#d1495b", "#2a9d8f", "#e9a03b", "#6a4c93", "#5c6770", "#8ab17d", "#c96b2c")
FONT = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""


@dataclass
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    color: str | None = None
    dashed: bool = False
    markers: bool = False


@dataclass
class Bar:
    label: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    note: str = ""
    color: str | None = None


@dataclass
class _Axis:
    low: float
    high: float
    ticks: list[float] = field(default_factory=list)

    def scale(self, value: float, start: float, end: float) -> float:
        span = self.high - self.low or 1.0
        return start + (value - self.low) / span * (end - start)


def nice_ticks(low: float, high: float, count: int = 5) -> _Axis:
    """Round tick positions (1, 2, 2.5, 5 × 10^k) covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        low, high = 0.0, 1.0
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    end = math.ceil(high / step) * step
    ticks = []
    value = start
    while value <= end + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return _Axis(start, end, ticks)


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.0e}" if abs(value) < 0.01 else f"{value:,.0f}"
    return f"{value:.3g}"


def _open(width: int, height: int, title: str) -> list[str]:
    t = escape(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{t}" {FONT} font-size="11">',
        f"<title>{t}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{width / 2:.1f}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{t}</text>',
    ]


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
               x_range: tuple[float, float] | None = None, y_range: tuple[float, float] | None = None,
               diagonal: bool = False, log_x: bool = False, width: int = 440, height: int = 300) -> str:
    """Lines over a shared x axis. ``diagonal`` draws y = x (chance for ROC, perfect calibration)."""
    pts = [(x, y) for s in series for x, y in s.points if _finite(x) and _finite(y)]
    if log_x:
        pts = [(x, y) for x, y in pts if x > 0]
    if x_range is None:
        xs = [p[0] for p in pts] or [0.0, 1.0]
        x_range = (min(xs), max(xs))
    if y_range is None:
        ys = [p[1] for p in pts] or [0.0, 1.0]
        y_range = (min(ys), max(ys))
    left, right, top, bottom = 58, width - 14, 30, height - 58
    if log_x:
        lo = math.floor(math.log10(max(x_range[0], 1e-12)))
        hi = math.ceil(math.log10(max(x_range[1], 10 ** lo * 10)))
        xa = _Axis(float(lo), float(hi), [float(k) for k in range(lo, hi + 1)])

        def xpos(v: float) -> float:
            return xa.scale(math.log10(max(v, 1e-300)), left, right)
    else:
        xa = nice_ticks(*x_range)

        def xpos(v: float) -> float:
            return xa.scale(v, left, right)
    ya = nice_ticks(*y_range)

    def ypos(v: float) -> float:
        return ya.scale(v, bottom, top)

    out = _open(width, height, title)
    out.append(_grid(xa, ya, left, right, top, bottom, xpos_ticks=[xa.scale(t, left, right) for t in xa.ticks],
                     x_labels=[f"1e{int(t)}" if log_x else _fmt(t) for t in xa.ticks]))
    if diagonal:
        lo_d, hi_d = max(xa.low, ya.low), min(xa.high, ya.high)
        if hi_d > lo_d and not log_x:
            out.append(f'<line x1="{xpos(lo_d):.1f}" y1="{ypos(lo_d):.1f}" x2="{xpos(hi_d):.1f}" '
                       f'y2="{ypos(hi_d):.1f}" stroke="#9aa3ab" stroke-dasharray="4 3"/>')
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        good = [(x, y) for x, y in s.points if _finite(x) and _finite(y) and (not log_x or x > 0)]
        if not good:
            continue
        path = " ".join(f"{xpos(x):.1f},{ypos(min(max(y, ya.low), ya.high)):.1f}" for x, y in good)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8"{dash} points="{path}"/>')
        if s.markers:
            out.extend(f'<circle cx="{xpos(x):.1f}" cy="{ypos(y):.1f}" r="2.6" fill="{color}"/>' for x, y in good)
    out.append(_axis_labels(x_label, y_label, left, right, top, bottom, width, height))
    out.append(_legend([(s.name, s.color or PALETTE[i % len(PALETTE)], s.dashed) for i, s in enumerate(series)],
                       left, height - 14))
    out.append("</svg>")
    return "".join(out)


def bar_chart(bars: Sequence[Bar], *, title: str, x_label: str, reference: float | None = None,
              limit: float | None = None, limit_label: str = "policy limit", width: int = 500) -> str:
    """Horizontal bars with CI whiskers; ``reference`` marks parity (0 for differences, 1 for ratios)."""
    row = 24
    left, right, top = 210, width - 20, 30
    height = top + row * max(len(bars), 1) + 58
    bottom = height - 52
    values = [v for b in bars for v in (b.value, b.ci_low, b.ci_high) if v is not None and _finite(v)]
    values += [v for v in (reference, limit) if v is not None]
    xa = nice_ticks(min(values + [0.0]), max(values + [0.0]) or 1.0)

    def xpos(v: float) -> float:
        return xa.scale(v, left, right)

    out = _open(width, height, title)
    out.append(_grid(xa, None, left, right, top, bottom, xpos_ticks=[xpos(t) for t in xa.ticks],
                     x_labels=[_fmt(t) for t in xa.ticks]))
    base = xpos(reference if reference is not None else max(xa.low, 0.0))
    for i, b in enumerate(bars):
        y = top + i * row + 4
        label = escape(b.label if len(b.label) <= 34 else b.label[:33] + "…")
        out.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{label}</text>')
        if b.value is None or not _finite(b.value):
            out.append(f'<text x="{left + 4}" y="{y + 12}" fill="#5c6770">{escape(b.note or "no value")}</text>')
            continue
        color = b.color or PALETTE[0]
        x1, x2 = sorted((base, xpos(b.value)))
        out.append(f'<rect x="{x1:.1f}" y="{y}" width="{max(x2 - x1, 1):.1f}" height="{row - 9}" fill="{color}" '
                   'fill-opacity="0.8"/>')
        if b.ci_low is not None and b.ci_high is not None and _finite(b.ci_low) and _finite(b.ci_high):
            cy = y + (row - 9) / 2
            lo, hi = xpos(b.ci_low), xpos(b.ci_high)
            out.append(f'<line x1="{lo:.1f}" y1="{cy:.1f}" x2="{hi:.1f}" y2="{cy:.1f}" stroke="#222" '
                       'stroke-width="1.3"/>')
            out.extend(f'<line x1="{x:.1f}" y1="{cy - 4:.1f}" x2="{x:.1f}" y2="{cy + 4:.1f}" stroke="#222" '
                       'stroke-width="1.3"/>' for x in (lo, hi))
        if b.note:
            out.append(f'<text x="{right}" y="{y + 12}" text-anchor="end" fill="#5c6770">{escape(b.note)}</text>')
    if reference is not None:
        out.append(f'<line x1="{xpos(reference):.1f}" y1="{top}" x2="{xpos(reference):.1f}" y2="{bottom}" '
                   'stroke="#222" stroke-width="1"/>')
    if limit is not None:
        out.append(f'<line x1="{xpos(limit):.1f}" y1="{top}" x2="{xpos(limit):.1f}" y2="{bottom}" '
                   'stroke="#d1495b" stroke-width="1.5" stroke-dasharray="5 3"/>')
    out.append(f'<text x="{(left + right) / 2:.1f}" y="{height - 22}" text-anchor="middle">{escape(x_label)}</text>')
    legend = [("estimate with 95% CI", PALETTE[0], False)]
    if limit is not None:
        legend.append((limit_label, "#d1495b", True))
    out.append(_legend(legend, left, height - 6))
    out.append("</svg>")
    return "".join(out)


def _finite(v: float | None) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def _grid(xa: _Axis, ya: _Axis | None, left: float, right: float, top: float, bottom: float, *,
          xpos_ticks: list[float], x_labels: list[str]) -> str:
    parts = [f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="none" '
             'stroke="#c5cbd1"/>']
    for x, label in zip(xpos_ticks, x_labels, strict=True):
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#eef0f2"/>')
        # Labels at the corners grow inwards, so the first one never runs into the y axis' "0".
        anchor = "start" if abs(x - left) < 1 else "end" if abs(x - right) < 1 else "middle"
        parts.append(f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="{anchor}">{label}</text>')
    if ya is not None:
        for t in ya.ticks:
            y = ya.scale(t, bottom, top)
            parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#eef0f2"/>')
            parts.append(f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    return "".join(parts)


def _axis_labels(x_label: str, y_label: str, left: float, right: float, top: float, bottom: float,
                 width: int, height: int) -> str:
    cx, cy = (left + right) / 2, (top + bottom) / 2
    return (f'<text x="{cx:.1f}" y="{bottom + 30}" text-anchor="middle">{escape(x_label)}</text>'
            f'<text x="14" y="{cy:.1f}" text-anchor="middle" transform="rotate(-90 14 {cy:.1f})">'
            f"{escape(y_label)}</text>")


def _legend(items: list[tuple[str, str, bool]], x: float, y: float) -> str:
    parts = []
    for name, color, dashed in items:
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 18:.1f}" y2="{y - 4:.1f}" stroke="{color}" '
                     f'stroke-width="2.5"{dash}/>')
        label = escape(name)
        parts.append(f'<text x="{x + 22:.1f}" y="{y:.1f}">{label}</text>')
        x += 30 + 6.2 * len(name)
    return "".join(parts)
