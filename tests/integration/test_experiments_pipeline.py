"""The experiments stage over the real S3 server: a p99 regression is rolled back, an A/A test never is."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from modelwatch.core.partition import Partition
from modelwatch.runner import experiments, extract, profile, validate
from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic
from modelwatch.storage.s3 import get_json

START = date(2026, 11, 4)
REGRESSION = date(2026, 11, 6)
DAYS = 5


@pytest.fixture(scope="module")
def decisions(s3_server):
    """Five days of both experiments from their start; exp-042's treatment p99 regresses from day 3."""
    from conftest import bundled_config_data, scoped_config
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    data = bundled_config_data("exp")
    for model in data["models"]:
        for exp in model.get("experiments", []):
            exp["start"] = START.isoformat()
    cfg = scoped_config(client, "exp", data)
    llm_exp, aa = cfg.model("support-bot-v3").experiments[0], cfg.model("churn-classifier-v2").experiments[0]
    generate_traffic(client, cfg.defaults.logs_uri, cfg.defaults.labels_uri, START, DAYS, llm_rows=3000, classic_rows=1500,
                     scenario=Scenario(regression="latency", regression_from=REGRESSION),
                     plan=ExperimentPlan(llm_exp.id, llm_exp.weights()), classic_plan=ExperimentPlan(aa.id, aa.weights()))
    out = {}
    for offset in range(DAYS):
        day = START + timedelta(days=offset)
        for model in cfg.models:
            validated = validate(client, cfg, extract(client, cfg, Partition(model.id, day)))
            profiled = profile(client, cfg, validated, "daily")
            out[(model.id, day)] = experiments(client, cfg, validated, profiled)
    return client, cfg, out


def test_p99_regression_is_rolled_back_with_evidence(decisions):
    client, cfg, out = decisions
    llm = [out[("support-bot-v3", START + timedelta(days=i))] for i in range(DAYS)]
    verdicts = [r["experiments"][0]["decision"] for r in llm]
    assert verdicts[:2] == ["continue", "continue"], verdicts  # before the regression (and below 1,000 rows per arm for p99)
    assert "roll_back" in verdicts[2:], verdicts
    first = next(r for r in llm if r["experiments"][0]["decision"] == "roll_back")
    [breach] = [b for b in first["breaches"] if b["metric"] == "latency_p99_ms"]
    assert breach["experiment_id"] == "exp-042" and breach["evidence"]["lower"] > 0.05 and breach["report_uri"].endswith("experiments.json")
    report = get_json(client, first["experiments_uri"])
    [exp] = report["experiments"]
    p99 = next(g for g in exp["guardrails"] if g["metric"] == "latency_p99_ms")
    assert p99["verdict"] == "inferior" and p99["alpha_per_look"] == pytest.approx(0.05 / 28)
    assert exp["health"]["ok"], exp["health"]["problems"]
    judge = next(p for p in exp["primary"] if p["metric"] == "judge.helpfulness")
    assert judge["abstained"] and "no judge scores" in judge["reason"]


def test_aa_experiment_is_never_rolled_back_and_stays_healthy(decisions):
    _, _, out = decisions
    for offset in range(DAYS):
        [aa] = out[("churn-classifier-v2", START + timedelta(days=offset))]["experiments"]
        assert aa["decision"] == "guardrail_watch", aa  # the A/A has guardrails only: it watches them, nothing to promote
        assert aa["reasons"][0].startswith("guardrail watch") and aa["days_remaining"] is None
    assert out[("churn-classifier-v2", START + timedelta(days=DAYS - 1))]["breaches"] == []


def test_reanalysing_a_day_overwrites_its_statistics(decisions):
    client, cfg, out = decisions
    day = START + timedelta(days=DAYS - 1)
    model = "churn-classifier-v2"
    validated = validate(client, cfg, extract(client, cfg, Partition(model, day)))
    again = experiments(client, cfg, validated, profile(client, cfg, validated, "daily"))
    assert again["experiments"][0]["requests"] == out[(model, day)]["experiments"][0]["requests"] == DAYS * 1500


def test_the_summary_carries_the_srm_p_value_for_metrics_and_alerts(decisions):
    _, _, out = decisions
    [aa] = out[("churn-classifier-v2", START + timedelta(days=DAYS - 1))]["experiments"]
    assert 0.001 < aa["srm_p_value"] <= 1.0  # a healthy 50/50 split


def test_a_rolled_back_experiment_reports_the_requests_since_its_start(decisions):
    """After a rollback caused by an earlier day, the experiment is rolled_back with the cumulative count, not the day's."""
    from modelwatch.storage.keys import audit_prefix
    from modelwatch.storage.s3 import put_json

    client, cfg, out = decisions
    model, last = "support-bot-v3", START + timedelta(days=DAYS - 1)
    caused_by = Partition(model, REGRESSION).label
    put_json(client, f"{audit_prefix(cfg.defaults.reports_uri, model, 'exp-042')}/test-breach.json",
             {"outcome": "rolled_back", "applied_at": f"{REGRESSION.isoformat()}T01:00:00+00:00", "audit_uri": "s3://audit/test-breach.json",
              "breach": {"partition": caused_by, "reason": "guardrail latency_p99_ms inferior"}})
    validated = validate(client, cfg, extract(client, cfg, Partition(model, last)))
    [exp] = experiments(client, cfg, validated, profile(client, cfg, validated, "daily"))["experiments"]
    assert exp["decision"] == "rolled_back" and "rolled back at" in exp["reasons"][0]
    assert exp["requests"] == out[(model, last)]["experiments"][0]["requests"]  # every day from the start, as before the rollback
    assert exp["requests"] > 4 * out[(model, START)]["experiments"][0]["requests"]  # the first day's count is one day's
