"""Reading PromQL back: the series and labels the dashboard's queries refer to (the tests check them against what runs emit)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from modelwatch.observe.grafana import dashboard

# --- reading PromQL back ---------------------------------------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^{}]*)\}")
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")\s*')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_DURATION = re.compile(r"\[[^\]]*\]|\boffset\s+-?[0-9A-Za-z$_]+")
KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless", "atan2", "inf", "nan",
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
})
TEMPLATE_VALUES = {"$model": "m", "$cadence": "daily", "$variant": ".*", "$segment": ".*", "$experiment": ".*", "$baseline_window": "7d",
                   "${datasource}": "prometheus"}


@dataclass(frozen=True)
class PromqlRefs:
    """What an expression reads: metric names, label matchers per metric, and labels named in by/without/on/ignoring/group_*."""

    metrics: frozenset[str]
    matchers: tuple[tuple[str, str, str, str], ...]  # (metric, label, operator, quoted value)
    grouping: frozenset[str]


def promql_refs(expr: str) -> PromqlRefs:
    """Metric names, matchers and grouping labels of a PromQL expression.

    A reader of the subset of PromQL the dashboard writes (selectors, range vectors, offsets,
    aggregations with ``by``/``without``, vector matching): string literals are set aside
    before identifiers are read, and an identifier followed by ``(`` is a function. Raises
    ValueError for a selector whose matchers it cannot read. Full parsing is ``promtool check
    rules`` over :func:`as_recording_rules`.
    """
    matchers: list[tuple[str, str, str, str]] = []
    metrics: set[str] = set()
    for match in _SELECTOR.finditer(expr):
        metric, body = match.group(1) or "", match.group(2)
        rest = body
        for m in _MATCHER.finditer(body):
            matchers.append((metric, m.group(1), m.group(2), m.group(3)))
            rest = rest.replace(m.group(0), "", 1)
        if rest.replace(",", "").strip():
            raise ValueError(f"cannot read the matchers {body!r} of {expr!r}")
        if metric:
            metrics.add(metric)
    bare = _STRING.sub('""', expr)
    grouping = {label.strip() for m in _GROUPING.finditer(bare) for label in m.group(2).split(",") if label.strip()}
    bare = _SELECTOR.sub(lambda m: " " + (m.group(1) or "") + " ", bare)
    bare = _GROUPING.sub(" ", bare)
    bare = _DURATION.sub(" ", bare)
    for ident in _IDENT.finditer(bare):
        name = ident.group(0)
        following = bare[ident.end():].lstrip()[:1]
        if following == "(" or name in KEYWORDS or re.fullmatch(r"[0-9.e+-]+", name):
            continue
        metrics.add(name)
    return PromqlRefs(frozenset(metrics), tuple(matchers), frozenset(grouping))


def dashboard_queries(dash: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(where, expression) for every panel target and every query variable of the dashboard."""
    dash = dashboard() if dash is None else dash
    out = [(f"panel {p['id']} {p['title']!r} {t['refId']}", t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            out.append((f"variable {var['name']}", var["definition"]))
    return out


_LABEL_VALUES = re.compile(r"^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$")


def variable_query(definition: str) -> tuple[str, str]:
    """A ``label_values(selector, label)`` variable as (selector expression, label)."""
    match = _LABEL_VALUES.match(definition.strip())
    if not match:
        raise ValueError(f"unsupported variable query {definition!r}: expected label_values(<selector>, <label>)")
    return match.group(1), match.group(2)


def substitute(expr: str) -> str:
    """The expression with template variables replaced by sample values, so Prometheus' own parser can read it."""
    for name, value in sorted(TEMPLATE_VALUES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    if "$" in expr:
        raise ValueError(f"unknown template variable in {expr!r}")
    return expr


def as_recording_rules(dash: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every dashboard expression as a recording rule, for ``promtool check rules`` (Prometheus' parser, offline)."""
    rules = []
    for i, (_, expr) in enumerate(dashboard_queries(dash)):
        if expr.startswith("label_values("):
            expr = variable_query(expr)[0]
        rules.append({"record": f"modelwatch_dashboard:query_{i:03d}", "expr": substitute(expr)})
    return {"groups": [{"name": "modelwatch-dashboard-queries", "rules": rules}]}


def dashboard_metric_names(dash: dict[str, Any] | None = None) -> set[str]:
    """Every metric name the dashboard's queries read."""
    names: set[str] = set()
    for _, expr in dashboard_queries(dash):
        if expr.startswith("label_values("):
            expr = variable_query(expr)[0]
        names |= promql_refs(expr).metrics
    return names
