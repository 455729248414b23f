"""Generated alerting rules checked and unit-tested by the real promtool; the gauges of one run summary."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from modelwatch.config import load_config, parse_config
from modelwatch.observe import alert_rules, prom_metrics
from prom_servers import PROMTOOL, sample_summary
from prometheus_client import CollectorRegistry

ALLOWED_LABELS = {"model", "variant", "quantile", "stat", "segment", "value", "dimension", "flag", "state", "family",
                  "experiment", "decision", "metric", "verdict"}

MINIMAL = {"models": [{"id": "tiny", "kind": "regressor", "cadence": ["hourly"]}]}


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def _write(cfg, directory: Path) -> tuple[Path, Path]:
    rules = alert_rules.write_rules(cfg, directory / "rules.yml")
    tests = alert_rules.write_rules_tests(cfg, directory / "rules_test.yml", rules_file=rules.name)
    return rules, tests


@pytest.fixture(params=["bundled", "minimal"])
def cfg(request):
    return load_config() if request.param == "bundled" else parse_config(MINIMAL)


def test_promtool_check_rules_passes(cfg, tmp_path):
    rules, _ = _write(cfg, tmp_path)
    result = _promtool("check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in alert_rules.rules_from_config(cfg)["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_rule_tests_pass(cfg, tmp_path):
    _, tests = _write(cfg, tmp_path)
    result = _promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_test(cfg):
    tests = alert_rules.rules_tests(cfg)["tests"]
    alerts = {r["alert"] for g in alert_rules.rules_from_config(cfg)["groups"] for r in g["rules"]}
    fired = {t["alert_rule_test"][0]["alertname"] for t in tests if t["alert_rule_test"][0]["exp_alerts"]}
    quiet = {t["alert_rule_test"][0]["alertname"] for t in tests if not t["alert_rule_test"][0]["exp_alerts"]}
    assert fired == quiet == alerts


def test_rule_tests_detect_a_broken_rule(tmp_path):
    """The generated promtool tests fail when a rule's comparison is inverted: they are not vacuous."""
    cfg = load_config()
    rules, tests = _write(cfg, tmp_path)
    doc = yaml.safe_load(rules.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "ModelwatchErrorRateHigh":
                rule["expr"] = rule["expr"].replace(" > ", " < ")
    rules.write_text(yaml.safe_dump(doc))
    result = _promtool("test", "rules", str(tests))
    assert result.returncode != 0
    assert "ModelwatchErrorRateHigh" in result.stdout + result.stderr


def _rules_by_alert(cfg, model_id: str) -> dict[str, list[dict]]:
    group = next(g for g in alert_rules.rules_from_config(cfg)["groups"] if g["name"] == f"modelwatch-{model_id}")
    out: dict[str, list[dict]] = {}
    for rule in group["rules"]:
        out.setdefault(rule["alert"], []).append(rule)
    return out


def test_thresholds_come_from_hard_limits_else_defaults():
    cfg = load_config()
    bot, churn = _rules_by_alert(cfg, "support-bot-v3"), _rules_by_alert(cfg, "churn-classifier-v2")
    assert bot["ModelwatchErrorRateHigh"][0]["expr"].endswith("> 0.02")  # hard limit error_rate max 0.02
    assert churn["ModelwatchErrorRateHigh"][0]["expr"].endswith(f"> {alert_rules.DEFAULTS['error_rate']:g}")
    assert churn["ModelwatchLatencyP99High"][0]["expr"].endswith("> 0.25")  # latency_p99_ms max 250
    assert bot["ModelwatchLatencyP99High"][0]["expr"].endswith(f"> {alert_rules.DEFAULTS['latency_p99_ms'] / 1000:g}")
    silent = {r["labels"]["cadence"]: r["expr"] for r in bot["ModelwatchMonitoringSilent"]}
    assert silent["daily"].endswith(f"> {86400 + 6 * 3600}") and silent["hourly"].endswith(f"> {3600 + 1800}")


def test_optional_alerts_follow_the_config():
    cfg = load_config()
    bot, churn = _rules_by_alert(cfg, "support-bot-v3"), _rules_by_alert(cfg, "churn-classifier-v2")
    assert "ModelwatchEmbeddingDrift" in bot and "ModelwatchEmbeddingDrift" not in churn  # text drift only on the bot
    assert "ModelwatchJudgeBudgetExhausted" in bot and "ModelwatchJudgeBudgetExhausted" not in churn
    assert {r["labels"]["metric"] for r in churn["ModelwatchGuardrailBreach"]} == {"latency_p99_ms", "latency_mean_ms"}
    assert all(r["labels"]["severity"] == "critical" for r in bot["ModelwatchExperimentRollback"])
    tiny = _rules_by_alert(parse_config(MINIMAL), "tiny")
    assert "ModelwatchExperimentRollback" not in tiny and [r["labels"]["cadence"] for r in tiny["ModelwatchMonitoringSilent"]] == ["hourly"]


def _samples(summary: dict, now: float = 1_800_000_000.0) -> list:
    registry = prom_metrics.summary_metrics(summary, CollectorRegistry(), now=now)
    return [s for family in registry.collect() for s in family.samples]


def _value(samples: list, name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def test_summary_metrics_names_and_values():
    samples = _samples(sample_summary(hour=7, decision="roll_back", guardrail_verdict="inferior"))
    names = {s.name for s in samples}
    assert all(n.startswith("modelwatch_") for n in names)
    expected = {"modelwatch_requests", "modelwatch_error_rate", "modelwatch_timeout_rate", "modelwatch_latency_seconds", "modelwatch_tokens",
                "modelwatch_cost_usd", "modelwatch_segment_requests", "modelwatch_judge_score", "modelwatch_judge_score_ci_low",
                "modelwatch_judge_flag_rate", "modelwatch_judge_flag_rate_ci_high", "modelwatch_judge_requests", "modelwatch_drift_severity",
                "modelwatch_drift_alerts", "modelwatch_experiment_decision", "modelwatch_guardrail_verdict", "modelwatch_experiment_srm_p_value",
                "modelwatch_rows", "modelwatch_last_success_timestamp_seconds", "modelwatch_partition_timestamp_seconds"}
    assert expected <= names
    m = {"model": "support-bot-v3"}
    assert _value(samples, "modelwatch_latency_seconds", **m, variant="__all__", quantile="0.95") == pytest.approx(1.85)
    assert _value(samples, "modelwatch_requests", **m, variant="treatment") == 1200
    assert _value(samples, "modelwatch_judge_score_ci_high", **m, variant="__all__", dimension="helpfulness") == pytest.approx(4.22)
    assert _value(samples, "modelwatch_judge_flag_rate", **m, variant="__all__", flag="toxicity") == pytest.approx(0.004)
    assert _value(samples, "modelwatch_drift_severity", **m) == 2
    assert _value(samples, "modelwatch_drift_alerts", **m, family="features") == 2
    assert _value(samples, "modelwatch_drift_alert_count", **m) == 3
    assert _value(samples, "modelwatch_drift_family_severity", **m, family="segment metadata.topic") == 1
    decisions = {s.labels["decision"]: s.value for s in samples if s.name == "modelwatch_experiment_decision"}
    assert decisions["roll_back"] == 1 and sum(decisions.values()) == 1 and set(decisions) == set(prom_metrics.DECISIONS)
    assert _value(samples, "modelwatch_guardrail_verdict", **m, metric="latency_p99_ms", verdict="inferior") == 1
    assert _value(samples, "modelwatch_rows", **m, state="quarantined") == 50
    assert _value(samples, "modelwatch_partition_timestamp_seconds", **m) == 1795132800 + 7 * 3600  # 2026-11-20T07:00Z
    assert _value(samples, "modelwatch_last_success_timestamp_seconds", **m) == 1_800_000_000.0


def test_missing_sections_export_no_series():
    summary = {**sample_summary(), "judge": None, "drift": None, "experiments": [], "segments": []}
    names = {s.name for s in _samples(summary)}
    assert not any(n.startswith(("modelwatch_judge", "modelwatch_drift", "modelwatch_experiment", "modelwatch_segment")) for n in names)
    assert "modelwatch_last_success_timestamp_seconds" in names


def test_cardinality_is_bounded():
    few, many = _samples(sample_summary(n_segment_values=25)), _samples(sample_summary(n_segment_values=500))
    assert len(few) == len(many)
    segment_values = {s.labels["value"] for s in many if s.name == "modelwatch_segment_requests"}
    assert len(segment_values) == prom_metrics.MAX_SEGMENT_VALUES
    assert "topic-00" in segment_values  # the busiest values are kept
    assert {k for s in many for k in s.labels} <= ALLOWED_LABELS


def test_grouping_key_by_model_and_cadence():
    assert prom_metrics.grouping_key(sample_summary()) == {"model": "support-bot-v3", "cadence": "daily"}
    assert prom_metrics.grouping_key(sample_summary(hour=0)) == {"model": "support-bot-v3", "cadence": "hourly"}


def test_estimation_alerts_follow_the_model_kind_and_setting():
    churn = _rules_by_alert(load_config(), "churn-classifier-v2")
    assert {r["labels"]["metric"] for r in churn["ModelwatchEstimatedPerformanceOutOfBand"]} == {"accuracy", "f1", "roc_auc"}
    assert {r["labels"]["metric"] for r in churn["ModelwatchEstimationGap"]} == {"accuracy", "f1", "roc_auc"}
    assert "ModelwatchEstimationGap" not in _rules_by_alert(load_config(), "support-bot-v3")  # an LLM has nothing to estimate
    tiny = _rules_by_alert(parse_config(MINIMAL), "tiny")
    assert {r["labels"]["metric"] for r in tiny["ModelwatchEstimationGap"]} == {"mae", "rmse"}  # a regressor: DLE
    off = parse_config({"models": [{"id": "tiny", "kind": "regressor", "estimation": {"enabled": False}}]})
    assert "ModelwatchEstimationGap" not in _rules_by_alert(off, "tiny")


def _estimation_summary(gap: float, alert: bool) -> dict:
    concept = {"verdict": "stable", "reason": "", "detections": 0, "evaluated": 900, "estimation": {
        "outcome": "ok", "method": "cbpe", "day": "2026-11-20",
        "metrics": [{"metric": "accuracy", "estimate": 0.64, "lower": 0.61, "upper": 0.67, "threshold_lower": 0.72, "threshold_upper": 0.83, "alert": alert},
                    {"metric": "roc_auc", "estimate": None, "lower": None, "upper": None, "threshold_lower": None, "threshold_upper": None, "alert": False},
                    {"metric": "not_a_metric", "estimate": 1.0}],
        "latest_realised": {"day": "2026-11-13", "labelled": 800, "metrics": [
            {"metric": "accuracy", "realised": 0.75 + gap, "estimated_labelled": 0.75, "labelled_lower": 0.72, "labelled_upper": 0.78,
             "gap": gap, "gap_limit": 0.03, "gap_alert": abs(gap) > 0.03}]}}}
    return {**sample_summary("churn-classifier-v2"), "concept": concept}


def test_estimation_gauges_carry_estimate_band_thresholds_and_the_realised_gap():
    samples = _samples(_estimation_summary(gap=-0.06, alert=True))
    m = {"model": "churn-classifier-v2", "metric": "accuracy"}
    assert _value(samples, "modelwatch_performance_estimate", **m) == pytest.approx(0.64)
    assert _value(samples, "modelwatch_performance_estimate_lower", **m) == pytest.approx(0.61)
    assert _value(samples, "modelwatch_performance_threshold_lower", **m) == pytest.approx(0.72)
    assert _value(samples, "modelwatch_performance_estimate_alert", **m) == 1
    assert _value(samples, "modelwatch_performance_realised", **m) == pytest.approx(0.69)
    assert _value(samples, "modelwatch_performance_realised_upper", **m) == pytest.approx(0.78)
    assert _value(samples, "modelwatch_performance_estimation_gap", **m) == pytest.approx(-0.06)
    assert _value(samples, "modelwatch_performance_realised_day_timestamp_seconds", model="churn-classifier-v2") == 1794528000  # 2026-11-13
    metrics = {s.labels.get("metric") for s in samples if s.name.startswith("modelwatch_performance")}
    assert metrics == {"accuracy", None}  # an abstained metric exports nothing; unknown names never become labels
    quiet = _estimation_summary(gap=0.0, alert=False)
    quiet["concept"]["estimation"]["outcome"] = "no_reference"
    assert not any(s.name.startswith("modelwatch_performance") for s in _samples(quiet))
