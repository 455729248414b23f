"""Operational metrics per model, variant and segment.

Request counts, error/timeout/refusal rates, latency p50/p95/p99 (numpy's default
linear-interpolation quantiles), token counts and their distribution, throughput
and cost. A metric whose inputs are all missing (token counts of a classifier) is
left out rather than reported as NaN.

Output is a long table, one row per (variant, segment, segment value, metric), so
that partitions append and a dashboard can pivot it any way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from modelwatch.core.contract import flatten

ALL = "__all__"
OTHER = "__other__"
TOKEN_BINS = [0, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, np.inf]
METRICS_SCHEMA = pa.schema(
    [
        ("model_id", pa.string()),
        ("dt", pa.string()),
        ("hour", pa.int16()),
        ("variant", pa.string()),
        ("segment", pa.string()),
        ("segment_value", pa.string()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("requests", pa.int64()),
    ]
)
INPUT_COLUMNS = ["timestamp", "variant", "status", "latency_ms", "prompt_tokens", "completion_tokens", "cost_usd", "quality_score", "feedback", "metadata", "features"]


def input_columns(segments: list[str]) -> list[str]:
    """The valid rows' columns the metrics read: the nested objects only when a segment is inside them."""
    nested = {s.split(".", 1)[0] for s in segments if "." in s}
    return [c for c in INPUT_COLUMNS if c not in ("metadata", "features") or c in nested]


def to_frame(valid: pa.Table, segments: list[str]) -> pd.DataFrame:
    """The columns metrics need, with segment keys (``metadata.topic``) as plain columns."""
    frame = valid.select(input_columns(segments)).to_pandas()
    for source in ("metadata", "features"):
        keys = [s.split(".", 1)[1] for s in segments if s.startswith(source + ".")]
        if keys:
            # each distinct JSON text is parsed once (traffic repeats a few metadata objects): codes -1 are missing objects
            codes, texts = pd.factorize(frame[source], use_na_sentinel=True)
            for key, values in flatten([*texts.tolist(), None], keys).items():
                distinct = np.array([None if v is None else str(v) for v in values], dtype=object)
                frame[f"{source}.{key}"] = pd.Series(distinct[codes], index=frame.index, dtype="object")
    return frame


def _quantiles(values: pd.Series, qs: list[float]) -> list[float] | None:
    arr = values.dropna().to_numpy(dtype=float)
    return None if arr.size == 0 else [float(x) for x in np.percentile(arr, [q * 100 for q in qs])]


def group_metrics(frame: pd.DataFrame, span_seconds: float) -> dict[str, float]:
    """All operational metrics of one group of requests."""
    n = len(frame)
    out: dict[str, float] = {"requests": float(n)}
    if n == 0:
        return out
    status = frame["status"]
    out["error_rate"] = float((status == "error").mean())
    out["timeout_rate"] = float((status == "timeout").mean())
    out["filter_refusal_rate"] = float((status == "refused_by_filter").mean())  # the safety filter refused; not the judge's refusal flag
    lat = _quantiles(frame["latency_ms"], [0.5, 0.95, 0.99])
    if lat:
        out["latency_p50_ms"], out["latency_p95_ms"], out["latency_p99_ms"] = lat
        out["latency_mean_ms"] = float(frame["latency_ms"].mean())
    pt = _quantiles(frame["prompt_tokens"], [0.5, 0.95])
    if pt:
        out["prompt_tokens_p50"], out["prompt_tokens_p95"] = pt
        out["prompt_tokens_mean"] = float(frame["prompt_tokens"].mean())
    ct = _quantiles(frame["completion_tokens"], [0.95])
    if ct:
        out["completion_tokens_p95"] = ct[0]
        out["completion_tokens_mean"] = float(frame["completion_tokens"].mean())
    tokens = frame["prompt_tokens"].fillna(0).sum() + frame["completion_tokens"].fillna(0).sum()
    if frame["prompt_tokens"].notna().any():
        out["tokens_total"] = float(tokens)
    out["throughput_rps"] = n / span_seconds
    out["peak_hour_requests"] = float(frame["timestamp"].dt.floor("h").value_counts().max())
    if frame["cost_usd"].notna().any():
        cost = float(frame["cost_usd"].sum())
        out["cost_usd_total"] = cost
        out["cost_per_request_usd"] = cost / n
        if tokens > 0:
            out["cost_per_1k_tokens_usd"] = cost / tokens * 1000
    if frame["quality_score"].notna().any():
        out["quality_score_mean"] = float(frame["quality_score"].mean())
    rated = frame["feedback"].dropna()
    rated = rated[rated != 0]
    if len(rated):
        out["feedback_negative_rate"] = float((rated == -1).mean())
    return out


def _capped(values: pd.Series, max_values: int) -> pd.Series:
    """Keep the most frequent segment values; fold the rest into ``__other__`` to bound cardinality."""
    filled = values.fillna("__missing__").astype(str)
    top = filled.value_counts().index[:max_values]
    return filled.where(filled.isin(top), OTHER)


def compute_metrics(frame: pd.DataFrame, model_id: str, dt: str, hour: int | None, segments: list[str], span_seconds: float, max_segment_values: int = 20) -> pd.DataFrame:
    """Metrics overall, per variant, per segment value, and per variant x segment value."""
    records: list[dict[str, Any]] = []

    def emit(variant: str, segment: str, value: str, group: pd.DataFrame) -> None:
        for metric, v in group_metrics(group, span_seconds).items():
            records.append({"variant": variant, "segment": segment, "segment_value": value, "metric": metric, "value": v, "requests": len(group)})

    emit(ALL, ALL, ALL, frame)
    for variant, group in frame.groupby("variant", sort=True):
        emit(str(variant), ALL, ALL, group)
    for segment in segments:
        if segment not in frame.columns:
            continue
        keyed = frame.assign(_seg=_capped(frame[segment], max_segment_values))
        for value, group in keyed.groupby("_seg", sort=True):
            emit(ALL, segment, str(value), group)
        for (variant, value), group in keyed.groupby(["variant", "_seg"], sort=True):
            emit(str(variant), segment, str(value), group)
    out = pd.DataFrame.from_records(records, columns=["variant", "segment", "segment_value", "metric", "value", "requests"])
    out.insert(0, "hour", -1 if hour is None else hour)
    out.insert(0, "dt", dt)
    out.insert(0, "model_id", model_id)
    return out


def metrics_table(metrics: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(metrics, schema=METRICS_SCHEMA, preserve_index=False)


def token_histogram(frame: pd.DataFrame, column: str = "prompt_tokens") -> list[dict[str, Any]]:
    """Counts of ``column`` in power-of-two bins: the cheapest early warning of input drift."""
    values = frame[column].dropna().to_numpy(dtype=float)
    if values.size == 0:
        return []
    counts, edges = np.histogram(values, bins=TOKEN_BINS)
    return [{"from": int(lo), "to": None if np.isinf(hi) else int(hi), "count": int(c)} for lo, hi, c in zip(edges[:-1], edges[1:], counts)]


def lookup(metrics: pd.DataFrame, metric: str, variant: str = ALL, segment: str = ALL, value: str = ALL) -> tuple[float, int] | None:
    """(value, requests) of one metric cell, or None when it was not computed."""
    cell = metrics[(metrics.metric == metric) & (metrics.variant == variant) & (metrics.segment == segment) & (metrics.segment_value == value)]
    if cell.empty:
        return None
    return float(cell["value"].iloc[0]), int(cell["requests"].iloc[0])
