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

    _check_ui_links(celery_airflow.api(), s3, cfg, run_id, written)


def _get(url: str, token: str | None = None) -> tuple[int, bytes, str]:
    """GET ``url`` (with a bearer token when given): status, body, content type."""
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def _check_ui_links(api, s3, cfg, run_id: str, written: dict[str, int]) -> None:
    """The modelwatch_ui plugin through the real API server: the run's tab links to every model's reports, behind Airflow's auth."""
    import html
    import re
    from urllib.parse import quote, unquote, urljoin

    from modelwatch.storage.s3 import get_bytes

    views = [v for p in api.call("GET", "/plugins")["plugins"] for v in p["external_views"] if p["name"] == "modelwatch_ui"]
    assert {(v["destination"], v["href"]) for v in views} == {("dag_run", "modelwatch/runs/{DAG_ID}/{RUN_ID}"),
                                                              ("task_instance", "modelwatch/tasks/{DAG_ID}/{RUN_ID}/{TASK_ID}/{MAP_INDEX}")}
    run_url = f"{api.base_url}/modelwatch/runs/modelwatch_daily/{quote(run_id, safe='')}"
    status, body, _ = _get(run_url)
    assert status == 401, f"an unauthenticated request got {status}: {body[:300]!r}"  # plugin endpoints do not skip Airflow's auth
    assert _get(run_url, token="not-a-token")[0] == 403

    token = api.token()
    status, body, kind = _get(run_url, token)
    assert status == 200 and kind.startswith("text/html"), body[:500]
    page = body.decode()
    links = [html.unescape(h) for h in re.findall(r'href="([^"]+)"', page)]
    for model_id in written:
        mine = [h for h in links if f"model_id={model_id}/dt={DAY.isoformat()}/" in unquote(h)]
        assert {unquote(h).rsplit("/", 1)[1] for h in mine} >= {"index.html", "drift.json", "summary.json"}
    summary_link = next(h for h in links if unquote(h).endswith(f"model_id=churn-classifier-v2/dt={DAY.isoformat()}/summary.json"))
    status, served, kind = _get(urljoin(run_url, summary_link), token)
    assert status == 200 and kind.startswith("application/json")
    assert served == get_bytes(s3, f"{Partition('churn-classifier-v2', DAY).path(cfg.defaults.reports_uri)}/summary.json")
    assert _get(urljoin(run_url, summary_link))[0] == 401  # the report files need the token too

    branch = f"{api.base_url}/modelwatch/tasks/modelwatch_daily/{quote(run_id, safe='')}/monitor.publish/0"
    status, body, _ = _get(branch, token)
    assert status == 200 and body.decode().count("<tr>") == 2  # the header and the one model of map index 0
    private = f"{api.base_url}/modelwatch/reports/_quarantine/model_id=support-bot-v3/dt={DAY.isoformat()}/quarantine.parquet"
    assert _get(private, token)[0] == 404  # quarantined traffic is never served
    assert _get(f"{api.base_url}/modelwatch/reports/model_id=x/..%2F..%2Fsecret", token)[0] == 404
