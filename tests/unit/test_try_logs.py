"""`modelwatch try`: reading a team's folder, placing rows in days, proposing a config, and refusing a folder with nothing usable."""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections import Counter
from datetime import date
from pathlib import Path, PurePosixPath

import pyarrow.parquet as pq
import pytest
from modelwatch.config import load_config
from modelwatch.runtime import propose
from modelwatch.runtime.propose import ExperimentSurvey, UnitStats, rounded_split, unit_field
from modelwatch.runtime.try_logs import (
    DESTINATIONS,
    TryError,
    find_log_files,
    folder_day,
    read_and_propose,
    uploads,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from team_logs import CLASSIFIER, EXPERIMENT, LLM, START, team_arm, write_team_folder  # noqa: E402

QUIET = lambda line: None  # noqa: E731


@pytest.fixture(scope="module")
def team_folder(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("team")
    return root, write_team_folder(root, days=4, llm_rows=300, classifier_rows=240)


@pytest.fixture(scope="module")
def proposed(team_folder):
    root, _ = team_folder
    return read_and_propose(root, None, QUIET)


@pytest.mark.parametrize(("path", "day"), [
    ("logs/dt=2026-10-06/hour=03/a.jsonl", date(2026, 10, 6)),
    ("date=2026-10-07/a.parquet", date(2026, 10, 7)),
    ("2026-10-08/part.jsonl.gz", date(2026, 10, 8)),
    ("dt=2026-10-01/dt=2026-10-09/a.jsonl", date(2026, 10, 9)),  # the innermost day folder wins
    ("2026-10-08.jsonl", None),  # a file named after a day is not a day folder
    ("dt=2026-02-30/a.jsonl", None),
    ("export/a.jsonl", None),
])
def test_folder_day(path, day):
    assert folder_day(PurePosixPath(path)) == day


def test_finds_log_files_only(team_folder):
    root, _ = team_folder
    (root / ".cache").mkdir(exist_ok=True)
    (root / ".cache" / "x.jsonl").write_text("{}\n")
    found = {str(f.relative): f.day for f in find_log_files(root)}
    assert found == {"feedback/chargebacks.jsonl": None, "fraud-screen-export.parquet": None,
                     **{f"planner/dt={d}/events-000.jsonl.gz": d for d in (date(2026, 10, 5 + i) for i in range(4))}}


def test_kinds_segments_and_drift_columns(proposed):
    proposal, _ = proposed
    models = {m["id"]: m for m in proposal.config["models"]}
    assert set(models) == {LLM, CLASSIFIER} and proposal.skipped == {}
    llm, fraud = models[LLM], models[CLASSIFIER]
    assert llm["kind"] == "llm" and fraud["kind"] == "classifier"
    # traveller_id is the experiment's unit and session is unique per request: neither is a segment
    assert llm["segments"] == ["metadata.channel", "metadata.market"]
    assert set(fraud["segments"]) == {"features.card_present", "features.merchant_type", "metadata.region"}
    assert llm["drift"]["text"] == ["prompt", "response"]
    assert "features.amount" in fraud["drift"]["features"] and "latency_ms" in fraud["drift"]["features"]
    assert fraud["drift"]["positive_class"] == "fraud"  # the rarer of the two predicted classes
    assert "judge" in llm and "judge" not in fraud


def test_the_teams_experiment_with_its_own_arm_names_and_unit(proposed):
    proposal, _ = proposed
    llm = next(m for m in proposal.config["models"] if m["id"] == LLM)
    [exp] = llm["experiments"]
    assert (exp["id"], exp["control"], exp["treatment"], exp["start"]) == (EXPERIMENT, "incumbent", "ranker_v2", START.isoformat())
    assert exp["split"] == {"ranker_v2": 0.3}
    assert llm["rollback"]["dry_run"] is True and llm["rollback"]["uri"].startswith(DESTINATIONS.routing_uri)
    assert {g["metric"] for g in exp["guardrails"]} == {"latency_p99_ms", "error_rate"}
    assert exp["assignment"] == {"method": "external", "unit": "metadata.traveller_id"}
    assert any("observed treatment share" in n and "ranker_v2" in n for n in proposal.notes)


def test_baseline_window_is_the_first_third_and_the_rest_is_monitored(proposed):
    proposal, _ = proposed
    days = [date(2026, 10, 5 + i) for i in range(4)]
    for model in proposal.config["models"]:
        assert model["baseline"]["window"] == {"start": "2026-10-05", "end": "2026-10-05"}
        assert proposal.baseline_days[model["id"]] == days[:1] and proposal.monitored_days[model["id"]] == days[1:]


def test_baseline_days_given(team_folder):
    root, _ = team_folder
    proposal, _ = read_and_propose(root, 2, QUIET)
    assert all(m["baseline"]["window"] == {"start": "2026-10-05", "end": "2026-10-06"} for m in proposal.config["models"])
    assert [propose.default_baseline_days(n) for n in (1, 2, 3, 5, 6, 9, 30)] == [1, 1, 1, 1, 2, 3, 3]


def test_written_config_loads(proposed, tmp_path):
    proposal, _ = proposed
    path = tmp_path / "proposed.yaml"
    path.write_text(proposal.to_yaml("the team folder"))
    cfg = load_config(path)
    assert {m.id for m in cfg.models} == {LLM, CLASSIFIER}
    assert path.read_text().startswith("# modelwatch config proposed by `modelwatch try`")


def test_day_folders_are_copied_whole_and_an_export_is_split_by_timestamp(team_folder, proposed):
    root, written = team_folder
    _, placed = proposed
    by_file = {str(p.file.relative): p for p in placed}
    planner = by_file["planner/dt=2026-10-06/events-000.jsonl.gz"]
    [(uri, body)] = list(uploads(planner, DESTINATIONS.logs_uri))
    assert uri == f"{DESTINATIONS.logs_uri}/model_id={LLM}/dt=2026-10-06/planner__events-000.jsonl.gz"
    assert body == (root / "planner/dt=2026-10-06/events-000.jsonl.gz").read_bytes()

    export = list(uploads(by_file["fraud-screen-export.parquet"], DESTINATIONS.logs_uri))
    assert [u.rsplit("/", 2)[1] for u, _ in export] == [f"dt={d}" for d in sorted(written[CLASSIFIER])]
    for uri, body in export:
        table = pq.read_table(io.BytesIO(body))
        day = date.fromisoformat(uri.rsplit("/", 2)[1].removeprefix("dt="))
        assert table.num_rows == written[CLASSIFIER][day]
        assert {ts.date() for ts in table.column("timestamp").to_pylist()} == {day}
        assert table.schema == pq.read_schema(root / "fraud-screen-export.parquet")

    labels = by_file["feedback/chargebacks.jsonl"]
    assert labels.rows == 0 and list(uploads(labels, DESTINATIONS.logs_uri)) == []
    assert labels.not_loaded() == ["feedback/chargebacks.jsonl: 1 row not loaded, a label row (labelled_at): `try` loads inference logs only (first at line 1)"]


def test_a_mixed_file_in_a_day_folder_is_split_by_model_with_its_lines_as_they_are(tmp_path):
    rows = [{"model_id": "a", "x": 1}, {"model_id": "b", "x": 2}, {"x": 3}, {"model_id": "a", "x": 4}]
    lines = [json.dumps(r, indent=None) for r in rows]
    folder = tmp_path / "dt=2026-10-06"
    folder.mkdir()
    (folder / "mixed.jsonl").write_text("\n".join(lines[:2]) + "\nnot json\n" + "\n".join(lines[2:]) + "\n")
    from modelwatch.runtime.propose import LogSurvey
    from modelwatch.runtime.try_logs import place_file

    [log_file] = find_log_files(tmp_path)
    placed = place_file(log_file, LogSurvey())
    assert not placed.copied_whole and placed.unreadable == 1
    assert placed.unplaced == Counter({"no 'model_id' (the field naming the model)": 1}) and placed.first_unplaced == {
        "no 'model_id' (the field naming the model)": 4}
    out = {uri.split("model_id=")[1].split("/")[0]: gzip.decompress(body).decode() for uri, body in uploads(placed, "s3://b/logs")}
    assert out == {"a": lines[0] + "\n" + lines[3] + "\n", "b": lines[1] + "\n"}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_nothing_usable_names_the_file_field_and_rename(tmp_path):
    rows = [{"request_id": f"r{i}", "timestamp": "2026-10-05T10:00:00Z", "model_id": "bot", "variant": "production", "status": "ok",
             "latency": 120.0, "input": "hi", "prompt": "hi", "prompt_tokens": 1, "completion_tokens": 2} for i in range(5)]
    _write_jsonl(tmp_path / "bot.jsonl", rows)
    with pytest.raises(TryError) as err:
        read_and_propose(tmp_path, None, QUIET)
    text = str(err.value)
    assert "nothing modelwatch can monitor" in text and "model 'bot'" in text and "bot.jsonl" in text
    assert "field 'latency_ms'" in text and "the logs have 'latency'" in text and "rename it to 'latency_ms'" in text


def test_rows_without_model_or_day_are_named_with_their_first_line(tmp_path):
    _write_jsonl(tmp_path / "a.jsonl", [{"model": "bot", "timestamp": "2026-10-05T10:00:00Z"}])
    _write_jsonl(tmp_path / "b.jsonl", [{"model_id": "bot", "timestamp": "2026-10-05 10:00:00"}])
    with pytest.raises(TryError) as err:
        read_and_propose(tmp_path, None, QUIET)
    text = str(err.value)
    assert "a.jsonl: 1 row: no 'model_id' (the field naming the model) (first at line 1)" in text
    assert "b.jsonl: 1 row: timestamp: no UTC offset in '2026-10-05 10:00:00'" in text


def test_a_model_that_fits_no_kind_is_left_out_with_the_reason(team_folder, tmp_path):
    root, _ = team_folder
    _write_jsonl(tmp_path / "other" / "events.jsonl", [{"model_id": "mystery", "timestamp": "2026-10-05T10:00:00Z", "value": 1}])
    import shutil

    shutil.copytree(root / "planner", tmp_path / "planner")
    proposal, _ = read_and_propose(tmp_path, None, QUIET)
    assert [m["id"] for m in proposal.config["models"]] == [LLM]
    assert "neither 'prompt' (an LLM) nor 'prediction'" in proposal.skipped["'mystery'"]


def test_traffic_text_cannot_break_out_of_a_yaml_comment(team_folder, tmp_path):
    root, _ = team_folder
    rows = [json.loads(line) for line in gzip.decompress((root / "planner/dt=2026-10-05/events-000.jsonl.gz").read_bytes()).splitlines()]
    for r in rows:
        r["variant"] = "arm\u2028models: []" if r["variant"] == "ranker_v2" else "ctl\nx: 1"
    _write_jsonl(tmp_path / "dt=2026-10-05" / "e.jsonl", rows)
    proposal, _ = read_and_propose(tmp_path, None, QUIET)
    text = proposal.to_yaml("folder\nmodels: []")
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert all("\u2028" not in line for line in comments)
    path = tmp_path / "c.yaml"
    path.write_text(text)
    [model] = load_config(path).models
    assert {model.experiments[0].control, model.experiments[0].treatment} == {"arm\u2028models: []", "ctl\nx: 1"}


def test_unit_field_is_the_sticky_repeating_key():
    survey = ExperimentSurvey(arms=Counter({"a": 6, "b": 4}))
    sticky, unique, mixed = UnitStats(), UnitStats(), UnitStats()
    for i in range(300):
        user = f"u{i % 60}"
        arm = team_arm(user)
        sticky.observe(user, arm)
        unique.observe(f"s{i}", arm)
        mixed.observe(f"d{i % 5}", arm)  # a device type: repeats, but in every arm
    survey.units = {"metadata.user": sticky, "metadata.session": unique, "metadata.device": mixed}
    assert unit_field(survey) == "metadata.user"
    survey.units = {"metadata.session": unique, "metadata.device": mixed}
    assert unit_field(survey) == "request_id"


@pytest.mark.parametrize(("share", "split"), [(0.297, 0.3), (0.512, 0.5), (0.57, 0.55), (0.031, 0.03), (0.004, 0.01), (0.999, 0.99)])
def test_rounded_split(share, split):
    assert rounded_split(share) == split


def test_cli_exits_2_naming_the_folder_when_nothing_is_usable(tmp_path, capsys):
    from modelwatch.runtime.cli import main

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "notes.txt").write_text("no logs here\n")
    assert main(["try", str(logs), "--workdir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"modelwatch try: {logs}: no log files found") and not (tmp_path / "w").exists()
    with pytest.raises(SystemExit):
        main(["try", str(tmp_path), "--baseline-days", "0"])
    assert "at least 1" in capsys.readouterr().err


def test_day_line_names_the_outcome_rows_drift_and_decisions():
    from modelwatch.runtime.try_logs import day_line

    summary = {"outcome": "breach", "rows": {"read": 1210, "valid": 1200, "quarantined": 10},
               "drift": {"severity": "medium", "alerts": [{"column": "prompt_tokens"}, {"segment": "metadata.market", "segment_value": "ja-JP",
                                                                                        "column": "prompt"}]},
               "experiments": [{"experiment_id": EXPERIMENT, "decision": "invalid", "reasons": ["sample-ratio mismatch: p = 1e-9"]}],
               "breaches": [{"metric": "error_rate"}]}
    assert day_line(summary) == ("breach; 1,200 valid, 10 quarantined; drift medium (metadata.market=ja-JP, prompt_tokens); "
                                 f"{EXPERIMENT}: invalid (sample-ratio mismatch: p = 1e-9); 1 hard-limit breach")
    assert day_line({"outcome": "no_traffic", "rows": {}, "drift": None}) == "no_traffic; 0 valid, 0 quarantined; drift -"


def test_a_workdir_inside_the_logs_folder_is_refused(team_folder):
    from modelwatch.runtime.try_logs import run_try

    root, _ = team_folder
    with pytest.raises(TryError, match="overlap"):
        run_try(root, root / "try", say=QUIET)
    with pytest.raises(TryError, match="overlap"):
        run_try(root / "planner", root, say=QUIET)
    assert not (root / "try").exists()
