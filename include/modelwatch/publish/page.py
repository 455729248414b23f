"""Readable HTML pages: one per model and partition, and a site index over models and days.

Self-contained HTML with inline CSS and inline SVG charts (``publish.svg``): no script, no
external asset, no network, so a page opens from S3, a local mirror or an email
attachment alike. A Content-Security-Policy meta tag forbids scripts outright, as a second
line behind the escaping.

Text: every string that is not a literal of this module — model ids, segment values,
request ids, variants, column names, prompts, responses, judge reasoning, reasons, URIs —
reaches the page through ``publish.text`` (:func:`h` in element content, :func:`attr` in
attributes): control characters replaced, cut (ids and values at ``LABEL_CHARS``, longer
texts at ``TEXT_CHARS``), escaped with ``quote=True`` and, in content, bidi-isolated in a
``<bdi>``. Links are relative paths built here, percent-encoded per segment (:func:`href`),
never URLs taken from data. Every table sits in a box that scrolls sideways, and text cells
wrap anywhere, so no table widens the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modelwatch.publish.data import Example, History, drift_series, headline_series, judge_metrics, judge_series, series, window_comparison
from modelwatch.publish.glance import Answer, answers
from modelwatch.publish.html import badge, fmt, href, metric_cell, page, table
from modelwatch.publish.svg import Interval, Series, forest_plot, line_chart, percent, short_number, signed_percent, usd
from modelwatch.publish.text import LABEL_CHARS, attr, h, isolate, label

_HEADLINE = ["requests", "error_rate", "timeout_rate", "refusal_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
             "prompt_tokens_mean", "completion_tokens_mean", "throughput_rps", "cost_usd_total", "cost_per_request_usd", "feedback_negative_rate"]


@dataclass
class PageContext:
    """What the page shows beyond the summary: the history for the trends, judged examples, experiment thresholds."""

    history: History | None = None
    examples: list[Example] = field(default_factory=list)
    # experiment id -> ("primary" | "guardrail", metric) -> threshold on the plotted scale (MDE or non-inferiority margin)
    thresholds: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)
    index_href: str | None = None


def _glance(items: Sequence[Answer]) -> str:
    cards = "".join(f'<div class="card" data-question="{attr(a.question)}"><div class="q">{h(a.question)} {badge(a.state)}</div>'
                    f'<div class="h">{h(a.headline)}</div><div class="d">{h(a.detail)}</div></div>' for a in items)
    return f'<div class="glance">{cards}</div>'


def render_partition_page(summary: dict[str, Any], context: PageContext | None = None) -> str:
    """The page for one model and partition: the five answers, then one section per question with charts and tables."""
    ctx = context or PageContext()
    p = summary["partition"]
    where = f"{p['dt']}" + ("" if p.get("hour") is None else f" {p['hour']:02d}:00 UTC")
    rows = summary["rows"]
    parts = []
    if ctx.index_href:
        parts.append(f'<nav><a href="{ctx.index_href}">all models and days</a></nav>')
    parts += [
        f"<h1>{label(summary['model_id'])} · {h(where)} {badge(summary['outcome'])}</h1>",
        f'<p class="muted">rows read {fmt(rows["read"])} = valid {fmt(rows["valid"])} + quarantined {fmt(rows["quarantined"])}'
        f" · run {attr(summary.get('run', {}).get('run_id', ''), LABEL_CHARS)}</p>",  # Airflow's run id, not traffic: plain, so re-runs compare
        _glance(answers(summary, ctx.history)),
    ]
    if summary["outcome"] == "no_traffic":
        parts.append("<p>No traffic was logged for this partition. Nothing else was computed.</p>")
    history = ctx.history
    if history is not None and history.problems:
        parts.append('<p class="muted">History: ' + "; ".join(h(x) for x in history.problems) + "</p>")
    parts += _health_section(summary, history)
    parts += _drift_section(summary, history)
    parts += _baseline_section(summary, history)
    parts += _cost_section(summary, history)
    parts += _quality_section(summary, history, ctx.examples)
    parts += _experiments_section(summary.get("experiments") or [], ctx.thresholds)
    parts += _detail_sections(summary)
    return page(f"{summary['model_id']} {where}", "\n".join(parts))


def _charts(*svgs: str) -> str:
    return '<div class="charts">' + "".join(svgs) + "</div>"


def _trend_note(history: History) -> str:
    return (f'<p class="muted">Trends: the {len(history.days)} days to {h(history.days[-1].isoformat())}; {history.present} with a summary '
            "(a missing day is a gap in the line).</p>")


def _health_section(summary: dict[str, Any], history: History | None) -> list[str]:
    parts = ["<h2>1 · Is the model healthy now?</h2>"]
    if history is not None:
        parts.append(_trend_note(history))
        parts.append(_charts(
            line_chart(history.labels, [Series("error rate", headline_series(history, "error_rate")),
                                        Series("timeout rate", headline_series(history, "timeout_rate"), dashed=True)],
                       title="Error and timeout rate", y_label="share of requests", y_format=percent),
            line_chart(history.labels, [Series(f"p{q}", headline_series(history, f"latency_p{q}_ms")) for q in (50, 95, 99)],
                       title="Latency quantiles", y_label="ms"),
            line_chart(history.labels, [Series("requests", headline_series(history, "requests"))], title="Requests", y_label="requests per day"),
        ))
    if summary["breaches"]:
        parts.append("<h3>Guardrail breaches</h3>")
        parts.append(table(["experiment", "metric", "value", "requests", "reason"],
                           [[label(b["experiment_id"]), label(b["metric"]), metric_cell(b["metric"], b["value"]), fmt(b["requests"]), h(b["reason"])]
                            for b in summary["breaches"]], numeric_from=2, text_from=4))
    metrics = summary["metrics"]
    if metrics:
        variants = ["__all__"] + sorted(v for v in metrics if v != "__all__")
        parts.append("<h3>Operational metrics by variant</h3>")
        parts.append(table(["metric"] + ["all traffic" if v == "__all__" else v for v in variants],
                           [[label(m)] + [metric_cell(m, metrics[v].get(m)) for v in variants] for m in _HEADLINE if any(m in metrics[v] for v in variants)]))
    if summary["hard_limits"]:
        parts.append("<h3>Hard limits</h3>")
        parts.append(table(["experiment", "arm", "metric", "value", "limit", "state", "reason"],
                           [[label(c["experiment_id"]), label(c["arm"]), label(c["metric"]), metric_cell(c["metric"], c["value"]),
                             h(f"max {c['max']}" if c["max"] is not None else f"min {c['min']}"), badge(c["state"]), h(c["reason"])]
                            for c in summary["hard_limits"]], numeric_from=3, text_from=5))
    if summary["segments"]:
        parts.append("<h3>Segments</h3>")
        parts.append(table(["segment", "value", "requests", "error rate", "latency p95 ms", "prompt tokens", "cost"],
                           [[label(s["segment"]), label(s["value"]), fmt(s.get("requests")), metric_cell("error_rate", s.get("error_rate")),
                             fmt(s.get("latency_p95_ms")), fmt(s.get("prompt_tokens_mean")), metric_cell("cost_usd_total", s.get("cost_usd_total"))]
                            for s in summary["segments"]], numeric_from=2, cls="segments"))
    return parts


def _drift_section(summary: dict[str, Any], history: History | None) -> list[str]:
    """Drift verdict, trend and alerts (worst first); the full statistics are in drift.json and the Evidently report."""
    drift = summary.get("drift")
    parts = ["<h2>2 · Is anything drifting?</h2>"]
    if history is not None:
        severity, alerts = drift_series(history)
        parts.append(_charts(
            line_chart(history.labels, [Series("severity", severity)], title="Drift severity", y_label="0 none · 1 low · 2 medium · 3 high",
                       y_format=lambda v: f"{v:g}"),
            line_chart(history.labels, [Series("drifting column tests", alerts)], title="Drift alerts", y_label="alerts per day",
                       y_format=lambda v: f"{v:g}"),
        ))
    if not drift:
        parts.append("<p>Drift is checked on the daily partition.</p>")
    elif drift["outcome"] == "no_baseline":
        parts.append(f'<p>{badge("no_baseline")} {h(drift["reason"])}</p>')
    else:
        evidently = summary["outputs"].get("evidently_report")
        parts.append(f'<p>{badge(drift["severity"])} against baseline {label(drift["baseline_version"])}: {fmt(drift["alert_count"])} drifting column tests'
                     + (' · <a href="report.html">Evidently report</a>' if evidently else "") + ' · <a href="drift.json">every test</a></p>')
        if drift["alerts"]:
            parts.append(table(["severity", "family", "segment", "column", "statistic", "effect", "p (BH)"],
                               [[badge(a["severity"]), label(a["family"]), label(a.get("segment") or ""), label(a["column"]), label(a["effect_method"]),
                                 fmt(a["effect"]), fmt(a["p_adjusted"])] for a in drift["alerts"]], numeric_from=5, cls="drift-alerts"))
    if summary.get("concept"):
        c = summary["concept"]
        parts.append(f'<h3>Concept drift {badge(c["verdict"])}</h3><p>{h(c["reason"])} · {fmt(c["evaluated"])} labelled predictions evaluated'
                     ' · <a href="concept.json">windowed metrics, detections and calibration</a></p>')
        from modelwatch.publish.estimation_section import render_estimation_section  # it renders with this module's helpers

        parts.append(render_estimation_section(c))
    return parts


def _change(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}%"


def _baseline_section(summary: dict[str, Any], history: History | None) -> list[str]:
    parts = ["<h2>3 · How does today compare with the baseline?</h2>"]
    comparison = summary.get("baseline_comparison") or {}
    if comparison.get("quantiles"):
        parts.append(f'<p class="muted">Baseline {label(comparison.get("version"))}: quantiles from its profile sketches (KLL, about 1% rank error);'
                     " today's values cover all traffic.</p>")
        parts.append(table(["measure", "baseline", "today", "change"],
                           [[label(q["measure"]), fmt(q["baseline"]), fmt(q["today"]), _change(q["change"])] for q in comparison["quantiles"]], cls="baseline"))
    if comparison.get("segment_mix"):
        parts.append("<h3>Traffic mix</h3>")
        parts.append(table(["segment", "value", "baseline share", "today share", "shift (points)"],
                           [[label(m["segment"]), label(m["value"]), f"{m['baseline_share']:.1%}", f"{m['today_share']:.1%}",
                             f"{100 * (m['today_share'] - m['baseline_share']):+.1f}"] for m in comparison["segment_mix"]], numeric_from=2, cls="mix"))
    if history is not None and history.present > 1:
        rows = window_comparison(history, ["error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "cost_per_request_usd", "requests"])
        parts.append(f"<h3>Today against the previous {len(history.days) - 1} days</h3>")
        parts.append(table(["metric", "today", "median of earlier days", "days", "change"],
                           [[label(r["metric"]), metric_cell(r["metric"], r["today"]), metric_cell(r["metric"], r["median"]), fmt(r["days"]),
                             _change(r["change"])] for r in rows]))
    if len(parts) == 1:
        parts.append("<p>No baseline and no earlier days to compare with.</p>")
    return parts


def _cost_section(summary: dict[str, Any], history: History | None) -> list[str]:
    parts = ["<h2>4 · What does it cost?</h2>"]
    if history is not None:
        parts.append(_charts(
            line_chart(history.labels, [Series("total", headline_series(history, "cost_usd_total"))], title="Cost per day", y_label="USD",
                       y_format=usd),
            line_chart(history.labels, [Series("per request", headline_series(history, "cost_per_request_usd"))], title="Cost per request",
                       y_label="USD", y_format=usd),
        ))
    metrics = summary["metrics"]
    rows = [[label("all traffic" if v == "__all__" else v), fmt(m.get("requests")), metric_cell("cost_usd_total", m.get("cost_usd_total")),
             metric_cell("cost_per_request_usd", m.get("cost_per_request_usd")), metric_cell("cost_per_1k_tokens_usd", m.get("cost_per_1k_tokens_usd")),
             fmt(m.get("tokens_total"))] for v, m in sorted(metrics.items(), key=lambda kv: (kv[0] != "__all__", kv[0])) if "cost_usd_total" in m]
    if rows:
        parts.append(table(["variant", "requests", "cost", "per request", "per 1k tokens", "tokens"], rows, cls="cost"))
    else:
        parts.append("<p>No cost is logged for this model.</p>")
    judge = summary.get("judge")
    if judge:
        parts.append(f'<p class="muted">Judge budget ${judge["budget_usd"]:g} a day; what was spent is in <a href="judge.json">judge.json</a>.</p>')
    return parts


def _quality_section(summary: dict[str, Any], history: History | None, examples: Sequence[Example]) -> list[str]:
    """Quality trend (judge scores, flag rates, online signals), the day's weighted judge estimates, and examples."""
    parts = ["<h2>Quality</h2>"]
    if history is not None:
        scores, rates = judge_metrics(history)
        charts = []
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
        parts.append(_charts(*charts))
    judge = summary.get("judge")
    if not judge:
        parts.append("<p>No judge ran for this partition.</p>")
        return parts
    columns = {"all traffic": judge["overall"], **judge["by_variant"]}
    metrics = sorted({m for values in columns.values() for m in values})

    def cell(entry: dict[str, Any] | None) -> str:
        if not entry:
            return "–"
        return f"{fmt(entry['estimate'])} <span class=\"muted\">[{fmt(entry['ci_low'])}, {fmt(entry['ci_high'])}] n={fmt(entry['n'])}</span>"

    backend = judge["backend"]
    name = backend.get("backend", backend) if isinstance(backend, dict) else backend
    model = backend.get("model") if isinstance(backend, dict) else None
    parts += [f"<h3>Judge ({label(name)}{' ' + label(model) if model else ''})</h3>",
              f'<p class="muted">{fmt(judge["sampled"])} answers sampled (limited by {label(judge["limited_by"])}): {fmt(judge["judged"])} judged, '
              f'{fmt(judge["failed"])} judge failures, {fmt(judge["skipped_budget"])} over the ${judge["budget_usd"]:g} budget · '
              '<a href="judge.json">estimates, design and spend</a> · '
              '<a href="judge.parquet">every judgment</a> · <a href="review/queue.csv">human review queue</a></p>',
              table(["metric", *columns], [[label(m), *(cell(values.get(m)) for values in columns.values())] for m in metrics], cls="judge")]
    pairwise = judge.get("pairwise")
    if pairwise and pairwise.get("win_rate") is not None:
        low, high = pairwise["win_rate_ci"]
        parts.append(f"<p>Shadow vs served answers to the same requests, judged in both orders: {label(pairwise['label_b'])} preferred in "
                     f"{fmt(pairwise['win_rate'])} [{fmt(low)}, {fmt(high)}] of {fmt(pairwise['wins'] + pairwise['losses'])} decided pairs "
                     f"({fmt(pairwise['ties'])} ties; position consistency {fmt(pairwise['consistency_rate'])}; sign test p {fmt(pairwise['sign_test_p'])})</p>")
    if examples:
        parts.append("<h3>Judged examples</h3>")
        parts.append('<p class="muted">Flagged answers first, then the lowest scored; texts are shown as logged (escaped), cut at 2,000 characters.</p>')
        parts += [_example(e) for e in examples]
    return parts


def _example(e: Example) -> str:
    scores = " · ".join(f"{label(k)} {v:g}" for k, v in e.scores.items())
    flags = " ".join(badge("breach", f) for f in e.flags)
    return (f'<div class="example" data-request-id="{attr(e.request_id, LABEL_CHARS)}"><div><b>{h(e.why)}</b> · {label(e.variant)} · '
            f'<span class="muted">{label(e.request_id)}</span> {flags}</div>'
            f'<div class="muted">{scores}{" · texts cut" if e.truncated else ""}</div>'
            f'<div class="label">prompt</div><pre class="prompt">{h(e.prompt)}</pre>'
            f'<div class="label">response</div><pre class="response">{h(e.response)}</pre>'
            f'<div class="label">judge reasoning</div><pre class="reasoning">{h(e.reasoning)}</pre></div>')


def _experiments_section(experiments: list[dict[str, Any]], thresholds: dict[str, dict[tuple[str, str], float]]) -> list[str]:
    """Each experiment's decision and reasons, forest plots of its primary metrics and guardrails, then the tables."""
    parts = ["<h2>5 · How are the experiments doing?</h2>"]
    if not experiments:
        parts.append("<p>No experiment is configured for this model.</p>")
        return parts
    for e in experiments:
        marks = thresholds.get(e["experiment_id"], {})
        parts.append(f"<h3>{label(e['experiment_id'])} {badge(e['decision'])}</h3>")
        facts = []
        if e.get("requests") is not None:
            facts.append(f"{fmt(e['requests'])} requests since the start")
        if e.get("srm_p_value") is not None:
            facts.append(f"SRM p {fmt(e['srm_p_value'])}")
        if e.get("days_remaining") is not None:
            facts.append(f"about {fmt(e['days_remaining'])} more day(s) to the planned sample size")
        if facts:
            parts.append(f'<p class="muted">{" · ".join(facts)}</p>')
        parts.append("<ul>" + "".join(f"<li>{h(r)}</li>" for r in e.get("reasons") or []) + "</ul>")
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
                plots.append(forest_plot(rows, title=f"{isolate(e['experiment_id'])}: guardrails ({scale.replace('_', ' ')})", x_label=axis, x_format=x_format))
        if plots:
            parts.append(_charts(*plots))
        if e.get("primary"):
            parts.append(table(["primary metric", "decision", "lift", "lift interval", "p (corrected)", "note"],
                               [[label(p["metric"]), badge(p.get("decision") or "inconclusive"), _pct(p.get("relative_lift")),
                                 f"{_pct(p.get('lift_ci_low'))} … {_pct(p.get('lift_ci_high'))}", fmt(p.get("p_adjusted")), h(p.get("reason") or "")]
                                for p in e["primary"]], numeric_from=2, text_from=5))
        if e.get("guardrails"):
            parts.append(table(["guardrail", "verdict", "scale", "estimate", "interval", "margin", "note"],
                               [[label(g["metric"]), badge(g.get("verdict") or "inconclusive"), label(g.get("scale") or ""), fmt(g.get("estimate")),
                                 f"{fmt(g.get('lower'))} … {fmt(g.get('upper'))}", fmt(g.get("margin")), h(g.get("reason") or "")]
                                for g in e["guardrails"]], numeric_from=3, text_from=6))
    parts.append('<p class="muted">Every statistic, interval and health check: <a href="experiments.json">experiments.json</a></p>')
    return parts


def _detail_sections(summary: dict[str, Any]) -> list[str]:
    """Prompt lengths, quarantine reasons and the files read."""
    parts = []
    hist = summary["prompt_token_histogram"]
    if hist:
        top = max(x["count"] for x in hist) or 1
        parts.append("<h2>Prompt length (tokens)</h2>")
        parts.append(table(["tokens", "requests", ""], [[f"{x['from']}–{x['to'] if x['to'] is not None else '∞'}", fmt(x["count"]),
                                                          f'<span class="bar" style="width:{300 * x["count"] / top:.0f}px"></span>'] for x in hist]))
    validation = summary.get("validation")
    if validation and validation["failures"]:
        parts.append("<h2>Quarantined rows by rule</h2>")
        parts.append(table(["rule", "rows", "examples"], [[label(rule), fmt(n), ", ".join(label(x) for x in validation["examples"].get(rule, []))]
                                                          for rule, n in sorted(validation["failures"].items(), key=lambda kv: -kv[1])],
                           numeric_from=1, text_from=2))
        parts.append(f'<p class="muted">Rows with their reasons: {h(validation["quarantine_uri"])}</p>')
    files = summary["files"]
    if files:
        parts.append("<h2>Files read</h2>")
        parts.append(table(["file", "format", "rows", "problem"], [[h(f["uri"]), label(f["format"]), fmt(f["rows_read"]), h(f.get("problem") or "")]
                                                                   for f in files], numeric_from=2, text_from=3))
    return parts


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):+.2f}%"


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


def render_site_index(entries: Sequence[IndexEntry], histories: dict[str, History] | None = None,
                      older: dict[str, list[tuple[str, str]]] | None = None) -> str:
    """The top-level index: the latest daily state of each model answering the five questions, then each model's days (newest first).

    ``older`` lists, per model, (label, link) of days shown as links only (beyond the window whose summaries were read).
    """
    histories, older = histories or {}, older or {}
    by_model: dict[str, list[IndexEntry]] = {}
    for entry in entries:
        by_model.setdefault(entry.summary["model_id"], []).append(entry)
    parts = ["<h1>modelwatch reports</h1>"]
    if not by_model:
        parts.append("<p>No report has been published yet.</p>")
        return page("modelwatch reports", "".join(parts))
    latest_rows = []
    for model_id in sorted(by_model):
        ordered = sorted(by_model[model_id], key=lambda e: (e.summary["partition"]["dt"], e.summary["partition"].get("hour") or -1), reverse=True)
        daily = [e for e in ordered if e.summary["partition"].get("hour") is None]
        latest = (daily or ordered)[0]
        cells = [f'<a href="{attr(latest.link, limit=None)}">{label(model_id)}</a>', label(_label(latest.summary["partition"]))]
        for a in answers(latest.summary, histories.get(model_id)):
            cells.append(f'{badge(a.state)}<div>{h(a.headline)}</div><div class="muted">{h(a.detail)}</div>')
        latest_rows.append(cells)
    parts.append("<h2>Latest state per model</h2>")
    parts.append(table(["model", "partition", "healthy now?", "drifting?", "vs baseline?", "cost?", "experiments?"], latest_rows, numeric_from=99,
                       cls="latest"))
    for model_id in sorted(by_model):
        ordered = sorted(by_model[model_id], key=lambda e: (e.summary["partition"]["dt"], e.summary["partition"].get("hour") or -1), reverse=True)
        rows = []
        for e in ordered:
            s = e.summary
            overall = s["metrics"].get("__all__", {})
            decisions = ", ".join(f"{isolate(x['experiment_id'])}: {x['decision']}" for x in s.get("experiments") or [])
            rows.append([f'<a href="{attr(e.link, limit=None)}">{label(_label(s["partition"]))}</a>', badge(s["outcome"]), badge((s.get("drift") or {}).get("severity") or "–"),
                         h(decisions), fmt(s["rows"]["read"]), fmt(s["rows"]["quarantined"]), metric_cell("error_rate", overall.get("error_rate")),
                         fmt(overall.get("latency_p99_ms")), metric_cell("cost_usd_total", overall.get("cost_usd_total"))])
        parts.append(f'<h2 id="{attr("model-" + model_id, LABEL_CHARS)}">{label(model_id)}</h2>')
        parts.append(table(["partition", "outcome", "drift", "experiments", "rows read", "quarantined", "error rate", "latency p99 ms", "cost"], rows,
                           numeric_from=4, cls="days"))
        if older.get(model_id):
            parts.append('<p class="muted">Earlier: ' + " · ".join(f'<a href="{attr(link, limit=None)}">{label(text)}</a>' for text, link in older[model_id]) + "</p>")
    return page("modelwatch reports", "\n".join(parts))


def _label(partition: dict[str, Any]) -> str:
    return partition["dt"] + ("" if partition.get("hour") is None else f" {int(partition['hour']):02d}h")
