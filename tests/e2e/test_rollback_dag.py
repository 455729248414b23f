"""modelwatch_rollback end to end with dag.test() against the real S3-compatible server.

A scheduler starts this DAG from a ``guardrail_breach`` asset event and links the event to
the run it creates; ``dag.test()`` creates a manual run, so the fixture here makes the same
link (an ``asset_event`` row joined to the new run in ``dagrun_asset_event``) as the run is
inserted. Everything after that is the real run: the task reads its triggering events from
the execution API, rolls back through S3 and stores its result as XCom in the metadata DB.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

DAGS = Path(__file__).resolve().parents[2] / "dags"
BOT = "support-bot-v3"
SECRET = "T0ROLLBACK/B0ROLLBACK/n0tify-5ecret-path"


class FailingHook:
    """A notification endpoint on 127.0.0.1 that answers every POST ``500`` and echoes the path it was called on, as some gateways do."""

    def __init__(self):
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                outer.paths.append(self.path)
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(500)
                self.end_headers()
                self.wfile.write(f"upstream failed for {self.path}".encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/{SECRET}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def failing_hook():
    hook = FailingHook()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def rollback_dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS)).dags["modelwatch_rollback"]


def _config(s3, tmp_path, monkeypatch, edit: Callable[[dict], None]):
    """The bundled config in buckets of this test, changed by ``edit``, written where ``MODELWATCH_CONFIG`` points; returns its data."""
    from conftest import bundled_config_data, scoped_config

    name = f"rbdag-{uuid.uuid4().hex[:8]}"
    data = bundled_config_data(name)
    scoped_config(s3, name, data)  # the buckets, while the data is still valid
    edit(data)
    path = tmp_path / "modelwatch.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("MODELWATCH_CONFIG", str(path))
    return data


def _breach(cfg) -> dict:
    """A breach as ``pipeline.breaches`` puts it in the asset event's extra."""
    model = cfg.model(BOT)
    exp = model.experiments[0]
    label = f"model_id={BOT}/dt=2026-11-08"
    return {"model_id": BOT, "experiment_id": exp.id, "control": exp.control, "treatment": exp.treatment, "metric": "error_rate",
            "value": 0.08, "limit": {"max": 0.02, "min": None}, "requests": 1200, "reason": "error_rate 0.08 above max 0.02",
            "partition": label, "breach_id": f"breach-{uuid.uuid4().hex[:12]}", "routing_uri": model.rollback.uri,
            "reports_uri": cfg.defaults.reports_uri, "report_uri": f"{cfg.defaults.reports_uri}/{label}/summary.json",
            "evidence": {"metric_value": 0.08, "requests": 1200}, "detected_at": "2026-11-09T00:20:00+00:00"}


@contextmanager
def triggered_by(breaches: list[dict]) -> Iterator[None]:
    """Link a ``guardrail_breach`` event carrying ``breaches`` to the next modelwatch_rollback run inserted (what the scheduler does)."""
    from airflow.models.asset import AssetEvent, AssetModel, association_table
    from airflow.models.dagrun import DagRun
    from sqlalchemy import event, insert, select

    def link(mapper, connection, run) -> None:
        if run.dag_id != "modelwatch_rollback":
            return
        asset_id = connection.execute(select(AssetModel.id).where(AssetModel.name == "guardrail_breach")).scalar_one()
        event_id = connection.execute(insert(AssetEvent.__table__).values(asset_id=asset_id, extra={"breaches": breaches},
                                                                          source_dag_id="modelwatch_daily", source_task_id="signal_breach",
                                                                          source_run_id="breach-day", timestamp=run.run_after)).inserted_primary_key[0]
        connection.execute(insert(association_table).values(dag_run_id=run.id, event_id=event_id))

    event.listen(DagRun, "after_insert", link)
    try:
        yield
    finally:
        event.remove(DagRun, "after_insert", link)


def _xcoms(run) -> dict[str, list]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(XComModel.task_id, XComModel.value).where(XComModel.dag_id == run.dag_id,
                                                                               XComModel.run_id == run.run_id)).all()
    out: dict[str, list] = {}
    for task_id, value in rows:
        out.setdefault(task_id, []).append(XComModel.deserialize_value(SimpleNamespace(value=value)))
    return out


def _task_logs(airflow_home: Path, run) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (airflow_home / "logs").rglob("*")
                     if p.is_file() and f"run_id={run.run_id}" in str(p))


def _set_notify_url(url: str):
    def edit(data: dict) -> None:
        bot = next(m for m in data["models"] if m["id"] == BOT)
        bot["rollback"].update(notify_url=url, retries=1, timeout_s=5)

    return edit


def test_a_failed_notification_leaves_no_notify_url_in_xcom_or_logs(airflow_db, s3, tmp_path, monkeypatch, rollback_dag, failing_hook, capfd):
    from modelwatch.config import parse_config
    from modelwatch.storage.s3 import get_json

    cfg = parse_config(_config(s3, tmp_path, monkeypatch, _set_notify_url(failing_hook.url)))
    breach = _breach(cfg)
    with triggered_by([breach]):
        run = rollback_dag.test()
    out, err = capfd.readouterr()
    assert run.state == "success"
    [outcome] = _xcoms(run)["roll_back"][0]
    assert outcome["outcome"] == "rolled_back" and outcome["breach_id"] == breach["breach_id"]
    assert get_json(s3, cfg.model(BOT).rollback.uri)["experiments"][breach["experiment_id"]]["state"] == "rolled_back"
    assert failing_hook.paths == [f"/services/{SECRET}"] * 2  # the notification really went out, and was retried once
    host = f"http://127.0.0.1:{failing_hook.server.server_port}/…"
    assert outcome["notified"].startswith(f"failed: POST {host} failed after 2 attempts (1 retry allowed); last error HTTP 500: upstream failed for …")
    seen = {"xcom": json.dumps(_xcoms(run), default=str), "task logs": _task_logs(airflow_db, run), "output": out + err}
    assert f"ROLLBACK {BOT} {breach['experiment_id']}" in seen["task logs"] + seen["output"]  # the task's own log lines are in what is searched
    for where, text in seen.items():
        assert failing_hook.url not in text and SECRET not in text and "n0tify-5ecret" not in text, where


def _break_config(data: dict) -> None:
    data["models"][0]["experiments"][0]["hard_limits"][0]["metric"] = "eror_rate"


def test_a_bad_config_fails_the_rollback_at_once_with_its_message(airflow_db, s3, tmp_path, monkeypatch, rollback_dag, capfd):
    from airflow.utils.state import TaskInstanceState

    _config(s3, tmp_path, monkeypatch, _break_config)
    run = rollback_dag.test()
    out, err = capfd.readouterr()
    [ti] = run.get_task_instances()
    assert (ti.task_id, ti.state, ti.try_number) == ("roll_back", TaskInstanceState.FAILED, 1)  # not retried: the file does not change
    assert "hard_limits[0].metric: unknown metric 'eror_rate' (did you mean 'error_rate'?)" in out + err + _task_logs(airflow_db, run)
