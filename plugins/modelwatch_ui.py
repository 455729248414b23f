"""modelwatch in the Airflow UI: each monitoring run and task instance links to what it wrote, served behind Airflow's own auth.

Two external views (Airflow 3's plugin ``external_views``) add a "modelwatch reports" tab to every
DAG run and task instance; the tab shows a page of the run's partitions with links to each one's
report page, Evidently drift report, ``drift.json`` and ``summary.json``. A FastAPI app mounted in
the API server at ``/modelwatch`` serves those pages and the report files themselves from
``defaults.reports_uri`` (through the Amazon provider's ``S3Hook`` on ``defaults.aws_conn_id``).

Access: plugin endpoints are not behind Airflow's auth by themselves, so every route here declares
Airflow's own authorization dependency (``requires_access_dag``): the caller must present the API
server's JWT (the UI's session cookie, or ``Authorization: Bearer`` from ``POST /auth/token``) and the
auth manager must allow reading that DAG's runs. The report files are per model, not per run, so
they need read access to ``modelwatch_daily``'s runs. Without a token the answer is 401; with one
that the auth manager refuses, 403. Working data and quarantined traffic are never served
(``modelwatch.publish.run_links.report_key``).
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Response
from fastapi.responses import HTMLResponse

PREFIX = "/modelwatch"
app = FastAPI(title="modelwatch reports", description="Links from Airflow runs to modelwatch's reports, and the reports themselves.")
_read_runs = Depends(requires_access_dag("GET", DagAccessEntity.RUN))
_read_reports = Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id="modelwatch_daily"))


def _config():
    from modelwatch.config import load_config

    return load_config()


def _s3(cfg):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=cfg.defaults.aws_conn_id).get_conn()


def _planned(dag_id: str, run_id: str) -> Any:
    """``plan_partitions``' result for the run (its XCom), or None before it ran."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=run_id, dag_ids=dag_id, task_ids="plan_partitions", key="return_value", map_indexes=-1)).first()
        return None if row is None else XComModel.deserialize_value(row)


def _page(dag_id: str, run_id: str, map_index: int | None, depth: int) -> str:
    from modelwatch.publish.run_links import MONITORING_DAGS, partition_links, partitions_of_run, run_page
    from modelwatch.storage.s3 import exists

    reports_base = "../" * depth + "reports"
    if dag_id not in MONITORING_DAGS:
        return run_page(dag_id, run_id, [], reports_base, note=f"{dag_id} is not a modelwatch monitoring DAG ({', '.join(MONITORING_DAGS)}): it writes no reports.")
    partitions = partitions_of_run(_planned(dag_id, run_id), map_index)
    if not partitions:
        return run_page(dag_id, run_id, [], reports_base, note="This run has not planned its partitions yet (plan_partitions has no result): nothing is written.")
    cfg = _config()
    client = _s3(cfg)
    return run_page(dag_id, run_id, [partition_links(cfg, p, lambda uri: exists(client, uri)) for p in partitions], reports_base)


@app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=[_read_runs])
def run_view(dag_id: str, run_id: str) -> str:
    """Every partition of the run, with its outputs."""
    return _page(dag_id, run_id, None, depth=2)


@app.get("/tasks/{dag_id}/{run_id}/{task_id}/{map_index}", response_class=HTMLResponse, dependencies=[_read_runs])
def task_view(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """The task's partition: a branch task of ``monitor`` is one model's (its map index); other tasks show the run's."""
    return _page(dag_id, run_id, map_index if task_id.startswith("monitor.") else None, depth=4)


@app.get("/reports/{key:path}", dependencies=[_read_reports])
def report_file(key: str) -> Response:
    """A published report file from ``defaults.reports_uri``."""
    from modelwatch.publish.run_links import NotServed, content_type, report_key
    from modelwatch.storage.s3 import NOT_FOUND_CODES, S3Error, error_code, get_bytes

    try:
        key = report_key(key)
    except NotServed as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    cfg = _config()
    try:
        data = get_bytes(_s3(cfg), f"{cfg.defaults.reports_uri}/{key}")
    except S3Error as exc:
        if error_code(exc) not in NOT_FOUND_CODES:
            raise
        raise HTTPException(status_code=404, detail=f"no report {key!r} under {cfg.defaults.reports_uri}") from None
    return Response(data, media_type=content_type(key), headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=60"})


class ModelwatchUIPlugin(AirflowPlugin):
    name = "modelwatch_ui"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "modelwatch reports"}]
    external_views = [
        {"name": "modelwatch reports", "href": "modelwatch/runs/{DAG_ID}/{RUN_ID}", "destination": "dag_run", "url_route": "modelwatch_run"},
        {"name": "modelwatch reports", "href": "modelwatch/tasks/{DAG_ID}/{RUN_ID}/{TASK_ID}/{MAP_INDEX}", "destination": "task_instance",
         "url_route": "modelwatch_task"},
    ]
