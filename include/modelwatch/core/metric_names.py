"""Names of the operational metrics that ``metrics`` computes and configs may refer to, and of the estimated performance metrics.

Kept apart from ``metrics`` (which needs pandas) so that configuration checks stay light.
"""

from __future__ import annotations

import re

# name -> (unit, meaning)
OPERATIONAL_METRICS: dict[str, tuple[str, str]] = {
    "requests": ("count", "requests in the partition"),
    "error_rate": ("ratio", "share of requests with status error"),
    "timeout_rate": ("ratio", "share of requests with status timeout"),
    "filter_refusal_rate": ("ratio", "share of requests with status refused_by_filter (the safety filter refused; the judge's refusal flag is judge.refusal_rate)"),
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

# Performance metrics of classic models, estimated before labels arrive (CBPE / DLE) and realised once they do.
# Not operational metrics: experiments cannot use them (they are per day, not per arm), so they are kept apart.
# name -> (unit, meaning)
PERFORMANCE_METRICS: dict[str, tuple[str, str]] = {
    "accuracy": ("ratio", "share of correct predictions"),
    "precision": ("ratio", "precision of the positive class (binary) or macro-averaged over classes"),
    "recall": ("ratio", "recall of the positive class (binary) or macro-averaged over classes"),
    "f1": ("ratio", "F1 of the positive class (binary) or macro-averaged over classes"),
    "roc_auc": ("ratio", "ROC AUC of the positive class (binary) or one-vs-rest macro average"),
    "mae": ("target units", "mean absolute error"),
    "rmse": ("target units", "root mean squared error"),
}

# Delayed-feedback rates of LLMs: one metric per configured signal (``feedback.signals``), named ``feedback.<signal>_rate``.
# Experiments test them as proportions; the concept stage computes them from the label files (``concept.feedback``).
_FEEDBACK_METRIC = re.compile(r"^feedback\.([a-z][a-z0-9_]{0,63})_rate$")


def feedback_metric(signal: str) -> str:
    """The metric name of a feedback signal: ``feedback.<signal>_rate``."""
    return f"feedback.{signal}_rate"


def feedback_signal(metric: str) -> str | None:
    """The signal a ``feedback.<signal>_rate`` metric names, or None for any other name."""
    match = _FEEDBACK_METRIC.match(metric)
    return match.group(1) if match else None
