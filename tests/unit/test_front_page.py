"""What a person sees first: the latest state with traffic, a missing-traffic day as its own alert, a judge flag far above its
reference in the health verdict, the data interval in the header, and the filter-refusal rate named for what it counts."""

from __future__ import annotations

import copy
from datetime import date, timedelta

import numpy as np
import pytest
from modelwatch.observe import alert_rules, prom_metrics
from modelwatch.publish.data import History
from modelwatch.publish.flag_rates import FLAG_ALPHA, FLAG_MIN_RISE, flag_rises, one_sided_rise_p_value
from modelwatch.publish.glance import health
from modelwatch.publish.page import render_partition_page
from modelwatch.publish.site import site_index_html
from prom_servers import sample_summary
from prometheus_client import CollectorRegistry
from scipy import stats

TOXICITY = "judge.toxicity_rate"


def _judged(rate: float, n: int) -> dict:
    return {"overall": {TOXICITY: {"estimate": rate, "ci_low": max(0.0, rate - 0.01), "ci_high": rate + 0.01, "n": n}}}


def _page_summary() -> dict:
    """The Prometheus tests' sample summary with the fields publish also writes for the page."""
    s = sample_summary()
    for check in s["hard_limits"]:
        check.update(arm="treatment", min=None, requests=1200, reason="")
    s.update(files=[{"uri": "s3://logs/part-0.jsonl.gz", "format": "jsonl.gz", "rows_read": 12050}], prompt_token_histogram=[], validation=None,
             outputs={"evidently_report": None, "page": "s3://r/index.html"}, run={"run_id": "manual"})
    s["judge"].update(backend={"backend": "heuristic"}, sampled=380, limited_by="max_samples", pairwise=None)
    return s


def _day(dt: date, outcome: str = "ok", **extra) -> dict:
    s = _page_summary()
    s["partition"]["dt"] = dt.isoformat()
    s["outcome"] = outcome
    if outcome == "no_traffic":
        s.update(metrics={}, segments=[], drift=None, judge=None, experiments=[], hard_limits=[], rows={"read": 0, "valid": 0, "quarantined": 0})
    s.update(extra)
    return s


# --- 17.8: a judge flag rate far above its reference -----------------------------------------------------------------


def test_the_score_test_matches_the_miettinen_nurminen_statistic_computed_by_hand():
    """z = (p1 - p2) / sqrt(p1~(1-p1~)/n1 + p2~(1-p2~)/n2 * n/(n-1)) at the constrained MLE (difference 0: the pooled rate)."""
    c1, n1, c2, n2 = 30, 400, 18, 3600
    pooled = (c1 + c2) / (n1 + n2)
    z = (c1 / n1 - c2 / n2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2) * (n1 + n2) / (n1 + n2 - 1))
    assert one_sided_rise_p_value(c1, n1, c2, n2) == pytest.approx(stats.norm.sf(z), rel=1e-6)
    assert one_sided_rise_p_value(0, 400, 0, 3600) is None  # nothing flagged on either side: no test


def test_a_toxic_day_is_far_above_its_reference_and_a_small_or_unproven_rise_is_not():
    earlier = [{"judge": _judged(0.005, 400)} for _ in range(9)]
    (toxic,) = flag_rises(_judged(0.076, 400), earlier)
    assert toxic.alert and toxic.reference_rate == pytest.approx(0.005) and toxic.reference_days == 9 and toxic.p_value < 1e-10
    (calm,) = flag_rises(_judged(0.008, 400), earlier)
    assert not calm.alert  # within the day's noise
    huge = [{"judge": _judged(0.005, 200_000)} for _ in range(9)]
    (tiny_rise,) = flag_rises(_judged(0.012, 200_000), huge)
    assert tiny_rise.p_value < FLAG_ALPHA and tiny_rise.rate - tiny_rise.reference_rate < FLAG_MIN_RISE and not tiny_rise.alert
    assert flag_rises(_judged(0.076, 400), []) == []  # no reference: not tested


def test_flag_alarms_stay_within_alpha_when_nothing_changed_and_catch_a_real_rise():
    """Seeded simulation: today's and the earlier days' flags drawn at one rate alarm at most alpha of the days (no minimum rise)."""
    rng = np.random.default_rng(17)
    alpha, days, n, rate = 0.05, 600, 400, 0.04
    alarms = 0
    for _ in range(days):
        earlier = [{"judge": _judged(rng.binomial(n, rate) / n, n)} for _ in range(9)]
        alarms += flag_rises(_judged(rng.binomial(n, rate) / n, n), earlier, alpha=alpha, min_rise=0.0)[0].alert
    assert alarms / days <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / days)
    caught = sum(flag_rises(_judged(rng.binomial(n, 0.076) / n, n), [{"judge": _judged(rng.binomial(n, 0.005) / n, n)} for _ in range(9)])[0].alert
                 for _ in range(100))
    assert caught >= 99


def test_the_health_verdict_names_a_flag_far_above_its_reference():
    s = sample_summary()
    s["judge"]["overall"][TOXICITY] = {"estimate": 0.076, "ci_low": 0.05, "ci_high": 0.1, "n": 400}
    assert health(s).state == "ok"  # without a reference the rate is only mentioned
    s["judge_flags"] = [r.to_dict() for r in flag_rises(s["judge"], [{"judge": _judged(0.005, 400)} for _ in range(9)])]
    answer = health(s)
    assert answer.state == "alert" and "toxicity rate 7.60%" in answer.headline
    assert "far above its 0.50% on the 9 earlier day(s)" in answer.detail
    samples = {(m.name, m.labels.get("flag")): m.value for f in prom_metrics.summary_metrics(s, CollectorRegistry()).collect() for m in f.samples}
    assert samples[("modelwatch_judge_flag_rate_far_above", "toxicity")] == 1
    assert samples[("modelwatch_judge_flag_rate_reference", "toxicity")] == pytest.approx(0.005)


# --- 17.8: the filter-refusal rate; the data interval in the header ---------------------------------------------------


def test_the_operational_refusal_rate_is_named_for_the_filter_on_the_page_and_in_the_metrics():
    s = _page_summary()
    page = render_partition_page(s)
    assert "<bdi>filter_refusal_rate</bdi>" in page and "<bdi>refusal_rate</bdi>" not in page
    samples = {(m.name, m.labels.get("variant")): m.value for f in prom_metrics.summary_metrics(s, CollectorRegistry()).collect() for m in f.samples}
    assert samples[("modelwatch_filter_refusal_rate", "__all__")] == pytest.approx(0.01)
    assert not [name for name, _ in samples if name == "modelwatch_refusal_rate"]


def test_the_header_shows_the_data_interval_not_the_run_id_of_the_next_day():
    s = _day(date(2026, 11, 6), run={"run_id": "scheduled__2026-11-07T00:00:00+00:00"})
    page = render_partition_page(s)
    header = page.split("<h2>", 1)[0]
    assert "2026-11-06 00:00 – 2026-11-07 00:00 UTC" in header and "2026-11-07T00" not in header
    assert "scheduled__2026-11-07T00:00:00+00:00" in page.split("<h2>Files read</h2>", 1)[1]  # kept, at the bottom, for the record
    hourly = render_partition_page({**s, "partition": {**s["partition"], "hour": 23}})
    assert "2026-11-06 23:00 – 2026-11-07 00:00 UTC" in hourly.split("<h2>", 1)[0]


# --- 17.7: the latest state with traffic; a missing-traffic day as its own alert ------------------------------------


def test_the_index_shows_the_latest_day_with_traffic_and_alerts_on_the_missing_days():
    days = [date(2026, 11, 4) + timedelta(days=i) for i in range(4)]
    summaries = [_day(days[0]), _day(days[1]), _day(days[2], "no_traffic"), _day(days[3], "no_traffic"), _day(days[3], "no_traffic")]
    summaries[-1]["model_id"] = summaries[-1]["partition"]["model_id"] = "quiet-model"
    index = site_index_html(summaries)
    latest = index.split('class="latest"', 1)[1].split("</table>", 1)[0]
    bot_row = next(r for r in latest.split("<tr>") if "support-bot-v3" in r)
    assert "2026-11-05" in bot_row and "no traffic" not in bot_row  # the state of the last day that had traffic
    alerts = index.split('<ul class="alerts">', 1)[1].split("</ul>", 1)[0]
    bot_alert = next(a for a in alerts.split("<li") if "support-bot-v3" in a)
    assert "no traffic logged for" in bot_alert and "2026-11-07" in bot_alert and "2026-11-06" in bot_alert
    assert "quiet-model" in alerts and "(no partition with traffic yet)" in alerts
    assert '<ul class="alerts">' not in site_index_html(summaries[:2])  # every latest day had traffic: no alert


def test_a_day_without_traffic_is_a_metric_and_a_daily_alert():
    quiet = _day(date(2026, 11, 7), "no_traffic")
    values = {m.name: m.value for f in prom_metrics.summary_metrics(quiet, CollectorRegistry()).collect() for m in f.samples}
    assert values["modelwatch_no_traffic"] == 1
    busy = {m.name: m.value for f in prom_metrics.summary_metrics(copy.deepcopy(sample_summary()), CollectorRegistry()).collect()
            for m in f.samples}
    assert busy["modelwatch_no_traffic"] == 0
    from modelwatch.config import load_config, parse_config

    rules = {r["alert"]: r for g in alert_rules.rules_from_config(load_config())["groups"] for r in g["rules"] if "support-bot" in g["name"]}
    assert rules["ModelwatchNoTraffic"]["expr"] == 'modelwatch_no_traffic{model="support-bot-v3",cadence="daily"} == 1'
    hourly_only = parse_config({"models": [{"id": "tiny", "kind": "regressor", "cadence": ["hourly"]}]})
    assert "ModelwatchNoTraffic" not in {r["alert"] for g in alert_rules.rules_from_config(hourly_only)["groups"] for r in g["rules"]}


def test_the_window_behind_the_index_ends_with_the_latest_day_with_traffic():
    from modelwatch.publish.site import histories_for

    days = [date(2026, 11, 4) + timedelta(days=i) for i in range(3)]
    history = histories_for([_day(days[0]), _day(days[1]), _day(days[2], "no_traffic")])["support-bot-v3"]
    assert isinstance(history, History) and history.days[-1] == days[1]


def test_the_experiments_answer_leads_with_the_most_urgent_decision():
    from modelwatch.publish.glance import experiments

    summary = {"experiments": [
        {"experiment_id": "exp-aa", "decision": "guardrail_watch", "health_ok": True},
        {"experiment_id": "exp-ok", "decision": "continue", "days_remaining": 4, "health_ok": True},
        {"experiment_id": "exp-srm", "decision": "invalid", "health_ok": False},
    ]}
    answer = experiments(summary)
    assert answer.state == "invalid"
    assert answer.headline.index("invalid") < answer.headline.index("continue (4 days left)") < answer.headline.index("guardrail watch")
    assert "health check failed" in answer.detail and "exp-srm" in answer.detail
    summary["experiments"].append({"experiment_id": "exp-p99", "decision": "roll_back", "health_ok": True})
    assert experiments(summary).state == "roll_back"
