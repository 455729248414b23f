"""The five questions a report answers at a glance, computed from a run summary (and its 30-day history).

1. Is the model healthy now?  2. Is anything drifting?  3. How does today compare with
the baseline?  4. What does it cost?  5. How are the experiments doing?

Each answer is a state (a short word the page colours), a headline with the numbers and
a detail line. The per-day page shows them as cards; the site index shows one row per
model with the same answers, so both places say the same thing. Questions 3 and 4 are
descriptive (how far today's numbers moved); whether a move is statistically real is the
drift tests' and the experiments' job, answered in questions 2 and 5.

"Healthy now?" is ``breach`` on a hard-limit or guardrail breach, else ``alert`` when the
estimated performance leaves its reference range or a judge flag rate is far above its
earlier days' (the summary's ``judge_flags``, tested by ``publish.flag_rates``).

Headlines and details are plain text (the page escapes them); every id, column name or
segment value in them is cut and bidi-isolated here (``publish.text.isolate``), so a value
with a right-to-left override reorders only itself, not the numbers after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelwatch.publish.data import History, window_comparison
from modelwatch.publish.text import isolate

NOTABLE_CHANGE = 0.2  # a quantile or cost per request this far (relative) from its reference is called "changed"
NOTABLE_SHARE_SHIFT = 0.1  # a segment's share of traffic this far (absolute) from the baseline's is called "changed"
_DECISION_ORDER = ["roll_back", "invalid", "stop", "continue", "guardrail_watch", "promote", "rolled_back", "not_started"]  # most urgent first


@dataclass(frozen=True)
class Answer:
    question: str
    state: str
    headline: str
    detail: str


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.1f}%" if signed else f"{100 * value:.2f}%"


def _num(value: float | None, unit: str = "") -> str:
    return "–" if value is None else f"{value:,.0f}{unit}"


def _usd(value: float | None) -> str:
    if value is None:
        return "–"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.3g}"


def health(summary: dict[str, Any]) -> Answer:
    overall = summary["metrics"].get("__all__", {})
    rows = summary["rows"]
    if summary["outcome"] == "no_traffic":
        return Answer("healthy now?", "no_traffic", "no traffic logged", f"{rows['read']:,} rows read")
    state = "breach" if summary["breaches"] else "ok"
    headline = f"error rate {_pct(overall.get('error_rate'))} · p99 {_num(overall.get('latency_p99_ms'), ' ms')}"
    detail = [f"{_num(overall.get('requests'))} requests", f"{rows['quarantined']:,} quarantined"]
    if summary["breaches"]:
        detail.append(f"{len(summary['breaches'])} breach(es): " + "; ".join(f"{isolate(b['experiment_id'])} {isolate(b['metric'])}" for b in summary["breaches"]))
    estimation = (summary.get("concept") or {}).get("estimation") or {}
    for row in estimation.get("metrics") or []:
        if row.get("metric") == estimation.get("primary_metric") and row.get("estimate") is not None:
            detail.append(f"estimated {row['metric']} {row['estimate']:.3f}" + (" (outside its reference range)" if row.get("alert") else ""))
            state = "alert" if row.get("alert") and state == "ok" else state
    rises = [r for r in summary.get("judge_flags") or [] if r.get("alert")]
    if rises:
        state = "alert" if state == "ok" else state
        headline += " · " + " · ".join(f"{_flag_name(r['flag'])} {_pct(r['rate'])}" for r in rises)
        detail[:0] = [f"{_flag_name(r['flag'])} {_pct(r['rate'])} far above its {_pct(r['reference_rate'])} on the {r['reference_days']} earlier "
                      f"day(s) (score test p {r['p_value']:.2g})" for r in rises]
    judge = (summary.get("judge") or {}).get("overall") or {}
    for metric in ("judge.helpfulness", "judge.toxicity_rate"):
        if metric in judge and metric not in {r["flag"] for r in rises}:
            value = judge[metric]["estimate"]
            detail.append(f"{_flag_name(metric)} {_pct(value) if metric.endswith('_rate') else f'{value:.2f}'}")
    return Answer("healthy now?", state, headline, " · ".join(detail))


def _flag_name(metric: str) -> str:
    """``judge.toxicity_rate`` as a person reads it: ``toxicity rate``."""
    return metric.removeprefix("judge.").replace("_", " ")


def drift(summary: dict[str, Any]) -> Answer:
    d = summary.get("drift")
    concept = summary.get("concept")
    tail = f" · concept: {concept['verdict'].replace('_', ' ')}" if concept else ""
    if not d:
        return Answer("drifting?", "not_checked", "not checked in this run", "drift runs with the daily partition" + tail)
    if d["outcome"] == "no_baseline":
        return Answer("drifting?", "no_baseline", "no baseline to compare with", (d.get("reason") or "") + tail)
    alerts = d.get("alerts") or []
    worst = ", ".join(dict.fromkeys(isolate(a["column"]) for a in alerts[:3]))
    return Answer("drifting?", d["severity"], f"{d['alert_count']} drifting column test(s)" + (f": {worst}" if worst else ""),
                  f"against baseline {isolate(d.get('baseline_version'))}" + tail)


def versus_baseline(summary: dict[str, Any], history: History | None) -> Answer:
    comparison = summary.get("baseline_comparison") or {}
    quantiles = [q for q in comparison.get("quantiles") or [] if q.get("change") is not None]
    shifts = [m for m in comparison.get("segment_mix") or [] if abs(m["today_share"] - m["baseline_share"]) >= NOTABLE_SHARE_SHIFT]
    if quantiles:
        moved = [q for q in quantiles if abs(q["change"]) >= NOTABLE_CHANGE]
        state = "changed" if moved or shifts else "close"
        headline = " · ".join(f"{isolate(q['measure'])} {_pct(q['change'], signed=True)}" for q in quantiles[:3])
        detail = f"baseline {isolate(comparison.get('version'))}"
        if shifts:
            s = shifts[0]
            detail += f" · {isolate(s['segment'])}={isolate(s['value'])} share {_pct(s['baseline_share'])} → {_pct(s['today_share'])}"
        return Answer("vs baseline?", state, headline, detail)
    if history is not None and history.present > 1:
        rows = [r for r in window_comparison(history, ["latency_p95_ms", "error_rate"]) if r["change"] is not None]
        if rows:
            state = "changed" if any(abs(r["change"]) >= NOTABLE_CHANGE for r in rows) else "close"
            return Answer("vs baseline?", state, " · ".join(f"{r['metric']} {_pct(r['change'], signed=True)}" for r in rows),
                          f"against the median of the previous {rows[0]['days']} day(s) (no baseline quantiles)")
    return Answer("vs baseline?", "not_checked", "no baseline or earlier days to compare with", "")


def cost(summary: dict[str, Any], history: History | None) -> Answer:
    overall = summary["metrics"].get("__all__", {})
    total, per_request = overall.get("cost_usd_total"), overall.get("cost_per_request_usd")
    if total is None:
        return Answer("cost?", "not_checked", "no cost logged", "")
    detail = f"{_usd(per_request)} per request"
    state = "ok"
    if history is not None:
        row = window_comparison(history, ["cost_per_request_usd"])[0]
        if row["change"] is not None:
            detail += f" · {_pct(row['change'], signed=True)} vs the {row['days']}-day median"
            state = "higher" if row["change"] >= NOTABLE_CHANGE else "ok"
    return Answer("cost?", state, f"{_usd(total)} today", detail)


def experiments(summary: dict[str, Any]) -> Answer:
    exps = summary.get("experiments") or []
    if not exps:
        return Answer("experiments?", "none", "no experiment running", "")
    ranked = sorted(exps, key=lambda e: _DECISION_ORDER.index(e["decision"]) if e["decision"] in _DECISION_ORDER else len(_DECISION_ORDER))
    parts = []
    for e in ranked:
        left = f" ({e['days_remaining']} days left)" if e.get("days_remaining") is not None and e["decision"] == "continue" else ""
        parts.append(f"{isolate(e['experiment_id'])}: {e['decision'].replace('_', ' ')}{left}")
    srm = [isolate(e["experiment_id"]) for e in exps if e.get("health_ok") is False]
    return Answer("experiments?", ranked[0]["decision"], " · ".join(parts), f"health check failed: {', '.join(srm)}" if srm else "health checks pass")


def answers(summary: dict[str, Any], history: History | None = None) -> list[Answer]:
    """The five answers, in the order the questions are asked."""
    return [health(summary), drift(summary), versus_baseline(summary, history), cost(summary, history), experiments(summary)]
