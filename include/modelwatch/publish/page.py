"""Readable HTML pages: one per model and partition, and a site index over models and days.

Self-contained HTML with inline CSS and inline SVG charts (``publish.svg``): no script, no
external asset, no network, so a page opens from S3, a local mirror or an email
attachment alike. A Content-Security-Policy meta tag forbids scripts outright, as a second
line behind the escaping.

The markup is in Jinja2 templates, one file per page section (``publish/templates``, see
``publish.templating``); this module computes what each section shows (its charts, its
rows) and renders the page. Every template escapes what it prints (autoescape), cleans it
of control characters first, and shows traffic text — model ids, segment values, request
ids, variants, column names, prompts, responses, judge reasoning, reasons, URIs — cut (ids
and values at ``LABEL_CHARS``, longer texts at ``TEXT_CHARS``) and bidi-isolated in a
``<bdi>``. Links are relative paths built here, percent-encoded per segment (:func:`href`),
never URLs taken from data. Every table sits in a box that scrolls sideways, and text cells
wrap anywhere, so no table widens the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup

from modelwatch.publish.data import Example, History, drift_series, headline_series, judge_metrics, judge_series, series, window_comparison
from modelwatch.publish.estimation_section import estimation_view
from modelwatch.publish.formatting import fmt, href
from modelwatch.publish.glance import answers
from modelwatch.publish.svg import Interval, Series, forest_plot, line_chart, percent, short_number, signed_percent, usd
from modelwatch.publish.templating import chart, render
from modelwatch.publish.text import isolate

_HEADLINE = ["requests", "error_rate", "timeout_rate", "filter_refusal_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
             "prompt_tokens_mean", "completion_tokens_mean", "throughput_rps", "cost_usd_total", "cost_per_request_usd", "feedback_negative_rate"]
_WINDOW_METRICS = ["error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "cost_per_request_usd", "requests"]


@dataclass
class PageContext:
    """What the page shows beyond the summary: the history for the trends, judged examples, experiment thresholds."""

    history: History | None = None
    examples: list[Example] = field(default_factory=list)
    # experiment id -> ("primary" | "guardrail", metric) -> threshold on the plotted scale (MDE or non-inferiority margin)
    thresholds: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)
    index_href: str | None = None


def partition_label(partition: dict[str, Any]) -> str:
    """A partition as the page title names it: the day, or the day and hour (UTC)."""
    return partition["dt"] + ("" if partition.get("hour") is None else f" {int(partition['hour']):02d}:00 UTC")


def data_interval(partition: dict[str, Any]) -> str:
    """The data interval a partition covers, start inclusive and end exclusive (UTC): what the page header shows.

    Airflow names a scheduled run after the end of its interval (the next day), so the header
    shows the interval, not the run id.
    """
    start = datetime.fromisoformat(partition["dt"]).replace(hour=int(partition.get("hour") or 0))
    end = start + (timedelta(days=1) if partition.get("hour") is None else timedelta(hours=1))
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"


def render_partition_page(summary: dict[str, Any], context: PageContext | None = None) -> str:
    """The page for one model and partition: the five answers, then one section per question with charts and tables."""
    ctx = context or PageContext()
    history = ctx.history
    where = partition_label(summary["partition"])
    concept = summary.get("concept")
    return render(
        "partition.html",
        title=f"{summary['model_id']} {where}",
        s=summary,
        where=where,
        interval=data_interval(summary["partition"]),
        run_id=summary.get("run", {}).get("run_id", ""),
        index_href=ctx.index_href,
        history=history,
        answers=answers(summary, history),
        profile=_profile_view(summary, history),
        drift_view={"charts": _drift_charts(history)},
        estimation=estimation_view(concept) if concept else None,
        baseline_view={"window_rows": window_comparison(history, _WINDOW_METRICS) if history is not None and history.present > 1 else []},
        cost_view=_cost_view(summary, history),
        judge_view=_judge_view(summary, history),
        examples=ctx.examples,
        experiment_views=[_experiment_view(e, ctx.thresholds.get(e["experiment_id"], {})) for e in summary.get("experiments") or []],
    )


def _profile_view(summary: dict[str, Any], history: History | None) -> dict[str, Any]:
    """Section 1: the operational trend charts and the metrics by variant (all traffic first)."""
    charts = []
    if history is not None:
        charts = [
            line_chart(history.labels, [Series("error rate", headline_series(history, "error_rate")),
                                        Series("timeout rate", headline_series(history, "timeout_rate"), dashed=True)],
                       title="Error and timeout rate", y_label="share of requests", y_format=percent),
            line_chart(history.labels, [Series(f"p{q}", headline_series(history, f"latency_p{q}_ms")) for q in (50, 95, 99)],
                       title="Latency quantiles", y_label="ms"),
            line_chart(history.labels, [Series("requests", headline_series(history, "requests"))], title="Requests", y_label="requests per day"),
        ]
    metrics = summary["metrics"]
    variants = ["__all__"] + sorted(v for v in metrics if v != "__all__") if metrics else []
    rows = [(m, [metrics[v].get(m) for v in variants]) for m in _HEADLINE if any(m in metrics[v] for v in variants)]
    return {"charts": [chart(c) for c in charts], "variant_names": ["all traffic" if v == "__all__" else v for v in variants], "metric_rows": rows}


def _drift_charts(history: History | None) -> list[Markup]:
    """Section 2: drift severity and alert count per day."""
    if history is None:
        return []
    severity, alerts = drift_series(history)
    return [chart(line_chart(history.labels, [Series("severity", severity)], title="Drift severity", y_label="0 none · 1 low · 2 medium · 3 high",
                             y_format=lambda v: f"{v:g}")),
            chart(line_chart(history.labels, [Series("drifting column tests", alerts)], title="Drift alerts", y_label="alerts per day",
                             y_format=lambda v: f"{v:g}"))]


def _cost_view(summary: dict[str, Any], history: History | None) -> dict[str, Any]:
    """Section 4: the cost trend charts and the day's cost per variant (all traffic first)."""
    charts = []
    if history is not None:
        charts = [chart(line_chart(history.labels, [Series("total", headline_series(history, "cost_usd_total"))], title="Cost per day",
                                   y_label="USD", y_format=usd)),
                  chart(line_chart(history.labels, [Series("per request", headline_series(history, "cost_per_request_usd"))],
                                   title="Cost per request", y_label="USD", y_format=usd))]
    variants = [("all traffic" if v == "__all__" else v, m) for v, m in sorted(summary["metrics"].items(), key=lambda kv: (kv[0] != "__all__", kv[0]))
                if "cost_usd_total" in m]
    return {"charts": charts, "variants": variants}


def _judge_view(summary: dict[str, Any], history: History | None) -> dict[str, Any]:
    """The quality section: trend charts (judge scores, flag and feedback rates, online score) and the judge table's columns."""
    charts = []
    if history is not None:
        scores, rates = judge_metrics(history)
        if scores:
            charts.append(line_chart(history.labels, [Series(m.removeprefix("judge."), judge_series(history, m)) for m in scores],
                                     title="Judge scores (weighted mean)", y_label="score (1–5)", include_zero=False))
        online = [Series(m.removesuffix("_rate").replace("_", " ") + " rate", judge_series(history, m)) for m in rates]
        online.append(Series("thumbs-down rate", headline_series(history, "feedback_negative_rate"), dashed=True))
        charts.append(line_chart(history.labels, online, title="Flag and feedback rates", y_label="share", y_format=percent))
        quality = series(history, lambda s: (s.get("metrics") or {}).get("__all__", {}).get("quality_score_mean"))
        if any(v is not None for v in quality):
            charts.append(line_chart(history.labels, [Series("online quality score", quality)], title="Online quality score", y_label="score",
                                     include_zero=False))
    view: dict[str, Any] = {"charts": [chart(c) for c in charts]}
    judge = summary.get("judge")
    if judge:
        columns = {"all traffic": judge["overall"], **judge["by_variant"]}
        backend = judge["backend"]
        view.update(column_names=list(columns), columns=list(columns.values()),
                    metrics=sorted({m for values in columns.values() for m in values}),
                    backend_name=backend.get("backend", backend) if isinstance(backend, dict) else backend,
                    backend_model=backend.get("model") if isinstance(backend, dict) else None)
    return view


def _experiment_view(e: dict[str, Any], marks: dict[tuple[str, str], float]) -> dict[str, Any]:
    """Section 5, one experiment: its facts line and the forest plots of its primary metrics and guardrails."""
    facts = []
    if e.get("requests") is not None:
        facts.append(f"{fmt(e['requests'])} requests since the start")
    if e.get("srm_p_value") is not None:
        facts.append(f"SRM p {fmt(e['srm_p_value'])}")
    if e.get("days_remaining") is not None:
        facts.append(f"about {fmt(e['days_remaining'])} more day(s) to the planned sample size")
    plots = []
    if e.get("primary"):
        rows = [Interval(p["metric"], p.get("relative_lift"), p.get("lift_ci_low"), p.get("lift_ci_high"), p.get("decision") or "",
                         marks.get(("primary", p["metric"])), p.get("reason") or "") for p in e["primary"]]
        plots.append(forest_plot(rows, title=f"{isolate(e['experiment_id'])}: primary metrics", x_label="relative lift, treatment vs control"))
    for scale, axis, x_format in (("relative_lift", "relative change, treatment vs control", signed_percent),
                                  ("difference", "difference, treatment − control", short_number)):
        guard = [g for g in e.get("guardrails") or [] if g.get("scale") == scale]
        if guard:
            rows = [Interval(g["metric"], g.get("estimate"), g.get("lower"), g.get("upper"), g.get("verdict") or "",
                             marks.get(("guardrail", g["metric"])), g.get("reason") or "") for g in guard]
            plots.append(forest_plot(rows, title=f"{isolate(e['experiment_id'])}: guardrails ({scale.replace('_', ' ')})", x_label=axis,
                                     x_format=x_format))
    return {"experiment": e, "facts": facts, "plots": [chart(p) for p in plots]}


@dataclass(frozen=True)
class IndexEntry:
    """One published partition for the site index: its summary and the relative link to its page."""

    summary: dict[str, Any]
    link: str


def page_path(partition: dict[str, Any]) -> list[str]:
    """Path segments of a partition's page relative to the reports prefix."""
    segments = [f"model_id={partition['model_id']}", f"dt={partition['dt']}"]
    if partition.get("hour") is not None:
        segments.append(f"hour={int(partition['hour']):02d}")
    return [*segments, "index.html"]


def index_href_from(partition: dict[str, Any]) -> str:
    """The link from a partition's page back to the site index at the reports prefix."""
    return href(*[".."] * (len(page_path(partition)) - 1), "index.html")


def _newest_first(entries: Sequence[IndexEntry]) -> list[IndexEntry]:
    return sorted(entries, key=lambda e: (e.summary["partition"]["dt"], e.summary["partition"].get("hour") or -1), reverse=True)


def _has_traffic(entry: IndexEntry) -> bool:
    return entry.summary["outcome"] != "no_traffic"


def latest_entry(entries: Sequence[IndexEntry]) -> IndexEntry:
    """The partition the index shows as a model's latest state: its newest daily partition with traffic.

    A scheduled run that found no files (``no_traffic``) checked nothing, so it is not a state;
    without a daily partition with traffic, the newest partition with traffic; without any, the newest.
    """
    ordered = _newest_first(entries)
    daily = [e for e in ordered if e.summary["partition"].get("hour") is None]
    for candidates in (daily, ordered):
        with_traffic = [e for e in candidates if _has_traffic(e)]
        if with_traffic:
            return with_traffic[0]
    return (daily or ordered)[0]


def missing_traffic(entries: Sequence[IndexEntry]) -> list[IndexEntry]:
    """A model's daily partitions without traffic newer than its latest daily partition with traffic, newest first: the index's alerts."""
    missing = []
    for entry in _newest_first([e for e in entries if e.summary["partition"].get("hour") is None]):
        if _has_traffic(entry):
            break
        missing.append(entry)
    return missing


def render_site_index(entries: Sequence[IndexEntry], histories: dict[str, History] | None = None,
                      older: dict[str, list[tuple[str, str]]] | None = None) -> str:
    """The top-level index: missing-traffic alerts, the latest daily state with traffic of each model answering the five questions, then each model's days (newest first).

    ``older`` lists, per model, (label, link) of days shown as links only (beyond the window whose summaries were read).
    """
    histories, older = histories or {}, older or {}
    by_model: dict[str, list[IndexEntry]] = {}
    for entry in entries:
        by_model.setdefault(entry.summary["model_id"], []).append(entry)
    models = []
    for model_id in sorted(by_model):
        latest = latest_entry(by_model[model_id])
        days = [{"summary": e.summary, "link": e.link, "label": _label(e.summary["partition"]),
                 "decisions": ", ".join(f"{isolate(x['experiment_id'])}: {x['decision']}" for x in e.summary.get("experiments") or [])}
                for e in _newest_first(by_model[model_id])]
        missing = [{"link": e.link, "label": _label(e.summary["partition"])} for e in missing_traffic(by_model[model_id])]
        models.append({"model_id": model_id, "latest": latest, "latest_label": _label(latest.summary["partition"]),
                       "answers": answers(latest.summary, histories.get(model_id)), "days": days, "older": older.get(model_id, []),
                       "missing_traffic": missing})
    return render("site_index.html", title="modelwatch reports", models=models)


def _label(partition: dict[str, Any]) -> str:
    return partition["dt"] + ("" if partition.get("hour") is None else f" {int(partition['hour']):02d}h")
