"""modelwatch.drift.evidently_report on an ``s3://`` workspace (the embedded S3 server): Evidently's own workspace API
reads back what was written; a re-run and two writers at once leave one snapshot per model day."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from modelwatch.drift.evidently_report import build_report
from modelwatch.drift.evidently_workspace import add_to_workspace, configure_s3, project_id, snapshot_id, workspace_ui_path

DAYS = [datetime(2026, 3, day, tzinfo=UTC) for day in (1, 2, 3)]


def _snapshot(day: datetime, shift: float, seed: int) -> str:
    rng = np.random.default_rng(seed)
    reference = pd.DataFrame({"latency_ms": rng.normal(100, 10, 150), "route": rng.choice(["chat", "code"], 150)})
    current = pd.DataFrame({"latency_ms": rng.normal(100 + shift, 10, 150), "route": rng.choice(["chat", "code"], 150)})
    return build_report(reference, current, numerical=["latency_ms"], categorical=["route"], text=[], timestamp=day,
                        title=f"{day:%Y-%m-%d} shift {shift}").snapshot_json


@pytest.fixture()
def workspace_uri(s3):
    from modelwatch.storage.s3 import ensure_bucket

    bucket = f"evidently-{uuid.uuid4().hex[:8]}"
    ensure_bucket(s3, bucket)
    return f"s3://{bucket}/evidently"


def _evidently_view(s3, uri: str) -> dict[str, dict[datetime, str | None]]:
    """Evidently's own workspace API on the S3 URI: project name -> {snapshot timestamp: snapshot name}; fails on a doubled day."""
    from evidently.ui.workspace import Workspace

    configure_s3(s3)
    workspace = Workspace(uri)
    view: dict[str, dict[datetime, str | None]] = {}
    for project in workspace.list_projects():
        assert project.name not in view, f"two projects named {project.name}"
        runs = view[project.name] = {}
        for run_id in workspace.list_runs(project.id):
            run = workspace.get_run(project.id, run_id)
            assert run.timestamp not in runs, f"two snapshots of {run.timestamp} in {project.name}"
            runs[run.timestamp] = run.name
    return view


def test_days_of_two_models_are_read_back_through_evidentlys_workspace(s3, workspace_uri):
    for model in ("model-a", "model-b"):
        for day in DAYS:
            assert add_to_workspace(workspace_uri, model, _snapshot(day, 0.0, day.day), s3_client=s3) == (
                str(project_id(model)), str(snapshot_id(project_id(model), day)))
    expected = {day.replace(tzinfo=None): f"{day:%Y-%m-%d} shift 0.0" for day in DAYS}
    assert _evidently_view(s3, workspace_uri) == {"model-a": expected, "model-b": expected}


def test_a_rerun_replaces_its_day(s3, workspace_uri):
    add_to_workspace(workspace_uri, "model-a", _snapshot(DAYS[0], 0.0, 1), s3_client=s3)
    add_to_workspace(workspace_uri, "model-a", _snapshot(DAYS[1], 0.0, 2), s3_client=s3)
    add_to_workspace(workspace_uri, "model-a", _snapshot(DAYS[1], 30.0, 3), s3_client=s3)
    assert _evidently_view(s3, workspace_uri) == {"model-a": {datetime(2026, 3, 1): "2026-03-01 shift 0.0", datetime(2026, 3, 2): "2026-03-02 shift 30.0"}}


@pytest.mark.parametrize("where", ["s3", "local folder"])
def test_two_writers_at_once_on_a_new_workspace_make_one_project_and_one_snapshot_per_day(s3, workspace_uri, tmp_path, where):
    """Two workers start together on an empty workspace: both create the project, both write day 2, each writes one
    other day. One project, one dashboard tab, three snapshots (on S3 by the ids alone; in a local folder, also locked)."""
    if where == "local folder":
        workspace_uri = str(tmp_path / "evidently")
    jobs = {"first": [(DAYS[1], 0.0), (DAYS[0], 0.0)], "second": [(DAYS[1], 5.0), (DAYS[2], 0.0)]}
    snapshots = {name: [(day, _snapshot(day, shift, day.day)) for day, shift in days] for name, days in jobs.items()}
    start = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            start.wait(timeout=30)
            for _, snapshot in snapshots[name]:
                add_to_workspace(workspace_uri, "model-a", snapshot, s3_client=s3)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread below
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(name,)) for name in jobs]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert not errors, errors
    view = _evidently_view(s3, workspace_uri)
    assert set(view) == {"model-a"}
    assert sorted(view["model-a"]) == [day.replace(tzinfo=None) for day in DAYS]
    assert view["model-a"][datetime(2026, 3, 2)] in {"2026-03-02 shift 0.0", "2026-03-02 shift 5.0"}  # whichever write came last, whole

    from evidently.ui.workspace import Workspace

    dashboard = Workspace(workspace_uri).get_dashboard(project_id("model-a"))
    assert [tab.title for tab in dashboard.tabs] == ["Trends"] and len(dashboard.panels) == 3


def test_the_ui_path_is_the_evidently_ui_route_of_a_snapshot():
    project = project_id("model-a")
    assert workspace_ui_path(str(project), str(snapshot_id(project, DAYS[0]))) == f"projects/{project}/reports/{snapshot_id(project, DAYS[0])}"
    assert snapshot_id(project, DAYS[0]) == snapshot_id(str(project), DAYS[0].replace(tzinfo=None))  # aware or naive UTC: one day, one id
    assert snapshot_id(project, DAYS[0]) != snapshot_id(project_id("model-b"), DAYS[0])
