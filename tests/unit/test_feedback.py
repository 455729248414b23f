"""Delayed LLM feedback from labels_uri: configured signals, date-only labelled_at, rejected lines counted, rates in
concept.json and as experiment metrics. Traffic, router and feedback files are this test's own (not the demo generator)."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from modelwatch.concept.feedback import arm_moments, signal_indicators, signal_rates
from modelwatch.config import FeedbackSettings
from modelwatch.core.partition import Partition
from modelwatch.ingest.labels import join_labels, parse_label_lines
from modelwatch.storage.s3 import get_json, put_bytes

DAY0 = date(2026, 10, 5)
SIGNALS = FeedbackSettings.model_validate({
    "signals": {
        "thumbs_down": {"key": "rating", "positive": ["thumbs_down"], "negative": ["thumbs_up"]},
        "escalation": {"key": "outcome", "positive": ["handed_to_agent"]},
        "correction": {"key": "outcome", "positive": ["user_rewrote_answer"]},
    },
}).signals


def _lines(*records: dict) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def test_a_date_only_labelled_at_is_the_end_of_that_utc_day_and_a_naive_time_is_rejected_with_the_fix():
    rows, problems, lines = parse_label_lines(_lines(
        {"request_id": "a", "rating": "thumbs_down", "labelled_at": "2026-10-06"},
        {"request_id": "b", "rating": "thumbs_up", "labelled_at": "2026-10-06T10:00:00"},
        {"request_id": "c", "outcome": "handed_to_agent", "labelled_at": "2026-10-06T10:00:00+02:00"},
    ), "s3://x/labels.jsonl", SIGNALS)
    assert lines == 3 and [r["request_id"] for r in rows] == ["a", "c"]
    assert rows[0]["labelled_at"] == datetime(2026, 10, 6, 23, 59, 59, 999_999, tzinfo=UTC)
    assert rows[1]["labelled_at"] == datetime(2026, 10, 6, 8, tzinfo=UTC)
    assert json.loads(rows[0]["signals"]) == {"thumbs_down": 1} and json.loads(rows[1]["signals"]) == {"escalation": 1}
    (problem,) = problems
    assert (problem.line, problem.rule) == (2, "labelled_at") and "no UTC offset" in problem.reason and "date alone" in problem.reason


def test_signal_values_are_matched_by_json_type_and_an_unknown_value_is_a_problem_naming_the_key():
    rows, problems, _ = parse_label_lines(_lines(
        {"request_id": "a", "outcome": "handed_to_agent"},
        {"request_id": "b", "outcome": "user_rewrote_answer", "rating": "thumbs_up"},
        {"request_id": "c", "outcome": "clicked_ad"},
        {"request_id": "d", "rating": True},
        {"request_id": "e", "note": "nothing here"},
    ), "s3://x/l.jsonl", SIGNALS)
    assert [json.loads(r["signals"]) for r in rows] == [{"escalation": 1}, {"correction": 1, "thumbs_down": 0}]
    assert [(p.line, p.rule) for p in problems] == [(3, "outcome"), (4, "rating"), (5, "no_ground_truth")]
    assert "'clicked_ad'" in problems[0].reason and "feedback.signals" in problems[0].reason


def test_the_contracts_numeric_feedback_still_works_with_the_default_thumbs_signal():
    default = FeedbackSettings().signals
    rows, problems, _ = parse_label_lines(_lines({"request_id": "a", "feedback": -1}, {"request_id": "b", "feedback": "up"},
                                                 {"request_id": "c", "feedback": 7}), "s3://x/l.jsonl", default)
    assert [(r["feedback"], r["signals"]) for r in rows] == [(-1, '{"thumbs_down": 1}'), (None, '{"thumbs_down": 0}')]
    assert [p.rule for p in problems] == ["feedback"]


def test_indicators_rates_and_arm_moments_follow_the_signal_bases():
    predictions = pd.DataFrame({"request_id": list("abcdef"), "timestamp": ["2026-10-05T10:00:00Z"] * 6,
                                "variant": ["control"] * 3 + ["treatment"] * 3, "feedback": [None, None, None, -1, None, None]})
    labels = pd.DataFrame({"request_id": ["a", "b", "c"], "signals": ['{"thumbs_down": 1}', '{"thumbs_down": 0}', '{"escalation": 1}']})
    frame = join_labels(predictions, labels).frame
    signals = {**SIGNALS, "thumbs_inline": FeedbackSettings().signals["thumbs_down"]}
    ind = signal_indicators(frame, signals)
    assert ind["thumbs_down"].iloc[:2].tolist() == [1.0, 0.0] and ind["thumbs_down"].iloc[2:].isna().all()  # rated only where logged
    assert ind["escalation"].tolist() == [0, 0, 1, 0, 0, 0]  # no negative values: every request counts
    assert ind["thumbs_inline"].tolist()[3] == 1.0  # the log row's own feedback
    rates = signal_rates(ind, signals)
    assert (rates["thumbs_down"]["fired"], rates["thumbs_down"]["base"], rates["thumbs_down"]["base_kind"]) == (1, 2, "rated requests")
    assert rates["escalation"]["rate"] == pytest.approx(1 / 6) and rates["escalation"]["base_kind"] == "requests"
    from statsmodels.stats.proportion import proportion_confint

    assert (rates["escalation"]["ci_low"], rates["escalation"]["ci_high"]) == pytest.approx(proportion_confint(1, 6, method="wilson"))
    moments = arm_moments(frame, ind, ["control", "treatment"])
    assert moments["control"]["feedback.escalation_rate"] == {"n": 3, "sum": 1.0, "sum_sq": 1.0}
    assert moments["treatment"]["feedback.thumbs_down_rate"]["n"] == 0


def test_feedback_metric_names_are_checked_in_the_config():
    from modelwatch.config import Experiment
    from modelwatch.core.metric_names import feedback_metric, feedback_signal
    from modelwatch.experiments.data import metric_kind

    assert feedback_signal(feedback_metric("user_correction")) == "user_correction" and feedback_signal("feedback.Bad_rate") is None
    assert metric_kind("feedback.escalation_rate") == "proportion" and metric_kind("feedback.escalation") is None

    Experiment(id="e", primary=[{"metric": "feedback.escalation_rate", "direction": "decrease", "mde": 0.1}])
    with pytest.raises(ValueError, match="feedback.<signal>_rate"):
        Experiment(id="e", primary=[{"metric": "feedback.escalation", "direction": "decrease", "mde": 0.1}])


# --------------------------------------------------------------------------- end to end over S3


MODEL = "trip-assistant"
EXPERIMENT = "exp-tone"
DAYS = 3
ROWS = 600


def _router(unit: str) -> str:
    """The team's own router: MD5 of the booking id, odd buckets get the treatment (not modelwatch's hash)."""
    return "treatment" if int(hashlib.md5(unit.encode()).hexdigest(), 16) % 2 else "control"


def _config(name: str) -> dict:
    return {
        "defaults": {"logs_uri": f"s3://{name}-logs/raw", "reports_uri": f"s3://{name}-reports/out", "labels_uri": f"s3://{name}-logs/fb",
                     "redact_pii": False},
        "models": [{
            "id": MODEL, "kind": "llm", "segments": ["metadata.market"],
            "feedback": {"signals": {
                "thumbs_down": {"key": "rating", "positive": ["thumbs_down"], "negative": ["thumbs_up"]},
                "escalation": {"key": "outcome", "positive": ["handed_to_agent"]},
            }},
            "experiments": [{"id": EXPERIMENT, "split": {"treatment": 0.5}, "start": DAY0.isoformat(),
                             "primary": [{"metric": "feedback.thumbs_down_rate", "direction": "decrease", "mde": 0.3}],
                             "guardrails": [{"metric": "feedback.escalation_rate", "direction": "decrease", "margin": 0.05, "absolute": True}]}],
            "rollback": {"action": "routing_document", "uri": f"s3://{name}-logs/routing.json", "dry_run": True},
        }],
    }


def _traffic(client, cfg, rng: np.random.Generator) -> dict[str, int]:
    """Three days of booking-assistant logs (own ids and metadata) and, a day later each, gzipped feedback files."""
    expected = {"treatment_down": 0, "treatment_rated": 0}
    for offset in range(DAYS):
        day = DAY0 + timedelta(days=offset)
        logs, feedback = [], []
        for i in range(ROWS):
            booking = f"bk-{day:%m%d}-{i:05d}"
            arm = _router(booking)
            ts = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=int(rng.integers(0, 86_400)))
            logs.append({"request_id": booking, "timestamp": ts.isoformat().replace("+00:00", "Z"), "model_id": MODEL, "variant": arm,
                         "experiment_id": EXPERIMENT, "status": "ok", "latency_ms": float(rng.gamma(4, 150)), "prompt": f"flight to city {i % 40}",
                         "response": "here are three options", "prompt_tokens": 12, "completion_tokens": 30, "metadata": {"market": "fr" if i % 3 else "de"}})
            if rng.random() < 0.5:  # half the requests get a rating, the treatment is disliked twice as often
                down = rng.random() < (0.3 if arm == "treatment" else 0.15)
                feedback.append({"request_id": booking, "rating": "thumbs_down" if down else "thumbs_up", "labelled_at": (day + timedelta(days=1)).isoformat()})
                if arm == "treatment":
                    expected["treatment_down"] += int(down)
                    expected["treatment_rated"] += 1
            if rng.random() < 0.04:
                feedback.append({"request_id": booking, "outcome": "handed_to_agent", "labelled_at": (day + timedelta(days=1)).isoformat()})
        feedback.append({"request_id": "bk-unknown", "rating": "meh", "labelled_at": day.isoformat()})  # a bad line: counted, never silent
        put_bytes(client, f"{Partition(MODEL, day).path(cfg.defaults.logs_uri)}/part-0.jsonl", _lines(*logs))
        put_bytes(client, f"{cfg.defaults.labels_uri}/model_id={MODEL}/dt={day.isoformat()}/feedback.jsonl.gz", gzip.compress(_lines(*feedback)))
    return expected


@pytest.fixture(scope="module")
def world(s3_server):
    from conftest import scoped_config
    from modelwatch.runner import concept, experiments, extract, profile, validate
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    cfg = scoped_config(client, "fbjoin", _config("fbjoin"))
    expected = _traffic(client, cfg, np.random.default_rng(7))
    results = {}
    for offset in range(DAYS):
        validated = validate(client, cfg, extract(client, cfg, Partition(MODEL, DAY0 + timedelta(days=offset))))
        concepted = concept(client, cfg, validated)
        experimented = experiments(client, cfg, validated, profile(client, cfg, validated, "daily"))
        results[offset] = (concepted, experimented)
    return client, cfg, results, expected


def test_feedback_joins_with_date_only_labelled_at_and_rejected_lines_are_counted(world):
    client, cfg, results, _ = world
    concepted, _ = results[DAYS - 1]
    assert concepted["labels_rejected"] == DAYS and concepted["labels_rejected_by_rule"] == {"rating": DAYS}
    assert "label line(s) rejected (rating: 3)" in concepted["reason"] and "rows with thumbs down feedback" in concepted["reason"]
    doc = get_json(client, concepted["concept_uri"])
    read = doc["labels"]["read"]
    assert read["rejected"] == {"rating": DAYS} and read["problems"][0]["rule"] == "rating" and "'meh'" in read["problems"][0]["reason"]
    daily = {d["day"]: d["rates"] for d in doc["feedback"]["daily"]}
    # as of the last day's end, the feedback of the first two days (labelled the next day) has arrived; the last day's has not
    assert daily[DAY0.isoformat()]["thumbs_down"]["base"] > 200 and daily[(DAY0 + timedelta(days=2)).isoformat()]["thumbs_down"]["base"] == 0
    assert doc["counts"]["evaluated"] == sum(daily[d]["thumbs_down"]["base"] for d in daily)  # the loss stream is the primary signal
    assert doc["verdict"] in ("stable", "drift")
    escalation = daily[DAY0.isoformat()]["escalation"]
    assert escalation["base"] == ROWS and 0 < escalation["rate"] < 0.1  # over every request of the day


def test_the_concept_record_shows_the_days_rates_and_no_feedback_yet_for_today(world):
    _, _, results, _ = world
    concepted, _ = results[0]
    assert concepted["feedback"]["thumbs_down"]["base"] == 0 and concepted["feedback"]["thumbs_down"]["rate"] is None
    assert concepted["feedback"]["escalation"]["metric"] == "feedback.escalation_rate"


def test_feedback_rates_are_experiment_metrics_with_the_feedback_known_at_the_day(world):
    client, cfg, results, expected = world
    _, experimented = results[DAYS - 1]
    doc = get_json(client, experimented["experiments_uri"])
    (exp,) = doc["experiments"]
    primary = exp["primary"][0]
    assert primary["metric"] == "feedback.thumbs_down_rate" and "no feedback" not in json.dumps(primary)
    from modelwatch.experiments.data import experiment_prefix, load_cumulative

    cumulative = load_cumulative(client, experiment_prefix(cfg.defaults.reports_uri, MODEL, EXPERIMENT), DAY0, DAY0 + timedelta(days=DAYS - 1))
    moments = cumulative["stats"]["treatment"]["feedback.thumbs_down_rate"]
    # the last day's feedback arrives after it: what the experiment sees is the first two days' ratings of the treatment
    assert 0 < moments["n"] < expected["treatment_rated"] and moments["sum"] / moments["n"] == pytest.approx(0.3, abs=0.06)
    control = cumulative["stats"]["control"]["feedback.thumbs_down_rate"]
    assert control["sum"] / control["n"] == pytest.approx(0.15, abs=0.05)


@pytest.mark.parametrize("payload", ["<script>window.__pwned=1</script>", '"><img src=x onerror=alert(1)>'])
def test_the_page_shows_feedback_rates_beside_drift_rejected_lines_and_segment_embedding_drift_as_data(payload):
    from modelwatch.publish.page import PageContext, render_partition_page
    from test_report import full_summary

    s = full_summary()
    rate = {"metric": "feedback.thumbs_down_rate", "rate": 0.125, "fired": 25, "base": 200, "base_kind": "rated requests", "ci_low": 0.086, "ci_high": 0.178}
    s["concept"] = {"verdict": "stable", "reason": "ok", "detections": 0, "evaluated": 200, "estimation": None, "feedback": {"thumbs_down": rate},
                    "feedback_lookback": {"thumbs_down": {**rate, "rate": 0.1, "fired": 60, "base": 600}}, "labels_rejected": 3,
                    "labels_rejected_by_rule": {"labelled_at": 2, payload: 1}}
    s["drift"]["segment_embedding"] = [{"segment": f"metadata.locale={payload}", "column": "prompt", "n_reference": 500, "n_current": 480,
                                        "mmd2": 0.031, "p_adjusted": 0.002, "drift": True, "reason": None}]
    page = render_partition_page(s, PageContext(history=None, examples=[], index_href="../../index.html"))
    drift_part = page.split("Is anything drifting?", 1)[1]
    assert "Embedding drift per segment" in drift_part and "What users report" in drift_part
    assert "feedback.thumbs_down_rate" in drift_part and "12.50%" in drift_part and "10.00%" in drift_part and "25 / 200" in drift_part
    assert "3 label lines could not be used" in drift_part and "labelled_at</bdi> 2" in drift_part
    assert payload not in page and str(__import__("markupsafe").escape(payload)) in page
