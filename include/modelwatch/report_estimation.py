"""The performance-estimation section of a partition page: estimated vs realised performance, with bands, method and assumptions.

``render_estimation_section(summary["concept"])`` returns an HTML fragment (an ``<h2>`` and what
follows; empty when the model has no estimation block, as for LLMs). It reads only the
``estimation`` block that ``performance_estimation.summary_block`` puts in the concept summary:

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

from modelwatch.metric_names import PERFORMANCE_METRICS
from modelwatch.report import badge, escape, fmt, table
from modelwatch.report_svg import Series, line_chart

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
    rows = [[escape(str(r["metric"])), _state(r), _value(r["metric"], r.get("estimate")), _range(r["metric"], r.get("lower"), r.get("upper")),
             _range(r["metric"], r.get("threshold_lower"), r.get("threshold_upper")), _value(r["metric"], r.get("reference_mean")),
             escape(r.get("reason") or "")] for r in est.get("metrics") or []]
    return table(["metric", "state", "estimate", "band (± 3 SE)", "alert thresholds", "reference mean", "note"], rows, numeric_from=2)


def _history_table(est: dict[str, Any]) -> str:
    metric = est.get("primary_metric") or "accuracy"
    rows = []
    for h in est.get("history") or []:
        realised = h.get("realised")
        gap = "–" if h.get("gap") is None else f"{h['gap']:+.4f} (limit ± {h['gap_limit']:.4f})" if h.get("gap_limit") is not None else f"{h['gap']:+.4f}"
        state = badge("drift") if h.get("gap_alert") else (badge("ok") if realised is not None else badge("pending"))
        rows.append([escape(str(h["day"])), fmt(h.get("rows")), fmt(h.get("labelled")), _value(metric, h.get("estimate")),
                     _range(metric, h.get("lower"), h.get("upper")), _value(metric, realised), _value(metric, h.get("estimated_labelled")), gap, state])
    return table(["day", "rows", "labelled", f"estimated {metric}", "band", f"realised {metric}", "estimate on labelled rows", "gap", "state"],
                 rows, numeric_from=1)


def _chart(est: dict[str, Any]) -> str:
    """Estimated vs realised over the look-back (the band dashed)."""
    history = est.get("history") or []
    if len(history) < 2:
        return ""
    metric = est.get("primary_metric") or "accuracy"
    column = {key: [h.get(key) for h in history] for key in ("estimate", "lower", "upper", "realised")}
    series = [Series(f"estimated {metric}", column["estimate"]), Series("band lower", column["lower"], dashed=True),
              Series("band upper", column["upper"], dashed=True), Series(f"realised {metric}", column["realised"])]
    return line_chart([str(h["day"]) for h in history], series, title=f"{metric}: estimated (no labels needed) vs realised (when labels arrive)",
                      y_label=metric, include_zero=False)


def _method_note(est: dict[str, Any]) -> str:
    method = METHOD_NAMES.get(str(est.get("method")), str(est.get("method")))
    calibration = f", scores calibrated by {escape(str(est['calibration']))} regression on the baseline's labels" if est.get("calibration") else ""
    assumptions = "".join(f"<li>{escape(a)}</li>" for a in est.get("assumptions") or [])
    return (f'<p class="muted">Method: {escape(method)}{calibration} (after {escape(str(est.get("source") or ""))}); baseline '
            f'{escape(str(est.get("baseline_version")))}, reference chunks of {fmt(est.get("chunk_size"))} rows. Band: {escape(str(est.get("band") or ""))}. '
            f'Thresholds: {escape(str(est.get("thresholds") or ""))}.</p><p class="muted">Assumptions:</p><ul class="muted">{assumptions}</ul>')


def render_estimation_section(concept_summary: dict[str, Any] | None) -> str:
    """HTML of the estimated-performance section from the run summary's ``concept`` block (see the module docstring)."""
    est = (concept_summary or {}).get("estimation")
    if not est:
        return ""
    if est.get("outcome") != "ok":
        return f'<h3>Estimated performance {badge("abstain")}</h3><p>{escape(str(est.get("reason") or est.get("outcome")))}</p>'
    state = badge("drift") if est.get("gap_alert") else (badge("worse") if est.get("alerts") else badge("ok"))
    latest = est.get("latest_realised")
    labels_note = (f"labels have arrived up to {escape(str(latest['day']))}" if latest else "no labels have arrived for the days shown yet")
    parts = [f"<h3>Estimated performance {state}</h3>",
             f"<p>{escape(str(est.get('reason') or ''))}</p>",
             f'<p class="muted">{fmt(est.get("rows"))} incumbent predictions of {escape(str(est.get("day")))} estimated without labels; {labels_note}'
             + (f' · <a href="{escape(str(est["estimation_uri"]).rsplit("/", 1)[-1])}">every estimate, per class and segment</a>' if est.get("estimation_uri") else "")
             + "</p>",
             _today_table(est), _chart(est), _history_table(est), _method_note(est)]
    return "\n".join(p for p in parts if p)
