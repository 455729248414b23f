"""The profile stage: operational metrics per variant and segment, and the hard limits, of the partition's valid rows.

The rows are not read again: each shard task summarised its valid rows (``profile.summary``), and
this stage merges the shards' summaries and computes the metrics from them (``profile.sketched``).
"""

from __future__ import annotations

from typing import Any

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.results import ProfileRecord, ValidateRecord
from modelwatch.stages import StageContext, StageResult, Upstream, record
from modelwatch.storage.keys import report_uri
from modelwatch.storage.s3 import put_table

NAME = "profile"
NEEDS: tuple[str, ...] = ("validate",)


def run(ctx: StageContext, upstream: Upstream) -> StageResult[ProfileRecord]:
    """Operational metrics and hard limits of the partition's valid rows."""
    return StageResult(NAME, _profile(ctx.client, ctx.cfg, record(upstream["validate"]), ctx.cadence))

SPAN_SECONDS = {"daily": 86_400.0, "hourly": 3_600.0}


def _profile(client, cfg: MonitoringConfig, validated: ValidateRecord, cadence: str) -> ProfileRecord:
    """Operational metrics and hard-limit checks for the partition's valid rows."""
    from modelwatch.profile.limits import check_hard_limits
    from modelwatch.profile.metrics import ALL, metrics_table
    from modelwatch.profile.sketched import day_metrics
    from modelwatch.profile.summary import load
    from modelwatch.summaries import merged

    partition = Partition.from_dict(validated["partition"])
    model = cfg.model(partition.model_id)
    day = day_metrics(merged(client, validated["valid_uri"], NAME, load), model.id, partition.dt.isoformat(), partition.hour, SPAN_SECONDS[cadence])
    metrics = day.metrics
    uri = put_table(client, report_uri(cfg, partition, "metrics.parquet"), metrics_table(metrics))
    overall = metrics[(metrics.segment == ALL)]
    headline = {v: dict(zip(g.metric, g.value)) for v, g in overall.groupby("variant")}
    checks = [c.to_dict() for c in check_hard_limits(model, metrics)]
    return {
        "partition": partition.to_dict(),
        "metrics_uri": uri,
        "headline": headline,
        "segments": _segment_rows(metrics),
        "prompt_token_histogram": day.histogram,
        "hard_limits": checks,
        "quantile_method": day.quantile_method,
        "rank_error": day.rank_error,
    }


def _segment_rows(metrics) -> list[dict[str, Any]]:
    from modelwatch.profile.metrics import ALL

    wanted = ["requests", "error_rate", "latency_p95_ms", "prompt_tokens_mean", "cost_usd_total"]
    seg = metrics[(metrics.segment != ALL) & (metrics.variant == ALL) & metrics.metric.isin(wanted)]
    out = []
    for (segment, value), group in seg.groupby(["segment", "segment_value"], sort=True):
        out.append({"segment": segment, "value": value, **dict(zip(group.metric, group.value))})
    return out
