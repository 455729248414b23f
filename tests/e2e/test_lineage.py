"""With the OpenLineage provider configured (file transport), a daily run emits lineage from the log days it read to the
reports it wrote, as OpenLineage S3 datasets, and none of modelwatch's intermediate data."""

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from modelwatch.core.partition import Partition
from modelwatch.runtime.generate import generate_traffic

DAY = date(2026, 11, 4)
ROOT = Path(__file__).resolve().parents[2]
RUN = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[3]]
from airflow.dag_processing.dagbag import DagBag
run = DagBag(sys.argv[1]).dags["modelwatch_daily"].test(run_conf={"target_date": sys.argv[2], "models": ["support-bot-v3"]})
print("STATE", run.state)
"""


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_daily_run_emits_lineage_from_log_days_to_reports(airflow_db, s3, isolated_config, tmp_path):
    cfg = isolated_config
    generate_traffic(s3, cfg.defaults.logs_uri, cfg.defaults.labels_uri, DAY, 1, llm_rows=300, classic_model=None)
    events_file = tmp_path / "openlineage.jsonl"
    env = {**os.environ, "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events_file), "append": True}),
           "AIRFLOW__OPENLINEAGE__NAMESPACE": "modelwatch-test"}
    done = subprocess.run([sys.executable, "-c", RUN, str(ROOT / "dags"), DAY.isoformat(), str(ROOT / "plugins")], env=env, capture_output=True, text=True, timeout=900)
    assert "STATE success" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]

    complete = [e for e in _events(events_file) if e["eventType"] == "COMPLETE" and e["job"]["name"].startswith("modelwatch_daily.")]
    by_task = {e["job"]["name"].removeprefix("modelwatch_daily."): e for e in complete}
    bucket, logs = cfg.defaults.logs_uri[5:].split("/", 1)
    reports_bucket, reports = cfg.defaults.reports_uri[5:].split("/", 1)
    day = Partition("support-bot-v3", DAY)

    def names(task: str, side: str) -> set[tuple[str, str]]:
        return {(d["namespace"], d["name"]) for d in by_task[task][side]}

    assert (f"s3://{bucket}", f"{logs}/{day.label}") in names("check_shard", "inputs")  # the log day, not each hour file
    published = names("monitor.publish", "outputs")
    for file in ("summary.json", "index.html"):
        assert (f"s3://{reports_bucket}", f"{reports}/{day.label}/{file}") in published
    assert (f"s3://{reports_bucket}", f"{reports}/{day.label}/drift.json") in names("monitor.drift", "outputs")
    everything = {name for e in complete for side in ("inputs", "outputs") for _, name in ((d["namespace"], d["name"]) for d in e[side])}
    assert not [n for n in everything if any(f"/{p}" in f"/{n}" for p in ("_work/", "_tmp/", "_cache/"))]
