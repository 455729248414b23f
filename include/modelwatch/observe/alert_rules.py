"""Prometheus alerting rules (and their promtool unit tests) generated from the monitoring config.

One rule group per model, over the series of :mod:`modelwatch.observe.prom_metrics`. Thresholds come
from the config where it has them: the ``max`` of the experiments' hard limits on
``error_rate`` / ``latency_p95_ms`` / ``latency_p99_ms``, the ``min`` of a hard limit on
``judge.helpfulness``; otherwise from ``DEFAULTS``. Classic models with performance estimation
get two rules per headline metric whose bounds travel with the data (pushed by the run, computed
from the baseline's reference chunks): the estimate leaving its thresholds, and the realised
metric of the latest labelled day leaving its estimate's band (concept drift). A daily run that found no traffic
alerts on its own (``ModelwatchNoTraffic``: the run published, so ``ModelwatchMonitoringSilent`` stays quiet), and
so does a judge flag rate far above its earlier days' (``ModelwatchJudgeFlagRateFarAbove``). Each alert is built together with an
input that makes it fire and one that keeps it quiet, so :func:`rules_tests` can prove,
through ``promtool test rules``, that every generated rule does what it says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelwatch.config import Model, MonitoringConfig
from modelwatch.observe.prom_metrics import ALL_VARIANT

DEFAULTS: dict[str, float] = {
    "error_rate": 0.05,
    "latency_p95_ms": 5000.0,
    "latency_p99_ms": 10000.0,
    "judge.helpfulness": 3.5,  # on the 1..5 rubric scale
    "judge_failure_rate": 0.2,
    "srm_p_value": 0.001,
}
SCHEDULE_SECONDS: dict[str, int] = {"daily": 86400, "hourly": 3600}
SLACK_SECONDS: dict[str, int] = {"daily": 6 * 3600, "hourly": 30 * 60}
INPUT_DRIFT_FAMILIES = "features|input_length|segment .*"
SCOPE_LABELS = ("model", "experiment", "metric", "cadence", "quantile")
TEST_INTERVAL = "1m"
TEST_POINTS = 180  # samples per test series, one per TEST_INTERVAL
TEST_EVAL_TIME = "2h"


@dataclass(frozen=True)
class Series:
    """One promtool input series: labels and a constant (or expanding) value."""

    name: str
    labels: dict[str, str]
    values: str  # promtool expanding notation, e.g. "0.2x180" or "0+60x180"

    def selector(self) -> str:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{self.name}{{{inner}}}"


@dataclass(frozen=True)
class AlertSpec:
    """A rule with inputs that make it fire (``firing``) and stay quiet (``quiet``)."""

    alert: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    firing: list[Series]
    quiet: list[Series]
    fired_labels: list[dict[str, str]] = field(default_factory=list)

    def labels(self) -> dict[str, str]:
        """Rule labels: the severity and the exactly matched scope (model, experiment, ...), so no two rules are duplicates."""
        scope = self.fired_labels[0] if self.fired_labels else {}
        return {"severity": self.severity, **{k: v for k, v in scope.items() if k in SCOPE_LABELS}}

    def rule(self) -> dict[str, Any]:
        return {"alert": self.alert, "expr": self.expr, "for": self.for_, "labels": self.labels(),
                "annotations": {"summary": self.summary, "description": self.description}}


def _const(value: float) -> str:
    return f"{value:g}x{TEST_POINTS}"


def config_limit(model: Model, metric: str, bound: str) -> float | None:
    """The strictest ``max`` (lowest) or ``min`` (highest) of the model's hard limits on ``metric``."""
    values = [getattr(h, bound) for e in model.experiments for h in e.hard_limits if h.metric == metric and getattr(h, bound) is not None]
    if not values:
        return None
    return min(values) if bound == "max" else max(values)


def _threshold(model: Model, metric: str, bound: str) -> float:
    found = config_limit(model, metric, bound)
    return DEFAULTS[metric] if found is None else found


def _error_rate(model: Model) -> AlertSpec:
    limit = _threshold(model, "error_rate", "max")
    labels = {"model": model.id, "variant": ALL_VARIANT}
    sel = f'modelwatch_error_rate{{model="{model.id}",variant="{ALL_VARIANT}"}}'
    return AlertSpec("ModelwatchErrorRateHigh", f"{sel} > {limit:g}", "5m", "critical",
                     f"{model.id}: error rate above {limit:g}", f"The share of errored requests of {model.id} exceeds {limit:g}.",
                     [Series("modelwatch_error_rate", labels, _const(min(1.0, limit * 2 + 0.01)))],
                     [Series("modelwatch_error_rate", labels, _const(limit / 2))], [labels])


def _latency(model: Model, metric: str, quantile: str) -> AlertSpec:
    limit_s = _threshold(model, metric, "max") / 1000.0
    labels = {"model": model.id, "variant": ALL_VARIANT, "quantile": quantile}
    sel = f'modelwatch_latency_seconds{{model="{model.id}",variant="{ALL_VARIANT}",quantile="{quantile}"}}'
    name = f"ModelwatchLatencyP{quantile[2:]}High"
    return AlertSpec(name, f"{sel} > {limit_s:g}", "5m", "warning",
                     f"{model.id}: p{quantile[2:]} latency above {limit_s:g}s",
                     f"The {quantile} latency quantile of {model.id} exceeds {limit_s:g} seconds.",
                     [Series("modelwatch_latency_seconds", labels, _const(limit_s * 2))],
                     [Series("modelwatch_latency_seconds", labels, _const(limit_s / 2))], [labels])


def _drift(model: Model, alert: str, family_regex: str, family: str, what: str) -> AlertSpec:
    labels = {"model": model.id, "family": family}
    sel = f'modelwatch_drift_family_severity{{model="{model.id}",family=~"{family_regex}"}}'
    return AlertSpec(alert, f"{sel} >= 2", "15m", "warning", f"{model.id}: {what} drift",
                     f"A {what} drift family of {model.id} has an alert of medium or high severity against the baseline.",
                     [Series("modelwatch_drift_family_severity", labels, _const(3))],
                     [Series("modelwatch_drift_family_severity", labels, _const(1))], [labels])


def _experiment_alerts(model: Model) -> list[AlertSpec]:
    out = []
    for exp in model.experiments:
        base = {"model": model.id, "experiment": exp.id}
        roll, cont = {**base, "decision": "roll_back"}, {**base, "decision": "continue"}
        out.append(AlertSpec(
            "ModelwatchExperimentRollback", f'modelwatch_experiment_decision{{model="{model.id}",experiment="{exp.id}",decision="roll_back"}} == 1',
            "0m", "critical", f"{model.id}: experiment {exp.id} decided to roll back",
            f"Experiment {exp.id} of {model.id} breached a hard limit or guardrail; its treatment is being rolled back.",
            [Series("modelwatch_experiment_decision", roll, _const(1)), Series("modelwatch_experiment_decision", cont, _const(0))],
            [Series("modelwatch_experiment_decision", roll, _const(0)), Series("modelwatch_experiment_decision", cont, _const(1))], [roll]))
        out.append(AlertSpec(
            "ModelwatchSampleRatioMismatch",
            f'modelwatch_experiment_srm_p_value{{model="{model.id}",experiment="{exp.id}"}} < {DEFAULTS["srm_p_value"]:g}',
            "15m", "warning", f"{model.id}: sample-ratio mismatch in {exp.id}",
            f"The arms of experiment {exp.id} do not receive their planned shares (chi-squared p < {DEFAULTS['srm_p_value']:g}).",
            [Series("modelwatch_experiment_srm_p_value", base, _const(1e-6))],
            [Series("modelwatch_experiment_srm_p_value", base, _const(0.4))], [base]))
        for goal in exp.guardrails:
            bad = {**base, "metric": goal.metric, "verdict": "inferior"}
            ok = {**base, "metric": goal.metric, "verdict": "non_inferior"}
            out.append(AlertSpec(
                "ModelwatchGuardrailBreach",
                f'modelwatch_guardrail_verdict{{model="{model.id}",experiment="{exp.id}",metric="{goal.metric}",verdict="inferior"}} == 1',
                "0m", "critical", f"{model.id}: guardrail {goal.metric} of {exp.id} breached",
                f"The treatment of {exp.id} is shown inferior on {goal.metric} beyond its margin.",
                [Series("modelwatch_guardrail_verdict", bad, _const(1)), Series("modelwatch_guardrail_verdict", ok, _const(0))],
                [Series("modelwatch_guardrail_verdict", bad, _const(0)), Series("modelwatch_guardrail_verdict", ok, _const(1))], [bad]))
    return out


def _judge_alerts(model: Model) -> list[AlertSpec]:
    m = model.id
    state = {s: {"model": m, "state": s} for s in ("judged", "failed", "skipped_budget")}
    req = "modelwatch_judge_requests"
    fail_limit = DEFAULTS["judge_failure_rate"]
    helpful = _threshold(model, "judge.helpfulness", "min")
    score = {"model": m, "variant": ALL_VARIANT, "dimension": "helpfulness"}
    flag = {"model": m, "flag": "toxicity"}
    score_sel = f'modelwatch_judge_score{{model="{m}",variant="{ALL_VARIANT}",dimension="helpfulness"}}'
    high_sel = f'modelwatch_judge_score_ci_high{{model="{m}",variant="{ALL_VARIANT}",dimension="helpfulness"}}'
    half = TEST_POINTS // 2
    return [
        AlertSpec("ModelwatchJudgeBudgetExhausted", f'{req}{{model="{m}",state="skipped_budget"}} > 0', "0m", "warning",
                  f"{m}: judge budget exhausted", f"Rows of {m} sampled for judging were skipped: the daily judge budget ran out.",
                  [Series(req, state["skipped_budget"], _const(12))], [Series(req, state["skipped_budget"], _const(0))],
                  [state["skipped_budget"]]),
        AlertSpec("ModelwatchJudgeFailureRateHigh",
                  f'sum by (model) ({req}{{model="{m}",state="failed"}}) / sum by (model) ({req}{{model="{m}",state=~"failed|judged"}}) > {fail_limit:g}',
                  "15m", "warning", f"{m}: judge failure rate above {fail_limit:g}",
                  f"More than {fail_limit:g} of the judge calls of {m} failed.",
                  [Series(req, state["failed"], _const(50)), Series(req, state["judged"], _const(50))],
                  [Series(req, state["failed"], _const(1)), Series(req, state["judged"], _const(99))], [{"model": m}]),
        AlertSpec("ModelwatchQualityBelowThreshold", f"{score_sel} < {helpful:g}", "15m", "warning",
                  f"{m}: judge helpfulness below {helpful:g}", f"The mean judge helpfulness of {m} is below {helpful:g}.",
                  [Series("modelwatch_judge_score", score, _const(helpful - 1))], [Series("modelwatch_judge_score", score, _const(helpful + 0.5))],
                  [score]),
        AlertSpec("ModelwatchJudgeFlagRateFarAbove", f'modelwatch_judge_flag_rate_far_above{{model="{m}"}} == 1', "0m", "warning",
                  f"{m}: a judge flag rate far above its reference",
                  f"Today's share of judged answers of {m} with a flag (toxicity, hallucination, ...) is far above its rate on the earlier days: "
                  "a one-sided score test rejects at the page's level and the rise is at least the minimum (publish.flag_rates).",
                  [Series("modelwatch_judge_flag_rate_far_above", flag, _const(1))], [Series("modelwatch_judge_flag_rate_far_above", flag, _const(0))],
                  [flag]),
        AlertSpec("ModelwatchQualityDropping", f"{high_sel} < avg_over_time({score_sel}[7d])", "15m", "warning",
                  f"{m}: judge helpfulness dropping",
                  f"The whole 95% interval of today's judge helpfulness of {m} lies below its 7-day average.",
                  [Series("modelwatch_judge_score", score, f"4.5x{half} 3x{half}"),
                   Series("modelwatch_judge_score_ci_high", score, f"4.8x{half} 3.3x{half}")],
                  [Series("modelwatch_judge_score", score, _const(4.5)), Series("modelwatch_judge_score_ci_high", score, _const(4.8))],
                  [score]),
    ]


ESTIMATION_ALERT_METRICS: dict[str, tuple[str, ...]] = {"classifier": ("accuracy", "f1", "roc_auc"), "regressor": ("mae", "rmse")}


def _estimation_alerts(model: Model) -> list[AlertSpec]:
    """Estimated performance outside the reference thresholds; realised performance outside its estimate's band."""
    out = []
    for metric in ESTIMATION_ALERT_METRICS.get(model.kind, ()) if model.estimation.enabled else ():
        labels = {"model": model.id, "metric": metric}
        inner = f'model="{model.id}",metric="{metric}"'
        est, low, high = (f"modelwatch_performance_{n}{{{inner}}}" for n in ("estimate", "threshold_lower", "threshold_upper"))
        good, bad = (0.8, 0.6) if metric not in ("mae", "rmse") else (1.0, 2.0)
        bounds = [Series("modelwatch_performance_threshold_lower", labels, _const(0.7 if good < 1 else 0.5)),
                  Series("modelwatch_performance_threshold_upper", labels, _const(0.9 if good < 1 else 1.5))]
        out.append(AlertSpec(
            "ModelwatchEstimatedPerformanceOutOfBand", f"{est} < {low} or {est} > {high}", "15m", "warning",
            f"{model.id}: estimated {metric} outside its reference band",
            f"The {metric} of {model.id} estimated from its own outputs (labels have not arrived) left the range its baseline's "
            "chunk-to-chunk variation allows (mean ± 3 sd).",
            [Series("modelwatch_performance_estimate", labels, _const(bad)), *bounds],
            [Series("modelwatch_performance_estimate", labels, _const(good)), *bounds], [labels]))
        gap, limit = f"modelwatch_performance_estimation_gap{{{inner}}}", f"modelwatch_performance_estimation_gap_limit{{{inner}}}"
        out.append(AlertSpec(
            "ModelwatchEstimationGap", f"abs({gap}) > {limit}", "15m", "warning",
            f"{model.id}: realised {metric} differs from its estimate",
            f"The labels of a past day of {model.id} arrived and its realised {metric} lies outside its estimate's band: the score "
            "calibration learnt on the baseline no longer holds (concept drift).",
            [Series("modelwatch_performance_estimation_gap", labels, _const(-0.08)), Series("modelwatch_performance_estimation_gap_limit", labels, _const(0.03))],
            [Series("modelwatch_performance_estimation_gap", labels, _const(0.01)), Series("modelwatch_performance_estimation_gap_limit", labels, _const(0.03))],
            [labels]))
    return out


def _silent(model: Model, cadence: str) -> AlertSpec:
    limit = SCHEDULE_SECONDS[cadence] + SLACK_SECONDS[cadence]
    labels = {"model": model.id, "cadence": cadence}
    sel = f'modelwatch_last_success_timestamp_seconds{{model="{model.id}",cadence="{cadence}"}}'
    return AlertSpec("ModelwatchMonitoringSilent", f"time() - {sel} > {limit}", "10m", "critical",
                     f"{model.id}: no successful {cadence} monitoring run",
                     f"The {cadence} monitoring of {model.id} has not published a summary for more than {limit} seconds.",
                     [Series("modelwatch_last_success_timestamp_seconds", labels, f"{-2 * limit}x{TEST_POINTS}")],
                     [Series("modelwatch_last_success_timestamp_seconds", labels, f"0+60x{TEST_POINTS}")], [labels])


def _no_traffic(model: Model) -> AlertSpec:
    """A daily run that published but found no traffic: the pipeline ran, the logs did not arrive (``ModelwatchMonitoringSilent`` misses it)."""
    labels = {"model": model.id, "cadence": "daily"}
    sel = f'modelwatch_no_traffic{{model="{model.id}",cadence="daily"}}'
    return AlertSpec("ModelwatchNoTraffic", f"{sel} == 1", "0m", "critical", f"{model.id}: no traffic logged for the day",
                     f"The latest daily run of {model.id} found no log files or no rows for its day: nothing was checked. "
                     "Check that the serving logs reach logs_uri.",
                     [Series("modelwatch_no_traffic", labels, _const(1))], [Series("modelwatch_no_traffic", labels, _const(0))], [labels])


DRILL_STALE_SECONDS = 8 * 86400  # the drill is weekly: a week and a day without one is a silent drill


def fire_drill_specs() -> list[AlertSpec]:
    """The fire drill's own alerts (``modelwatch_fire_drill``): a drill that found a broken link, and a drill that stopped running."""
    labels = {"job": "modelwatch_fire_drill"}
    failed = AlertSpec("ModelwatchFireDrillFailed", 'modelwatch_fire_drill_success{job="modelwatch_fire_drill"} == 0', "0m", "critical",
                       "modelwatch fire drill: a link of the alert path is broken",
                       "The last fire drill's planted breach did not reach every link (rollback, notification, Pushgateway or alert rules); "
                       "see its report under <reports_uri>/_fire_drill/drills/ and modelwatch_fire_drill_link_ok.",
                       [Series("modelwatch_fire_drill_success", labels, _const(0))], [Series("modelwatch_fire_drill_success", labels, _const(1))],
                       [labels])
    stale = AlertSpec("ModelwatchFireDrillStale", f'time() - modelwatch_fire_drill_timestamp_seconds{{job="modelwatch_fire_drill"}} > {DRILL_STALE_SECONDS}',
                      "10m", "warning", "modelwatch fire drill: no drill for more than a week",
                      "modelwatch_fire_drill has not finished for more than 8 days, so nothing proves the alert path works.",
                      [Series("modelwatch_fire_drill_timestamp_seconds", labels, f"{-2 * DRILL_STALE_SECONDS}x{TEST_POINTS}")],
                      [Series("modelwatch_fire_drill_timestamp_seconds", labels, f"0+60x{TEST_POINTS}")], [labels])
    return [failed, stale]


def alert_specs(model: Model) -> list[AlertSpec]:
    """Every alert of one model, with its test inputs."""
    specs = [_error_rate(model), _latency(model, "latency_p95_ms", "0.95"), _latency(model, "latency_p99_ms", "0.99"),
             _drift(model, "ModelwatchInputDrift", INPUT_DRIFT_FAMILIES, "features", "input")]
    if model.drift.text:
        specs.append(_drift(model, "ModelwatchEmbeddingDrift", "embedding", "embedding", "embedding"))
    specs += _experiment_alerts(model)
    if model.judge is not None:
        specs += _judge_alerts(model)
    specs += _estimation_alerts(model)
    specs += [_silent(model, cadence) for cadence in model.cadence]
    if "daily" in model.cadence:
        specs.append(_no_traffic(model))
    return specs


def rules_from_config(cfg: MonitoringConfig) -> dict[str, Any]:
    """The Prometheus rules file: one group per model, and the fire drill's."""
    groups = [{"name": f"modelwatch-{m.id}", "rules": [s.rule() for s in alert_specs(m)]} for m in cfg.models]
    return {"groups": [*groups, {"name": "modelwatch-fire-drill", "rules": [s.rule() for s in fire_drill_specs()]}]}


def write_rules(cfg: MonitoringConfig, path: str | Path) -> Path:
    """Write the rules file as YAML and return its path."""
    out = Path(path)
    out.write_text(yaml.safe_dump(rules_from_config(cfg), sort_keys=False), encoding="utf-8")
    return out


def _input(series: list[Series]) -> list[dict[str, str]]:
    return [{"series": s.selector(), "values": s.values} for s in series]


def _expectation(spec: AlertSpec, fired: bool) -> dict[str, Any]:
    alerts = [{"exp_labels": {**labels, **spec.labels()},
               "exp_annotations": {"summary": spec.summary, "description": spec.description}} for labels in spec.fired_labels] if fired else []
    return {"eval_time": TEST_EVAL_TIME, "alertname": spec.alert, "exp_alerts": alerts}


def rules_tests(cfg: MonitoringConfig, rules_file: str = "rules.yml") -> dict[str, Any]:
    """A ``promtool test rules`` file: per alert, one test where it fires and one where it stays quiet."""
    tests = []
    scoped = [(model.id, spec) for model in cfg.models for spec in alert_specs(model)] + [("fire drill", s) for s in fire_drill_specs()]
    for scope, spec in scoped:
        tests.append({"name": f"{scope} {spec.alert} fires", "interval": TEST_INTERVAL, "input_series": _input(spec.firing),
                      "alert_rule_test": [_expectation(spec, True)]})
        tests.append({"name": f"{scope} {spec.alert} quiet", "interval": TEST_INTERVAL, "input_series": _input(spec.quiet),
                      "alert_rule_test": [_expectation(spec, False)]})
    return {"rule_files": [rules_file], "evaluation_interval": TEST_INTERVAL, "tests": tests}


def write_rules_tests(cfg: MonitoringConfig, path: str | Path, rules_file: str = "rules.yml") -> Path:
    """Write the promtool test file (``rules_file`` is relative to it) and return its path."""
    out = Path(path)
    out.write_text(yaml.safe_dump(rules_tests(cfg, rules_file), sort_keys=False), encoding="utf-8")
    return out
