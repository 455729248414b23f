"""Inline SVG charts for the report pages: trend lines and forest plots, generated in Python.

The output is plain SVG 1.1 markup (well-formed XML, no script, no external reference) meant
to sit inside an HTML page, so a page stays self-contained: it opens from S3, a local
mirror or an email attachment with no JavaScript and no network. Every text that ends up
in the markup (series names, labels, titles, notes) goes through ``publish.text.attr``:
control characters replaced, cut at ``LABEL_CHARS``, escaped with ``quote=True``, so it is
safe in element content and in attribute values alike and the SVG stays well-formed XML.
A ``<text>`` holding one label is its own bidi paragraph; a tooltip that composes a label
with numbers isolates the label (FSI … PDI), so an override in it cannot reorder the numbers.

Axis ticks use Heckbert's "nice numbers" (P. Heckbert, "Nice numbers for graph labels",
Graphics Gems, 1990): steps of 1, 2, 5 or 10 times a power of ten. Colours are the
Okabe–Ito palette (Okabe & Ito 2008), which stays distinguishable under the common forms
of colour blindness; series are also told apart by their legend order and hover titles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelwatch.publish.text import LABEL_CHARS, attr, isolate

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
_FONT = 'font-family="system-ui,-apple-system,Segoe UI,sans-serif"'

Number = float | int
Formatter = Callable[[float], str]


def _attr(text: str) -> str:
    """Text made safe for element content and for double- or single-quoted attribute values (``publish.text.attr`` at ``LABEL_CHARS``)."""
    return attr(text, LABEL_CHARS)


def short_number(value: float) -> str:
    """Compact axis label: 1.2k, 3.4M, 0.004, 12."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def percent(value: float) -> str:
    """A ratio as a percentage label (0.012 -> 1.2%)."""
    return f"{100 * value:.3g}%"


def signed_percent(value: float) -> str:
    return "0%" if value == 0 else f"{100 * value:+.3g}%"


def usd(value: float) -> str:
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.3g}"


@dataclass(frozen=True)
class LinearScale:
    """Maps the interval ``domain`` linearly onto ``span`` (pixels); a zero-width domain maps to the span's middle."""

    domain: tuple[float, float]
    span: tuple[float, float]

    def __call__(self, value: float) -> float:
        lo, hi = self.domain
        a, b = self.span
        if hi == lo:
            return (a + b) / 2
        return a + (value - lo) * (b - a) / (hi - lo)


def nice_number(x: float, round_: bool) -> float:
    """Heckbert's nice number: 1, 2, 5 or 10 times a power of ten close to ``x`` (> 0)."""
    exponent = math.floor(math.log10(x))
    fraction = x / 10**exponent
    if round_:
        nice = 1 if fraction < 1.5 else 2 if fraction < 3 else 5 if fraction < 7 else 10
    else:
        nice = 1 if fraction <= 1 else 2 if fraction <= 2 else 5 if fraction <= 5 else 10
    return nice * 10**exponent


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Tick values covering ``[lo, hi]`` with a nice step (Heckbert 1990); the first tick <= lo, the last >= hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"tick range must be finite, got [{lo}, {hi}]")
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = nice_number(nice_number(hi - lo, round_=False) / max(count - 1, 1), round_=True)
    start, stop = math.floor(lo / step) * step, math.ceil(hi / step) * step
    n = int(round((stop - start) / step))
    return [round(start + i * step, 12) for i in range(n + 1)]


@dataclass(frozen=True)
class Series:
    """One line: ``values[i]`` belongs to the i-th x position; ``None`` (or NaN) is a gap."""

    name: str
    values: Sequence[Number | None]
    dashed: bool = False


def _finite(value: Number | None) -> bool:
    return value is not None and math.isfinite(float(value))


def runs(values: Sequence[Number | None]) -> list[list[int]]:
    """Indices of the consecutive runs of present values (a missing value breaks the line)."""
    out: list[list[int]] = []
    current: list[int] = []
    for i, value in enumerate(values):
        if _finite(value):
            current.append(i)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


@dataclass(frozen=True)
class ChartBox:
    """Outer size and the margins around the plotting area, in pixels."""

    width: int = 540
    height: int = 230
    left: int = 64
    right: int = 16
    top: int = 30
    bottom: int = 58

    @property
    def x_span(self) -> tuple[float, float]:
        return (self.left, self.width - self.right)

    @property
    def y_span(self) -> tuple[float, float]:
        return (self.height - self.bottom, self.top)


def _legend(items: Sequence[tuple[str, str]], x: float, y: float, max_x: float) -> list[str]:
    """Legend entries (swatch + name) laid out left to right, wrapping at ``max_x``."""
    parts, cx, cy = [], x, y
    for name, swatch in items:
        width = 32 + 6.6 * len(name)
        if cx + width > max_x and cx > x:
            cx, cy = x, cy + 15
        parts.append(f'<g class="legend-item" transform="translate({cx:.1f},{cy:.1f})">{swatch}'
                     f'<text x="22" y="4" font-size="11" {_FONT}>{_attr(name)}</text></g>')
        cx += width
    return parts


def line_chart(x_labels: Sequence[str], series: Sequence[Series], *, title: str, y_label: str, x_label: str = "day (UTC)",
               y_format: Formatter = short_number, include_zero: bool = True, box: ChartBox | None = None) -> str:
    """A trend chart: one polyline per series over the x positions, a gap wherever a value is missing.

    A run of a single present value is drawn as a dot, so an isolated day stays visible.
    Every point carries an SVG ``<title>`` (its series, day and value) as a hover tooltip.
    With no value at all the chart says so instead of drawing empty axes.
    """
    box = box or ChartBox()
    if not x_labels:
        raise ValueError("line_chart needs at least one x position")
    for s in series:
        if len(s.values) != len(x_labels):
            raise ValueError(f"series {s.name!r} has {len(s.values)} values for {len(x_labels)} x positions")
    present = [float(v) for s in series for v in s.values if _finite(v)]
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart line-chart" role="img" width="{box.width}" height="{box.height}" '
            f'viewBox="0 0 {box.width} {box.height}"><title>{_attr(title)}</title>'
            f'<text x="{box.left}" y="18" font-size="13" font-weight="600" {_FONT}>{_attr(title)}</text>')
    if not present:
        return head + (f'<text class="no-data" x="{box.width / 2:.1f}" y="{box.height / 2:.1f}" text-anchor="middle" font-size="12" fill="#7b8794" '
                       f'{_FONT}>no data in this window</text></svg>')
    lo, hi = min(present), max(present)
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    ticks = nice_ticks(lo, hi)
    y = LinearScale((ticks[0], ticks[-1]), box.y_span)
    x = LinearScale((0, max(len(x_labels) - 1, 1)), box.x_span) if len(x_labels) > 1 else LinearScale((0, 0), box.x_span)
    parts = [head]
    x0, x1 = box.x_span
    for t in ticks:
        parts.append(f'<line class="grid" x1="{x0}" x2="{x1}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e4e7eb"/>'
                     f'<text class="y-tick" x="{x0 - 6}" y="{y(t) + 4:.1f}" text-anchor="end" font-size="10" {_FONT}>{_attr(y_format(t))}</text>')
    every = max(1, math.ceil(len(x_labels) / 8))
    for i, label in enumerate(x_labels):
        if (len(x_labels) - 1 - i) % every == 0:  # counted back from the latest day, which is always labelled
            parts.append(f'<text class="x-tick" x="{x(i):.1f}" y="{box.height - box.bottom + 14}" text-anchor="middle" font-size="10" '
                         f'{_FONT}>{_attr(label)}</text>')
    y0 = box.height - box.bottom
    parts.append(f'<line class="axis" x1="{x0}" x2="{x1}" y1="{y0}" y2="{y0}" stroke="#52606d"/>'
                 f'<line class="axis" x1="{x0}" x2="{x0}" y1="{box.top}" y2="{y0}" stroke="#52606d"/>'
                 f'<text class="x-label" x="{(x0 + x1) / 2:.1f}" y="{y0 + 30}" text-anchor="middle" font-size="11" {_FONT}>{_attr(x_label)}</text>'
                 f'<text class="y-label" transform="translate(14,{(box.top + y0) / 2:.1f}) rotate(-90)" text-anchor="middle" font-size="11" '
                 f'{_FONT}>{_attr(y_label)}</text>')
    legend = []
    for k, s in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        parts.append(f'<g class="series" data-series="{_attr(s.name)}">')
        for run in runs(s.values):
            if len(run) > 1:
                points = " ".join(f"{x(i):.1f},{y(float(s.values[i])):.1f}" for i in run)
                parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for i, v in enumerate(s.values):
            if _finite(v):
                parts.append(f'<circle cx="{x(i):.1f}" cy="{y(float(v)):.1f}" r="2.6" fill="{color}">'
                             f'<title>{_attr(f"{isolate(s.name)} · {isolate(x_labels[i])}: {y_format(float(v))}")}</title></circle>')
        parts.append("</g>")
        legend.append((s.name, f'<line x1="0" x2="16" y1="0" y2="0" stroke="{color}" stroke-width="2"{dash}/>'))
    if len(series) > 1:
        parts += _legend(legend, x0, box.height - 12, box.width - box.right)
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Interval:
    """One row of a forest plot: an estimate with its interval, and optionally the threshold it is judged against."""

    label: str
    estimate: float | None
    low: float | None
    high: float | None
    verdict: str = ""
    threshold: float | None = None
    note: str = ""

    @property
    def drawn(self) -> bool:
        return all(_finite(v) for v in (self.estimate, self.low, self.high))


_VERDICT_COLOR = {"better": "#1f6f2b", "non_inferior": "#1f6f2b", "worse": "#a61b1b", "inferior": "#a61b1b"}


def forest_plot(rows: Sequence[Interval], *, title: str, x_label: str, x_format: Formatter = signed_percent, width: int = 640) -> str:
    """A forest plot: per row a point estimate with its interval, a vertical line at zero (no effect) and the row's threshold.

    Rows share one horizontal axis, so pass rows on one scale (relative lifts, or absolute
    differences of one unit). Rows without an interval (the test abstained) are listed with
    their note instead of a mark.
    """
    if not rows:
        raise ValueError("forest_plot needs at least one row")
    label_w, right, top, row_h = 200, 20, 30, 26
    height = top + row_h * len(rows) + 70
    plotted = [v for r in rows if r.drawn for v in (r.low, r.high, r.estimate)]
    plotted += [r.threshold for r in rows if _finite(r.threshold)]
    lo, hi = min([0.0, *plotted]), max([0.0, *plotted])
    pad = (hi - lo) * 0.05 or 0.01
    ticks = nice_ticks(lo - pad, hi + pad, 6)
    x = LinearScale((ticks[0], ticks[-1]), (label_w, width - right))
    bottom = top + row_h * len(rows)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart forest-plot" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><title>{_attr(title)}</title>'
             f'<text x="8" y="18" font-size="13" font-weight="600" {_FONT}>{_attr(title)}</text>']
    for t in ticks:
        parts.append(f'<line class="grid" x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{bottom}" stroke="#eef0f2"/>'
                     f'<text class="x-tick" x="{x(t):.1f}" y="{bottom + 14}" text-anchor="middle" font-size="10" {_FONT}>{_attr(x_format(t))}</text>')
    parts.append(f'<line class="zero" x1="{x(0.0):.1f}" x2="{x(0.0):.1f}" y1="{top - 4}" y2="{bottom}" stroke="#52606d" stroke-width="1.5"/>'
                 f'<line class="axis" x1="{label_w}" x2="{width - right}" y1="{bottom}" y2="{bottom}" stroke="#52606d"/>'
                 f'<text class="x-label" x="{(label_w + width - right) / 2:.1f}" y="{bottom + 32}" text-anchor="middle" font-size="11" '
                 f'{_FONT}>{_attr(x_label)}</text>')
    for k, r in enumerate(rows):
        cy = top + row_h * k + row_h / 2
        color = _VERDICT_COLOR.get(r.verdict, "#334e68")
        parts.append(f'<g class="row" data-label="{_attr(r.label)}" data-verdict="{_attr(r.verdict)}">'
                     f'<text x="8" y="{cy + 4:.1f}" font-size="11" {_FONT}>{_attr(r.label)}</text>')
        if _finite(r.threshold):
            tx = x(float(r.threshold))
            parts.append(f'<line class="threshold" x1="{tx:.1f}" x2="{tx:.1f}" y1="{cy - 10:.1f}" y2="{cy + 10:.1f}" stroke="#a61b1b" '
                         f'stroke-width="1.5" stroke-dasharray="3 2"><title>{_attr(f"threshold {x_format(float(r.threshold))}")}</title></line>')
        if r.drawn:
            lx, hx, ex = x(float(r.low)), x(float(r.high)), x(float(r.estimate))
            tip = _attr(f"{isolate(r.label)}: {x_format(float(r.estimate))} [{x_format(float(r.low))}, {x_format(float(r.high))}] {r.verdict}".strip())
            parts.append(f'<line class="ci" x1="{lx:.1f}" x2="{hx:.1f}" y1="{cy:.1f}" y2="{cy:.1f}" stroke="{color}" stroke-width="2"/>'
                         f'<line x1="{lx:.1f}" x2="{lx:.1f}" y1="{cy - 5:.1f}" y2="{cy + 5:.1f}" stroke="{color}" stroke-width="2"/>'
                         f'<line x1="{hx:.1f}" x2="{hx:.1f}" y1="{cy - 5:.1f}" y2="{cy + 5:.1f}" stroke="{color}" stroke-width="2"/>'
                         f'<rect class="estimate" x="{ex - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8" fill="{color}"><title>{tip}</title></rect>')
        else:
            parts.append(f'<text class="abstained" x="{label_w + 6}" y="{cy + 4:.1f}" font-size="10" fill="#7b8794" {_FONT}>'
                         f'{_attr(r.note or "no interval")}</text>')
        parts.append("</g>")
    legend = [("estimate and interval", '<line x1="0" x2="16" y1="0" y2="0" stroke="#334e68" stroke-width="2"/>'
                                        '<rect x="4" y="-4" width="8" height="8" fill="#334e68"/>'),
              ("no effect (0)", '<line x1="8" x2="8" y1="-6" y2="6" stroke="#52606d" stroke-width="1.5"/>')]
    if any(_finite(r.threshold) for r in rows):
        legend.append(("threshold (margin or MDE)", '<line x1="8" x2="8" y1="-6" y2="6" stroke="#a61b1b" stroke-width="1.5" stroke-dasharray="3 2"/>'))
    parts += _legend(legend, 8, height - 12, width - right)
    parts.append("</svg>")
    return "".join(parts)
