from datetime import date

import numpy as np
import pandas as pd
import pytest
from modelwatch.config import load_config
from modelwatch.ingest.readers import assemble, read_file
from modelwatch.profile.limits import check_hard_limits
from modelwatch.profile.metrics import ALL, OTHER, compute_metrics, lookup, to_frame, token_histogram
from modelwatch.runtime.generate import ExperimentPlan, Scenario, classifier_day, jsonl_bytes, llm_day, parquet_bytes

CFG = load_config()
DAY = date(2026, 11, 4)


def llm_frame(n=3000, seed=1, scenario=None):
    rows = llm_day("support-bot-v3", DAY, n, seed, scenario or Scenario(), ExperimentPlan())
    table, _ = assemble([read_file(jsonl_bytes(rows, gz=False), "s3://b/p.jsonl")])
    return to_frame(table.drop_columns(["_type_errors"]), ["metadata.topic", "metadata.locale"])


@pytest.fixture(scope="module")
def frame():
    return llm_frame()


@pytest.fixture(scope="module")
def metrics(frame):
    return compute_metrics(frame, "support-bot-v3", "2026-11-04", None, ["metadata.topic", "metadata.locale"], 86_400.0)


def value(metrics, metric, **kw):
    return lookup(metrics, metric, **kw)[0]


def test_overall_metrics_match_numpy_and_pandas(frame, metrics):
    lat = frame["latency_ms"].to_numpy()
    assert value(metrics, "latency_p50_ms") == pytest.approx(np.percentile(lat, 50))
    assert value(metrics, "latency_p95_ms") == pytest.approx(np.percentile(lat, 95))
    assert value(metrics, "latency_p99_ms") == pytest.approx(np.percentile(lat, 99))
    assert value(metrics, "error_rate") == pytest.approx((frame.status == "error").sum() / len(frame))
    assert value(metrics, "filter_refusal_rate") == pytest.approx((frame.status == "refused_by_filter").mean())
    assert value(metrics, "cost_usd_total") == pytest.approx(frame.cost_usd.sum())
    tokens = frame.prompt_tokens.sum() + frame.completion_tokens.sum()
    assert value(metrics, "cost_per_1k_tokens_usd") == pytest.approx(frame.cost_usd.sum() / tokens * 1000)
    assert value(metrics, "prompt_tokens_p95") == pytest.approx(np.percentile(frame.prompt_tokens, 95))
    assert value(metrics, "throughput_rps") == pytest.approx(len(frame) / 86_400)
    assert value(metrics, "peak_hour_requests") == frame.timestamp.dt.hour.value_counts().max()
    rated = frame.feedback[frame.feedback != 0]
    assert value(metrics, "feedback_negative_rate") == pytest.approx((rated == -1).mean())


def test_per_variant_and_per_segment_cells(frame, metrics):
    for variant, group in frame.groupby("variant"):
        assert lookup(metrics, "requests", variant=variant)[0] == len(group)
        assert value(metrics, "latency_p99_ms", variant=variant) == pytest.approx(np.percentile(group.latency_ms, 99))
    billing = frame[frame["metadata.topic"] == "billing"]
    assert value(metrics, "error_rate", segment="metadata.topic", value="billing") == pytest.approx((billing.status == "error").mean())
    cell = lookup(metrics, "requests", variant="treatment", segment="metadata.locale", value="de-DE")
    assert cell[0] == ((frame.variant == "treatment") & (frame["metadata.locale"] == "de-DE")).sum()
    per_segment = metrics[(metrics.metric == "requests") & (metrics.segment == "metadata.topic") & (metrics.variant == ALL)]
    assert per_segment.value.sum() == len(frame)


def test_segment_values_are_capped(frame):
    metrics = compute_metrics(frame, "m", "d", None, ["metadata.topic"], 86_400.0, max_segment_values=2)
    values = set(metrics[metrics.segment == "metadata.topic"].segment_value)
    assert OTHER in values and len(values) == 3


def test_classifier_has_no_token_metrics_and_no_nan():
    rows, _ = classifier_day("churn-classifier-v2", DAY, 500, 1, Scenario())
    table, _ = assemble([read_file(parquet_bytes(rows), "s3://b/p.parquet")])
    frame = to_frame(table, ["features.plan"])
    metrics = compute_metrics(frame, "c", "d", None, ["features.plan"], 86_400.0)
    assert not metrics.value.isna().any()
    assert "prompt_tokens_mean" not in set(metrics.metric) and "cost_usd_total" not in set(metrics.metric)
    assert set(metrics[metrics.segment == "features.plan"].segment_value) == {"basic", "plus", "premium"}
    assert token_histogram(frame) == []


def test_token_histogram_counts_every_row(frame):
    hist = token_histogram(frame)
    assert sum(h["count"] for h in hist) == frame.prompt_tokens.notna().sum()
    assert hist[-1]["to"] is None


def test_input_drift_shows_in_prompt_length():
    base = llm_frame(seed=2)
    drifted = llm_frame(seed=2, scenario=Scenario(drift_from=DAY))
    assert drifted.prompt_tokens.mean() > 1.5 * base.prompt_tokens.mean()


def test_hard_limit_breach_ok_and_abstain():
    model = CFG.model("support-bot-v3")

    def table(rate, n):
        return pd.DataFrame([{"variant": "treatment", "segment": ALL, "segment_value": ALL, "metric": "error_rate", "value": rate, "requests": n}])

    [check] = check_hard_limits(model, table(0.05, 400))
    assert check.state == "breach" and "error_rate = 0.05 > max 0.02 on 400 requests" == check.reason
    assert check_hard_limits(model, table(0.01, 400))[0].state == "ok"
    abstain = check_hard_limits(model, table(0.5, 20))[0]
    assert abstain.state == "abstain" and "min_requests 100" in abstain.reason
    assert check_hard_limits(model, table(0.5, 400).iloc[0:0])[0].state == "abstain"
