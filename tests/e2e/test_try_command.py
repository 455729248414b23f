"""`modelwatch try DIR` end to end: a travel team's own folder (its own router, arm names, fields and layout) through
the embedded Airflow: the proposed config, the baselines, the daily summaries and the report pages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from modelwatch.config import load_config
from modelwatch.core.partition import Partition
from modelwatch.runtime.cli import main
from modelwatch.runtime.try_logs import BUCKET, DESTINATIONS
from modelwatch.storage.s3 import ensure_bucket, get_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from team_logs import CLASSIFIER, EXPERIMENT, LLM, START, write_team_folder  # noqa: E402

pytestmark = [pytest.mark.scheduler, pytest.mark.timeout(1800)]  # an Airflow start, two baselines and two days: ~6 min on 2 idle cores, more under load


def test_try_on_a_teams_folder(s3_server, s3, tmp_path, capsys):
    folder, workdir, config_out = tmp_path / "team-logs", tmp_path / "try", tmp_path / "proposed.yaml"
    written = write_team_folder(folder, days=3, llm_rows=240, classifier_rows=240)
    ensure_bucket(s3, BUCKET)

    code = main(["try", str(folder), "--workdir", str(workdir), "--config-out", str(config_out), "--s3-endpoint", s3_server.endpoint])
    out = capsys.readouterr().out
    assert code == 0, out[-4000:]

    cfg = load_config(config_out)
    llm, fraud = cfg.model(LLM), cfg.model(CLASSIFIER)
    assert (llm.kind, fraud.kind) == ("llm", "classifier")
    assert llm.segments == ["metadata.channel", "metadata.market"] and "metadata.region" in fraud.segments
    [exp] = llm.experiments
    assert (exp.id, exp.control, exp.treatment, exp.split, exp.start) == (EXPERIMENT, "incumbent", "ranker_v2", {"ranker_v2": 0.3}, START.isoformat())
    assert exp.assignment.method == "external" and exp.assignment.unit == "metadata.traveller_id"

    baseline_day, *monitored = sorted(written[LLM])
    version = f"{baseline_day}_{baseline_day}"
    for model in (llm, fraud):
        manifest = get_json(s3, f"{DESTINATIONS.reports_uri}/_baselines/model_id={model.id}/version={version}/manifest.json")
        assert manifest["rows_used"] > 0 and manifest["window"] == {"start": str(baseline_day), "end": str(baseline_day)}, manifest
    assert get_json(s3, f"{DESTINATIONS.reports_uri}/_baselines/model_id={CLASSIFIER}/version={version}/manifest.json")["rows_used"] == \
        written[CLASSIFIER][baseline_day]

    for model_id in (LLM, CLASSIFIER):
        for day in monitored:
            summary = get_json(s3, f"{Partition(model_id, day).path(DESTINATIONS.reports_uri)}/summary.json")
            assert summary["rows"] == {"read": written[model_id][day], "valid": written[model_id][day], "quarantined": 0}, summary["rows"]
            assert summary["drift"]["outcome"] != "no_baseline" and summary["drift"]["baseline_version"] == version
            assert (workdir / "reports" / f"model_id={model_id}" / f"dt={day}" / "index.html").is_file()
            assert f"{model_id:<24} {day}  " in out
    last = get_json(s3, f"{Partition(LLM, monitored[-1]).path(DESTINATIONS.reports_uri)}/summary.json")
    [decision] = last["experiments"]
    assert decision["experiment_id"] == EXPERIMENT and decision["decision"]
    assert not any("assignment.assign gives" in r for r in decision.get("reasons", [])), "the team's own router is not held to modelwatch's hash"
    assert f"report site (open in a browser): {workdir / 'reports' / 'index.html'}" in out
    assert (workdir / "reports" / "index.html").is_file()
    assert "proposed config written to" in out and "baseline runs:" in out and f"day 2/{len(monitored)}" in out
