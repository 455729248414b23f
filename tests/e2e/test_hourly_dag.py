"""modelwatch_hourly processes one hour partition of the hourly-monitored models only."""

from datetime import date
from pathlib import Path

from modelwatch.core.partition import Partition
from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic
from modelwatch.storage.s3 import exists, get_json, list_objects

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAY = date(2026, 11, 6)


def test_hourly_run_reads_only_its_hour(airflow_db, s3, isolated_config):
    from airflow.dag_processing.dagbag import DagBag

    cfg = isolated_config
    exp = cfg.model("support-bot-v3").experiments[0]
    generate_traffic(s3, cfg.defaults.logs_uri, cfg.defaults.labels_uri, DAY, 1, llm_rows=2000, classic_rows=300,
                     scenario=Scenario(), plan=ExperimentPlan(exp.id, exp.weights()))
    hour_files = list(list_objects(s3, Partition("support-bot-v3", DAY, 10).path(cfg.defaults.logs_uri)))
    assert len(hour_files) == 1
    dag = DagBag(str(DAGS)).dags["modelwatch_hourly"]
    run = dag.test(run_conf={"target_date": DAY.isoformat(), "target_hour": 10, "models": []})
    assert run.state == "success"
    summary = get_json(s3, f"{Partition('support-bot-v3', DAY, 10).path(cfg.defaults.reports_uri)}/summary.json")
    assert summary["partition"] == {"model_id": "support-bot-v3", "dt": DAY.isoformat(), "hour": 10}
    assert [f["uri"] for f in summary["files"]] == [hour_files[0][0]]
    assert summary["rows"]["read"] == summary["rows"]["valid"] > 50
    assert summary["metrics"]["__all__"]["throughput_rps"] == summary["rows"]["valid"] / 3600
    assert not exists(s3, f"{Partition('churn-classifier-v2', DAY, 10).path(cfg.defaults.reports_uri)}/summary.json")
