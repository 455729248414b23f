"""Hours of an OpenTelemetry source that landed, closed and were claimed once (modelwatch.ingest.arrivals), on the S3 server."""

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote_plus

import pytest
from conftest import bundled_config_data, scoped_config
from modelwatch.config_sources import OtelEvents, OtelSource
from modelwatch.core.partition import Partition
from modelwatch.ingest.arrivals import BadMessage, claim_closed_hours, event_bodies, hours_reading, is_closed, late_uri, object_uris, record_messages
from modelwatch.storage.s3 import get_json, list_objects

MODEL = "support-bot-v3"
SOURCE = OtelSource(uri="s3://telemetry/otel", late_minutes=5)
EVENTS = OtelEvents(queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/otel-exports", grace_minutes=10)
H10 = datetime(2026, 11, 3, 10, tzinfo=UTC)


def s3_event(bucket: str, *keys: str, name: str = "ObjectCreated:Put") -> str:
    return json.dumps({"Records": [{"eventName": name, "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(k)}}} for k in keys]})


def export(bucket_prefix: str, at: datetime, n: int) -> str:
    return f"{bucket_prefix}/{at.strftime('year=%Y/month=%m/day=%d/hour=%H/minute=%M')}/traces_{n:09d}.json"


def test_object_uris_reads_s3_sns_and_test_events():
    key = "otel/year=2026/month=11/day=03/hour=10/minute=05/traces_a b.json"
    assert object_uris(s3_event("telemetry", key)) == [f"s3://telemetry/{key}"]  # url-decoded, '+' is a space
    assert object_uris(json.dumps({"Type": "Notification", "Message": s3_event("telemetry", key)})) == [f"s3://telemetry/{key}"]
    assert object_uris(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "telemetry"})) == []
    assert object_uris(s3_event("telemetry", key, name="ObjectRemoved:Delete")) == []
    with pytest.raises(BadMessage, match="not JSON"):
        object_uris("hello")
    with pytest.raises(BadMessage, match="no Records"):
        object_uris(json.dumps({"something": "else"}))
    with pytest.raises(BadMessage, match="s3.object.key"):
        object_uris(json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}}}]}))


def test_event_bodies_are_the_sqs_trigger_payloads():
    events = [{"payload": {"status": "success", "message_batch": [{"Body": "a"}, {"Body": "b"}]}}, {"from_trigger": True}]
    assert list(event_bodies(events)) == ["a", "b"]


def test_a_file_belongs_to_its_hour_and_within_late_minutes_to_the_one_before():
    assert hours_reading(SOURCE, H10 + timedelta(minutes=3)) == [H10 - timedelta(hours=1), H10]
    assert hours_reading(SOURCE, H10 + timedelta(minutes=5)) == [H10]


def test_an_hour_closes_after_grace_or_when_a_later_window_landed():
    end = H10 + timedelta(hours=1, minutes=5)  # the read window's end
    assert not is_closed(SOURCE, EVENTS, H10, end + timedelta(minutes=9), latest_written=end - timedelta(minutes=1))
    assert is_closed(SOURCE, EVENTS, H10, end + timedelta(minutes=10), latest_written=None)
    assert is_closed(SOURCE, EVENTS, H10, H10 + timedelta(minutes=30), latest_written=end)


@pytest.fixture()
def cfg(s3):
    data = bundled_config_data("arrivals")
    model = next(m for m in data["models"] if m["id"] == MODEL)
    model["experiments"][0]["assignment"] = "external"
    model["cadence"] = ["daily"]
    model["source"] = {"otel": {"uri": "s3://arrivals-logs/otel", "late_minutes": 5, "events": EVENTS.model_dump()}}
    cfg = scoped_config(s3, "arrivals", data)
    yield cfg
    from modelwatch.storage.s3 import delete_prefix

    delete_prefix(s3, cfg.defaults.reports_uri)


def test_each_closed_hour_is_claimed_once_and_a_late_file_is_recorded_not_rerun(s3, cfg):
    prefix = "s3://arrivals-logs/otel"
    bucket, key = prefix.removeprefix("s3://").split("/", 1)
    first, second = export(prefix, H10 + timedelta(minutes=20), 1), export(prefix, H10 + timedelta(minutes=50), 2)
    keys = [u.split("/", 3)[3] for u in (first, second)]
    landed = H10 + timedelta(minutes=55)
    tally = record_messages(s3, cfg, [s3_event(bucket, *keys), s3_event(bucket, keys[0]), json.dumps({"Event": "s3:TestEvent"}),
                                      s3_event(bucket, "inference/model_id=x/part-0.jsonl"), "not json"], landed)
    assert (tally.messages, tally.arrived, tally.duplicates, tally.test_events, tally.not_exports, len(tally.bad)) == (5, 2, 1, 1, 1, 1)
    assert claim_closed_hours(s3, cfg, landed, "run-1") == []  # hour 10 is open: no grace passed, no later file

    # a file of the next window closes hour 10 before its grace ends; hour 11 stays open
    later = export(prefix, H10 + timedelta(hours=1, minutes=7), 3)
    assert record_messages(s3, cfg, [s3_event(bucket, later.split("/", 3)[3])], landed).arrived == 1
    now = H10 + timedelta(hours=1, minutes=8)
    assert claim_closed_hours(s3, cfg, now, "run-2") == [Partition(MODEL, H10.date(), 10)]
    assert claim_closed_hours(s3, cfg, now, "run-3") == []  # claimed once
    claims = [u for u, _ in list_objects(s3, f"{cfg.defaults.reports_uri}/_arrivals") if u.endswith("_claimed.json")]
    assert len(claims) == 1 and get_json(s3, claims[0])["claimed_by"] == "run-2"

    # a lagging file of hour 10, delivered twice, is one late arrival; the hour is not claimed again
    lagging = export(prefix, H10 + timedelta(minutes=58), 4)
    tally = record_messages(s3, cfg, [s3_event(bucket, lagging.split("/", 3)[3])] * 2 + [s3_event(bucket, keys[1])], now)
    assert (len(tally.late), tally.duplicates, tally.arrived) == (1, 2, 0)  # a file recorded before the claim is no late arrival
    assert get_json(s3, late_uri(cfg, Partition(MODEL, H10.date(), 10), lagging))["uri"] == lagging
    assert claim_closed_hours(s3, cfg, now + timedelta(hours=5), "run-4") == [Partition(MODEL, H10.date(), 11)]  # hour 11 by grace
