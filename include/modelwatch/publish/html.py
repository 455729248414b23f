"""HTML building blocks shared by every page section: escaping, numbers, tables, badges, the page shell."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from modelwatch.core.metric_names import OPERATIONAL_METRICS
from modelwatch.publish.text import LABEL_CHARS, attr, h, label

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'"
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5rem auto;max-width:1180px;color:#1f2933;padding:0 1rem;line-height:1.45;overflow-wrap:anywhere}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2.2rem;border-bottom:2px solid #d9e2ec;padding-bottom:.3rem}
h3{font-size:1rem;margin:1.2rem 0 .3rem}a{color:#0b69a3}nav{font-size:.9rem;margin-bottom:.6rem}
.table-box{overflow-x:auto;max-width:100%;margin:.5rem 0}table{border-collapse:collapse;width:100%;font-size:.88rem}th,td{padding:.32rem .55rem;border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:top}
td{overflow-wrap:anywhere}th{background:#f5f7fa;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;padding:.1rem .55rem;border-radius:1rem;font-weight:600;font-size:.8rem;white-space:nowrap}
.ok,.none,.stable,.non_inferior,.better,.promote,.close{background:#e3f9e5;color:#1f6f2b}
.breach,.high,.drift,.inferior,.worse,.roll_back,.alert{background:#ffe3e3;color:#a61b1b}
.medium,.stop,.changed,.higher,.rolled_back{background:#ffe8d9;color:#ad4e00}
.no_traffic,.abstain,.low,.inconclusive,.continue,.insufficient_labels,.not_started,.no_baseline,.not_checked{background:#fff3c4;color:#8d6b00}
.bar{background:#5a8dee;height:.8rem;display:inline-block;border-radius:2px}.muted{color:#616e7c;font-size:.85rem}
.glance{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:.7rem;margin:1rem 0}
.card{border:1px solid #d9e2ec;border-radius:.5rem;padding:.6rem .75rem;background:#fbfcfd}
.card .q{font-size:.8rem;text-transform:uppercase;letter-spacing:.04em;color:#52606d}.card .h{font-weight:600;margin:.25rem 0;overflow-wrap:anywhere}
.card .d{font-size:.82rem;color:#52606d;overflow-wrap:anywhere}
.charts{display:flex;flex-wrap:wrap;gap:.8rem}.charts svg{border:1px solid #eef0f2;border-radius:.4rem;background:#fff;max-width:100%;height:auto}
.example{border:1px solid #d9e2ec;border-radius:.5rem;padding:.6rem .8rem;margin:.7rem 0}
.example pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f5f7fa;padding:.4rem .6rem;border-radius:.3rem;margin:.2rem 0 .5rem;font-size:.85rem}
.example .label{font-size:.78rem;text-transform:uppercase;color:#52606d;letter-spacing:.04em}
"""


def href(*segments: str) -> str:
    """A relative link from path segments, each percent-encoded (``/`` inside a segment too), then HTML-escaped; never cut."""
    return attr("/".join(quote(s, safe="=") if s not in ("..", ".") else s for s in segments), limit=None)


def fmt(value: Any) -> str:
    """A number as a person reads it: counts with separators, others with 4 significant digits; strings escaped."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return h(value)
    v = float(value)
    if v != v:
        return "–"
    return f"{v:,.0f}" if v.is_integer() and abs(v) >= 1 else f"{v:,.4g}"


def metric_cell(metric: str, value: Any) -> str:
    if value is None:
        return "–"
    unit = OPERATIONAL_METRICS.get(metric, ("", ""))[0]
    if unit == "ratio":
        return f"{float(value):.2%}"
    if unit == "USD":
        return f"${float(value):,.4f}" if float(value) < 1 else f"${float(value):,.2f}"
    return fmt(value)


def table(headers: list[str], rows: Iterable[list[str]], numeric_from: int = 1, cls: str = "", text_from: int | None = None) -> str:
    """A table in a box that scrolls sideways when the table is wider than the page; ``headers`` are escaped here, cells must already be HTML.

    Columns ``numeric_from`` up to (not including) ``text_from`` are numbers: right-aligned,
    never wrapped. The others are text (notes and reasons after the numbers too), which wraps.
    """
    numeric = range(numeric_from, len(headers) if text_from is None else text_from)
    head = "".join(f"<th>{label(x)}</th>" for x in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows
    )
    return f'<div class="table-box"><table class="{attr(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{attr(title)}</title><style>{_CSS}</style></head>'
            f"<body>{body}</body></html>")


def badge(state: str, text: str | None = None) -> str:
    """A coloured badge for ``state`` saying ``text`` (the state's words by default).

    A badge is an inline-block, its own bidi paragraph, so its text needs no ``<bdi>``.
    """
    words = state.replace("_", " ") if text is None else text
    return f'<span class="badge {attr(state, LABEL_CHARS)}">{attr(words, LABEL_CHARS)}</span>'
