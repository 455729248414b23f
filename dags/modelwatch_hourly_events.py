"""modelwatch_hourly_events: an OpenTelemetry model's hour runs when its export files have landed and the hour is closed.

Defined when a model's ``source.otel.events`` names an SQS queue. The bucket's S3 event notifications reach
that queue; an ``AssetWatcher`` (the common-messaging provider's ``MessageQueueTrigger``, SQS, in the
triggerer) turns each batch of messages into an ``otel_exports`` asset event, which starts a run. A run records
the files its events name, claims every hour that is closed (``modelwatch.ingest.arrivals``: grace after the
hour's read window, or a later export landed) exactly once, and processes the claimed hours through the
hourly stages of modelwatch_hourly. A timer run every 15 minutes closes the hours whose traffic stopped.
Duplicate and re-delivered notifications change nothing; a file landing after its hour was claimed is
recorded under the hour's ``late_arrivals/`` and logged, and the hour is not run again.
"""

from datetime import UTC, datetime

from airflow.sdk import Asset, AssetOrTimeSchedule, AssetWatcher, CronTriggerTimetable, dag, get_current_context, task
from common.monitoring import DEFAULT_ARGS, config_or_fail, failure_notifier, monitor_models, s3_client

OTEL_EXPORTS = "otel_exports"


def _watchers(cfg) -> list[AssetWatcher]:
    """One watcher per distinct queue of the event sources (several models may share a bucket's queue)."""
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    # read off the config here, not through modelwatch.ingest.arrivals, which imports pyarrow: parsing stays light
    sources = [m.source.otel for m in cfg.models if m.source is not None and m.source.otel.events is not None]
    queues = {s.events.queue_url: s.events for s in sources}
    return [AssetWatcher(name=f"otel_exports_{i}", trigger=MessageQueueTrigger(
        scheme="sqs", sqs_queue=url, aws_conn_id=cfg.defaults.aws_conn_id, max_messages=10, wait_time_seconds=1, waiter_delay=events.poll_seconds))
        for i, (url, events) in enumerate(sorted(queues.items()))]


@task
def claim_hours() -> list[dict]:
    """Record the files the triggering messages name, then claim the closed hours; the partitions this run processes."""
    from modelwatch.ingest.arrivals import claim_closed_hours, event_bodies, record_messages

    cfg = config_or_fail()
    ctx = get_current_context()
    client = s3_client(cfg)
    now = datetime.now(UTC)
    events = [e for asset_events in ctx["triggering_asset_events"].values() for e in asset_events]
    tally = record_messages(client, cfg, event_bodies(events), now)
    print(f"{tally.messages} messages: {tally.arrived} files arrived, {tally.duplicates} duplicates, {len(tally.late)} late, "
          f"{tally.test_events} test events, {tally.not_exports} other objects, {len(tally.bad)} unreadable")
    for reason in tally.bad:
        print(f"WARNING unreadable message dropped: {reason}")
    for late in tally.late:
        print(f"LATE ARRIVAL (hour already processed, not re-run): {late}")
    claimed = claim_closed_hours(client, cfg, now, f"{ctx['dag'].dag_id}/{ctx['run_id']}")
    print(f"claimed {len(claimed)} closed hours: {[p.label for p in claimed]}")
    return [p.to_dict() for p in claimed]


def _event_dag(watchers: list[AssetWatcher]):
    @dag(
        dag_id="modelwatch_hourly_events",
        schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("*/15 * * * *", timezone="UTC"),
                                     assets=Asset(name=OTEL_EXPORTS, uri="modelwatch://otel_exports", group="modelwatch", watchers=watchers)),
        start_date=datetime(2026, 11, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,  # runs are serial, so a run's listing and its claims see every earlier run's records
        default_args=DEFAULT_ARGS,
        on_failure_callback=failure_notifier(),
        tags=["modelwatch", "monitoring", "hourly", "events"],
        doc_md=__doc__,
    )
    def modelwatch_hourly_events():
        monitor_models("hourly", partitions=claim_hours())

    return modelwatch_hourly_events()


_watching = _watchers(config_or_fail())
if _watching:
    _event_dag(_watching)
