"""The daily DAG on a production-shaped Airflow: PostgreSQL metadata DB, CeleryExecutor, Redis broker.

Scheduler, dag-processor, API server and a Celery worker run on 127.0.0.1 (and listen on
nothing else); the run is triggered and followed through the public REST API, logged in as
the runtime's user, and its outputs are read from S3.
PostgreSQL and Redis must be running (``.ci/run`` starts them): the test fails, not skips,
when they are not, since this is the deployment the README recommends.
"""

import os
import uuid
from datetime import date

import pytest
from modelwatch.core.partition import Partition
from modelwatch.runtime.generate import ExperimentPlan, generate_traffic
from modelwatch.runtime.localstack import CeleryAirflow
from modelwatch.storage.s3 import get_json

DAY = date(2026, 11, 5)
POSTGRES = os.environ.get("MODELWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("MODELWATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/3")


@pytest.fixture
def celery_airflow(tmp_path):
    import psycopg2
    import redis

    try:
        psycopg2.connect(POSTGRES, connect_timeout=5).close()
        broker = redis.Redis.from_url(REDIS, socket_connect_timeout=5)
        broker.flushdb()  # no messages left by an earlier, interrupted run
    except (psycopg2.OperationalError, redis.exceptions.ConnectionError) as exc:
        pytest.fail(f"PostgreSQL ({POSTGRES}) and Redis ({REDIS}) must be running for the Celery deployment test "
                    f"(`bash .ci/run` starts them): {exc}")
    name = f"modelwatch_ci_{uuid.uuid4().hex[:8]}"
    airflow = CeleryAirflow(tmp_path / "airflow", CeleryAirflow.create_database(POSTGRES, name), REDIS)
    try:
        airflow.migrate()
        airflow.start()
        yield airflow
    finally:
        airflow.stop()
        CeleryAirflow.drop_database(POSTGRES, name)


@pytest.mark.scheduler
def test_daily_run_for_two_models_on_celery_and_postgres(s3, isolated_config, celery_airflow):
    cfg = isolated_config
    exp = cfg.model("support-bot-v3").experiments[0]
    written = generate_traffic(s3, cfg.defaults.logs_uri, cfg.defaults.labels_uri, DAY, 1, llm_rows=800, classic_rows=400,
                               plan=ExperimentPlan(exp.id, exp.weights()))
    assert set(written) == {"support-bot-v3", "churn-classifier-v2"}

    celery_airflow.wait_for_dags(["modelwatch_daily"])
    api = celery_airflow.api()
    api.unpause("modelwatch_daily")
    run_id = f"celery-{DAY.isoformat()}"
    api.trigger("modelwatch_daily", run_id, {"target_date": DAY.isoformat(), "models": []})
    run = api.wait_for_run("modelwatch_daily", run_id, timeout=600)
    states = api.task_states("modelwatch_daily", run_id)
    assert run["state"] == "success", f"run {run['state']}, task states {states}; logs under {celery_airflow.home}"
    assert "failed" not in states and "upstream_failed" not in states

    # every task went through the Celery worker: the result backend in PostgreSQL holds one record per task try
    executed = celery_airflow.query("select count(*) from celery_taskmeta where status = 'SUCCESS'")[0][0]
    tried = celery_airflow.query("select count(*) from task_instance where dag_id = 'modelwatch_daily' and state = 'success'")[0][0]
    assert executed >= tried > 0
    # the worker, like every other component, listens on 127.0.0.1 only (no log server on all interfaces)
    exposed = [s for s in celery_airflow.listeners() if not s.loopback]
    assert not exposed, f"listening beyond 127.0.0.1: {exposed}"

    for model_id, rows in written.items():
        summary = get_json(s3, f"{Partition(model_id, DAY).path(cfg.defaults.reports_uri)}/summary.json")
        assert summary["rows"]["read"] == rows
        assert summary["rows"]["read"] == summary["rows"]["valid"] + summary["rows"]["quarantined"]
        assert summary["run"]["run_id"] == run_id
        assert summary["drift"] is not None and summary["experiments"] is not None
