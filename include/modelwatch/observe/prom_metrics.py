"""One run summary (``summary.json``) as Prometheus gauges, pushed to a Pushgateway.

Every series carries ``model``; other labels come from bounded sets: variants and
experiment ids of the config, metric / column / family names, at most
``MAX_SEGMENT_VALUES`` values per segment key. No request-level label exists.

=============================================== ============================================ ==========================================
name                                            labels                                       meaning
=============================================== ============================================ ==========================================
modelwatch_requests                             model, variant                               requests in the partition
modelwatch_error_rate                           model, variant                               share of requests with status error
modelwatch_timeout_rate                         model, variant                               share of requests with status timeout
modelwatch_filter_refusal_rate                  model, variant                               share of requests with status refused_by_filter
modelwatch_latency_seconds                      model, variant, quantile (0.5/0.95/0.99)     latency quantiles (from ms)
modelwatch_tokens                               model, variant, stat                         token statistics (``TOKEN_STATS``)
modelwatch_cost_usd                             model, variant, stat                         cost: total, per_request, per_1k_tokens
modelwatch_segment_requests                     model, segment, value                        requests per segment value (<= 20 values)
modelwatch_segment_error_rate                   model, segment, value                        error rate per segment value
modelwatch_segment_latency_p95_seconds          model, segment, value                        p95 latency per segment value
modelwatch_judge_score                          model, variant, dimension                    mean judge score (``judge.<dimension>``)
modelwatch_judge_score_ci_low / _ci_high        model, variant, dimension                    95% interval of the mean judge score
modelwatch_judge_flag_rate                      model, variant, flag                         judge flag rate (``judge.<flag>_rate``)
modelwatch_judge_flag_rate_ci_low / _ci_high    model, variant, flag                         95% interval of the flag rate
modelwatch_judge_flag_rate_reference            model, flag                                  the flag's rate pooled over the earlier days
modelwatch_judge_flag_rate_far_above            model, flag                                  1 when today's rate is far above it (``publish.flag_rates``)
modelwatch_judge_agreement_kappa                model, dimension, kind                       golden-set kappa of a dimension or flag (``kind``)
modelwatch_judge_agreement_kappa_low / _high    model, dimension, kind                       its 95% bootstrap interval (``judge.trust``)
modelwatch_judge_agreement_verdict              model, dimension, kind, verdict              1 for the verdict (usable/weak/...), 0 others
modelwatch_judge_requests                       model, state (judged/failed/skipped_budget)  judge calls of the run
modelwatch_judge_budget_usd                     model                                        the day's judge budget
modelwatch_drift_severity                       model                                        worst drift severity, 0 none .. 3 high
modelwatch_drift_family_severity                model, family                                worst alert severity of a family, 0..3
modelwatch_drift_alert_count                    model                                        drift alerts of the run (uncapped total)
modelwatch_drift_alerts                         model, family                                drift alerts per family (of the <= 50 listed)
modelwatch_experiment_decision                  model, experiment, decision                  1 for the decision taken (invalid: SRM), 0 others
modelwatch_experiment_requests                  model, experiment                            experiment requests (cumulative)
modelwatch_experiment_health_ok                 model, experiment                            1 when the health checks pass
modelwatch_experiment_srm_p_value               model, experiment                            sample-ratio-mismatch p-value, if known
modelwatch_guardrail_verdict                    model, experiment, metric, verdict           1 for the guardrail's verdict, 0 others
modelwatch_performance_estimate                 model, metric                                the day's CBPE / DLE estimate (``PERFORMANCE_METRICS``)
modelwatch_performance_estimate_lower / _upper  model, metric                                its band: estimate ± 3 sampling errors
modelwatch_performance_threshold_lower / _upper model, metric                                alert thresholds from the reference chunks
modelwatch_performance_estimate_alert           model, metric                                1 when the estimate is outside the thresholds
modelwatch_performance_realised                 model, metric                                realised metric of the latest day whose labels arrived
modelwatch_performance_realised_estimate        model, metric                                the estimate on those same labelled rows
modelwatch_performance_realised_lower / _upper  model, metric                                the band of that estimate at the labelled row count
modelwatch_performance_estimation_gap           model, metric                                realised minus estimated on the labelled rows
modelwatch_performance_estimation_gap_limit     model, metric                                the gap the band allows (3 sampling errors)
modelwatch_performance_realised_day_timestamp_seconds model                                  start (UTC) of the day the realised values are for
modelwatch_breaches                             model                                        hard-limit / guardrail breaches of the run
modelwatch_rows                                 model, state (read/valid/quarantined)        rows of the partition
modelwatch_no_traffic                           model                                        1 when the run found no traffic (no files or no rows)
modelwatch_partition_timestamp_seconds          model                                        start of the partition (UTC)
modelwatch_last_success_timestamp_seconds       model                                        when this summary was turned into metrics
=============================================== ============================================ ==========================================

Pushes group by ``{job, model, cadence}`` so each run replaces its own model's group.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from modelwatch.core.metric_names import PERFORMANCE_METRICS

ALL_VARIANT = "__all__"
MAX_SEGMENT_VALUES = 20
SEVERITY_LEVELS: dict[str, int] = {"none": 0, "low": 1, "medium": 2, "high": 3}
DECISIONS: tuple[str, ...] = ("continue", "promote", "stop", "roll_back", "invalid", "guardrail_watch", "rolled_back", "not_started")
VERDICTS: tuple[str, ...] = ("non_inferior", "inferior", "inconclusive")
LATENCY_QUANTILES: dict[str, str] = {"latency_p50_ms": "0.5", "latency_p95_ms": "0.95", "latency_p99_ms": "0.99"}
TOKEN_STATS: dict[str, str] = {
    "tokens_total": "total",
    "prompt_tokens_mean": "prompt_mean",
    "prompt_tokens_p95": "prompt_p95",
    "completion_tokens_mean": "completion_mean",
    "completion_tokens_p95": "completion_p95",
}
COST_STATS: dict[str, str] = {"cost_usd_total": "total", "cost_per_request_usd": "per_request", "cost_per_1k_tokens_usd": "per_1k_tokens"}
JUDGE_STATES: tuple[str, ...] = ("judged", "failed", "skipped_budget")
_JUDGE_NAME = re.compile(r"^judge\.([a-z][a-z0-9_]{0,40})$")
_AGREEMENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")  # a rubric dimension or flag key
AGREEMENT_VERDICTS: tuple[str, ...] = ("usable", "weak", "does_not_agree", "not_measured")


def _num(value: Any) -> float | None:
    """A finite-or-not float, or None for missing / non-numeric values."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


class _Gauges:
    """Gauges created on first use in one registry, so unused families are not exported."""

    def __init__(self, registry: CollectorRegistry, model: str):
        self.registry, self.model, self._made = registry, model, {}

    def set(self, name: str, doc: str, value: Any, /, **labels: str) -> None:
        number = _num(value)
        if number is None:
            return
        gauge = self._made.get(name)
        if gauge is None:
            gauge = self._made[name] = Gauge(name, doc, ["model", *labels], registry=self.registry)
        gauge.labels(model=self.model, **labels).set(number)


def cadence_of(partition: Mapping[str, Any]) -> str:
    """``hourly`` when the partition has an hour, else ``daily``."""
    return "daily" if partition.get("hour") is None else "hourly"


def partition_timestamp(partition: Mapping[str, Any]) -> float:
    """Start of the partition as Unix seconds (UTC)."""
    day = datetime.fromisoformat(str(partition["dt"])[:10]).replace(tzinfo=UTC)
    return day.timestamp() + 3600 * int(partition.get("hour") or 0)


def _variant_metrics(g: _Gauges, metrics: Mapping[str, Mapping[str, Any]]) -> None:
    for variant, values in metrics.items():
        g.set("modelwatch_requests", "Requests in the partition.", values.get("requests"), variant=variant)
        g.set("modelwatch_error_rate", "Share of requests with status error.", values.get("error_rate"), variant=variant)
        g.set("modelwatch_timeout_rate", "Share of requests with status timeout.", values.get("timeout_rate"), variant=variant)
        g.set("modelwatch_filter_refusal_rate", "Share of requests with status refused_by_filter (the safety filter refused).",
              values.get("filter_refusal_rate"), variant=variant)
        for key, quantile in LATENCY_QUANTILES.items():
            ms = _num(values.get(key))
            g.set("modelwatch_latency_seconds", "Latency quantile in seconds.", None if ms is None else ms / 1000.0, variant=variant, quantile=quantile)
        for key, stat in TOKEN_STATS.items():
            g.set("modelwatch_tokens", "Token statistics.", values.get(key), variant=variant, stat=stat)
        for key, stat in COST_STATS.items():
            g.set("modelwatch_cost_usd", "Cost in USD.", values.get(key), variant=variant, stat=stat)


def capped_segments(segments: Iterable[Mapping[str, Any]], cap: int = MAX_SEGMENT_VALUES) -> list[Mapping[str, Any]]:
    """At most ``cap`` values per segment key, the busiest first."""
    by_key: dict[str, list[Mapping[str, Any]]] = {}
    for row in segments:
        by_key.setdefault(str(row.get("segment")), []).append(row)
    kept: list[Mapping[str, Any]] = []
    for rows in by_key.values():
        kept += sorted(rows, key=lambda r: -(_num(r.get("requests")) or 0.0))[:cap]
    return kept


def _segment_metrics(g: _Gauges, segments: Iterable[Mapping[str, Any]]) -> None:
    for row in capped_segments(segments):
        labels = {"segment": str(row.get("segment")), "value": str(row.get("value"))}
        g.set("modelwatch_segment_requests", "Requests per segment value.", row.get("requests"), **labels)
        g.set("modelwatch_segment_error_rate", "Error rate per segment value.", row.get("error_rate"), **labels)
        p95 = _num(row.get("latency_p95_ms"))
        g.set("modelwatch_segment_latency_p95_seconds", "p95 latency per segment value in seconds.", None if p95 is None else p95 / 1000.0, **labels)


def _judge_estimates(g: _Gauges, variant: str, estimates: Mapping[str, Mapping[str, Any]]) -> None:
    for name, est in estimates.items():
        match = _JUDGE_NAME.match(name)
        if not match or not isinstance(est, Mapping):
            continue
        column = match.group(1)
        if column.endswith("_rate"):
            family, labels = "modelwatch_judge_flag_rate", {"variant": variant, "flag": column.removesuffix("_rate")}
        else:
            family, labels = "modelwatch_judge_score", {"variant": variant, "dimension": column}
        g.set(family, "Judge estimate.", est.get("estimate"), **labels)
        g.set(f"{family}_ci_low", "Lower bound of the judge estimate's 95% interval.", est.get("ci_low"), **labels)
        g.set(f"{family}_ci_high", "Upper bound of the judge estimate's 95% interval.", est.get("ci_high"), **labels)


def _judge_metrics(g: _Gauges, judge: Mapping[str, Any] | None) -> None:
    if not judge:
        return
    _judge_estimates(g, ALL_VARIANT, judge.get("overall") or {})
    for variant, estimates in (judge.get("by_variant") or {}).items():
        if isinstance(estimates, Mapping):
            _judge_estimates(g, str(variant), estimates)
    for state in JUDGE_STATES:
        g.set("modelwatch_judge_requests", "Judge calls of the run by state.", judge.get(state, 0), state=state)
    g.set("modelwatch_judge_budget_usd", "The day's judge budget in USD.", judge.get("budget_usd"))
    _judge_agreement(g, judge.get("agreement") or {})


def _judge_agreement(g: _Gauges, agreement: Mapping[str, Any]) -> None:
    """Each dimension's and flag's golden-set kappa, its interval and its verdict (``judge.trust``)."""
    for name, row in agreement.items():
        if not isinstance(row, Mapping) or not _AGREEMENT_NAME.match(str(name)):
            continue
        labels = {"dimension": str(name), "kind": str(row.get("kind"))}
        g.set("modelwatch_judge_agreement_kappa", "Judge agreement with people on the golden set (Cohen's kappa).", row.get("kappa"), **labels)
        g.set("modelwatch_judge_agreement_kappa_low", "Lower bound of the kappa's 95% bootstrap interval.", row.get("kappa_low"), **labels)
        g.set("modelwatch_judge_agreement_kappa_high", "Upper bound of the kappa's 95% bootstrap interval.", row.get("kappa_high"), **labels)
        for verdict in AGREEMENT_VERDICTS:
            g.set("modelwatch_judge_agreement_verdict", "1 for the judge label's agreement verdict, 0 for the others.",
                  row.get("verdict") == verdict, **labels, verdict=verdict)


def _judge_flag_rises(g: _Gauges, rises: Iterable[Mapping[str, Any]]) -> None:
    """Each tested judge flag: its reference rate and whether today's rate is far above it."""
    for rise in rises:
        match = _JUDGE_NAME.match(str(rise.get("flag")))
        if match and match.group(1).endswith("_rate"):
            flag = match.group(1).removesuffix("_rate")
            g.set("modelwatch_judge_flag_rate_reference", "Judge flag rate pooled over the earlier days of the window.", rise.get("reference_rate"),
                  flag=flag)
            g.set("modelwatch_judge_flag_rate_far_above", "1 when today's judge flag rate is far above its reference (score test and minimum rise).",
                  bool(rise.get("alert")), flag=flag)


def _drift_metrics(g: _Gauges, drift: Mapping[str, Any] | None) -> None:
    if not drift or drift.get("outcome") not in (None, "ok"):
        return
    g.set("modelwatch_drift_severity", "Worst drift severity, 0 none .. 3 high.", SEVERITY_LEVELS.get(str(drift.get("severity")), 0))
    g.set("modelwatch_drift_alert_count", "Drift alerts of the run, all families (the per-family list is capped).", drift.get("alert_count"))
    counts: dict[str, int] = {}
    worst: dict[str, int] = {}
    for alert in drift.get("alerts") or []:
        family = str(alert.get("family"))
        counts[family] = counts.get(family, 0) + 1
        worst[family] = max(worst.get(family, 0), SEVERITY_LEVELS.get(str(alert.get("severity")), 0))
    for family, count in counts.items():
        g.set("modelwatch_drift_alerts", "Drift alerts per family.", count, family=family)
        g.set("modelwatch_drift_family_severity", "Worst alert severity of a drift family, 0..3.", worst[family], family=family)


def _srm_p_value(exp: Mapping[str, Any]) -> Any:
    if "srm_p_value" in exp:
        return exp["srm_p_value"]
    return ((exp.get("health") or {}).get("srm") or {}).get("p_value")


def _experiment_metrics(g: _Gauges, experiments: Iterable[Mapping[str, Any]]) -> None:
    for exp in experiments:
        eid = str(exp.get("experiment_id"))
        for decision in DECISIONS:
            g.set("modelwatch_experiment_decision", "1 for the experiment's decision.", int(exp.get("decision") == decision),
                  experiment=eid, decision=decision)
        g.set("modelwatch_experiment_requests", "Experiment requests (cumulative).", exp.get("requests"), experiment=eid)
        g.set("modelwatch_experiment_health_ok", "1 when the experiment's health checks pass.", exp.get("health_ok"), experiment=eid)
        g.set("modelwatch_experiment_srm_p_value", "Sample-ratio-mismatch p-value.", _srm_p_value(exp), experiment=eid)
        for guard in exp.get("guardrails") or []:
            for verdict in VERDICTS:
                g.set("modelwatch_guardrail_verdict", "1 for the guardrail's verdict.", int(guard.get("verdict") == verdict),
                      experiment=eid, metric=str(guard.get("metric")), verdict=verdict)


# (gauge, help, key of the estimation row): the day's estimate, and the latest labelled day's realised value beside it
_ESTIMATE_GAUGES = (
    ("modelwatch_performance_estimate", "Estimated performance of the day (CBPE / DLE).", "estimate"),
    ("modelwatch_performance_estimate_lower", "Lower end of the estimate's band (3 sampling errors).", "lower"),
    ("modelwatch_performance_estimate_upper", "Upper end of the estimate's band (3 sampling errors).", "upper"),
    ("modelwatch_performance_threshold_lower", "Lower alert threshold from the reference chunks.", "threshold_lower"),
    ("modelwatch_performance_threshold_upper", "Upper alert threshold from the reference chunks.", "threshold_upper"),
)
_REALISED_GAUGES = (
    ("modelwatch_performance_realised", "Realised performance of the latest day whose labels arrived.", "realised"),
    ("modelwatch_performance_realised_estimate", "Estimate on the same labelled rows.", "estimated_labelled"),
    ("modelwatch_performance_realised_lower", "Lower end of that estimate's band.", "labelled_lower"),
    ("modelwatch_performance_realised_upper", "Upper end of that estimate's band.", "labelled_upper"),
    ("modelwatch_performance_estimation_gap", "Realised minus estimated performance on the labelled rows.", "gap"),
    ("modelwatch_performance_estimation_gap_limit", "The gap the estimate's band allows.", "gap_limit"),
)


def _performance_rows(rows: Any) -> list[Mapping[str, Any]]:
    """The rows whose metric is one of ``PERFORMANCE_METRICS`` (bounds the ``metric`` label)."""
    return [row for row in rows or [] if str(row.get("metric")) in PERFORMANCE_METRICS]


def _estimation_metrics(g: _Gauges, concept: Mapping[str, Any] | None) -> None:
    """Estimated performance (with band and thresholds) and, for the latest labelled day, realised vs estimated and their gap."""
    est = (concept or {}).get("estimation") or {}
    if est.get("outcome") != "ok":
        return
    for row in _performance_rows(est.get("metrics")):
        for name, doc, key in _ESTIMATE_GAUGES:
            g.set(name, doc, row.get(key), metric=str(row["metric"]))
        if row.get("estimate") is not None and row.get("threshold_lower") is not None:
            g.set("modelwatch_performance_estimate_alert", "1 when the estimate is outside the reference thresholds.", int(bool(row.get("alert"))),
                  metric=str(row["metric"]))
    latest = est.get("latest_realised") or {}
    for row in _performance_rows(latest.get("metrics")):
        for name, doc, key in _REALISED_GAUGES:
            g.set(name, doc, row.get(key), metric=str(row["metric"]))
    if latest.get("day"):
        g.set("modelwatch_performance_realised_day_timestamp_seconds", "Start (UTC) of the day the realised values are for.",
              partition_timestamp({"dt": latest["day"]}))


def summary_metrics(summary: Mapping[str, Any], registry: CollectorRegistry, now: float | None = None) -> CollectorRegistry:
    """Register gauges describing one run summary in ``registry`` and return it."""
    g = _Gauges(registry, str(summary["model_id"]))
    _variant_metrics(g, summary.get("metrics") or {})
    _segment_metrics(g, summary.get("segments") or [])
    _judge_metrics(g, summary.get("judge"))
    _judge_flag_rises(g, summary.get("judge_flags") or [])
    _drift_metrics(g, summary.get("drift"))
    _experiment_metrics(g, summary.get("experiments") or [])
    _estimation_metrics(g, summary.get("concept"))
    g.set("modelwatch_breaches", "Hard-limit and guardrail breaches of the run.", len(summary.get("breaches") or []))
    for state in ("read", "valid", "quarantined"):
        g.set("modelwatch_rows", "Rows of the partition by state.", (summary.get("rows") or {}).get(state), state=state)
    g.set("modelwatch_no_traffic", "1 when the run found no traffic for its partition.", summary.get("outcome") == "no_traffic")
    g.set("modelwatch_partition_timestamp_seconds", "Start of the partition (UTC).", partition_timestamp(summary["partition"]))
    g.set("modelwatch_last_success_timestamp_seconds", "When the run's summary was published.", time.time() if now is None else now)
    return registry


def grouping_key(summary: Mapping[str, Any]) -> dict[str, str]:
    """The Pushgateway group of a summary: one per model and cadence."""
    return {"model": str(summary["model_id"]), "cadence": cadence_of(summary["partition"])}


def push_summary(gateway_url: str, summary: Mapping[str, Any], job: str = "modelwatch", timeout: float = 10.0) -> dict[str, str]:
    """Push the summary's gauges to the Pushgateway, replacing the group of its model and cadence; returns the group."""
    registry = summary_metrics(summary, CollectorRegistry())
    key = grouping_key(summary)
    push_to_gateway(gateway_url, job=job, registry=registry, grouping_key=key, timeout=timeout)
    return key
