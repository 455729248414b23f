"""The Grafana dashboard of modelwatch, generated from the metric families of :mod:`modelwatch.observe.prom_metrics`.

One row per question a team asks of a monitored model: is it healthy now, is anything
drifting, how does today compare with the baseline, what does it cost, and how are the
experiments doing. Template variables pick the Prometheus datasource, the model, the
cadence (daily or hourly group of the Pushgateway), variants, segment keys, experiments and
the baseline window; every query filters on ``model`` and ``cadence`` so the daily and the
hourly series of a model never mix.

"Baseline" in the comparison row is the metric's own average over the preceding
``$baseline_window`` (``avg_over_time(m[7d] offset 1d)``, Prometheus' range-vector
convention), the trend a person compares today with; drift against the model's reference
sample is in the drift row. Thresholds come from :data:`modelwatch.observe.alert_rules.DEFAULTS`,
so the colours agree with the default alert rules.

The output is Grafana's dashboard JSON model (schema version 39, Grafana 10.4+ / 11),
provisioned from a file (https://grafana.com/docs/grafana/latest/administration/provisioning/).
:func:`promql_refs` reads the metric names, label matchers and grouping labels of an
expression, so tests can check every query against the series a run really emits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelwatch.observe.alert_rules import DEFAULTS, SCHEDULE_SECONDS, SLACK_SECONDS
from modelwatch.observe.prom_metrics import ALL_VARIANT, COST_STATS, LATENCY_QUANTILES, SEVERITY_LEVELS, TOKEN_STATS

UID = "modelwatch"
TITLE = "modelwatch: model health"
SCHEMA_VERSION = 39
GRID_WIDTH = 24
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
BASELINE_WINDOWS = ("7d", "14d", "28d")

# Metric families of prom_metrics that the dashboard reads (tests check each against a run's real output).
REQUESTS = "modelwatch_requests"
ERROR_RATE = "modelwatch_error_rate"
TIMEOUT_RATE = "modelwatch_timeout_rate"
FILTER_REFUSAL_RATE = "modelwatch_filter_refusal_rate"
LATENCY = "modelwatch_latency_seconds"
TOKENS = "modelwatch_tokens"
COST = "modelwatch_cost_usd"
SEGMENT_REQUESTS = "modelwatch_segment_requests"
SEGMENT_ERROR_RATE = "modelwatch_segment_error_rate"
SEGMENT_P95 = "modelwatch_segment_latency_p95_seconds"
JUDGE_SCORE = "modelwatch_judge_score"
JUDGE_FLAG_RATE = "modelwatch_judge_flag_rate"
JUDGE_REQUESTS = "modelwatch_judge_requests"
JUDGE_BUDGET = "modelwatch_judge_budget_usd"
DRIFT_SEVERITY = "modelwatch_drift_severity"
DRIFT_FAMILY_SEVERITY = "modelwatch_drift_family_severity"
DRIFT_ALERT_COUNT = "modelwatch_drift_alert_count"
DRIFT_ALERTS = "modelwatch_drift_alerts"
EXPERIMENT_DECISION = "modelwatch_experiment_decision"
EXPERIMENT_REQUESTS = "modelwatch_experiment_requests"
EXPERIMENT_HEALTH = "modelwatch_experiment_health_ok"
EXPERIMENT_SRM = "modelwatch_experiment_srm_p_value"
GUARDRAIL_VERDICT = "modelwatch_guardrail_verdict"
BREACHES = "modelwatch_breaches"
ROWS = "modelwatch_rows"
LAST_SUCCESS = "modelwatch_last_success_timestamp_seconds"
ESTIMATE = "modelwatch_performance_estimate"
REALISED = "modelwatch_performance_realised"

_QUANTILE = {ms_key: q for ms_key, q in LATENCY_QUANTILES.items()}
P95, P99 = _QUANTILE["latency_p95_ms"], _QUANTILE["latency_p99_ms"]
_SEVERITY_MAPPING = [{"type": "value", "options": {str(v): {"text": k, "index": v, "color": c}
                                                    for (k, v), c in zip(SEVERITY_LEVELS.items(), ("green", "yellow", "orange", "red"), strict=True)}}]


def sel(metric: str, *matchers: str, scope: bool = True) -> str:
    """A selector of ``metric`` in the chosen model and cadence, plus ``matchers`` (``'variant="__all__"'``)."""
    inner = (['model="$model"', 'cadence="$cadence"'] if scope else []) + list(matchers)
    return f"{metric}{{{','.join(inner)}}}"


ALL = f'variant="{ALL_VARIANT}"'
ARMS = f'variant=~"$variant",variant!="{ALL_VARIANT}"'
EXPERIMENTS = 'experiment=~"$experiment"'
SEGMENT = 'segment=~"$segment"'


@dataclass(frozen=True)
class Query:
    """One Prometheus target of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False

    def target(self, ref: str, table: bool = False) -> dict[str, Any]:
        fmt = "table" if table else "time_series"
        return {"datasource": DATASOURCE, "refId": ref, "expr": self.expr, "legendFormat": self.legend or "__auto",
                "instant": self.instant, "range": not self.instant, "format": fmt, "editorMode": "code"}


@dataclass(frozen=True)
class Panel:
    """A panel before layout: kind, queries, size and display settings."""

    title: str
    kind: str  # stat | timeseries | table | bargauge | state-timeline
    queries: tuple[Query, ...]
    description: str
    width: int = 6
    height: int = 8
    unit: str = "short"
    thresholds: tuple[tuple[float | None, str], ...] = ((None, "green"),)
    mappings: tuple[dict[str, Any], ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    transformations: tuple[dict[str, Any], ...] = ()
    decimals: int | None = None
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def _stat(title: str, expr: str, description: str, unit: str = "short", thresholds=((None, "green"),), mappings=(), decimals=None, width=3) -> Panel:
    return Panel(title, "stat", (Query(expr, instant=True),), description, width=width, height=4, unit=unit, thresholds=thresholds,
                 mappings=tuple(mappings), decimals=decimals, options={"colorMode": "background", "graphMode": "none", "textMode": "value",
                                                                      "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}})


def _series(title: str, queries: Iterable[Query], description: str, unit: str = "short", width: int = 12, height: int = 8, **kw: Any) -> Panel:
    return Panel(title, "timeseries", tuple(queries), description, width=width, height=height, unit=unit,
                 options={"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]},
                          "tooltip": {"mode": "multi", "sort": "desc"}}, **kw)


def _table(title: str, queries: Iterable[Query], description: str, exclude: Iterable[str] = (), rename: dict[str, str] | None = None,
           width: int = 12, height: int = 8, unit: str = "short", mappings=()) -> Panel:
    hidden = {"Time", "__name__", "job", "instance", "model", "cadence", *exclude}
    return Panel(title, "table", tuple(queries), description, width=width, height=height, unit=unit, mappings=tuple(mappings),
                 transformations=({"id": "merge", "options": {}},
                                  {"id": "organize", "options": {"excludeByName": dict.fromkeys(sorted(hidden), True), "renameByName": rename or {}}}),
                 options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}})


def _vs_baseline(expr: str) -> str:
    """Relative change of ``expr`` against its average over the baseline window before today."""
    return f"{expr} / avg_over_time({expr}[$baseline_window] offset 1d) - 1"


def health_row() -> Row:
    err_limit, p95_limit, p99_limit = DEFAULTS["error_rate"], DEFAULTS["latency_p95_ms"] / 1000, DEFAULTS["latency_p99_ms"] / 1000
    daily_allowance = SCHEDULE_SECONDS["daily"] + SLACK_SECONDS["daily"]
    return Row("Is the model healthy now?", (
        _stat("Since last successful run", f"time() - {sel(LAST_SUCCESS)}",
              f"Seconds since the last published run of this cadence. The silent-monitoring alert fires after the schedule plus slack "
              f"({SCHEDULE_SECONDS['hourly'] + SLACK_SECONDS['hourly']} s hourly, {daily_allowance} s daily); colours follow the daily limit.",
              unit="s", thresholds=((None, "green"), (SCHEDULE_SECONDS["daily"], "yellow"), (daily_allowance, "red"))),
        _stat("Requests", sel(REQUESTS, ALL), "Requests in the latest partition (all variants)."),
        _stat("Error rate", sel(ERROR_RATE, ALL), f"Share of requests with status error; the default alert threshold is {err_limit:g}.",
              unit="percentunit", thresholds=((None, "green"), (err_limit / 2, "yellow"), (err_limit, "red")), decimals=2),
        _stat("p95 latency", sel(LATENCY, ALL, f'quantile="{P95}"'), f"95th percentile end-to-end latency; alert above {p95_limit:g} s.",
              unit="s", thresholds=((None, "green"), (p95_limit / 2, "yellow"), (p95_limit, "red"))),
        _stat("p99 latency", sel(LATENCY, ALL, f'quantile="{P99}"'), f"99th percentile end-to-end latency; alert above {p99_limit:g} s.",
              unit="s", thresholds=((None, "green"), (p99_limit / 2, "yellow"), (p99_limit, "red"))),
        _stat("Quarantined rows", sel(ROWS, 'state="quarantined"') + " / ignoring(state) " + sel(ROWS, 'state="read"'),
              "Share of the partition's rows that broke the log contract and were quarantined.", unit="percentunit",
              thresholds=((None, "green"), (0.01, "yellow"), (0.05, "red")), decimals=2),
        _stat("Judge helpfulness", sel(JUDGE_SCORE, ALL, 'dimension="helpfulness"'),
              f"Mean judge helpfulness (1-5 rubric) of the judged sample; the quality alert fires below {DEFAULTS['judge.helpfulness']:g}.",
              thresholds=((None, "red"), (DEFAULTS["judge.helpfulness"], "yellow"), (DEFAULTS["judge.helpfulness"] + 0.5, "green")), decimals=2),
        _stat("Breaches", sel(BREACHES), "Hard-limit and guardrail breaches of the latest run; each one starts an automatic rollback.",
              thresholds=((None, "green"), (1, "red"))),
        _series("Error, timeout and filter-refusal rate by variant", (Query(sel(ERROR_RATE, 'variant=~"$variant"'), "errors {{variant}}"),
                                                                      Query(sel(TIMEOUT_RATE, 'variant=~"$variant"'), "timeouts {{variant}}"),
                                                                      Query(sel(FILTER_REFUSAL_RATE, 'variant=~"$variant"'),
                                                                            "filter refusals {{variant}}")),
                "Per partition, by variant (__all__ is the whole traffic). Filter refusals are requests the safety filter refused "
                "(status refused_by_filter), not the judge's refusal flag.", unit="percentunit"),
        _series("Latency quantiles", (Query(sel(LATENCY, 'variant=~"$variant"'), "p{{quantile}} {{variant}}"),),
                "Latency quantiles per partition, by variant.", unit="s"),
        _series("Judge scores (95% interval)", (Query(sel(JUDGE_SCORE, ALL), "{{dimension}}"),
                                                Query(sel("modelwatch_judge_score_ci_low", ALL), "{{dimension}} low"),
                                                Query(sel("modelwatch_judge_score_ci_high", ALL), "{{dimension}} high")),
                "Weighted mean judge score per rubric dimension with its 95% interval (stratified sample).", min=1, max=5),
        _series("Judge flag rates (95% interval)", (Query(sel(JUDGE_FLAG_RATE, ALL), "{{flag}}"),
                                                    Query(sel("modelwatch_judge_flag_rate_ci_high", ALL), "{{flag}} high")),
                "Share of judged answers flagged (toxicity, hallucination, ...) with the upper end of the 95% interval.", unit="percentunit"),
        _series("Estimated performance before labels (classic models)",
                (Query(sel(ESTIMATE), "{{metric}} estimate"), Query(sel(f"{ESTIMATE}_lower"), "{{metric}} band low"),
                 Query(sel(f"{ESTIMATE}_upper"), "{{metric}} band high"), Query(sel("modelwatch_performance_threshold_lower"), "{{metric}} alert below"),
                 Query(sel("modelwatch_performance_threshold_upper"), "{{metric}} alert above")),
                "CBPE (classifiers) or DLE (regressors) estimate of the day's performance from the model's own scores, with its band "
                "(3 sampling errors) and the alert thresholds from the reference chunks (mean ± 3 sd). Shown on days without labels.",
                width=12),
        _series("Estimated vs realised, once labels arrive", (Query(sel(REALISED), "{{metric}} realised"),
                                                               Query(sel(f"{REALISED}_estimate"), "{{metric}} estimated on the same rows"),
                                                               Query(sel("modelwatch_performance_estimation_gap"), "{{metric}} gap")),
                "For the latest day whose delayed labels arrived: the realised metric beside the estimate on the same rows. A gap beyond "
                "the band means the calibration no longer holds (concept drift) and fires the estimation-gap alert.", width=12),
        _table("Segments now", tuple(Query(f'max by (segment, value) ({sel(m, SEGMENT)})', instant=True)
                                     for m in (SEGMENT_REQUESTS, SEGMENT_ERROR_RATE, SEGMENT_P95)),
               "The busiest values of each segment key (at most 20 each, the rest in __other__) in the latest partition.",
               rename={"Value #A": "requests", "Value #B": "error rate", "Value #C": "p95 latency (s)"}, width=24),
    ))


def drift_row() -> Row:
    SEGMENTS = sel(SEGMENT_REQUESTS, 'segment=~"$segment"')  # noqa: N806 - reads like the other selector constants
    return Row("Is anything drifting?", (
        _stat("Drift severity", sel(DRIFT_SEVERITY), "Worst drift severity of the latest daily run against the model's baseline.",
              thresholds=((None, "green"), (1, "yellow"), (2, "orange"), (3, "red")), mappings=_SEVERITY_MAPPING, width=4),
        _stat("Drift alerts", sel(DRIFT_ALERT_COUNT), "Columns (features, input length, segments, embeddings) flagged after Benjamini-Hochberg.",
              thresholds=((None, "green"), (1, "yellow")), width=4),
        Panel("Drift severity by family", "state-timeline", (Query(sel(DRIFT_FAMILY_SEVERITY), "{{family}}"),),
              "Worst alert severity per drift family (features, input_length, embedding, segment <key>) per run.",
              width=16, height=4, mappings=tuple(_SEVERITY_MAPPING), thresholds=((None, "green"), (1, "yellow"), (2, "orange"), (3, "red")),
              options={"showValue": "auto", "mergeValues": True, "rowHeight": 0.8, "legend": {"showLegend": False}}),
        Panel("Drift alerts by family (latest)", "bargauge", (Query(sel(DRIFT_ALERTS), "{{family}}", instant=True),),
              "Drift alerts of the latest run by family.", width=8, height=8,
              options={"orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        _series("Traffic mix by segment value", (Query(f"{SEGMENTS} / ignoring(value) group_left sum without (value) ({SEGMENTS})",
                                                       "{{segment}}={{value}}"),),
                "Share of each segment value in its key's traffic: a shift in the mix is drift a person can read.", unit="percentunit", width=8),
        _series("Input and output length", (Query(sel(TOKENS, ALL, f'stat=~"{TOKEN_STATS["prompt_tokens_mean"]}|{TOKEN_STATS["prompt_tokens_p95"]}|'
                                                           f'{TOKEN_STATS["completion_tokens_mean"]}|{TOKEN_STATS["completion_tokens_p95"]}"'),
                                                  "{{stat}}"),),
                "Prompt and completion tokens (mean and p95): longer prompts are the cheapest early sign of input drift.", width=8),
    ))


def baseline_row() -> Row:
    helpful = sel(JUDGE_SCORE, ALL, 'dimension="helpfulness"')
    p95 = sel(LATENCY, ALL, f'quantile="{P95}"')
    per_request = sel(COST, ALL, f'stat="{COST_STATS["cost_per_request_usd"]}"')
    change = ((None, "green"), (0.1, "yellow"), (0.25, "red"))
    return Row("How does today compare with the baseline?", (
        _stat("Requests vs baseline", _vs_baseline(sel(REQUESTS, ALL)), "Relative change against the average of the previous $baseline_window.",
              unit="percentunit", thresholds=((None, "blue"),), width=4, decimals=1),
        _stat("Error rate vs baseline", _vs_baseline(sel(ERROR_RATE, ALL)), "Relative change of the error rate against the previous $baseline_window.",
              unit="percentunit", thresholds=change, width=4, decimals=1),
        _stat("p95 latency vs baseline", _vs_baseline(p95), "Relative change of p95 latency against the previous $baseline_window.",
              unit="percentunit", thresholds=change, width=4, decimals=1),
        _stat("p99 latency vs baseline", _vs_baseline(sel(LATENCY, ALL, f'quantile="{P99}"')),
              "Relative change of p99 latency against the previous $baseline_window.", unit="percentunit", thresholds=change, width=4, decimals=1),
        _stat("Helpfulness vs baseline", _vs_baseline(helpful), "Relative change of mean judge helpfulness against the previous $baseline_window.",
              unit="percentunit", thresholds=((None, "red"), (-0.05, "yellow"), (-0.02, "green")), width=4, decimals=1),
        _stat("Cost per request vs baseline", _vs_baseline(per_request), "Relative change of cost per request against the previous $baseline_window.",
              unit="percentunit", thresholds=change, width=4, decimals=1),
        _series("p95 latency: today and baseline", (Query(p95, "today"), Query(f"avg_over_time({p95}[$baseline_window] offset 1d)", "baseline")),
                "The partition's p95 latency and its average over the preceding $baseline_window.", unit="s", width=8),
        _series("Judge helpfulness: today and baseline", (Query(helpful, "today"),
                                                          Query(f"avg_over_time({helpful}[$baseline_window] offset 1d)", "baseline"),
                                                          Query(sel("modelwatch_judge_score_ci_low", ALL, 'dimension="helpfulness"'), "today low"),
                                                          Query(sel("modelwatch_judge_score_ci_high", ALL, 'dimension="helpfulness"'), "today high")),
                "Mean judge helpfulness with its 95% interval against the preceding $baseline_window: the dropping-quality alert fires "
                "when the whole interval lies below the 7-day average.", width=8),
        _series("Error rate: today and baseline", (Query(sel(ERROR_RATE, ALL), "today"),
                                                   Query(f"avg_over_time({sel(ERROR_RATE, ALL)}[$baseline_window] offset 1d)", "baseline")),
                "The partition's error rate and its average over the preceding $baseline_window.", unit="percentunit", width=8),
    ))


def cost_row() -> Row:
    total, per_request, per_1k = (f'stat="{COST_STATS[k]}"' for k in ("cost_usd_total", "cost_per_request_usd", "cost_per_1k_tokens_usd"))
    return Row("What does it cost?", (
        _stat("Cost of the partition", sel(COST, ALL, total), "Serving cost of the latest partition (sum of cost_usd).", unit="currencyUSD", width=4, decimals=2),
        _stat("Cost per request", sel(COST, ALL, per_request), "Mean cost per request.", unit="currencyUSD", width=4, decimals=5),
        _stat("Cost per 1k tokens", sel(COST, ALL, per_1k), "Cost per thousand prompt plus completion tokens.", unit="currencyUSD", width=4, decimals=4),
        _stat("Tokens", sel(TOKENS, ALL, f'stat="{TOKEN_STATS["tokens_total"]}"'), "Prompt plus completion tokens of the partition.", width=4),
        _stat("Judge budget", sel(JUDGE_BUDGET), "The day's LLM-judge budget in USD.", unit="currencyUSD", width=4, decimals=2),
        _stat("Judge calls skipped (budget)", sel(JUDGE_REQUESTS, 'state="skipped_budget"'),
              "Sampled rows left unjudged because the budget ran out (the budget alert fires above 0).",
              thresholds=((None, "green"), (1, "orange")), width=4),
        _series("Cost per partition by variant", (Query(sel(COST, 'variant=~"$variant"', total), "{{variant}}"),),
                "Serving cost per partition, by variant.", unit="currencyUSD", width=8),
        _series("Unit cost", (Query(sel(COST, ALL, per_request), "per request"), Query(sel(COST, ALL, per_1k), "per 1k tokens")),
                "Cost per request and per thousand tokens.", unit="currencyUSD", width=8),
        _series("Judge calls by state", (Query(sel(JUDGE_REQUESTS), "{{state}}"),),
                "Judge calls per run: judged, failed, skipped for budget.", width=8, custom={"drawStyle": "bars", "stacking": {"mode": "normal"}}),
    ))


def experiments_row() -> Row:
    srm = DEFAULTS["srm_p_value"]
    verdict_colours = [{"type": "value", "options": {"non_inferior": {"color": "green", "index": 0}, "inferior": {"color": "red", "index": 1},
                                                     "inconclusive": {"color": "yellow", "index": 2}}}]
    return Row("How are the experiments doing?", (
        _table("Decisions", (Query(sel(EXPERIMENT_DECISION, EXPERIMENTS) + " == 1", instant=True),),
               "The decision of each experiment in the latest run: continue, promote, stop, roll_back or not_started.",
               exclude=("Value",), width=6),
        _table("Guardrails", (Query(sel(GUARDRAIL_VERDICT, EXPERIMENTS) + " == 1", instant=True),),
               "Each guardrail's non-inferiority verdict in the latest run; inferior starts a rollback.",
               exclude=("Value",), width=10, mappings=verdict_colours),
        _table("Health and size", tuple(Query(f"max by (experiment) ({sel(m, EXPERIMENTS)})", instant=True)
                                        for m in (EXPERIMENT_HEALTH, EXPERIMENT_REQUESTS)),
               "Health checks (1 = pass: sample ratio, assignment) and cumulative requests per experiment.",
               rename={"Value #A": "health ok", "Value #B": "requests"}, width=8),
        _series("Sample-ratio mismatch p-value", (Query(sel(EXPERIMENT_SRM, 'experiment=~"$experiment"'), "{{experiment}}"),),
                f"Chi-squared test of the arms' shares against the planned split; below {srm:g} the SRM alert fires.",
                thresholds=((None, "red"), (srm, "green")), width=8,
                custom={"scaleDistribution": {"type": "log", "log": 10}, "thresholdsStyle": {"mode": "line"}}),
        _series("Judge helpfulness by arm (95% interval)", (Query(sel(JUDGE_SCORE, ARMS, 'dimension="helpfulness"'), "{{variant}}"),
                                                            Query(sel("modelwatch_judge_score_ci_low", ARMS, 'dimension="helpfulness"'), "{{variant}} low"),
                                                            Query(sel("modelwatch_judge_score_ci_high", ARMS, 'dimension="helpfulness"'), "{{variant}} high")),
                "Per-arm mean judge helpfulness with its interval (the daily sample; the experiment test pools all days).", width=8),
        _series("p99 latency by arm", (Query(sel(LATENCY, ARMS, f'quantile="{P99}"'), "p99 {{variant}}"),),
                "p99 latency per arm per partition (a guardrail metric).", unit="s", width=8),
        _series("Error rate by arm", (Query(sel(ERROR_RATE, ARMS), "{{variant}}"),), "Error rate per arm per partition (a guardrail and hard limit).",
                unit="percentunit", width=12),
        _series("Experiment requests (cumulative)", (Query(sel(EXPERIMENT_REQUESTS, 'experiment=~"$experiment"'), "{{experiment}}"),),
                "Requests an experiment has collected since its start.", width=12),
    ))


def rows() -> tuple[Row, ...]:
    """The five rows, in the order a person reads them."""
    return health_row(), drift_row(), baseline_row(), cost_row(), experiments_row()


def _field_config(p: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": p.unit, "mappings": list(p.mappings),
                                "thresholds": {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in p.thresholds]}}
    if p.decimals is not None:
        defaults["decimals"] = p.decimals
    if p.min is not None:
        defaults["min"] = p.min
    if p.max is not None:
        defaults["max"] = p.max
    if p.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "showPoints": "auto", "spanNulls": False, **p.custom}
        defaults["color"] = {"mode": "palette-classic"}
    elif p.kind == "state-timeline":
        defaults["color"] = {"mode": "thresholds"}
    return {"defaults": defaults, "overrides": []}


def _panel_json(p: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    refs = [chr(ord("A") + i) for i in range(len(p.queries))]
    return {"id": panel_id, "type": p.kind, "title": p.title, "description": p.description, "datasource": DATASOURCE,
            "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y}, "targets": [q.target(r, table=p.kind == "table") for q, r in zip(p.queries, refs, strict=True)],
            "fieldConfig": _field_config(p), "options": p.options, "transformations": list(p.transformations)}


def layout(all_rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Row headers and their panels on Grafana's 24-column grid: left to right, wrapping, each row below the last."""
    panels: list[dict[str, Any]] = []
    y, next_id = 0, 1
    for row in all_rows:
        panels.append({"id": next_id, "type": "row", "title": row.title, "collapsed": False, "panels": [],
                       "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}})
        next_id, y = next_id + 1, y + 1
        x, line_height = 0, 0
        for p in row.panels:
            if not 0 < p.width <= GRID_WIDTH:
                raise ValueError(f"panel {p.title!r}: width {p.width} is outside 1..{GRID_WIDTH}")
            if x + p.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel_json(p, next_id, x, y))
            next_id, x, line_height = next_id + 1, x + p.width, max(line_height, p.height)
        y += line_height
    return panels


def _query_variable(name: str, label: str, query: str, *, multi: bool, include_all: bool, hide: int = 0) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE, "hide": hide,
            "query": {"query": query, "refId": f"{name}-variable"}, "definition": query, "refresh": 2, "sort": 1,
            "multi": multi, "includeAll": include_all, **({"allValue": ".*"} if include_all else {}), "current": {}, "options": [], "regex": ""}


def variables() -> list[dict[str, Any]]:
    """Template variables: datasource, model, cadence, variant, segment, experiment, baseline window."""
    scope = 'model="$model",cadence="$cadence"'
    return [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus", "current": {}, "hide": 0, "regex": "",
         "options": [], "refresh": 1, "multi": False, "includeAll": False},
        _query_variable("model", "Model", f"label_values({LAST_SUCCESS}, model)", multi=False, include_all=False),
        _query_variable("cadence", "Cadence", f'label_values({LAST_SUCCESS}{{model="$model"}}, cadence)', multi=False, include_all=False),
        _query_variable("variant", "Variant", f"label_values({REQUESTS}{{{scope}}}, variant)", multi=True, include_all=True),
        _query_variable("segment", "Segment", f"label_values({SEGMENT_REQUESTS}{{{scope}}}, segment)", multi=True, include_all=True),
        _query_variable("experiment", "Experiment", f"label_values({EXPERIMENT_REQUESTS}{{{scope}}}, experiment)", multi=True, include_all=True),
        {"name": "baseline_window", "label": "Baseline window", "type": "custom", "query": ",".join(BASELINE_WINDOWS), "hide": 0,
         "multi": False, "includeAll": False, "current": {"text": BASELINE_WINDOWS[0], "value": BASELINE_WINDOWS[0], "selected": True},
         "options": [{"text": w, "value": w, "selected": w == BASELINE_WINDOWS[0]} for w in BASELINE_WINDOWS]},
    ]


def dashboard() -> dict[str, Any]:
    """The whole dashboard JSON model (deterministic: the same code gives the same JSON)."""
    return {
        "uid": UID, "title": TITLE, "description": "modelwatch: health, drift, baseline comparison, cost and experiments of monitored models.",
        "tags": ["modelwatch", "ml-monitoring"], "timezone": "utc", "editable": True, "graphTooltip": 1, "schemaVersion": SCHEMA_VERSION,
        "version": 1, "refresh": "5m", "time": {"from": "now-30d", "to": "now"}, "fiscalYearStartMonth": 0, "liveNow": False,
        "weekStart": "", "links": [],
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
                                  "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": variables()},
        "panels": layout(rows()),
    }


def render(dash: dict[str, Any] | None = None) -> str:
    """The dashboard as the committed file holds it: indented JSON with a final newline."""
    return json.dumps(dashboard() if dash is None else dash, indent=2, ensure_ascii=False) + "\n"


def write_dashboard(path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(), encoding="utf-8")
    return out
