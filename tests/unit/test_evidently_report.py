"""modelwatch.drift.evidently_report: Evidently 0.7 reports and an Evidently workspace in a local folder (on S3: test_evidently_workspace).

Frames are small and seeded; importing evidently dominates the run time.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from modelwatch.drift.evidently_report import EvidentlyRun, build_report, drift_verdict
from modelwatch.drift.evidently_workspace import add_to_workspace, project_id, snapshot_id

NUMERICAL = ["latency_ms", "completion_tokens"]
CATEGORICAL = ["route", "region"]
TEXT = ["prompt"]
SHIFTED = {"latency_ms", "route"}
WORDS = "the model answer prompt user token please explain summary error data chart report because which would".split()
DAY_1 = datetime(2024, 5, 1, tzinfo=UTC)
DAY_2 = datetime(2024, 5, 2, tzinfo=UTC)
DAY_1_CEST = datetime(2024, 5, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))  # the same instant as DAY_1


def _frame(rows: int, *, shifted: bool, seed: int) -> pd.DataFrame:
    """Requests of one side; ``shifted`` moves latency_ms and route only."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "latency_ms": rng.normal(160.0 if shifted else 100.0, 20.0, rows),
            "completion_tokens": rng.normal(250.0, 40.0, rows),
            "route": rng.choice(["chat", "search", "code"], rows, p=[0.1, 0.2, 0.7] if shifted else [0.6, 0.3, 0.1]),
            "region": rng.choice(["eu", "us", "apac"], rows, p=[0.4, 0.4, 0.2]),
            "prompt": [" ".join(rng.choice(WORDS, int(n))) for n in rng.integers(20, 80, rows)],
        }
    )


def _report(reference: pd.DataFrame, current: pd.DataFrame, *, timestamp: datetime = DAY_1, title: str = "model-a 2024-05-01", **kwargs) -> EvidentlyRun:
    return build_report(reference, current, numerical=NUMERICAL, categorical=CATEGORICAL, text=TEXT, timestamp=timestamp, title=title, **kwargs)


@pytest.fixture(scope="module")
def shifted_run() -> EvidentlyRun:
    """3,000 reference vs 2,500 shifted current rows, capped at 2,000 per side, with an all-null column in current."""
    reference = _frame(3000, shifted=False, seed=1).assign(feedback=np.random.default_rng(3).normal(size=3000))
    current = _frame(2500, shifted=True, seed=2).assign(feedback=None)
    return build_report(
        reference,
        current,
        numerical=[*NUMERICAL, "feedback"],
        categorical=CATEGORICAL,
        text=TEXT,
        timestamp=DAY_1,
        title="model-a 2024-05-01",
        max_rows=2000,
        seed=0,
    )


def _value_drift_columns(snapshot_json: str) -> list[str]:
    from evidently.core.report import Snapshot

    snapshot = Snapshot.loads(snapshot_json)
    return [
        result.metric_value_location.metric.params["column"]
        for result in snapshot.metric_results.values()
        if result.metric_value_location.metric.params["type"] == "evidently:metric_v2:ValueDrift"
    ]


def _mean_value(snapshot_json: str, column: str) -> float:
    from evidently.core.report import Snapshot

    snapshot = Snapshot.loads(snapshot_json)
    (value,) = [
        float(result.value)
        for result in snapshot.metric_results.values()
        if result.metric_value_location.metric.params == {"type": "evidently:metric_v2:MeanValue", "column": column}
    ]
    return value


# --------------------------------------------------------------------------- the report


def test_shifted_columns_are_drifted_and_unchanged_ones_are_not(shifted_run: EvidentlyRun) -> None:
    assert shifted_run.drift_columns == NUMERICAL + CATEGORICAL
    assert set(shifted_run.drifted_columns) == SHIFTED
    assert shifted_run.drift_share == pytest.approx(len(SHIFTED) / len(shifted_run.drift_columns))


def test_unshifted_data_shows_no_drift() -> None:
    run = _report(_frame(1500, shifted=False, seed=1), _frame(1500, shifted=False, seed=2))
    assert run.drifted_columns == []
    assert run.drift_share == 0.0


def test_free_text_is_summarised_as_text_not_compared_as_a_category() -> None:
    reference, current = _frame(800, shifted=False, seed=1), _frame(800, shifted=False, seed=2)
    run = _report(reference, current, max_rows=1000)
    assert _value_drift_columns(run.snapshot_json) == NUMERICAL + CATEGORICAL
    assert "prompt" not in run.drift_columns
    assert _mean_value(run.snapshot_json, "prompt: text length") == pytest.approx(current["prompt"].str.len().mean())
    for descriptor in ("prompt: text length", "prompt: word count", "prompt: non-letter %"):
        assert descriptor in run.html


def test_html_is_a_standalone_page_with_title_and_sampling_note(shifted_run: EvidentlyRun) -> None:
    page = shifted_run.html.strip()
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>")
    assert "<title>model-a 2024-05-01</title>" in page
    assert "<h1 style='margin:0 0 .4rem'>model-a 2024-05-01</h1>" in page
    assert "reference 2,000 of 3,000 rows, current 2,000 of 2,500 rows" in page
    assert "<script src=" not in page and "window.drawDashboard" in page


def test_rows_are_sampled_down_to_max_rows(shifted_run: EvidentlyRun) -> None:
    from evidently.core.report import Snapshot

    assert (shifted_run.rows_reference, shifted_run.rows_current) == (2000, 2000)
    metadata = Snapshot.loads(shifted_run.snapshot_json).to_snapshot_model().metadata
    assert (metadata["rows_reference"], metadata["rows_current"]) == ("2000", "2000")
    assert "seed 0" in metadata["sampling"]


def test_sampling_is_reproducible_with_the_seed_and_varies_without_it() -> None:
    reference, current = _frame(1200, shifted=False, seed=1), _frame(1200, shifted=True, seed=2)
    runs = [_report(reference, current, max_rows=300, seed=seed) for seed in (5, 5, 6)]
    means = [_mean_value(run.snapshot_json, "prompt: word count") for run in runs]
    assert means[0] == means[1]
    assert means[0] != means[2]


def test_snapshot_json_round_trips(shifted_run: EvidentlyRun) -> None:
    from evidently.core.report import Snapshot

    loaded = Snapshot.loads(shifted_run.snapshot_json)
    model = loaded.to_snapshot_model()
    assert model.timestamp == datetime(2024, 5, 1)  # aware UTC input stored as naive UTC
    assert loaded.get_name() == "model-a 2024-05-01"
    assert drift_verdict(shifted_run.snapshot_json) == (shifted_run.drifted_columns, shifted_run.drift_share)
    assert Snapshot.loads(loaded.dumps()).metric_results.keys() == loaded.metric_results.keys()
    assert "completion_tokens" in loaded.get_html_str(as_iframe=False)  # the loaded snapshot still renders its widgets


def test_all_null_column_is_skipped_with_reason(shifted_run: EvidentlyRun) -> None:
    assert shifted_run.skipped_columns == {"feedback": "all null (2,500 rows) in current"}
    assert "feedback" not in shifted_run.drift_columns
    assert "feedback" not in _value_drift_columns(shifted_run.snapshot_json)
    assert "Skipped column &#x27;feedback&#x27;: all null (2,500 rows) in current." in shifted_run.html


def test_missing_column_is_skipped_and_no_usable_column_raises() -> None:
    reference, current = _frame(300, shifted=False, seed=1), _frame(300, shifted=False, seed=2)
    run = build_report(reference, current.drop(columns=["region"]), numerical=NUMERICAL, categorical=CATEGORICAL, text=[], timestamp=DAY_1, title="t")
    assert run.skipped_columns == {"region": "missing in current"}
    assert run.drift_columns == [*NUMERICAL, "route"]
    empty = current.iloc[0:0]
    with pytest.raises(ValueError, match="no usable column"):
        build_report(reference, empty, numerical=NUMERICAL, categorical=[], text=[], timestamp=DAY_1, title="t")


def test_column_declared_under_two_types_is_rejected() -> None:
    frame = _frame(50, shifted=False, seed=1)
    with pytest.raises(ValueError, match="'route' declared both categorical and text"):
        build_report(frame, frame, numerical=[], categorical=["route"], text=["route"], timestamp=DAY_1, title="t")


# --------------------------------------------------------------------------- the workspace


@pytest.fixture(scope="module")
def daily_runs() -> dict[str, EvidentlyRun]:
    """Small reports for two days (day 1 stamped in UTC+2), plus a re-run of day 2 on different data."""
    reference = _frame(400, shifted=False, seed=1)
    return {
        "day1": _report(reference, _frame(400, shifted=False, seed=2), timestamp=DAY_1_CEST, title="model-a 2024-05-01"),
        "day2": _report(reference, _frame(400, shifted=False, seed=3), timestamp=DAY_2, title="model-a 2024-05-02"),
        "day2_rerun": _report(reference, _frame(400, shifted=True, seed=4), timestamp=DAY_2, title="model-a 2024-05-02 rerun"),
    }


def _runs_by_day(workspace_path: Path, project_name: str) -> dict[datetime, tuple[str, str | None]]:
    """Evidently's own view of the project: timestamp -> (run id, run name); fails on a duplicated day."""
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(workspace_path))
    (project,) = workspace.search_project(project_name)
    runs: dict[datetime, tuple[str, str | None]] = {}
    for run_id in workspace.list_runs(project.id):
        run = workspace.get_run(project.id, run_id)
        assert run.timestamp not in runs, f"two runs for {run.timestamp}"
        runs[run.timestamp] = (str(run_id), run.name)
    return runs


def test_two_days_give_one_project_with_two_runs(tmp_path: Path, daily_runs: dict[str, EvidentlyRun]) -> None:
    ids = [add_to_workspace(tmp_path / "ws", "model-a", daily_runs[day].snapshot_json) for day in ("day1", "day2")]
    runs = _runs_by_day(tmp_path / "ws", "model-a")
    assert runs == {  # timestamps as naive UTC
        datetime(2024, 5, 1): (ids[0][1], "model-a 2024-05-01"),
        datetime(2024, 5, 2): (ids[1][1], "model-a 2024-05-02"),
    }
    assert ids[0][0] == ids[1][0] == str(project_id("model-a"))


def test_re_adding_a_day_replaces_its_run(tmp_path: Path, daily_runs: dict[str, EvidentlyRun]) -> None:
    workspace = tmp_path / "ws"
    _, first = add_to_workspace(workspace, "model-a", daily_runs["day1"].snapshot_json)
    _, day2 = add_to_workspace(workspace, "model-a", daily_runs["day2"].snapshot_json)
    _, rerun = add_to_workspace(workspace, "model-a", daily_runs["day2_rerun"].snapshot_json)
    runs = _runs_by_day(workspace, "model-a")
    assert runs == {
        datetime(2024, 5, 1): (first, "model-a 2024-05-01"),
        datetime(2024, 5, 2): (rerun, "model-a 2024-05-02 rerun"),
    }
    assert rerun == day2 == str(snapshot_id(project_id("model-a"), DAY_2))


def test_a_project_made_elsewhere_is_reused_under_its_own_id(tmp_path: Path, daily_runs: dict[str, EvidentlyRun]) -> None:
    from evidently.ui.workspace import Workspace

    existing = Workspace(str(tmp_path)).create_project("model-a")
    project, _ = add_to_workspace(tmp_path, "model-a", daily_runs["day1"].snapshot_json)
    assert project == str(existing.id) != str(project_id("model-a"))
    assert len(_runs_by_day(tmp_path, "model-a")) == 1
    assert Workspace(str(tmp_path)).get_dashboard(existing.id).tabs[0].title == "Trends"  # provisioned on first use


def test_projects_are_separate_and_get_a_trend_dashboard(tmp_path: Path, daily_runs: dict[str, EvidentlyRun]) -> None:
    from evidently.ui.workspace import Workspace

    add_to_workspace(tmp_path, "model-a", daily_runs["day1"].snapshot_json)
    add_to_workspace(tmp_path, "model-b", daily_runs["day1"].snapshot_json, description="the B model")
    add_to_workspace(tmp_path, "model-b", daily_runs["day2"].snapshot_json)
    workspace = Workspace(str(tmp_path))
    projects = {project.name: project for project in workspace.list_projects()}
    assert sorted(projects) == ["model-a", "model-b"]
    assert projects["model-b"].description == "the B model"
    assert [len(workspace.list_runs(projects[name].id)) for name in ("model-a", "model-b")] == [1, 2]
    dashboard = workspace.get_dashboard(projects["model-a"].id)
    (tab,) = dashboard.tabs
    assert tab.title == "Trends" and tab.panels == [panel.id for panel in dashboard.panels]
    plotted = {value.metric for panel in dashboard.panels for value in panel.values}
    assert plotted == {"evidently:metric_v2:DriftedColumnsCount", "evidently:metric_v2:ValueDrift", "evidently:metric_v2:MeanValue"}


# --------------------------------------------------------------------------- hostile text


HOSTILE = [
    "</script><script>window.__pwned=1</script>",
    "</SCRIPT ><img src=x onerror=\"window.__pwned=1\">",
    "<!--<script>",
    "'\"><svg onload=\"window.__pwned=1\"></svg>",
    "javascript:window.__pwned=1",
    "&lt;/script&gt;&#x3c;/script>\u2028\u2029",
]
PAGE_TAGS = {"html", "head", "meta", "title", "style", "script", "body", "div", "header", "h1", "p"}


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the text of each script element, as an HTML parser reads the page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script, self.scripts = True, [*self.scripts, ""]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def _elements(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    parser.close()
    return parser


def _strings(value: object) -> Iterator[str]:
    """Every string (keys included) in decoded JSON."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _script_policy(page: str) -> tuple[str, set[str]]:
    """The page's Content-Security-Policy (from the first element of <head>) and its script-src hashes."""
    tag, attrs = _elements(page).tags[2]  # html, head, then the policy
    assert (tag, attrs.get("http-equiv")) == ("meta", "Content-Security-Policy"), (tag, attrs)
    policy = attrs["content"]
    (script_src,) = [d.split()[1:] for d in policy.split(";") if d.split()[:1] == ["script-src"]]
    return policy, {source.strip("'") for source in script_src}


@pytest.fixture(scope="module")
def hostile_run() -> EvidentlyRun:
    """Payloads as category values, column names, free text and the title."""
    rng = np.random.default_rng(5)
    topic, text = HOSTILE[0], HOSTILE[5]

    def side(rows: int, shifted: bool) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "latency_ms": rng.normal(150.0 if shifted else 100.0, 20.0, rows),
                topic: rng.choice(HOSTILE, rows, p=[0.5, 0.1, 0.1, 0.1, 0.1, 0.1] if shifted else None),
                text: [f"{rng.choice(HOSTILE)} {' '.join(rng.choice(WORDS, 12))}" for _ in range(rows)],
            }
        )

    return build_report(side(300, False), side(300, True), numerical=["latency_ms"], categorical=[topic], text=[text],
                        timestamp=DAY_1, title=f"model-a {HOSTILE[1]}")


def test_hostile_text_stays_data_in_the_page(hostile_run: EvidentlyRun) -> None:
    page = _elements(hostile_run.html)
    assert {tag for tag, _ in page.tags} <= PAGE_TAGS
    assert not [(tag, name) for tag, attrs in page.tags for name in attrs if name.startswith("on")]
    assert not [attrs for tag, attrs in page.tags if tag == "meta" and attrs.get("http-equiv", "").lower() == "refresh"]
    for payload in HOSTILE[:3]:
        assert payload.lower() not in hostile_run.html.lower()
    assert "<title>model-a &lt;/SCRIPT &gt;&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;</title>" in hostile_run.html
    strings = list(_strings(_page_data(hostile_run.html)))
    for payload in HOSTILE:  # every payload reached the report's data, unchanged
        assert any(payload in s for s in strings), payload


def test_the_page_allows_exactly_its_own_scripts(hostile_run: EvidentlyRun, shifted_run: EvidentlyRun) -> None:
    for run in (hostile_run, shifted_run):
        policy, allowed = _script_policy(run.html)
        scripts = _elements(run.html).scripts
        hashes = {"sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in scripts}
        assert hashes == allowed and len(scripts) == len(hashes) == 4
        directives = {d.split()[0]: d.split()[1:] for d in policy.split(";") if d.strip()}
        assert directives["default-src"] == ["'none'"] and directives["base-uri"] == ["'none'"]
        assert directives["form-action"] == ["'none'"]
        assert "'unsafe-eval'" not in policy and "'unsafe-inline'" not in directives["script-src"]


def _page_data(page: str) -> list[object]:
    """The two values (dashboard, detail graphs) of the page's data script, decoded."""
    (data,) = [script for script in _elements(page).scripts if script.lstrip().startswith("var metric_")]
    return [json.loads(line.split(" = ", 1)[1].rstrip(";")) for line in data.strip().splitlines()]


def test_the_page_embeds_what_evidentlys_own_page_embeds(shifted_run: EvidentlyRun) -> None:
    from evidently.core.report import Snapshot

    ours = _page_data(shifted_run.html)
    theirs = _page_data(Snapshot.loads(shifted_run.snapshot_json).get_html_str(as_iframe=False))
    for dashboard in (ours[0], theirs[0]):
        dashboard["widgets"][0].pop("id")  # the outer group widget, made afresh (with a new id) at every rendering
    assert ours == theirs
