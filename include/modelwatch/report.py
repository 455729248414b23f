"""Readable HTML pages: one per model and partition, and a site index over them.

Plain HTML with inline CSS (no scripts, no external assets) so a page opens from S3,
a local mirror, or an email attachment alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

from modelwatch.metric_names import OPERATIONAL_METRICS

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2933;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d9e2ec;padding-bottom:.3rem}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.5rem 0}th,td{padding:.35rem .6rem;border-bottom:1px solid #e4e7eb;text-align:left}
th{background:#f5f7fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:.15rem .6rem;border-radius:1rem;font-weight:600;font-size:.85rem}
.ok,.none,.stable,.non_inferior,.better,.promote{background:#e3f9e5;color:#1f6f2b}
.breach,.high,.drift,.inferior,.worse,.roll_back{background:#ffe3e3;color:#a61b1b}
.medium,.stop{background:#ffe8d9;color:#ad4e00}
.no_traffic,.abstain,.low,.inconclusive,.continue,.insufficient_labels,.not_started{background:#fff3c4;color:#8d6b00}
.bar{background:#5a8dee;height:.8rem;display:inline-block;border-radius:2px}.muted{color:#7b8794;font-size:.85rem}
"""
_HEADLINE = ["requests", "error_rate", "timeout_rate", "refusal_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
             "prompt_tokens_mean", "completion_tokens_mean", "throughput_rps", "cost_usd_total", "cost_per_request_usd", "feedback_negative_rate"]


def fmt(value: Any) -> str:
    """A number as a person reads it: rates as percentages, money with $, counts with separators."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return escape(value)
    v = float(value)
    if v != v:
        return "–"
    return f"{v:,.0f}" if v.is_integer() and abs(v) >= 1 else f"{v:,.4g}"


def _metric_cell(metric: str, value: Any) -> str:
    if value is None:
        return "–"
    unit = OPERATIONAL_METRICS.get(metric, ("", ""))[0]
    if unit == "ratio":
        return f"{float(value):.2%}"
    if unit == "USD":
        return f"${float(value):,.4f}" if float(value) < 1 else f"${float(value):,.2f}"
    return fmt(value)


def table(headers: list[str], rows: Iterable[list[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i >= numeric_from else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(title: str, body: str) -> str:
    return f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>'


def badge(state: str) -> str:
    return f'<span class="badge {escape(state)}">{escape(state.replace("_", " "))}</span>'


def render_partition_page(summary: dict[str, Any]) -> str:
    p = summary["partition"]
    where = f"{p['dt']}" + ("" if p.get("hour") is None else f" {p['hour']:02d}:00 UTC")
    rows = summary["rows"]
    parts = [
        f"<h1>{escape(summary['model_id'])} · {escape(where)} {badge(summary['outcome'])}</h1>",
        f'<p class="muted">rows read {fmt(rows["read"])} = valid {fmt(rows["valid"])} + quarantined {fmt(rows["quarantined"])}'
        f" · run {escape(str(summary.get('run', {}).get('run_id', '')))}</p>",
    ]
    if summary["outcome"] == "no_traffic":
        parts.append("<p>No traffic was logged for this partition. Nothing else was computed.</p>")
    if summary["breaches"]:
        parts.append("<h2>Guardrail breaches</h2>")
        parts.append(table(["experiment", "metric", "value", "requests", "reason"],
                           [[escape(b["experiment_id"]), escape(b["metric"]), _metric_cell(b["metric"], b["value"]), fmt(b["requests"]), escape(b["reason"])] for b in summary["breaches"]], numeric_from=2))
    parts += _drift_section(summary.get("drift"), summary["outputs"].get("evidently_report"))
    parts += _judge_section(summary.get("judge"))
    parts += _experiments_section(summary.get("experiments") or [])
    if summary.get("concept"):
        c = summary["concept"]
        parts.append(f'<h2>Concept drift {badge(c["verdict"])}</h2><p>{escape(c["reason"])} · {fmt(c["evaluated"])} labelled predictions evaluated'
                     ' · <a href="concept.json">windowed metrics, detections and calibration</a></p>')
    metrics = summary["metrics"]
    if metrics:
        variants = ["__all__"] + sorted(v for v in metrics if v != "__all__")
        parts.append("<h2>Operational metrics</h2>")
        parts.append(table(["metric"] + ["all traffic" if v == "__all__" else v for v in variants],
                           [[escape(m)] + [_metric_cell(m, metrics[v].get(m)) for v in variants] for m in _HEADLINE if any(m in metrics[v] for v in variants)]))
    if summary["hard_limits"]:
        parts.append("<h2>Hard limits</h2>")
        parts.append(table(["experiment", "arm", "metric", "value", "limit", "state", "reason"],
                           [[escape(c["experiment_id"]), escape(c["arm"]), escape(c["metric"]), _metric_cell(c["metric"], c["value"]),
                             escape(f"max {c['max']}" if c["max"] is not None else f"min {c['min']}"), badge(c["state"]), escape(c["reason"])] for c in summary["hard_limits"]], numeric_from=3))
    if summary["segments"]:
        parts.append("<h2>Segments</h2>")
        parts.append(table(["segment", "value", "requests", "error rate", "latency p95 ms", "prompt tokens", "cost"],
                           [[escape(s["segment"]), escape(s["value"]), fmt(s.get("requests")), _metric_cell("error_rate", s.get("error_rate")),
                             fmt(s.get("latency_p95_ms")), fmt(s.get("prompt_tokens_mean")), _metric_cell("cost_usd_total", s.get("cost_usd_total"))] for s in summary["segments"]], numeric_from=2))
    hist = summary["prompt_token_histogram"]
    if hist:
        top = max(h["count"] for h in hist) or 1
        parts.append("<h2>Prompt length (tokens)</h2>")
        parts.append(table(["tokens", "requests", ""], [[f"{h['from']}–{h['to'] if h['to'] is not None else '∞'}", fmt(h["count"]),
                                                          f'<span class="bar" style="width:{300 * h["count"] / top:.0f}px"></span>'] for h in hist]))
    validation = summary.get("validation")
    if validation and validation["failures"]:
        parts.append("<h2>Quarantined rows by rule</h2>")
        parts.append(table(["rule", "rows", "examples"], [[escape(rule), fmt(n), escape(", ".join(validation["examples"].get(rule, [])))]
                                                          for rule, n in sorted(validation["failures"].items(), key=lambda kv: -kv[1])], numeric_from=1))
        parts.append(f'<p class="muted">Rows with their reasons: {escape(validation["quarantine_uri"])}</p>')
    files = summary["files"]
    if files:
        parts.append("<h2>Files read</h2>")
        parts.append(table(["file", "format", "rows", "problem"], [[escape(f["uri"]), escape(f["format"]), fmt(f["rows_read"]), escape(f.get("problem") or "")] for f in files], numeric_from=2))
    return page(f"{summary['model_id']} {where}", "\n".join(parts))


def _drift_section(drift: dict[str, Any] | None, evidently_uri: str | None) -> list[str]:
    """Drift verdict and its alerts (worst first); the full statistics are in drift.json and the Evidently report."""
    if not drift:
        return []
    if drift["outcome"] == "no_baseline":
        return ["<h2>Drift</h2>", f'<p>{badge("no baseline")} {escape(drift["reason"])}</p>']
    parts = [f"<h2>Drift {badge(drift['severity'])}</h2>",
             f'<p class="muted">against baseline {escape(str(drift["baseline_version"]))}: {fmt(drift["alert_count"])} drifting column tests'
             + (' · <a href="report.html">Evidently report</a>' if evidently_uri else "") + ' · <a href="drift.json">every test</a></p>']
    if drift["alerts"]:
        parts.append(table(["severity", "family", "segment", "column", "statistic", "effect", "p (BH)"],
                           [[badge(a["severity"]), escape(a["family"]), escape(a.get("segment") or ""), escape(a["column"]), escape(str(a["effect_method"])),
                             fmt(a["effect"]), fmt(a["p_adjusted"])] for a in drift["alerts"]], numeric_from=5))
    return parts


def _experiments_section(experiments: list[dict[str, Any]]) -> list[str]:
    """Each experiment's decision and reasons, then its primary metrics and guardrails."""
    parts = []
    for e in experiments:
        parts.append(f"<h2>Experiment {escape(e['experiment_id'])} {badge(e['decision'])}</h2>")
        parts.append("<ul>" + "".join(f"<li>{escape(r)}</li>" for r in e.get("reasons") or []) + "</ul>")
        if e.get("primary"):
            parts.append(table(["primary metric", "decision", "lift", "lift interval", "p (corrected)", "note"],
                               [[escape(p["metric"]), badge(p.get("decision") or "inconclusive"), _pct(p.get("relative_lift")),
                                 f"{_pct(p.get('lift_ci_low'))} … {_pct(p.get('lift_ci_high'))}", fmt(p.get("p_adjusted")), escape(p.get("reason") or "")]
                                for p in e["primary"]], numeric_from=2))
        if e.get("guardrails"):
            parts.append(table(["guardrail", "verdict", "estimate", "interval", "margin", "note"],
                               [[escape(g["metric"]), badge(g.get("verdict") or "inconclusive"), fmt(g.get("estimate")),
                                 f"{fmt(g.get('lower'))} … {fmt(g.get('upper'))}", fmt(g.get("margin")), escape(g.get("reason") or "")]
                                for g in e["guardrails"]], numeric_from=2))
    if experiments:
        parts.append('<p class="muted">Every statistic, interval and health check: <a href="experiments.json">experiments.json</a></p>')
    return parts


def _judge_section(judge: dict[str, Any] | None) -> list[str]:
    """Weighted judge estimates with 95% intervals, overall and per variant."""
    if not judge:
        return []
    columns = {"all traffic": judge["overall"], **judge["by_variant"]}
    metrics = sorted({m for values in columns.values() for m in values})

    def cell(entry: dict[str, Any] | None) -> str:
        if not entry:
            return "–"
        return f"{fmt(entry['estimate'])} <span class=\"muted\">[{fmt(entry['ci_low'])}, {fmt(entry['ci_high'])}] n={fmt(entry['n'])}</span>"

    backend = judge["backend"]
    parts = [f"<h2>Judge ({escape(str(backend.get('backend', backend)))}{' ' + escape(str(backend.get('model'))) if backend.get('model') else ''})</h2>",
             f'<p class="muted">{fmt(judge["sampled"])} answers sampled (limited by {escape(judge["limited_by"])}): {fmt(judge["judged"])} judged, '
             f'{fmt(judge["failed"])} judge failures, {fmt(judge["skipped_budget"])} over the ${judge["budget_usd"]:g} budget · '
             '<a href="judge.json">estimates, design and spend</a> · '
             '<a href="judge.parquet">every judgment</a> · <a href="review/queue.csv">human review queue</a></p>',
             table(["metric", *columns], [[escape(m), *(cell(values.get(m)) for values in columns.values())] for m in metrics])]
    pairwise = judge.get("pairwise")
    if pairwise and pairwise.get("win_rate") is not None:
        low, high = pairwise["win_rate_ci"]
        parts.append(f"<p>Shadow vs served answers to the same requests, judged in both orders: {escape(pairwise['label_b'])} preferred in "
                     f"{fmt(pairwise['win_rate'])} [{fmt(low)}, {fmt(high)}] of {fmt(pairwise['wins'] + pairwise['losses'])} decided pairs "
                     f"({fmt(pairwise['ties'])} ties; position consistency {fmt(pairwise['consistency_rate'])}; sign test p {fmt(pairwise['sign_test_p'])})</p>")
    return parts


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * float(value):+.2f}%"


def render_site_index(summaries: list[dict[str, Any]], links: dict[str, str]) -> str:
    """Index over partitions: one row per model and partition, newest first, linking each page."""
    rows = []
    for s in sorted(summaries, key=lambda s: (s["model_id"], s["partition"]["dt"], s["partition"].get("hour") or -1), reverse=True):
        p = s["partition"]
        key = s["outputs"]["page"]
        overall = s["metrics"].get("__all__", {})
        label = p["dt"] + ("" if p.get("hour") is None else f" {p['hour']:02d}h")
        rows.append([escape(s["model_id"]), f'<a href="{escape(links.get(key, key))}">{escape(label)}</a>', badge(s["outcome"]), fmt(s["rows"]["read"]),
                     badge((s.get("drift") or {}).get("severity") or "–"),
                     fmt(s["rows"]["quarantined"]), _metric_cell("error_rate", overall.get("error_rate")), fmt(overall.get("latency_p99_ms"))])
    body = "<h1>modelwatch reports</h1>" + table(["model", "partition", "outcome", "rows read", "drift", "quarantined", "error rate", "latency p99 ms"], rows, numeric_from=4)
    return page("modelwatch reports", body)
