"""The daily drift stage fills an Evidently workspace on S3, and ``evidently ui`` serves it.

Two models, three drift days each (the de-DE locale of the LLM drifts on the last), through the real stages
(extract, validate, drift) on the embedded S3 server with ``defaults.evidently_workspace_uri`` set; a re-run of a day
replaces it. Read back through Evidently's own workspace API, then through Evidently's UI service started on a free
port of 127.0.0.1 against the same S3 workspace.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import date, datetime

import pytest
import requests
from modelwatch.core.partition import Partition
from modelwatch.drift.evidently_workspace import configure_s3, project_id, snapshot_id
from modelwatch.runner import drift, extract, validate
from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic

START = date(2026, 10, 1)
DRIFT_DAYS = [date(2026, 10, 3), date(2026, 10, 4), date(2026, 10, 5)]
MODELS = ("support-bot-v3", "churn-classifier-v2")
NAME = "evws"
WORKSPACE = f"s3://{NAME}-reports/evidently"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def ui_port() -> int:
    return _free_port()


@pytest.fixture(scope="module")
def world(s3_server, ui_port):
    """Five small days of traffic for both models (drift from day 5), baselines from days 1-2, the drift stage on days 3-5."""
    from conftest import bundled_config_data, scoped_config
    from modelwatch.baseline.build import build_baseline
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    data = bundled_config_data(NAME)
    data["defaults"].update(evidently_workspace_uri=WORKSPACE, evidently_ui_url=f"http://127.0.0.1:{ui_port}")
    cfg = scoped_config(client, NAME, data)
    llm = cfg.model("support-bot-v3")
    generate_traffic(client, cfg.defaults.logs_uri, cfg.defaults.labels_uri, START, 5, llm_rows=400, classic_rows=300,
                     scenario=Scenario(drift_from=DRIFT_DAYS[-1], drift_locale="de-DE"), plan=ExperimentPlan("exp-042", llm.experiments[0].weights()))
    for model in MODELS:
        build_baseline(client, cfg, model, START, date(2026, 10, 2), progress=lambda _: None)
    env = os.environ.pop("MODELWATCH_EVIDENTLY_WORKSPACE", None)  # the config's workspace, not a local override
    try:
        records = {(model, day): _drift_of(client, cfg, model, day) for model in MODELS for day in DRIFT_DAYS}
        records[("churn-classifier-v2", DRIFT_DAYS[0], "rerun")] = _drift_of(client, cfg, "churn-classifier-v2", DRIFT_DAYS[0])
    finally:
        if env is not None:
            os.environ["MODELWATCH_EVIDENTLY_WORKSPACE"] = env
    return client, cfg, records


def _drift_of(client, cfg, model_id: str, day: date) -> dict:
    return drift(client, cfg, validate(client, cfg, extract(client, cfg, Partition(model_id, day))))


def test_each_model_day_is_one_snapshot_in_evidentlys_workspace(world):
    from evidently.ui.workspace import Workspace

    client, _, _ = world
    configure_s3(client)
    workspace = Workspace(WORKSPACE)
    projects = {project.name: project for project in workspace.list_projects()}
    assert sorted(projects) == sorted(f"modelwatch {model}" for model in MODELS)
    for model in MODELS:
        project = projects[f"modelwatch {model}"]
        days = sorted(workspace.get_run(project.id, run).timestamp for run in workspace.list_runs(project.id))
        assert days == [datetime(d.year, d.month, d.day) for d in DRIFT_DAYS]  # the re-run of day 3 replaced it
        assert [tab.title for tab in workspace.get_dashboard(project.id).tabs] == ["Trends"]


def test_the_drift_record_links_its_day_in_the_ui(world, ui_port):
    _, _, records = world
    record = records[("support-bot-v3", DRIFT_DAYS[-1])]
    project = project_id("modelwatch support-bot-v3")
    run = snapshot_id(project, datetime(2026, 10, 5))
    assert record["evidently_ui_url"] == f"http://127.0.0.1:{ui_port}/projects/{project}/reports/{run}"


@pytest.fixture(scope="module")
def evidently_ui(world, s3_server, ui_port, tmp_path_factory):
    """``evidently ui`` on 127.0.0.1 against the S3 workspace (fsspec's FSSPEC_S3_* variables give the endpoint)."""
    log = tmp_path_factory.mktemp("evidently-ui") / "ui.log"
    env = {**os.environ, "FSSPEC_S3_ENDPOINT_URL": s3_server.endpoint, "FSSPEC_S3_KEY": "modelwatch", "FSSPEC_S3_SECRET": "modelwatch"}
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "modelwatch.drift.evidently_ui", "--host", "127.0.0.1", "--port", str(ui_port),
                                    "--workspace", WORKSPACE], env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{ui_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{base}/api/version", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"evidently ui did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_ui_lists_the_projects_and_serves_a_snapshot_and_the_trend(evidently_ui):
    projects = {p["name"]: p["id"] for p in requests.get(f"{evidently_ui}/api/projects", timeout=30).json()}
    assert sorted(projects) == sorted(f"modelwatch {model}" for model in MODELS)
    project = projects["modelwatch support-bot-v3"]
    assert project == str(project_id("modelwatch support-bot-v3"))

    snapshots = requests.get(f"{evidently_ui}/api/projects/{project}/snapshots", timeout=30).json()
    assert sorted(s["timestamp"][:10] for s in snapshots) == [d.isoformat() for d in DRIFT_DAYS]
    drift_day = str(snapshot_id(project, datetime(2026, 10, 5)))
    metadata = requests.get(f"{evidently_ui}/api/projects/{project}/{drift_day}/metadata", timeout=30)
    assert metadata.ok and metadata.json()["id"] == drift_day and metadata.json()["metadata"]["title"] == "modelwatch drift: support-bot-v3 model_id=support-bot-v3/dt=2026-10-05"

    dashboard = requests.get(f"{evidently_ui}/api/v2/dashboards/{project}", timeout=30)
    assert dashboard.ok and [tab["title"] for tab in dashboard.json()["tabs"]] == ["Trends"]
    share = {"tags": [], "metadata": {}, "metric": "evidently:metric_v2:DriftedColumnsCount", "metric_labels": {"value_type": "share"}}
    series = requests.post(f"{evidently_ui}/api/v2/snapshots/{project}/data_series_batch", json={"series_filter": [share]}, timeout=30)
    assert series.ok, series.text
    body = series.json()
    assert len(body["sources"]) == len(DRIFT_DAYS) and body["series"], body
    by_day = dict(zip((s["timestamp"][:10] for s in body["sources"]), body["series"][0]["values"], strict=True))
    assert by_day[DRIFT_DAYS[-1].isoformat()] >= 0.2 > max(by_day[d.isoformat()] for d in DRIFT_DAYS[:-1]), by_day  # the de-DE drift day stands out


def test_a_day_added_while_the_ui_runs_shows_when_its_project_is_reloaded(world, evidently_ui):
    """What the UI's project page does on opening (GET .../reload): it re-reads the project's snapshots from S3."""
    from modelwatch.drift.evidently_workspace import add_to_workspace
    from modelwatch.storage.s3 import get_bytes

    client, cfg, records = world
    project = str(project_id("modelwatch churn-classifier-v2"))
    snapshot = get_bytes(client, records[("churn-classifier-v2", DRIFT_DAYS[-1])]["drift_uri"].replace("drift.json", "evidently_snapshot.json")).decode()
    later = snapshot.replace('"timestamp": "2026-10-05T00:00:00"', '"timestamp": "2026-10-06T00:00:00"')
    assert later != snapshot
    _, added = add_to_workspace(WORKSPACE, "modelwatch churn-classifier-v2", later, s3_client=client)

    def days() -> list[str]:
        return sorted(s["timestamp"][:10] for s in requests.get(f"{evidently_ui}/api/projects/{project}/snapshots", timeout=30).json())

    try:
        assert "2026-10-06" not in days()  # the service lists what it holds in memory
        assert requests.get(f"{evidently_ui}/api/projects/{project}/reload", timeout=60).ok
        assert days() == [*[d.isoformat() for d in DRIFT_DAYS], "2026-10-06"]
    finally:  # the other tests see the three drift days only
        from evidently.ui.workspace import Workspace

        Workspace(WORKSPACE).delete_run(project, added)


def test_a_project_created_while_the_ui_runs_waits_for_a_restart(world, evidently_ui):
    from evidently.ui.workspace import Workspace
    from modelwatch.drift.evidently_workspace import add_to_workspace
    from modelwatch.storage.s3 import get_bytes

    client, _, records = world
    snapshot = get_bytes(client, records[("churn-classifier-v2", DRIFT_DAYS[0])]["drift_uri"].replace("drift.json", "evidently_snapshot.json")).decode()
    created, _ = add_to_workspace(WORKSPACE, "modelwatch probe", snapshot, s3_client=client)
    try:
        names = {p["name"] for p in requests.get(f"{evidently_ui}/api/projects", timeout=30).json()}
        assert "modelwatch probe" not in names and "modelwatch churn-classifier-v2" in names  # Evidently lists projects read at start
    finally:
        Workspace(WORKSPACE).delete_project(created)
