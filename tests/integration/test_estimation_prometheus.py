"""Estimated vs realised performance pushed to a real Pushgateway; a real Prometheus evaluates the generated estimation rules."""

from __future__ import annotations

import pytest
from modelwatch.config import load_config
from modelwatch.observe import alert_rules, prom_metrics
from prom_servers import classic_summary_with_estimate, prometheus_stack, wait_for

MODEL = "churn-classifier-v2"
TIMEOUT = 30.0


def _summary(estimate: float, gap: float) -> dict:
    return classic_summary_with_estimate(MODEL, estimate, gap)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    rules = alert_rules.write_rules(load_config(), tmp_path_factory.mktemp("rules") / "rules.yml")
    with prometheus_stack(rules) as running:
        yield running


def _alerts(stack, name: str) -> list[dict]:
    return [a for a in stack.alerts() if a["labels"].get("alertname") == name and a["labels"].get("model") == MODEL]


def test_estimate_and_gap_alerts_follow_the_pushed_values(stack):
    prom_metrics.push_summary(stack.pushgateway.url, _summary(estimate=0.64, gap=-0.06))
    band = wait_for(lambda: _alerts(stack, "ModelwatchEstimatedPerformanceOutOfBand"), timeout=TIMEOUT, what="estimate out of band alert")
    assert band[0]["labels"]["metric"] == "accuracy" and float(band[0]["value"]) == pytest.approx(0.64)
    gap = wait_for(lambda: _alerts(stack, "ModelwatchEstimationGap"), timeout=TIMEOUT, what="gap alert")
    assert gap[0]["labels"]["metric"] == "accuracy" and gap[0]["state"] == "pending"  # for: 15m
    realised = stack.query(f'modelwatch_performance_realised{{model="{MODEL}",metric="accuracy"}}')
    assert float(realised[0]["value"][1]) == pytest.approx(0.69)

    prom_metrics.push_summary(stack.pushgateway.url, _summary(estimate=0.78, gap=0.01))  # the next run: back in band, gap closed
    wait_for(lambda: not _alerts(stack, "ModelwatchEstimatedPerformanceOutOfBand") and not _alerts(stack, "ModelwatchEstimationGap"),
             timeout=TIMEOUT, what="alerts resolved")
