"""An hour of OpenTelemetry exports runs when its files land: the embedded S3 server's event notifications on SQS, the
AssetWatcher in a real triggerer, modelwatch_hourly_events started by a real scheduler; duplicate, re-delivered and
late notifications never process an hour twice."""

import json
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
import yaml
from conftest import bundled_config_data, scoped_config
from modelwatch.core.partition import Partition
from modelwatch.ingest.arrivals import late_uri
from modelwatch.storage.s3 import exists, get_bytes, get_json, list_objects, put_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from otel_spans import SpanMaker, chat_attributes, export_bytes, export_key  # noqa: E402

DAG_ID = "modelwatch_hourly_events"
MODEL = "support-bot-v3"
SERVED = "gpt-support-3"


def _spans(start: datetime, n: int) -> bytes:
    maker = SpanMaker()
    for i in range(n):
        maker.span(f"chat {SERVED}", start + timedelta(seconds=20 * i), 300 + i, chat_attributes(SERVED, f"question {i}", f"answer {i}", 12, 30))
    return export_bytes(maker.finished())


def _wait(what: str, check, airflow, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while not check():
        airflow.keep_running()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout:.0f} s; logs under {airflow.home}")
        time.sleep(2)


def _claimed_partitions(airflow) -> list[str]:
    """Every partition any run's claim_hours returned, as labels (an hour processed twice appears twice)."""
    rows = airflow.query("select value from xcom where dag_id = ? and task_id = 'claim_hours' and key = 'return_value'", (DAG_ID,))
    return [Partition.from_dict(p).label for (value,) in rows for p in json.loads(value)]


def _idle(airflow) -> bool:
    return not airflow.query("select 1 from dag_run where dag_id = ? and state in ('queued', 'running')", (DAG_ID,))


@pytest.mark.scheduler
def test_hours_run_once_when_their_exports_land(s3_server, s3, tmp_path):
    from modelwatch.runtime.localstack import LocalAirflow

    data = bundled_config_data("events")
    cfg = scoped_config(s3, "events", data)
    queue_url = s3_server.notify_queue("events-logs", "otel-traces/", f"otel-exports-{uuid.uuid4().hex[:8]}")
    model = next(m for m in data["models"] if m["id"] == MODEL)
    model["experiments"][0]["assignment"] = "external"
    model["cadence"] = ["daily"]
    otel_uri = "s3://events-logs/otel-traces"
    model["source"] = {"otel": {"uri": otel_uri, "models": [SERVED], "late_minutes": 5,
                                "events": {"queue_url": queue_url, "grace_minutes": 600, "poll_seconds": 2}}}
    path = tmp_path / "modelwatch.yaml"
    path.write_text(yaml.safe_dump(data))

    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    past = now - timedelta(hours=5)  # grace_minutes is 10 h: this hour closes only because an export of a later window lands
    ahead = past + timedelta(hours=1)  # the hour after: open until its grace ends
    files = {export_key(otel_uri, past + timedelta(minutes=10), 1): _spans(past + timedelta(minutes=10), 4),
             export_key(otel_uri, past + timedelta(minutes=40), 2): _spans(past + timedelta(minutes=40), 3),
             export_key(otel_uri, ahead + timedelta(minutes=30), 3): _spans(ahead + timedelta(minutes=30), 2)}
    hour_past, hour_open = (Partition(MODEL, at.date(), at.hour) for at in (past, ahead))

    airflow = LocalAirflow(tmp_path / "airflow", extra_env={"MODELWATCH_CONFIG": str(path), "AIRFLOW_CONN_AWS_DEFAULT": s3_server.connection_json()})
    try:
        airflow.migrate()
        airflow.start()
        airflow.start_triggerer()
        airflow.wait_for_dags([DAG_ID])
        airflow.cli("dags", "unpause", DAG_ID)
        for uri, body in files.items():
            put_bytes(s3, uri, body)
        for hour, rows in ((hour_past, 7),):
            summary = hour.path(cfg.defaults.reports_uri) + "/summary.json"
            _wait(f"{hour.label} processed", lambda s=summary: exists(s3, s), airflow)
            assert get_json(s3, summary)["rows"] == {"read": rows, "valid": rows, "quarantined": 0}
            assert get_json(s3, summary)["run"]["dag_id"] == DAG_ID
        _wait("the runs finished", lambda: _idle(airflow), airflow)
        assert airflow.query("select count(*) from dag_run where dag_id = ? and run_type = 'asset_triggered'", (DAG_ID,))[0][0] >= 1

        # the same object written again (a new notification), the same message delivered again, and a late file of the past hour
        first = next(iter(files))
        put_bytes(s3, first, get_bytes(s3, first))
        bucket, key = first.removeprefix("s3://").split("/", 1)
        redelivered = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]}
        boto3.client("sqs", endpoint_url=s3_server.endpoint, region_name="us-east-1").send_message(QueueUrl=queue_url, MessageBody=json.dumps(redelivered))
        late = export_key(otel_uri, past + timedelta(minutes=59), 5)
        put_bytes(s3, late, _spans(past + timedelta(minutes=59), 1))
        _wait("the late file recorded", lambda: exists(s3, late_uri(cfg, hour_past, late)), airflow)
        _wait("the runs finished", lambda: _idle(airflow), airflow)

        claimed = _claimed_partitions(airflow)
        assert claimed == [hour_past.label], claimed  # once; the open hour waits
        assert get_json(s3, hour_past.path(cfg.defaults.reports_uri) + "/summary.json")["rows"]["read"] == 7  # not re-run with the late file
        lates = list(list_objects(s3, hour_past.path(cfg.defaults.reports_uri) + "/late_arrivals"))
        assert len(lates) == 1
        failed = airflow.query("select run_id from dag_run where dag_id = ? and state != 'success'", (DAG_ID,))
        assert not failed, f"logs under {airflow.home}"
        assert not exists(s3, hour_open.path(cfg.defaults.reports_uri) + "/summary.json")
    finally:
        airflow.stop()
