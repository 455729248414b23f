"""modelwatch_daily's notifications end to end: dag.test() runs on generated traffic POST to a local webhook receiver.

A day with a treatment error-rate regression and input drift must post a breach and a drift
message, each linking the day's report page through ``defaults.report_base_url``; a run whose
validation fails must post the run-failure message naming the task and its log. The webhook
URL carries a token in its path, which must appear in no log output.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic
from webhook_receiver import Receiver

DAGS = Path(__file__).resolve().parents[2] / "dags"
START, DAY = date(2026, 11, 1), date(2026, 11, 4)
BASE = "https://reports.example.com/modelwatch"
TOKEN = "T0KEN-5ecret-path"
BOT = "support-bot-v3"


@pytest.fixture()
def receiver(monkeypatch):
    running = Receiver(f"/services/{TOKEN}")
    monkeypatch.setenv("MODELWATCH_ALERT_WEBHOOK", running.url)
    yield running
    running.close()


@pytest.fixture()
def world(s3, tmp_path, monkeypatch):
    """The bundled config in buckets of this test, with a report base URL; drift on features only (no embedding model needed)."""
    import uuid

    from conftest import bundled_config_data, scoped_config

    name = f"notify-{uuid.uuid4().hex[:8]}"
    data = bundled_config_data(name)
    data["defaults"].update(report_base_url=BASE, notify_drift_severity="medium")
    bot = next(m for m in data["models"] if m["id"] == BOT)
    bot["drift"]["text"] = []
    cfg = scoped_config(s3, name, data)
    path = tmp_path / "modelwatch.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("MODELWATCH_CONFIG", str(path))
    return cfg


@pytest.fixture(scope="module")
def daily_dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS)).dags["modelwatch_daily"]


def _traffic(s3, cfg, start: date, days: int, scenario: Scenario, llm_rows: int) -> None:
    exp = cfg.model(BOT).experiments[0]
    generate_traffic(s3, cfg.defaults.logs_uri, cfg.defaults.labels_uri, start, days, scenario=scenario, llm_rows=llm_rows, classic_rows=300,
                     plan=ExperimentPlan(exp.id, exp.weights()))


def test_breach_and_drift_day_posts_both_with_the_report_link(airflow_db, s3, world, receiver, daily_dag, capfd):
    from modelwatch.baseline.build import build_baseline
    from modelwatch.core.partition import Partition
    from modelwatch.observe import prom_metrics
    from modelwatch.observe.promql import dashboard_metric_names
    from modelwatch.storage.s3 import get_json
    from prometheus_client import CollectorRegistry

    cfg = world
    _traffic(s3, cfg, START, 4, Scenario(drift_from=DAY, regression="errors", regression_from=DAY), llm_rows=3000)
    build_baseline(s3, cfg, BOT, START, date(2026, 11, 3), progress=lambda _: None)
    run = daily_dag.test(run_conf={"target_date": DAY.isoformat(), "models": [BOT]})
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["monitor.notify"] == "success" and states["monitor.signal_breach"] == "success"

    summary = get_json(s3, f"{Partition(BOT, DAY).path(cfg.defaults.reports_uri)}/summary.json")
    assert summary["breaches"] and summary["drift"]["severity"] in ("medium", "high")
    page = f"{BASE}/model_id={BOT}/dt={DAY.isoformat()}/index.html"
    [breach], [drift] = receiver.events("breach"), receiver.events("drift")
    assert receiver.events("run_failure") == [] and len(receiver.bodies) == 2
    assert set(receiver.paths) == {f"/services/{TOKEN}"}
    for payload in (breach, drift):
        assert payload["modelwatch"]["report_url"] == page and payload["modelwatch"]["model_id"] == BOT
        assert f"<{page}|Open report>" in json.dumps(payload["blocks"])
        assert payload["blocks"][0]["type"] == "header" and payload["text"]
    assert {b["metric"] for b in breach["modelwatch"]["breaches"]} == {b["metric"] for b in summary["breaches"]}
    assert "error_rate" in breach["text"]
    assert drift["modelwatch"]["severity"] == summary["drift"]["severity"]
    assert drift["modelwatch"]["evidently_url"] == f"{BASE}/model_id={BOT}/dt={DAY.isoformat()}/report.html"
    logged = "".join(capfd.readouterr())
    assert "NOTIFIED breach" in logged and "NOTIFIED drift" in logged  # the task output is captured here ...
    assert TOKEN not in logged  # ... and never shows the webhook's token

    # the day's real summary, turned into gauges, carries every metric family the dashboard queries for an LLM under experiment
    registry = prom_metrics.summary_metrics(summary, CollectorRegistry())
    emitted = {m.name for m in registry.collect()}
    classic_only = {m for m in dashboard_metric_names() if m.startswith("modelwatch_performance_")}  # CBPE/DLE: classifiers and regressors
    assert dashboard_metric_names() - classic_only - emitted == set()


def test_a_failed_run_posts_the_failed_task_and_its_log(airflow_db, s3, world, receiver, daily_dag, capfd):
    cfg = world
    _traffic(s3, cfg, DAY, 1, Scenario(broken_rows_on={DAY: 200}), llm_rows=800)
    run = daily_dag.test(run_conf={"target_date": DAY.isoformat(), "models": [BOT]})
    assert run.state == "failed"
    [failure] = receiver.events("run_failure")
    data = failure["modelwatch"]
    assert data["dag_id"] == "modelwatch_daily" and data["run_id"] == run.run_id and data["task_id"] == "monitor.validate"
    assert data["map_index"] == 0 and data["reason"] == "task_failure"
    assert data["log_url"].endswith(f"/dags/modelwatch_daily/runs/{quote(run.run_id)}/tasks/monitor.validate/mapped/0?try_number=1")
    blocks = json.dumps(failure["blocks"])
    assert "`monitor.validate[0]`" in blocks and f"<{data['log_url']}|Task log>" in blocks
    assert receiver.events("breach") == [] and receiver.events("drift") == []
    logged = "".join(capfd.readouterr())
    assert "broke the log contract" in logged and TOKEN not in logged
