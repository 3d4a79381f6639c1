"""Charts as inline SVG strings: no script, no external asset, text drawn in the page's own font."""
from __future__ import annotations

from html import escape
from typing import Sequence

from reports.labels import NO_DATA

AXIS = "#8a949e"
BAR = "#7aa6d6"
BAR_CURRENT = "#1f5fa8"
EXPECTED = "#e07b39"


def _fmt(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _month_label(month: str) -> str:
    return f"{int(month[5:7])}月"


def monthly_bars(
    months: Sequence[str],
    observed: Sequence[float | None],
    expected: Sequence[float | None] | None = None,
    width: int = 240,
    height: int = 96,
    label: str = "",
) -> str:
    """Bars of monthly events (the last month emphasised; None: a month without data, marked "—" instead of a
    bar that would read as none), the expected level as a dashed line through the months that have one (None:
    no baseline)."""
    pad_left, pad_right, pad_top, pad_bottom = 4, 4, 14, 16
    plot_w, plot_h = width - pad_left - pad_right, height - pad_top - pad_bottom
    n = max(1, len(observed))
    known = [(i, v) for i, v in enumerate(expected or []) if v is not None]
    top = max([*(v for v in observed if v is not None), *(v for _, v in known), 1.0])
    slot = plot_w / n
    bar_w = max(2.0, slot * 0.7)
    base = pad_top + plot_h
    parts = [
        f'<svg class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">',
        f'<line x1="{pad_left}" y1="{base}" x2="{width - pad_right}" y2="{base}" stroke="{AXIS}" stroke-width="1"/>',
    ]
    for i, value in enumerate(observed):
        x = pad_left + i * slot + (slot - bar_w) / 2
        if value is None:
            title = f"{months[i]}：{NO_DATA}" if i < len(months) else NO_DATA
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{base - 2}" font-size="10" text-anchor="middle" '
                         f'fill="{AXIS}">—<title>{escape(title)}</title></text>')
            continue
        h = plot_h * value / top
        colour = BAR_CURRENT if i == n - 1 else BAR
        title = f"{months[i]}：{_fmt(value)}件" if i < len(months) else _fmt(value)
        parts.append(
            f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{colour}">'
            f"<title>{escape(title)}</title></rect>"
        )
    if any(v for _, v in known):
        points = " ".join(f"{pad_left + i * slot + slot / 2:.1f},{base - plot_h * v / top:.1f}" for i, v in known)
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{EXPECTED}" stroke-width="1.5" stroke-dasharray="3,2"/>'
        )
    if observed:
        last_x = pad_left + (n - 1) * slot + slot / 2
        parts.append(
            f'<text x="{min(last_x, width - pad_right):.1f}" y="{max(10.0, base - plot_h * observed[-1] / top - 3):.1f}" '
            f'font-size="10" text-anchor="end" fill="{BAR_CURRENT}">{_fmt(observed[-1])}</text>'
        )
    if months:
        parts.append(f'<text x="{pad_left}" y="{height - 3}" font-size="10" fill="{AXIS}">{_month_label(months[0])}</text>')
        parts.append(
            f'<text x="{width - pad_right}" y="{height - 3}" font-size="10" fill="{AXIS}" text-anchor="end">'
            f"{_month_label(months[-1])}</text>"
        )
    parts.append(f'<text x="{pad_left}" y="10" font-size="10" fill="{AXIS}">峰值'
                 f'{_fmt(max([v for v in observed if v is not None] or [0]))}</text>')
    parts.append("</svg>")
    return "".join(parts)
