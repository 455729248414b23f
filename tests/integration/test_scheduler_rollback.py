"""With a real scheduler, a breach day makes modelwatch_rollback run by itself (asset-triggered)."""

import json
from datetime import date

import pytest
from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic
from modelwatch.storage.s3 import get_json, list_objects

DAY = date(2026, 11, 8)


@pytest.mark.scheduler
def test_breach_triggers_rollback_through_the_scheduler(s3, scheduler_config, local_airflow):
    cfg = scheduler_config
    llm = cfg.model("support-bot-v3")
    exp = llm.experiments[0]
    generate_traffic(s3, cfg.defaults.logs_uri, cfg.defaults.labels_uri, DAY, 1, classic_model=None, llm_rows=3000,
                     scenario=Scenario(regression="errors", regression_from=DAY), plan=ExperimentPlan(exp.id, exp.weights()))
    airflow = local_airflow
    airflow.wait_for_dags(["modelwatch_daily", "modelwatch_rollback"])
    airflow.cli("dags", "unpause", "modelwatch_rollback")
    airflow.cli("dags", "unpause", "modelwatch_daily")
    earlier = {run[0] for run in airflow.runs("modelwatch_rollback")}  # the session's Airflow may have run it already (fire drill)
    airflow.cli("dags", "trigger", "modelwatch_daily", "--run-id", "breach-day",
                "--conf", json.dumps({"target_date": DAY.isoformat(), "models": [llm.id]}))
    [daily] = airflow.wait_for_runs("modelwatch_daily", 1, timeout=600, where=lambda r: r[0] == "breach-day")
    assert daily[1] == "success", f"logs under {airflow.home}"
    [rollback] = airflow.wait_for_runs("modelwatch_rollback", 1, timeout=180, where=lambda r: r[0] not in earlier)
    assert rollback[1] == "success", f"logs under {airflow.home}"
    [(run_type,)] = airflow.query("select run_type from dag_run where dag_id = 'modelwatch_rollback' and run_id = ?", (rollback[0],))
    assert run_type == "asset_triggered"
    routing = get_json(s3, llm.rollback.uri)
    assert routing["experiments"][exp.id]["state"] == "rolled_back"
    assert routing["experiments"][exp.id]["weights"] == {exp.control: 1.0, exp.treatment: 0.0}
    audits = [u for u, _ in list_objects(s3, f"{cfg.defaults.reports_uri}/_audit/rollbacks") if not u.endswith(".claim.json")]
    assert len(audits) == 1
