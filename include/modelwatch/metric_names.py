"""Names of the operational metrics that ``metrics`` computes and configs may refer to.

Kept apart from ``metrics`` (which needs pandas) so that configuration checks stay light.
"""

from __future__ import annotations

# name -> (unit, meaning)
OPERATIONAL_METRICS: dict[str, tuple[str, str]] = {
    "requests": ("count", "requests in the partition"),
    "error_rate": ("ratio", "share of requests with status error"),
    "timeout_rate": ("ratio", "share of requests with status timeout"),
    "refusal_rate": ("ratio", "share of requests with status refused_by_filter"),
    "latency_p50_ms": ("ms", "median end-to-end latency"),
    "latency_p95_ms": ("ms", "95th percentile latency"),
    "latency_p99_ms": ("ms", "99th percentile latency"),
    "latency_mean_ms": ("ms", "mean latency"),
    "prompt_tokens_mean": ("tokens", "mean prompt tokens"),
    "prompt_tokens_p50": ("tokens", "median prompt tokens"),
    "prompt_tokens_p95": ("tokens", "95th percentile prompt tokens"),
    "completion_tokens_mean": ("tokens", "mean completion tokens"),
    "completion_tokens_p95": ("tokens", "95th percentile completion tokens"),
    "tokens_total": ("tokens", "prompt plus completion tokens"),
    "throughput_rps": ("requests/s", "requests per second over the partition's span"),
    "peak_hour_requests": ("count", "requests in the busiest hour"),
    "cost_usd_total": ("USD", "total cost"),
    "cost_per_request_usd": ("USD", "mean cost per request"),
    "cost_per_1k_tokens_usd": ("USD", "cost per thousand tokens"),
    "quality_score_mean": ("score", "mean online quality score"),
    "feedback_negative_rate": ("ratio", "share of rated requests with thumbs down"),
}
