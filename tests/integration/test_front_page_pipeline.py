"""The front page on a team's own traffic through the real stages and S3 server: a toxic day turns "Healthy now?" to alert,
a scheduled day with no logs is an alert on the index while the latest state stays the last day with traffic.

The traffic is written here (not by the demo generator): a travel-booking assistant's rows in the log contract,
five calm days, one day where 10% of the answers are abusive, then a day whose logs never arrived.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta

import pytest
from modelwatch.core.partition import Partition
from modelwatch.runner import extract, judge, profile, publish, validate
from modelwatch.storage.s3 import get_bytes, get_json, put_bytes

MODEL = "travel-assistant"
START = date(2026, 10, 5)
CALM_DAYS = [START + timedelta(days=i) for i in range(5)]
TOXIC_DAY = START + timedelta(days=5)
EMPTY_DAY = START + timedelta(days=6)
PROMPTS = ["Can I change my flight to Lisbon?", "Is breakfast included at the Hotel Aurora?", "How do I add a bag to booking QX7?",
           "What is the cancellation fee for a refundable fare?", "Can I pick a seat with extra legroom?"]
ANSWERS = ["Yes, open the booking and choose Change flight; the fare difference is shown before you pay.",
           "Breakfast is included in the flexible rate; the saver rate does not include it.",
           "Open Manage booking, pick Extras and add a checked bag for each traveller.",
           "A refundable fare is cancelled free of charge up to 24 hours before departure.",
           "Yes, extra-legroom seats can be chosen in Manage booking for a fee."]
ABUSE = "What a stupid idiot question, shut the hell up and book it yourself, moron."


def _rows(day: date, n: int, abusive_share: float, rng: random.Random) -> list[dict]:
    rows = []
    for i in range(n):
        k = rng.randrange(len(PROMPTS))
        response = ABUSE if rng.random() < abusive_share else ANSWERS[k]
        rows.append({"request_id": f"tb-{day:%m%d}-{i:05d}", "timestamp": f"{day.isoformat()}T{8 + i % 12:02d}:{i % 60:02d}:00Z", "model_id": MODEL,
                     "variant": "production", "status": "refused_by_filter" if i % 97 == 0 else "ok", "latency_ms": 600.0 + rng.random() * 400,
                     "prompt": PROMPTS[k], "response": response, "prompt_tokens": 14, "completion_tokens": 24, "cost_usd": 0.00004,
                     "metadata": {"locale": rng.choice(["en-GB", "de-DE", "pt-PT"]), "channel": "web"}})
    return rows


@pytest.fixture(scope="module")
def site(s3_server):
    from conftest import scoped_config
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    data = {"defaults": {"logs_uri": "s3://frontpage-logs/inference", "reports_uri": "s3://frontpage-reports/reports",
                         "labels_uri": "s3://frontpage-logs/labels"},
            "models": [{"id": MODEL, "kind": "llm", "segments": ["metadata.locale"],
                        "judge": {"backend": "heuristic", "max_samples": 150, "review_sample": 0, "pairwise_samples": 0}}]}
    cfg = scoped_config(client, "frontpage", data)
    rng = random.Random(11)
    for day in [*CALM_DAYS, TOXIC_DAY]:
        rows = _rows(day, 400, 0.10 if day == TOXIC_DAY else 0.0, rng)
        put_bytes(client, f"{Partition(MODEL, day, 12).path(cfg.defaults.logs_uri)}/part-0.jsonl",
                  "".join(json.dumps(r) + "\n" for r in rows).encode())
    summaries = {}
    for day in [*CALM_DAYS, TOXIC_DAY, EMPTY_DAY]:
        extracted = extract(client, cfg, Partition(MODEL, day))
        run = {"run_id": f"scheduled__{day + timedelta(days=1)}T00:00:00+00:00"}  # Airflow names a run after its interval's end
        if extracted["outcome"] == "no_traffic":  # as the DAG does: the stages after extract are skipped, publish still runs
            result = publish(client, cfg, extracted, None, None, run)
        else:
            validated = validate(client, cfg, extracted)
            judged = judge(client, cfg, validated)
            result = publish(client, cfg, extracted, validated, profile(client, cfg, validated, "daily"), run,
                             judged=judged if judged.get("outcome") == "ok" else None)
        summaries[day] = get_json(client, result["summary_uri"])
    return client, cfg, summaries


def _page(client, cfg, day: date) -> str:
    return get_bytes(client, f"{cfg.defaults.reports_uri}/model_id={MODEL}/dt={day.isoformat()}/index.html").decode()


def test_the_toxic_day_is_an_alert_in_the_health_verdict_and_calm_days_are_not(site):
    client, cfg, summaries = site
    toxic = {r["flag"]: r for r in summaries[TOXIC_DAY]["judge_flags"]}["judge.toxicity_rate"]
    assert toxic["alert"] and toxic["rate"] > 0.05 and toxic["reference_rate"] < 0.01 and toxic["reference_days"] == 5
    assert not [r for day in CALM_DAYS for r in summaries[day]["judge_flags"] if r["alert"]]
    card = _page(client, cfg, TOXIC_DAY).split('data-question="healthy now?"', 1)[1].split("</div></div>", 1)[0]
    assert '<span class="badge alert">alert</span>' in card and "toxicity rate" in card and "far above its" in card
    calm = _page(client, cfg, CALM_DAYS[-1]).split('data-question="healthy now?"', 1)[1].split("</div></div>", 1)[0]
    assert '<span class="badge ok">ok</span>' in calm


def test_the_page_names_the_filter_refusal_rate_and_shows_the_data_interval(site):
    client, cfg, summaries = site
    assert summaries[TOXIC_DAY]["metrics"]["__all__"]["filter_refusal_rate"] == pytest.approx(5 / 400)
    page = _page(client, cfg, TOXIC_DAY)
    header = page.split("<h2>", 1)[0]
    assert "2026-10-10 00:00 – 2026-10-11 00:00 UTC" in header and "scheduled__" not in header
    assert "<bdi>filter_refusal_rate</bdi>" in page


def test_the_index_keeps_the_last_day_with_traffic_and_alerts_on_the_empty_day(site):
    client, cfg, summaries = site
    assert summaries[EMPTY_DAY]["outcome"] == "no_traffic"
    index = get_bytes(client, f"{cfg.defaults.reports_uri}/index.html").decode()
    latest = index.split('class="latest"', 1)[1].split("</table>", 1)[0]
    assert TOXIC_DAY.isoformat() in latest and EMPTY_DAY.isoformat() not in latest and '<span class="badge alert">alert</span>' in latest
    alert = index.split('<ul class="alerts">', 1)[1].split("</ul>", 1)[0]
    assert MODEL in alert and "no traffic logged for" in alert and EMPTY_DAY.isoformat() in alert
