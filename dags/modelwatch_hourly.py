"""modelwatch_hourly: the fast checks on the previous hour of every hourly-monitored model.

Same stages as modelwatch_daily on an hour partition, so a hard-limit breach
(error rate, latency) rolls an experiment back within the hour.
"""

from datetime import UTC, datetime

from airflow.sdk import CronDataIntervalTimetable, dag
from common.monitoring import DEFAULT_ARGS, PARAMS, failure_notifier, monitor_models


@dag(
    dag_id="modelwatch_hourly",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),  # data interval = one UTC hour
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    on_failure_callback=failure_notifier(),
    params=PARAMS,
    tags=["modelwatch", "monitoring", "hourly"],
    doc_md=__doc__,
)
def modelwatch_hourly():
    monitor_models("hourly")


modelwatch_hourly()
