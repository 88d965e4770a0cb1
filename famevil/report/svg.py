"""A line chart as inline SVG: what the HTML report draws its training curves with, so that the page
needs no plotting library and no file beside it."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

_LEFT, _RIGHT, _TOP, _BOTTOM = 46, 18, 8, 30  # room for the tick labels and the axis titles
_LEGEND_ROW, _CHAR = 14, 6  # legend line height and an average character width at font-size 10
_MARKED = 20  # a series of this many points or fewer also gets a dot per point (one point draws no line)


@dataclass(frozen=True)
class Series:
    label: str
    points: list[tuple[float, float]]  # (x, y), x increasing
    color: str
    dashed: bool = False


def line_chart(series: list[Series], x_label: str, y_label: str, width: int = 340, height: int = 200) -> str:
    """Lines on shared axes with ticks, axis titles and a legend below; `height` is the plot's, the
    legend adds its rows. x counts something (updates): its ticks are whole numbers."""
    xs = [x for line in series for x, _ in line.points]
    ys = [y for line in series for _, y in line.points]
    x_ticks, y_ticks = _ticks(min(xs), max(xs), smallest=1), _ticks(min(ys), max(ys))
    (x0, x1), (y0, y1) = (x_ticks[0], x_ticks[-1]), (y_ticks[0], y_ticks[-1])
    right, bottom = width - _RIGHT, height - _BOTTOM

    def across(x: float) -> float:
        return _LEFT + (x - x0) / (x1 - x0) * (right - _LEFT)

    def up(y: float) -> float:
        return bottom - (y - y0) / (y1 - y0) * (bottom - _TOP)

    parts = [f'<rect x="{_LEFT}" y="{_TOP}" width="{right - _LEFT}" height="{bottom - _TOP}" fill="none" stroke="#bbb"/>']
    for x in x_ticks:
        parts.append(f'<line x1="{across(x):.1f}" x2="{across(x):.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#888"/>')
        parts.append(f'<text x="{across(x):.1f}" y="{bottom + 14}" text-anchor="middle">{_number(x)}</text>')
    for y in y_ticks:
        parts.append(f'<line x1="{_LEFT}" x2="{right}" y1="{up(y):.1f}" y2="{up(y):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{_LEFT - 4}" y="{up(y):.1f}" dy="3" text-anchor="end">{_number(y)}</text>')
    parts.append(f'<text x="{(_LEFT + right) / 2}" y="{height - 4}" text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append(f'<text transform="translate(10 {(_TOP + bottom) / 2}) rotate(-90)" text-anchor="middle">{html.escape(y_label)}</text>')
    for line in series:
        dash = ' stroke-dasharray="4 3"' if line.dashed else ""
        points = " ".join(f"{across(x):.1f},{up(y):.1f}" for x, y in line.points)
        parts.append(f'<polyline class="series" points="{points}" fill="none" stroke="{line.color}" stroke-width="1.5"{dash}/>')
        if len(line.points) <= _MARKED:
            parts += [f'<circle cx="{across(x):.1f}" cy="{up(y):.1f}" r="2.5" fill="{line.color}"/>' for x, y in line.points]
    legend, rows = _legend(series, width, height)
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + rows * _LEGEND_ROW}" '
        f'font-family="sans-serif" font-size="10" role="img" aria-label="{html.escape(y_label)} over {html.escape(x_label)}">'
        + "".join(parts + legend)
        + "</svg>"
    )


def _legend(series: list[Series], width: int, top: int) -> tuple[list[str], int]:
    """A swatch and a label per series, wrapped into rows below the plot; the parts and the row count."""
    parts, x, row = [], _LEFT, 0
    for line in series:
        extent = 22 + _CHAR * len(line.label) + 10
        if x + extent > width and x > _LEFT:
            x, row = _LEFT, row + 1
        y = top + row * _LEGEND_ROW + 8
        dash = ' stroke-dasharray="4 3"' if line.dashed else ""
        parts.append(f'<line x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}" stroke="{line.color}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{x + 22}" y="{y}" dy="3">{html.escape(line.label)}</text>')
        x += extent
    return parts, row + 1 if series else 0


def _ticks(low: float, high: float, count: int = 5, smallest: float = 0.0) -> list[float]:
    """Round values from a multiple of a 1, 2 or 5 step (at least `smallest`) at or below `low` to one
    at or above `high`."""
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    rough = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(rough))
    step = max(smallest, next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [index * step for index in range(first, last + 1)]


def _number(value: float) -> str:
    return f"{value:.4g}"
