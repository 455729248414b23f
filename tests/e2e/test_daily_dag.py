"""modelwatch_daily end to end with dag.test() against the real S3-compatible server."""

import re
from datetime import date
from pathlib import Path

import pytest
from modelwatch.core.partition import Partition
from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic
from modelwatch.storage.s3 import exists, get_json, get_table, list_objects

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAY = date(2026, 11, 3)


@pytest.fixture(scope="module")
def daily_dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS)).dags["modelwatch_daily"]


def run_day(dag, day: date, **conf):
    return dag.test(run_conf={"target_date": day.isoformat(), "models": [], **conf})


def write(s3, cfg, day, scenario=None, llm_rows=1200, classic_rows=400):
    exp = cfg.model("support-bot-v3").experiments[0]
    return generate_traffic(s3, cfg.defaults.logs_uri, cfg.defaults.labels_uri, day, 1, scenario=scenario or Scenario(),
                            llm_rows=llm_rows, classic_rows=classic_rows, plan=ExperimentPlan(exp.id, exp.weights()))


def summary(s3, cfg, model_id, day):
    return get_json(s3, f"{Partition(model_id, day).path(cfg.defaults.reports_uri)}/summary.json")


def loud_lines(captured) -> list[str]:
    """Lines of a run's output an operator would read as errors.

    dag.test() runs tasks in this process: their log lines go to stdout and what they write to stderr stays raw,
    where a deployed task's supervisor logs every stderr line at error level.
    """
    logged = [line for line in captured.out.splitlines() if re.search(r"\[(error|critical) *\]|Traceback", line)]
    return logged + [f"stderr: {line}" for line in captured.err.splitlines() if line.strip()]


def test_clean_day(airflow_db, s3, isolated_config, daily_dag, capfd, monkeypatch):
    from modelwatch.embeddings import onnx_backend, torch_backend

    cfg = isolated_config
    written = write(s3, cfg, DAY)
    for module, loaded in ((onnx_backend, "_SESSION"), (onnx_backend, "_TOKENIZER"), (torch_backend, "_MODEL")):
        monkeypatch.setattr(module, loaded, None)  # the run loads the embedding model itself, as a fresh worker does
    capfd.readouterr()
    run = run_day(daily_dag, DAY)
    assert run.state == "success"
    assert loud_lines(capfd.readouterr()) == [], "a clean day logs nothing at error level"
    for model_id, n in written.items():
        s = summary(s3, cfg, model_id, DAY)
        assert s["outcome"] == "ok"
        assert s["rows"] == {"read": n, "valid": n, "quarantined": 0}
        assert s["metrics"]["__all__"]["requests"] == n
        base = Partition(model_id, DAY).path(cfg.defaults.reports_uri)
        metrics = get_table(s3, f"{base}/metrics.parquet").to_pandas()
        assert set(metrics.model_id) == {model_id} and (metrics.dt == DAY.isoformat()).all()
        assert exists(s3, f"{base}/index.html")
    llm = summary(s3, cfg, "support-bot-v3", DAY)
    assert set(llm["metrics"]) == {"__all__", "control", "treatment"}
    assert llm["hard_limits"][0]["state"] == "ok" and llm["breaches"] == []
    assert {s["segment"] for s in llm["segments"]} == {"metadata.topic", "metadata.locale"}


def test_rerun_gives_identical_outputs(airflow_db, s3, isolated_config, daily_dag):
    cfg = isolated_config
    write(s3, cfg, DAY, llm_rows=600, classic_rows=200)
    base = Partition("support-bot-v3", DAY).path(cfg.defaults.reports_uri)

    def outputs():
        s = summary(s3, cfg, "support-bot-v3", DAY)
        s.pop("run")
        metrics = s3.get_object(Bucket=base.split("/")[2], Key=base.split("/", 3)[3] + "/metrics.parquet")["Body"].read()
        return s, metrics, sorted(u for u, _ in list_objects(s3, cfg.defaults.reports_uri))

    assert run_day(daily_dag, DAY, models=["support-bot-v3"]).state == "success"
    first = outputs()
    assert run_day(daily_dag, DAY, models=["support-bot-v3"]).state == "success"
    assert outputs() == first


def test_empty_day_is_a_clean_no_traffic_outcome(airflow_db, s3, isolated_config, daily_dag):
    cfg = isolated_config
    run = run_day(daily_dag, date(2026, 11, 20))
    assert run.state == "success"
    for model_id in cfg.models_for("daily"):
        s = summary(s3, cfg, model_id, date(2026, 11, 20))
        assert s["outcome"] == "no_traffic" and s["rows"] == {"read": 0, "valid": 0, "quarantined": 0}


def test_broken_rows_are_quarantined_and_counted(airflow_db, s3, isolated_config, daily_dag):
    cfg = isolated_config
    written = write(s3, cfg, DAY, Scenario(broken_rows_on={DAY: 24}))
    assert run_day(daily_dag, DAY).state == "success"
    s = summary(s3, cfg, "support-bot-v3", DAY)
    assert s["rows"]["read"] == written["support-bot-v3"] == 1224
    assert s["rows"]["quarantined"] == 24 and s["rows"]["valid"] == 1200
    quarantine = get_table(s3, s["validation"]["quarantine_uri"]).to_pylist()
    assert len(quarantine) == 24 and all(q["reasons"] for q in quarantine)
    assert {q["stage"] for q in quarantine} == {"read", "validate"}
    assert all(q["_source"].endswith("part-broken.jsonl") for q in quarantine)
    reasons = " | ".join(q["reasons"] for q in quarantine)
    for expected in ("latency_ms must be within", "variant must be one of", "status is required", "latency_ms: expected number",
                     "not valid JSON", "timestamp inside the partition", "not UTF-8", "status must be one of"):
        assert expected in reasons


def test_too_many_broken_rows_fail_the_run_after_quarantining(airflow_db, s3, isolated_config, daily_dag, capfd):
    cfg = isolated_config
    write(s3, cfg, DAY, Scenario(broken_rows_on={DAY: 200}), llm_rows=800)
    capfd.readouterr()
    run = run_day(daily_dag, DAY, models=["support-bot-v3"])
    assert run.state == "failed"
    assert any("[error" in line for line in loud_lines(capfd.readouterr())), "a real failure does log at error level"
    quarantine = get_table(s3, f"{Partition('support-bot-v3', DAY).path(cfg.defaults.reports_uri + '/_quarantine')}/quarantine.parquet")
    assert quarantine.num_rows == 200
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["monitor.validate"] == "failed" and states["monitor.publish"] == "upstream_failed"


def test_breach_day_emits_the_guardrail_breach_asset_event(airflow_db, s3, isolated_config, daily_dag):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    cfg = isolated_config
    write(s3, cfg, DAY, Scenario(regression="errors", regression_from=DAY), llm_rows=3000)
    run = run_day(daily_dag, DAY, models=["support-bot-v3"])
    assert run.state == "success"
    s = summary(s3, cfg, "support-bot-v3", DAY)
    assert s["outcome"] == "breach" and s["breaches"][0]["metric"] == "error_rate"
    with create_session() as session:
        events = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.name == "guardrail_breach",
                                                                                          AssetEvent.source_run_id == run.run_id)
        ).all()
        extras = [e.extra for e in events]
    assert len(extras) == 1
    [b] = extras[0]["breaches"]
    assert b["experiment_id"] == "exp-042" and b["value"] > 0.02 and b["routing_uri"] == cfg.model("support-bot-v3").rollback.uri


def test_a_day_split_into_shards_gives_the_same_results_as_one_shard(airflow_db, s3, isolated_config, daily_dag, tmp_path):
    """defaults.shard_bytes below the files' size fans the day out (one check_shard task per file) and the reduce merges it back."""
    import gzip
    import json

    import yaml
    from modelwatch.storage.s3 import get_bytes, put_bytes

    cfg = isolated_config
    write(s3, cfg, DAY, Scenario(broken_rows_on={DAY: 24}), llm_rows=900, classic_rows=300)
    prefix = Partition("support-bot-v3", DAY).path(cfg.defaults.logs_uri)
    files = sorted((u, n) for u, n in list_objects(s3, prefix))
    first = next(u for u, _ in files if u.endswith(".gz"))
    repeated = gzip.decompress(get_bytes(s3, first)).split(b"\n")[0]
    put_bytes(s3, f"{prefix}/zz-replayed.jsonl", repeated + b"\n")  # a request logged twice, in two files: the later copy is quarantined
    base = Partition("support-bot-v3", DAY).path(cfg.defaults.reports_uri)

    def results():
        s = summary(s3, cfg, "support-bot-v3", DAY)
        s.pop("run")
        quarantine = get_table(s3, s["validation"]["quarantine_uri"]).drop_columns(["_row_id"]).to_pylist()
        return s, quarantine, get_bytes(s3, f"{base}/metrics.parquet")

    assert run_day(daily_dag, DAY, models=["support-bot-v3"]).state == "success"
    whole = results()
    assert whole[0]["rows"]["quarantined"] == 25 and any("duplicate request_id" in q["reasons"] for q in whole[1])

    path = tmp_path / "modelwatch.yaml"  # the config isolated_config points MODELWATCH_CONFIG at
    data = yaml.safe_load(path.read_text())
    data["defaults"]["shard_bytes"] = min(n for _, n in files if n)
    path.write_text(yaml.safe_dump(data))
    run = run_day(daily_dag, DAY, models=["support-bot-v3"])
    assert run.state == "success"
    shards = [ti for ti in run.get_task_instances() if ti.task_id == "check_shard"]
    assert len(shards) == len(files) + 1 and {ti.state for ti in shards} == {"success"}
    split = results()
    assert split[0] == whole[0], "the same summary: counts, failures, examples, metrics, drift, judge, experiments"
    assert split[1] == whole[1] and split[2] == whole[2]
    dup = next(q for q in split[1] if "duplicate request_id" in q["reasons"])
    assert dup["_source"].endswith("zz-replayed.jsonl") and first in dup["reasons"], json.dumps(dup)[:300]
