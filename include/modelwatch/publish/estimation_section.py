"""The performance-estimation section of a partition page: estimated vs realised performance, with bands, method and assumptions.

``render_estimation_section(summary["concept"])`` returns an HTML fragment (an ``<h2>`` and what
follows; empty when the model has no estimation block, as for LLMs). It reads only the
``estimation`` block that ``estimation.estimate.summary_block`` puts in the concept summary:

- ``outcome`` (``ok`` | ``disabled`` | ``no_baseline`` | ``no_reference``), ``reason``, ``method``
  (``cbpe`` | ``dle``), ``calibration``, ``source``, ``assumptions``, ``band``, ``thresholds``,
  ``baseline_version``, ``chunk_size``, ``primary_metric``, ``day``, ``rows``, ``alerts``, ``gap_alert``;
- ``metrics``: today's rows ``{metric, estimate, sampling_error, lower, upper, threshold_lower,
  threshold_upper, reference_mean, alert, direction, reason?}``;
- ``history``: per look-back day ``{day, rows, labelled, estimate, lower, upper, realised,
  estimated_labelled, gap, gap_limit, gap_alert}`` of the primary metric;
- ``latest_realised``: ``{day, labelled, coverage, metrics: [{metric, realised, estimated_labelled,
  labelled_lower, labelled_upper, gap, gap_limit, gap_alert}]}`` or None.

A pure function of its input; the page's other sections are ``report``'s.
"""

from __future__ import annotations

from typing import Any

from modelwatch.core.metric_names import PERFORMANCE_METRICS
from modelwatch.publish.html import badge, fmt, table
from modelwatch.publish.svg import Series, line_chart
from modelwatch.publish.text import attr, h, label

METHOD_NAMES = {"cbpe": "confidence-based performance estimation (CBPE)", "dle": "direct loss estimation (DLE)"}


def _value(metric: str, value: Any) -> str:
    """A metric value: ratios as percentages, losses in the target's units."""
    if value is None:
        return "–"
    if PERFORMANCE_METRICS.get(metric, ("", ""))[0] == "ratio":
        return f"{100 * float(value):.1f}%"
    return fmt(value)


def _range(metric: str, low: Any, high: Any) -> str:
    return "–" if low is None or high is None else f"{_value(metric, low)} … {_value(metric, high)}"


def _state(row: dict[str, Any]) -> str:
    if row.get("estimate") is None or row.get("threshold_lower") is None:
        return badge("abstain")
    return badge(row.get("direction") or "worse") if row.get("alert") else badge("ok")


def _today_table(est: dict[str, Any]) -> str:
    rows = [[label(r["metric"]), _state(r), _value(r["metric"], r.get("estimate")), _range(r["metric"], r.get("lower"), r.get("upper")),
             _range(r["metric"], r.get("threshold_lower"), r.get("threshold_upper")), _value(r["metric"], r.get("reference_mean")),
             h(r.get("reason") or "")] for r in est.get("metrics") or []]
    return table(["metric", "state", "estimate", "band (± 3 SE)", "alert thresholds", "reference mean", "note"], rows, numeric_from=2, text_from=6)


def _history_table(est: dict[str, Any]) -> str:
    metric = est.get("primary_metric") or "accuracy"
    rows = []
    for d in est.get("history") or []:
        realised = d.get("realised")
        gap = "–" if d.get("gap") is None else f"{d['gap']:+.4f} (limit ± {d['gap_limit']:.4f})" if d.get("gap_limit") is not None else f"{d['gap']:+.4f}"
        state = badge("drift") if d.get("gap_alert") else (badge("ok") if realised is not None else badge("pending"))
        rows.append([label(d["day"]), fmt(d.get("rows")), fmt(d.get("labelled")), _value(metric, d.get("estimate")),
                     _range(metric, d.get("lower"), d.get("upper")), _value(metric, realised), _value(metric, d.get("estimated_labelled")), gap, state])
    return table(["day", "rows", "labelled", f"estimated {metric}", "band", f"realised {metric}", "estimate on labelled rows", "gap", "state"],
                 rows, numeric_from=1)


def _chart(est: dict[str, Any]) -> str:
    """Estimated vs realised over the look-back (the band dashed)."""
    history = est.get("history") or []
    if len(history) < 2:
        return ""
    metric = est.get("primary_metric") or "accuracy"
    column = {key: [d.get(key) for d in history] for key in ("estimate", "lower", "upper", "realised")}
    series = [Series(f"estimated {metric}", column["estimate"]), Series("band lower", column["lower"], dashed=True),
              Series("band upper", column["upper"], dashed=True), Series(f"realised {metric}", column["realised"])]
    return line_chart([str(d["day"]) for d in history], series, title=f"{metric}: estimated (no labels needed) vs realised (when labels arrive)",
                      y_label=metric, include_zero=False)


def _method_note(est: dict[str, Any]) -> str:
    method = METHOD_NAMES.get(str(est.get("method")), str(est.get("method")))
    calibration = f", scores calibrated by {h(est['calibration'])} regression on the baseline's labels" if est.get("calibration") else ""
    assumptions = "".join(f"<li>{h(a)}</li>" for a in est.get("assumptions") or [])
    return (f'<p class="muted">Method: {h(method)}{calibration} (after {h(est.get("source") or "")}); baseline '
            f'{h(est.get("baseline_version"))}, reference chunks of {fmt(est.get("chunk_size"))} rows. Band: {h(est.get("band") or "")}. '
            f'Thresholds: {h(est.get("thresholds") or "")}.</p><p class="muted">Assumptions:</p><ul class="muted">{assumptions}</ul>')


def render_estimation_section(concept_summary: dict[str, Any] | None) -> str:
    """HTML of the estimated-performance section from the run summary's ``concept`` block (see the module docstring)."""
    est = (concept_summary or {}).get("estimation")
    if not est:
        return ""
    if est.get("outcome") != "ok":
        return f'<h3>Estimated performance {badge("abstain")}</h3><p>{h(est.get("reason") or est.get("outcome"))}</p>'
    state = badge("drift") if est.get("gap_alert") else (badge("worse") if est.get("alerts") else badge("ok"))
    latest = est.get("latest_realised")
    labels_note = (f"labels have arrived up to {h(latest['day'])}" if latest else "no labels have arrived for the days shown yet")
    parts = [f"<h3>Estimated performance {state}</h3>",
             f"<p>{h(est.get('reason') or '')}</p>",
             f'<p class="muted">{fmt(est.get("rows"))} incumbent predictions of {h(est.get("day"))} estimated without labels; {labels_note}'
             + (f' · <a href="{attr(str(est["estimation_uri"]).rsplit("/", 1)[-1], limit=None)}">every estimate, per class and segment</a>' if est.get("estimation_uri") else "")
             + "</p>",
             _today_table(est), _chart(est), _history_table(est), _method_note(est)]
    return "\n".join(p for p in parts if p)
