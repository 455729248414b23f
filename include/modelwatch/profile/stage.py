"""The profile stage: operational metrics per variant and segment, and the hard limits, of the partition's valid rows."""

from __future__ import annotations

from typing import Any

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.ingest.valid import read_valid
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
    from modelwatch.profile.metrics import ALL, compute_metrics, input_columns, metrics_table, to_frame, token_histogram

    partition = Partition.from_dict(validated["partition"])
    model = cfg.model(partition.model_id)
    valid = read_valid(client, cfg, partition, input_columns(model.segments))
    frame = to_frame(valid, model.segments)
    metrics = compute_metrics(frame, model.id, partition.dt.isoformat(), partition.hour, model.segments, SPAN_SECONDS[cadence])
    uri = put_table(client, report_uri(cfg, partition, "metrics.parquet"), metrics_table(metrics))
    overall = metrics[(metrics.segment == ALL)]
    headline = {v: dict(zip(g.metric, g.value)) for v, g in overall.groupby("variant")}
    checks = [c.to_dict() for c in check_hard_limits(model, metrics)]
    return {
        "partition": partition.to_dict(),
        "metrics_uri": uri,
        "headline": headline,
        "segments": _segment_rows(metrics),
        "prompt_token_histogram": token_histogram(frame),
        "hard_limits": checks,
    }


def _segment_rows(metrics) -> list[dict[str, Any]]:
    from modelwatch.profile.metrics import ALL

    wanted = ["requests", "error_rate", "latency_p95_ms", "prompt_tokens_mean", "cost_usd_total"]
    seg = metrics[(metrics.segment != ALL) & (metrics.variant == ALL) & metrics.metric.isin(wanted)]
    out = []
    for (segment, value), group in seg.groupby(["segment", "segment_value"], sort=True):
        out.append({"segment": segment, "value": value, **dict(zip(group.metric, group.value))})
    return out
