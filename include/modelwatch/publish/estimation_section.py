"""The performance-estimation section of a partition page: estimated vs realised performance, with bands, method and assumptions.

``render_estimation_section(summary["concept"])`` returns an HTML fragment (an ``<h3>`` and what
follows; empty when the model has no estimation block, as for LLMs), rendered by the template
``templates/sections/estimation.html`` from :func:`estimation_view`. It reads only the
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

A pure function of its input; the page's other sections are ``publish.page``'s.
"""

from __future__ import annotations

from typing import Any

from modelwatch.publish.svg import Series, line_chart
from modelwatch.publish.templating import chart, render

METHOD_NAMES = {"cbpe": "confidence-based performance estimation (CBPE)", "dle": "direct loss estimation (DLE)"}


def _chart(est: dict[str, Any]) -> str | None:
    """Estimated vs realised over the look-back (the band dashed); None with fewer than two days."""
    history = est.get("history") or []
    if len(history) < 2:
        return None
    metric = est.get("primary_metric") or "accuracy"
    column = {key: [d.get(key) for d in history] for key in ("estimate", "lower", "upper", "realised")}
    series = [Series(f"estimated {metric}", column["estimate"]), Series("band lower", column["lower"], dashed=True),
              Series("band upper", column["upper"], dashed=True), Series(f"realised {metric}", column["realised"])]
    return line_chart([str(d["day"]) for d in history], series, title=f"{metric}: estimated (no labels needed) vs realised (when labels arrive)",
                      y_label=metric, include_zero=False)


def estimation_view(concept_summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """What ``sections/estimation.html`` shows: the estimation block, its chart and the method's name; None without a block."""
    est = (concept_summary or {}).get("estimation")
    if not est:
        return None
    svg = _chart(est) if est.get("outcome") == "ok" else None
    return {"est": est, "chart": chart(svg) if svg else None, "method_name": METHOD_NAMES.get(str(est.get("method")), str(est.get("method")))}


def render_estimation_section(concept_summary: dict[str, Any] | None) -> str:
    """HTML of the estimated-performance section from the run summary's ``concept`` block (see the module docstring)."""
    view = estimation_view(concept_summary)
    return "" if view is None else render("sections/estimation.html", estimation=view)
