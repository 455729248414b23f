"""Numbers and links as the report pages show them: plain text, escaped by the templates (``publish.templating``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from modelwatch.core.metric_names import OPERATIONAL_METRICS, PERFORMANCE_METRICS


def href(*segments: str) -> str:
    """A relative link from path segments, each percent-encoded (``/`` inside a segment too); never cut."""
    return "/".join(quote(s, safe="=") if s not in ("..", ".") else s for s in segments)


def fmt(value: Any) -> str:
    """A number as a person reads it: counts with separators, others with 4 significant digits; ``–`` for none; strings as they are."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    v = float(value)
    if v != v:
        return "–"
    return f"{v:,.0f}" if v.is_integer() and abs(v) >= 1 else f"{v:,.4g}"


def metric_cell(value: Any, metric: str) -> str:
    """``value`` of the operational metric ``metric`` in its unit: ratios as percentages, USD with a dollar sign, others by :func:`fmt`."""
    if value is None:
        return "–"
    unit = OPERATIONAL_METRICS.get(metric, ("", ""))[0]
    if unit == "ratio":
        return f"{float(value):.2%}"
    if unit == "USD":
        return f"${float(value):,.4f}" if float(value) < 1 else f"${float(value):,.2f}"
    return fmt(value)


def pct(value: Any) -> str:
    """A relative lift as a signed percentage with two decimals (``+1.23%``); ``–`` for none."""
    return "–" if value is None else f"{100 * float(value):+.2f}%"


def change(value: float | None) -> str:
    """A relative change as a signed percentage with one decimal (``-4.5%``); ``–`` for none."""
    return "–" if value is None else f"{100 * value:+.1f}%"


def performance_value(value: Any, metric: str) -> str:
    """A performance metric's value (``publish.estimation_section``): ratios as percentages with one decimal, losses in the target's units."""
    if value is None:
        return "–"
    if PERFORMANCE_METRICS.get(metric, ("", ""))[0] == "ratio":
        return f"{100 * float(value):.1f}%"
    return fmt(value)
