"""Run summaries pushed to a real Pushgateway, scraped by a real Prometheus evaluating the generated rules."""

from __future__ import annotations

import time

import pytest
from modelwatch.config import load_config
from modelwatch.observe import alert_rules, prom_metrics
from prom_servers import http_get, prometheus_stack, sample_summary, wait_for
from prometheus_client import CollectorRegistry, push_to_gateway

TIMEOUT = 30.0
BOT = "support-bot-v3"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    rules = alert_rules.write_rules(load_config(), tmp_path_factory.mktemp("rules") / "rules.yml")
    with prometheus_stack(rules) as running:
        yield running


def _scalar(stack, promql: str) -> float | None:
    result = stack.query(promql)
    return float(result[0]["value"][1]) if len(result) == 1 else None


def _wait_value(stack, promql: str, expected: float) -> None:
    wait_for(lambda: _scalar(stack, promql) == pytest.approx(expected), timeout=TIMEOUT, what=f"{promql} == {expected}")


def _alerts(stack, name: str, **labels: str) -> list[dict]:
    return [a for a in stack.alerts() if a["labels"].get("alertname") == name and all(a["labels"].get(k) == v for k, v in labels.items())]


def test_servers_run_and_load_the_rules(stack):
    groups = stack.api("rules")["groups"]
    assert {g["name"] for g in groups} == {f"modelwatch-{m.id}" for m in load_config().models} | {"modelwatch-fire-drill"}
    up = wait_for(lambda: [t for t in stack.api("targets")["activeTargets"] if t["health"] == "up"], timeout=TIMEOUT, what="gateway scraped")
    assert [t["labels"]["job"] for t in up] == ["pushgateway"]
    assert up[0]["scrapeUrl"] == f"{stack.pushgateway.url}/metrics"


def test_pushed_summary_reaches_prometheus(stack):
    before = time.time()
    key = prom_metrics.push_summary(stack.pushgateway.url, sample_summary(BOT))
    assert key == {"model": BOT, "cadence": "daily"}
    _wait_value(stack, f'modelwatch_latency_seconds{{model="{BOT}",cadence="daily",variant="__all__",quantile="0.99"}}', 3.2)
    assert _scalar(stack, f'modelwatch_requests{{model="{BOT}",variant="treatment",job="modelwatch",cadence="daily"}}') == 1200
    assert _scalar(stack, f'modelwatch_judge_score{{model="{BOT}",variant="__all__",dimension="helpfulness"}}') == pytest.approx(4.1)
    assert _scalar(stack, f'modelwatch_experiment_decision{{model="{BOT}",experiment="exp-042",decision="continue"}}') == 1
    assert _scalar(stack, f'count(modelwatch_segment_requests{{model="{BOT}"}})') == 3
    stamp = _scalar(stack, f'modelwatch_last_success_timestamp_seconds{{model="{BOT}"}}')
    assert before <= stamp <= time.time()
    assert not _alerts(stack, "ModelwatchExperimentRollback", model=BOT)
    assert not _alerts(stack, "ModelwatchErrorRateHigh", model=BOT)


def test_a_run_replaces_only_its_own_group(stack):
    prom_metrics.push_summary(stack.pushgateway.url, sample_summary(BOT, hour=5, n_segment_values=2))
    prom_metrics.push_summary(stack.pushgateway.url, sample_summary(BOT, n_segment_values=1))
    exposed = http_get(f"{stack.pushgateway.url}/metrics").decode()
    assert 'value="topic-02"' not in exposed  # the daily group was replaced, not merged
    assert 'cadence="hourly"' in exposed and 'cadence="daily"' in exposed
    wait_for(lambda: _scalar(stack, f'count(modelwatch_segment_requests{{model="{BOT}",cadence="daily"}})') == 1,
             timeout=TIMEOUT, what="daily segments replaced")
    assert _scalar(stack, f'count(modelwatch_segment_requests{{model="{BOT}",cadence="hourly"}})') == 2


def test_breach_and_rollback_raise_alerts(stack):
    summary = sample_summary(BOT, decision="roll_back", guardrail_verdict="inferior", error_rate=0.05)
    prom_metrics.push_summary(stack.pushgateway.url, summary)
    rollback = wait_for(lambda: _alerts(stack, "ModelwatchExperimentRollback", model=BOT, experiment="exp-042"),
                        timeout=TIMEOUT, what="rollback alert")
    assert rollback[0]["state"] in ("pending", "firing") and rollback[0]["labels"]["severity"] == "critical"
    guardrail = wait_for(lambda: _alerts(stack, "ModelwatchGuardrailBreach", model=BOT, metric="latency_p99_ms"),
                         timeout=TIMEOUT, what="guardrail alert")
    assert guardrail[0]["state"] in ("pending", "firing")
    assert not _alerts(stack, "ModelwatchGuardrailBreach", model=BOT, metric="error_rate")
    errors = wait_for(lambda: _alerts(stack, "ModelwatchErrorRateHigh", model=BOT), timeout=TIMEOUT, what="error rate alert")
    assert errors[0]["state"] == "pending"  # for: 5m
    assert float(errors[0]["value"]) == pytest.approx(0.05)


def test_silent_monitoring_alerts(stack):
    """A last success older than the daily schedule plus slack is reported as silent monitoring; a fresh one is not."""
    summary = sample_summary("churn-classifier-v2")
    registry = prom_metrics.summary_metrics(summary, CollectorRegistry(), now=time.time() - 2 * 86400)
    push_to_gateway(stack.pushgateway.url, job="modelwatch", registry=registry, grouping_key=prom_metrics.grouping_key(summary))
    silent = wait_for(lambda: _alerts(stack, "ModelwatchMonitoringSilent", model="churn-classifier-v2"), timeout=TIMEOUT, what="silent alert")
    assert silent[0]["labels"]["cadence"] == "daily" and silent[0]["state"] == "pending"
    assert not _alerts(stack, "ModelwatchMonitoringSilent", model=BOT)


def test_publish_pushes_when_a_gateway_is_configured_and_survives_an_outage(stack):
    from modelwatch.publish.stage import push_metrics

    cfg = load_config()
    configured = cfg.model_copy(update={"defaults": cfg.defaults.model_copy(update={"pushgateway_url": stack.pushgateway.url})})
    assert push_metrics(configured, sample_summary("churn-classifier-v2")).startswith("pushed")
    _wait_value(stack, 'modelwatch_requests{model="churn-classifier-v2",variant="__all__",cadence="daily"}',
                sample_summary("churn-classifier-v2")["metrics"]["__all__"]["requests"])
    down = cfg.model_copy(update={"defaults": cfg.defaults.model_copy(update={"pushgateway_url": "http://127.0.0.1:9/"})})
    assert push_metrics(down, sample_summary()).startswith("failed:")
    assert push_metrics(cfg, sample_summary()) is None  # no gateway configured: nothing to do
