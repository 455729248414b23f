"""modelwatch_daily: the previous day's traffic of every daily-monitored model.

plan_shards splits each model's day into shards of whole log files (``defaults.shard_bytes``);
check_shard reads, coerces and validates each shard (GX, quarantine) as its own mapped task.
Then one mapped branch per model: extract + validate (the reduce step) -> profile
(operational metrics, hard limits), drift, concept, judge, experiments -> publish
(summary.json, index.html) -> signal_breach (a ``guardrail_breach`` asset event that starts
modelwatch_rollback) and notify (breaches and drift to the team's webhook). A failed run is
reported to the same webhook.
"""

from datetime import UTC, datetime

from airflow.sdk import CronDataIntervalTimetable, dag
from common.monitoring import DEFAULT_ARGS, PARAMS, failure_notifier, monitor_models


@dag(
    dag_id="modelwatch_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),  # data interval = one UTC day
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=2,
    default_args=DEFAULT_ARGS,
    on_failure_callback=failure_notifier(),
    params=PARAMS,
    tags=["modelwatch", "monitoring", "daily"],
    doc_md=__doc__,
)
def modelwatch_daily():
    monitor_models("daily")


modelwatch_daily()
