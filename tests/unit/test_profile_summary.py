"""The profile's per-shard summary: on a small day exactly the metrics of the whole day's rows; beyond the limit exact
counts and sums, quantiles from merged KLL sketches within their stated rank error, and segment values capped as before."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from modelwatch.profile.metrics import ALL, OTHER, compute_metrics, input_columns, to_frame, token_histogram
from modelwatch.profile.sketched import day_metrics
from modelwatch.profile.summary import KLL_K, ProfileSummary, load, rank_error

SEGMENTS = ["metadata.topic", "metadata.locale"]
SPAN = 86_400.0


def valid_rows(n: int, seed: int = 7, topics: int = 30) -> pa.Table:
    """Valid rows as the canonical schema types them: nulls, several statuses, a long-tailed latency, many topic values."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-11-09", tz="UTC")
    latency = rng.lognormal(6.0, 0.8, n)
    latency[rng.random(n) < 0.05] = np.nan
    prompt = rng.integers(1, 3000, n).astype(float)
    prompt[rng.random(n) < 0.1] = np.nan
    topic = rng.zipf(1.6, n) % topics
    meta = [json.dumps({"topic": f"t{t}", **({"locale": "de"} if t % 3 else {})}) for t in topic]
    return pa.table({
        "timestamp": pa.array(start + pd.to_timedelta(rng.integers(0, 86_400_000, n), unit="ms"), pa.timestamp("us", tz="UTC")),
        "variant": pa.array(rng.choice(["control", "treatment", None], n, p=[0.6, 0.38, 0.02]), pa.string()),
        "status": pa.array(rng.choice(["ok", "error", "timeout", "refused_by_filter"], n, p=[0.9, 0.05, 0.03, 0.02])),
        "latency_ms": pa.array(latency, pa.float64(), from_pandas=True),
        "prompt_tokens": pa.array(prompt, pa.float64(), from_pandas=True).cast(pa.int64()),
        "completion_tokens": pa.array(rng.integers(1, 800, n), pa.int64()),
        "cost_usd": pa.array(rng.random(n) / 100, pa.float64()),
        "quality_score": pa.array(np.where(rng.random(n) < 0.5, rng.random(n), np.nan), pa.float64(), from_pandas=True),
        "feedback": pa.array(rng.choice([-1, 0, 1, None], n), pa.int8()),
        "metadata": pa.array(meta, pa.string()),
    })


def summarised(rows: pa.Table, limit: int, shards: int = 3, batch: int = 997) -> ProfileSummary:
    """Shards of ``rows`` fed in batches, each dumped and loaded as the shard tasks' files are, then merged in shard order."""
    parts = []
    for shard in np.array_split(np.arange(rows.num_rows), shards):
        summary = ProfileSummary.empty(SEGMENTS, limit)
        table = rows.take(shard).select(input_columns(SEGMENTS))
        for offset in range(0, table.num_rows, batch):
            summary.update(table.slice(offset, batch))
        parts.append(load(summary.dump()))
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    return merged


def full_metrics(rows: pa.Table, max_values: int = 20) -> pd.DataFrame:
    return compute_metrics(to_frame(rows, SEGMENTS), "m", "2026-11-09", None, SEGMENTS, SPAN, max_values)


def test_a_small_day_gives_exactly_the_metrics_of_its_rows():
    rows = valid_rows(5_000)
    summary = summarised(rows, limit=5_000)
    day = day_metrics(summary, "m", "2026-11-09", None, SPAN)
    assert summary.exact and day.quantile_method == "exact" and day.rank_error is None
    pd.testing.assert_frame_equal(day.metrics, full_metrics(rows))
    assert day.histogram == token_histogram(to_frame(rows, SEGMENTS))


def cells(metrics: pd.DataFrame) -> pd.Series:
    return metrics.set_index(["variant", "segment", "segment_value", "metric"])["value"]


def test_beyond_the_limit_counts_and_sums_stay_exact_and_quantiles_keep_their_rank_error():
    rows = valid_rows(40_000)
    summary = summarised(rows, limit=1_000, shards=4, batch=4_999)
    day = day_metrics(summary, "m", "2026-11-09", None, SPAN, max_segment_values=5)
    exact = full_metrics(rows, max_values=5)
    assert not summary.exact and summary.exact_rows is None and day.quantile_method == "kll"
    assert day.rank_error == pytest.approx(rank_error(KLL_K)) and 0 < day.rank_error < 0.01
    got, want = cells(day.metrics), cells(exact)
    assert sorted(got.index) == sorted(want.index)  # the same cells, __other__ included
    assert (ALL, "metadata.topic", OTHER, "requests") in got.index
    quantile = got.index.get_level_values("metric").str.contains(r"_p\d\d")
    np.testing.assert_allclose(got[~quantile].sort_index(), want[~quantile].reindex(got[~quantile].sort_index().index), rtol=1e-9)
    assert day.histogram == token_histogram(to_frame(rows, SEGMENTS))

    frame = to_frame(rows, SEGMENTS)
    frame["topic"] = frame["metadata.topic"].where(frame["metadata.topic"].isin(
        [k[2] for k in got.index if k[1] == "metadata.topic" and k[2] != OTHER]), OTHER)
    columns = {"latency_p": "latency_ms", "prompt_tokens_p": "prompt_tokens", "completion_tokens_p": "completion_tokens"}
    checked = 0
    for (variant, segment, value, metric), estimate in got[quantile].items():
        column = next(c for prefix, c in columns.items() if metric.startswith(prefix))
        q = int(metric.rsplit("_p", 1)[1][:2]) / 100
        group = frame if variant == ALL else frame[frame["variant"] == variant]
        if segment != ALL:
            group = group[group["topic" if segment == "metadata.topic" else segment].fillna("__missing__") == value]
        values = pd.to_numeric(group[column], errors="coerce").dropna().to_numpy()
        below, at_most = np.mean(values < estimate), np.mean(values <= estimate)
        assert below - rank_error() <= q <= at_most + rank_error(), (variant, segment, value, metric)
        checked += 1
    assert checked > 50


def test_a_summary_keeps_no_rows_once_it_covers_more_than_the_limit():
    rows = valid_rows(3_000)
    small, large = summarised(rows.slice(0, 800), limit=1_000, shards=1), summarised(rows.slice(800), limit=1_000, shards=1)
    assert small.exact_rows is not None and large.exact_rows is None
    merged = small.merge(large)
    assert merged.seen == 3_000 and merged.exact_rows is None
    assert int(merged.sums.set_index(["variant", "segment", "segment_value"]).loc[(ALL, ALL, ALL), "requests"]) == 3_000
