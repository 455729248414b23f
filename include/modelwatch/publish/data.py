"""What the report pages show beyond one summary: the 30-day history, judged examples, and today against the baseline.

Everything here is read at publish time and handed to ``report`` as plain data:

- :func:`load_history` reads the previous days' ``summary.json`` of a model (bounded to
  ``HISTORY_DAYS``); a day without a summary is a gap, an unreadable one is a gap with a
  recorded problem, never an error;
- :func:`trend` turns the summaries into aligned per-day series (``None`` for a gap);
- :func:`select_examples` picks a handful of judged answers from ``judge.parquet``: the
  flagged ones (toxicity, hallucination) and the lowest scored;
- :func:`baseline_comparison` sets today's latency and token quantiles next to the
  baseline's profile quantiles (Apache DataSketches KLL, see ``baseline``), and today's
  segment mix next to the baseline's frequent-items counts;
- :func:`window_comparison` sets today's headline metrics next to the median of the
  previous days in the window.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from modelwatch.publish.text import TEXT_CHARS, shown

HISTORY_DAYS = 30
SEVERITY_RANK = {"none": 0, "low": 1, "medium": 2, "high": 3}
EXAMPLE_TEXT_CHARS = TEXT_CHARS


@dataclass
class History:
    """Daily summaries of one model for the ``len(days)`` days ending with the page's day (oldest first)."""

    days: list[date]
    summaries: list[dict[str, Any] | None]
    problems: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [d.isoformat()[5:] for d in self.days]  # MM-DD: the year is in the page title

    @property
    def present(self) -> int:
        return sum(s is not None for s in self.summaries)


def history_days(day: date, days: int = HISTORY_DAYS) -> list[date]:
    """The ``days`` calendar days ending with ``day``, oldest first."""
    if days < 1:
        raise ValueError(f"history needs at least one day, got {days}")
    return [day - timedelta(days=i) for i in range(days - 1, -1, -1)]


def summary_uri(reports_uri: str, model_id: str, day: date) -> str:
    return f"{reports_uri.rstrip('/')}/model_id={model_id}/dt={day.isoformat()}/summary.json"


def read_summary(client, uri: str, model_id: str, dt: str) -> tuple[dict[str, Any] | None, str | None]:
    """The daily summary of ``model_id`` for day ``dt`` at ``uri``, as ``(summary, None)``; never raises for a bad one.

    ``(None, None)``: there is none (404). ``(None, problem)``: it cannot be used, and ``problem``
    says why, naming the object: S3 refused it (a 403 names the permission lacking) or kept
    failing through the client's retries, or it is not JSON, or not this model's daily summary
    of that day. Reports that read earlier days show the problem instead of failing the run.
    """
    from modelwatch.storage.s3 import NOT_FOUND_CODES, S3Error, S3Unreachable, error_code, get_bytes

    try:
        data = get_bytes(client, uri)
    except S3Error as exc:
        return (None, None) if error_code(exc) in NOT_FOUND_CODES else (None, str(exc))
    except S3Unreachable as exc:
        return None, str(exc)
    try:
        summary = json.loads(data)
    except ValueError as exc:
        return None, f"{uri}: not JSON ({exc})"
    partition = summary.get("partition") if isinstance(summary, dict) else None
    if not isinstance(partition, dict) or summary.get("model_id") != model_id or partition.get("dt") != dt or partition.get("hour") is not None:
        return None, f"{uri}: not the daily summary of {model_id} for {dt}"
    return summary, None


def load_history(client, reports_uri: str, model_id: str, today: dict[str, Any], days: int = HISTORY_DAYS, threads: int = 8) -> History:
    """Today's summary and the daily summaries of the ``days - 1`` days before it, read from S3 concurrently.

    A missing day is a gap (``None``); a summary that cannot be read or used (:func:`read_summary`)
    is a gap with the reason in ``problems`` (the page shows them). Never raises for an earlier day.
    """
    day = date.fromisoformat(today["partition"]["dt"])
    calendar = history_days(day, days)

    def read(d: date) -> tuple[dict[str, Any] | None, str | None]:
        summary, problem = read_summary(client, summary_uri(reports_uri, model_id, d), model_id, d.isoformat())
        return summary, problem and f"{problem}; the day is shown as a gap"

    earlier = calendar[:-1]
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(earlier) or 1))) as pool:
        results = list(pool.map(read, earlier))
    return History(calendar, [s for s, _ in results] + [today], [p for _, p in results if p])


def history_from_summaries(summaries: Sequence[dict[str, Any]], model_id: str, day: date, days: int = HISTORY_DAYS) -> History:
    """The same window built from summaries already in hand (the mirror has every summary)."""
    by_day = {s["partition"]["dt"]: s for s in summaries if s.get("model_id") == model_id and s["partition"].get("hour") is None}
    calendar = history_days(day, days)
    return History(calendar, [by_day.get(d.isoformat()) for d in calendar])


def _headline(summary: dict[str, Any], metric: str) -> float | None:
    value = (summary.get("metrics") or {}).get("__all__", {}).get(metric)
    return None if value is None else float(value)


def _judge(summary: dict[str, Any], metric: str) -> float | None:
    entry = ((summary.get("judge") or {}).get("overall") or {}).get(metric)
    return None if not entry or entry.get("estimate") is None else float(entry["estimate"])


def _drift_severity(summary: dict[str, Any]) -> float | None:
    drift = summary.get("drift")
    if not drift or drift.get("outcome") != "ok":
        return None
    return float(SEVERITY_RANK.get(drift.get("severity") or "none", 0))


def _drift_alerts(summary: dict[str, Any]) -> float | None:
    drift = summary.get("drift")
    return None if not drift or drift.get("outcome") != "ok" else float(drift.get("alert_count") or 0)


def series(history: History, getter: Callable[[dict[str, Any]], float | None]) -> list[float | None]:
    """``getter`` applied to each day's summary; ``None`` where the day has no summary or no value."""
    return [None if s is None else getter(s) for s in history.summaries]


def headline_series(history: History, metric: str) -> list[float | None]:
    return series(history, lambda s: _headline(s, metric))


def judge_series(history: History, metric: str) -> list[float | None]:
    return series(history, lambda s: _judge(s, metric))


def judge_metrics(history: History) -> tuple[list[str], list[str]]:
    """The judge's score metrics (``judge.<dimension>``) and rate metrics (``judge.<flag>_rate``) seen in the window, sorted."""
    names = {m for s in history.summaries if s for m in ((s.get("judge") or {}).get("overall") or {})}
    rates = sorted(m for m in names if m.endswith("_rate"))
    return sorted(names - set(rates)), rates


def drift_series(history: History) -> tuple[list[float | None], list[float | None]]:
    """Per day: drift severity rank (0 none … 3 high) and the number of drifting column tests; ``None`` without a drift check."""
    return series(history, _drift_severity), series(history, _drift_alerts)


def window_comparison(history: History, metrics: Sequence[str]) -> list[dict[str, Any]]:
    """Today's headline value against the median of the earlier days of the window that have one."""
    out = []
    for metric in metrics:
        values = headline_series(history, metric)
        today, earlier = values[-1], [v for v in values[:-1] if v is not None]
        median = statistics.median(earlier) if earlier else None
        change = None if today is None or not median else today / median - 1
        out.append({"metric": metric, "today": today, "median": median, "days": len(earlier), "change": change})
    return out


# Baseline profile columns (see ``columns``) and today's headline metrics at the same quantile.
_BASELINE_QUANTILES = {
    "latency_ms": {"p50": "latency_p50_ms", "p95": "latency_p95_ms", "p99": "latency_p99_ms"},
    "prompt_tokens": {"p95": "prompt_tokens_p95"},
    "input.prompt_tokens": {"p95": "prompt_tokens_p95"},
    "prediction.response_tokens": {"p95": "completion_tokens_p95"},
}


def baseline_comparison(profiles: dict[str, Any], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Today's quantiles next to the baseline's (KLL sketch quantiles, ~1.3% rank error at k=200), one row per measure.

    The baseline profiles incumbent traffic; today's headline covers all traffic, so a
    treatment arm's effect shows here too (the experiments section separates it).
    """
    out, seen = [], set()
    for column, wanted in _BASELINE_QUANTILES.items():
        quantiles = (profiles.get(column) or {}).get("quantiles") or {}
        for q, metric in wanted.items():
            if metric in seen or q not in quantiles:
                continue
            seen.add(metric)
            base, today = float(quantiles[q]), _headline(summary, metric)
            out.append({"measure": f"{column} {q}", "metric": metric, "baseline": base, "today": today,
                        "change": None if today is None or not base else today / base - 1})
    return out


def segment_mix(profiles: dict[str, Any], summary: dict[str, Any], top: int = 8) -> list[dict[str, Any]]:
    """Share of traffic per segment value, baseline (frequent-items counts) against today (segment rows), largest change first."""
    out = []
    for segment in sorted({s["segment"] for s in summary.get("segments") or []}):
        frequent = (profiles.get(segment) or {}).get("frequent")
        if not frequent:
            continue
        today = {str(s["value"]): float(s.get("requests") or 0) for s in summary["segments"] if s["segment"] == segment}
        base_total, today_total = sum(frequent.values()) or 1.0, sum(today.values()) or 1.0
        rows = [{"segment": segment, "value": v, "baseline_share": frequent.get(v, 0) / base_total, "today_share": today.get(v, 0.0) / today_total}
                for v in sorted(set(frequent) | set(today))]
        rows.sort(key=lambda r: (-abs(r["today_share"] - r["baseline_share"]), r["value"]))
        out += rows[:top]
    return out


@dataclass(frozen=True)
class Example:
    """One judged answer as the page shows it."""

    request_id: str
    variant: str
    why: str
    prompt: str
    response: str
    reasoning: str
    scores: dict[str, float]
    flags: list[str]
    truncated: bool


def select_examples(frame, dimensions: Sequence[str], flags: Sequence[str] = ("toxicity", "hallucination"), *, flagged: int = 3,
                    lowest: int = 3, text_chars: int = EXAMPLE_TEXT_CHARS) -> list[Example]:
    """A handful of judged answers worth reading: up to ``flagged`` with a safety/quality flag, then the ``lowest`` lowest scored.

    Rows are ranked by their mean score over ``dimensions`` (not-assessed dimensions left
    out), ties broken by request id so the choice is stable across re-runs. Rows the judge
    could not score are skipped. Prompts, responses and reasoning are cleaned of control
    characters and cut at ``text_chars`` (``publish.text.shown``; ``truncated`` says so).
    """
    import pandas as pd

    if frame is None or len(frame) == 0:
        return []
    dims = [d for d in dimensions if d in frame.columns]
    flag_cols = [f for f in flags if f in frame.columns]
    shown_flags = [f for f in dict.fromkeys([*flags, "refusal"]) if f in frame.columns]

    def raised(row, names: Sequence[str]) -> list[str]:
        return [f for f in names if pd.notna(row[f]) and bool(row[f])]

    scored = frame.copy()
    scored["_mean"] = scored[dims].astype(float).mean(axis=1, skipna=True) if dims else float("nan")
    scored = scored[scored["_mean"].notna()].sort_values(["_mean", "request_id"], kind="mergesort")
    chosen: list[tuple[Any, str]] = []
    if flag_cols:
        is_flagged = scored[flag_cols].fillna(False).astype(bool).any(axis=1)
        for _, row in scored[is_flagged].head(flagged).iterrows():
            chosen.append((row, "flagged " + ", ".join(raised(row, flag_cols))))
    taken = {row["request_id"] for row, _ in chosen}
    for _, row in scored[~scored["request_id"].isin(taken)].head(lowest).iterrows():
        chosen.append((row, f"lowest mean score ({row['_mean']:.2f})"))
    out = []
    for row, why in chosen:
        prompt, cut_p = shown(row.get("prompt"), text_chars)
        response, cut_r = shown(row.get("response"), text_chars)
        reasoning, cut_j = shown(row.get("reasoning"), text_chars)
        out.append(Example(request_id=str(row["request_id"]), variant=str(row.get("variant") or ""), why=why, prompt=prompt, response=response,
                           reasoning=reasoning, scores={d: float(row[d]) for d in dims if pd.notna(row[d])},
                           flags=raised(row, shown_flags),
                           truncated=cut_p or cut_r or cut_j))
    return out
