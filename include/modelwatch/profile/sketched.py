"""The operational metrics of a merged profile summary: exact on a small day, from sums and KLL sketches beyond it.

``day_metrics`` gives the same long table as ``profile.metrics.compute_metrics`` (and the prompt-token
histogram), and says how its quantiles were found: ``exact`` (the summary held every row: the metrics
are ``compute_metrics`` on them) or ``kll`` (merged sketches, ``profile.summary.rank_error`` the rank
error). Every other figure is exact either way (counts and sums of ``profile.summary``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.profile.metrics import ALL, OTHER, TOKEN_BINS, compute_metrics, token_histogram
from modelwatch.profile.summary import KEYS, QUANTILE_COLUMNS, SUMS, ProfileSummary, exact_frame, rank_error

QUANTILES = {"latency_ms": [("latency_p50_ms", 0.5), ("latency_p95_ms", 0.95), ("latency_p99_ms", 0.99)],
             "prompt_tokens": [("prompt_tokens_p50", 0.5), ("prompt_tokens_p95", 0.95)],
             "completion_tokens": [("completion_tokens_p95", 0.95)]}


@dataclass(frozen=True)
class DayMetrics:
    metrics: pd.DataFrame  # compute_metrics' long table
    histogram: list[dict[str, Any]]  # token_histogram's bins
    quantile_method: str  # "exact" | "kll"
    rank_error: float | None  # KLL's normalized rank error (None: exact)


def day_metrics(summary: ProfileSummary, model_id: str, dt: str, hour: int | None, span_seconds: float, max_segment_values: int = 20) -> DayMetrics:
    """The partition's metrics from its merged summary (see the module docstring for what is exact)."""
    if summary.exact:
        frame = exact_frame(summary)
        metrics = compute_metrics(frame, model_id, dt, hour, summary.segments, span_seconds, max_segment_values)
        return DayMetrics(metrics, token_histogram(frame), "exact", None)
    sums, hours, sketches = _capped(summary, max_segment_values)
    records = []
    for key in _ordered(sums, summary.segments):
        row = sums.loc[key]
        quantiles = {c: sketches.get((*key, c)) for c in QUANTILE_COLUMNS}
        for metric, value in group_metrics(row, quantiles, float(hours.get(key, np.nan)), span_seconds).items():
            records.append({"variant": key[0], "segment": key[1], "segment_value": key[2], "metric": metric, "value": value, "requests": int(row["requests"])})
    out = pd.DataFrame.from_records(records, columns=["variant", "segment", "segment_value", "metric", "value", "requests"])
    out.insert(0, "hour", -1 if hour is None else hour)
    out.insert(0, "dt", dt)
    out.insert(0, "model_id", model_id)
    return DayMetrics(out, _histogram(summary.histogram), "kll", rank_error())


def group_metrics(row: pd.Series, sketches: dict[str, Any], peak_hour: float, span_seconds: float) -> dict[str, float]:
    """``profile.metrics.group_metrics`` from a group's sums and sketches: the same metrics, left out under the same conditions."""
    n = float(row["requests"])
    out: dict[str, float] = {"requests": n}
    if n == 0:
        return out
    out["error_rate"], out["timeout_rate"], out["filter_refusal_rate"] = row["errors"] / n, row["timeouts"] / n, row["refusals"] / n
    if row["latency_n"] > 0:
        out.update(_quantiles(sketches["latency_ms"], "latency_ms"))
        out["latency_mean_ms"] = row["latency_sum"] / row["latency_n"]
    if row["prompt_n"] > 0:
        out.update(_quantiles(sketches["prompt_tokens"], "prompt_tokens"))
        out["prompt_tokens_mean"] = row["prompt_sum"] / row["prompt_n"]
    if row["completion_n"] > 0:
        out.update(_quantiles(sketches["completion_tokens"], "completion_tokens"))
        out["completion_tokens_mean"] = row["completion_sum"] / row["completion_n"]
    if row["prompt_n"] > 0:
        out["tokens_total"] = float(row["tokens"])
    out["throughput_rps"] = n / span_seconds
    out["peak_hour_requests"] = peak_hour
    if row["cost_n"] > 0:
        out["cost_usd_total"] = float(row["cost_sum"])
        out["cost_per_request_usd"] = row["cost_sum"] / n
        if row["tokens"] > 0:
            out["cost_per_1k_tokens_usd"] = row["cost_sum"] / row["tokens"] * 1000
    if row["quality_n"] > 0:
        out["quality_score_mean"] = row["quality_sum"] / row["quality_n"]
    if row["feedback_rated"] > 0:
        out["feedback_negative_rate"] = row["feedback_negative"] / row["feedback_rated"]
    return {k: float(v) for k, v in out.items()}


def _quantiles(sketch, column: str) -> dict[str, float]:
    names = QUANTILES[column]
    values = sketch.get_quantiles([q for _, q in names])
    return {name: float(v) for (name, _), v in zip(names, values, strict=True)}


def _capped(summary: ProfileSummary, max_values: int) -> tuple[pd.DataFrame, dict[tuple, float], dict[tuple, Any]]:
    """Sums (indexed by KEYS), peak-hour counts and sketches with each segment's values beyond its top ``max_values`` folded into ``__other__``.

    The top values are those with the most requests overall (ties by value), as ``metrics._capped`` keeps them.
    """
    sums, hours = summary.sums.copy(), summary.hours.copy()
    kept: dict[str, set[str]] = {}
    overall = sums[(sums.variant == ALL) & (sums.segment != ALL)]
    for segment, group in overall.groupby("segment"):
        ranked = group.sort_values(["requests", "segment_value"], ascending=[False, True], kind="mergesort")
        kept[str(segment)] = set(ranked["segment_value"].iloc[:max_values])

    def fold(frame: pd.DataFrame) -> pd.Series:
        keep = [(s == ALL) or (v in kept.get(s, ())) for s, v in zip(frame["segment"], frame["segment_value"], strict=True)]
        return frame["segment_value"].where(keep, OTHER)

    sums["segment_value"] = fold(sums)
    hours["segment_value"] = fold(hours)
    folded = sums.groupby(KEYS, sort=False)[SUMS].sum()
    peak = hours.groupby([*KEYS, "hour"], sort=False)["requests"].sum().groupby(level=[0, 1, 2]).max()
    sketches: dict[tuple, Any] = {}
    for (variant, segment, value, column), sketch in summary.sketches.items():
        name = value if segment == ALL or value in kept.get(segment, ()) else OTHER
        key = (variant, segment, name, column)
        if key in sketches:
            sketches[key].merge(sketch)
        else:
            from datasketches import kll_doubles_sketch

            sketches[key] = kll_doubles_sketch.deserialize(sketch.serialize())  # a copy: folding must not change the summary's own sketch
    return folded, peak.to_dict(), sketches


def _ordered(sums: pd.DataFrame, segments: list[str]) -> list[tuple[str, str, str]]:
    """Group keys in ``compute_metrics``' order: overall, variants, then per segment its values and its variant x value cells."""
    keys = list(sums.index)
    variants = sorted({v for v, s, _ in keys if v != ALL and s == ALL})
    order = [(ALL, ALL, ALL), *((v, ALL, ALL) for v in variants)]
    for segment in segments:
        values = sorted({val for v, s, val in keys if v == ALL and s == segment})
        order += [(ALL, segment, val) for val in values]
        order += sorted((v, s, val) for v, s, val in keys if v != ALL and s == segment)
    return [k for k in order if k in sums.index]


def _histogram(counts: np.ndarray) -> list[dict[str, Any]]:
    if counts.sum() == 0:
        return []
    edges = TOKEN_BINS
    return [{"from": int(lo), "to": None if np.isinf(hi) else int(hi), "count": int(c)} for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)]
