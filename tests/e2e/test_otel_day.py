"""A day of OpenTelemetry GenAI spans (SDK-made, exported as the Collector's awss3exporter writes them) through modelwatch_daily,
with the same results as the same requests written as log lines."""

import gzip
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from modelwatch.config import load_config
from modelwatch.core.partition import Partition
from modelwatch.ingest.stage import plan_shards
from modelwatch.runner import check_shard
from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic
from modelwatch.storage.s3 import delete_prefix, get_bytes, get_json, get_table, list_objects, put_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from otel_spans import SpanMaker, chat_attributes, export_bytes, export_key  # noqa: E402

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAY = date(2026, 11, 3)
MODEL = "support-bot-v3"
SERVED = "gpt-support-3"  # the model name the service's spans carry
PRICE = {"input": 1.5, "output": 6.0}  # USD per million tokens
SPAN_FIELDS = ("request_id", "timestamp", "model_id", "variant", "experiment_id", "status", "latency_ms", "prompt", "response", "prompt_tokens",
               "completion_tokens", "cost_usd", "metadata")


@pytest.fixture(scope="module")
def daily_dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS)).dags["modelwatch_daily"]


def span_requests(s3, cfg) -> list[dict]:
    """A generated day's LLM rows, kept to what a span carries, with the cost the price table gives."""
    exp = cfg.model(MODEL).experiments[0]
    generate_traffic(s3, cfg.defaults.logs_uri, cfg.defaults.labels_uri, DAY, 1, scenario=Scenario(), llm_rows=500, classic_rows=0,
                     plan=ExperimentPlan(exp.id, exp.weights()))
    prefix = Partition(MODEL, DAY).path(cfg.defaults.logs_uri)
    rows = []
    for uri, _ in list_objects(s3, prefix):
        data = get_bytes(s3, uri)
        rows += [json.loads(line) for line in (gzip.decompress(data) if uri.endswith(".gz") else data).splitlines() if line.strip()]
    delete_prefix(s3, prefix)
    kept = []
    for row in rows:
        row = {k: row.get(k) for k in SPAN_FIELDS}
        row["cost_usd"] = (row["prompt_tokens"] * PRICE["input"] + row["completion_tokens"] * PRICE["output"]) / 1e6
        kept.append({k: v for k, v in row.items() if v is not None})
    return kept


def write_log_lines(s3, cfg, rows: list[dict]) -> None:
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    put_bytes(s3, f"{Partition(MODEL, DAY).path(cfg.defaults.logs_uri)}/part-00000.jsonl.gz", gzip.compress(body))


def _at(row: dict) -> datetime:
    return datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).astimezone(UTC)


def _attributes(row: dict) -> dict:
    attrs = chat_attributes(SERVED, row["prompt"], row.get("response"), row["prompt_tokens"], row["completion_tokens"])
    attrs |= {"app.request_id": row["request_id"], "app.variant": row["variant"]}
    attrs |= {f"app.{k}": v for k, v in row["metadata"].items()}
    if row.get("experiment_id"):
        attrs |= {"feature_flag.key": row["experiment_id"], "feature_flag.result.variant": row["variant"]}
    if row["status"] in ("error", "timeout"):
        attrs["error.type"] = "TimeoutError" if row["status"] == "timeout" else "openai.InternalServerError"
    if row["status"] == "refused_by_filter":
        attrs["gen_ai.response.finish_reasons"] = ["content_filter"]
    return attrs


def write_exports(s3, uri: str, rows: list[dict]) -> int:
    """The rows as chat spans (under an HTTP server span each), exported a minute after they start, one gzipped OTLP/JSON file per minute."""
    by_minute: dict[datetime, list[dict]] = {}
    for row in rows:
        by_minute.setdefault(_at(row).replace(second=0, microsecond=0) + timedelta(minutes=1), []).append(row)
    maker = SpanMaker(service="support-bot")
    for n, (written, minute_rows) in enumerate(sorted(by_minute.items())):
        for row in minute_rows:
            maker.span("POST /v1/answer", _at(row), row["latency_ms"] + 2, {"http.request.method": "POST", "http.route": "/v1/answer"})
            maker.span(f"chat {SERVED}", _at(row), row["latency_ms"], _attributes(row), error=row["status"] in ("error", "timeout"))
        put_bytes(s3, export_key(uri, written, n, gzipped=True), export_bytes(maker.finished(), gzipped=True))
    return len(by_minute)


def results(s3, cfg) -> tuple[dict, list[dict]]:
    base = Partition(MODEL, DAY).path(cfg.defaults.reports_uri)
    s = get_json(s3, f"{base}/summary.json")
    s.pop("run")
    files = s.pop("files")  # where the rows came from: one log file, or the day's exports
    assert sum(f["rows_read"] for f in files) == s["rows"]["read"]
    return s, get_table(s3, f"{base}/metrics.parquet").to_pylist()


def test_an_otel_day_gives_the_results_of_the_same_requests_as_log_lines(airflow_db, s3, isolated_config, daily_dag, tmp_path):
    cfg = isolated_config
    path = tmp_path / "modelwatch.yaml"  # the config isolated_config points MODELWATCH_CONFIG at
    data = yaml.safe_load(path.read_text())
    model = next(m for m in data["models"] if m["id"] == MODEL)
    model["experiments"][0]["assignment"] = "external"  # the arms come from the spans' feature flags
    model["drift"]["embedding_sample"] = 300
    path.write_text(yaml.safe_dump(data))

    rows = span_requests(s3, cfg)
    rows.append({**rows[0], "request_id": "last-of-the-day", "timestamp": f"{DAY.isoformat()}T23:59:59.500Z"})  # exported after midnight
    write_log_lines(s3, cfg, rows)
    assert daily_dag.test(run_conf={"target_date": DAY.isoformat(), "models": [MODEL]}).state == "success"
    from_logs = results(s3, cfg)
    assert from_logs[0]["rows"] == {"read": len(rows), "valid": len(rows), "quarantined": 0}

    otel_uri = cfg.defaults.logs_uri.rsplit("/", 1)[0] + "/otel-traces"
    files = write_exports(s3, otel_uri, rows)
    model["source"] = {"otel": {"uri": otel_uri, "compression": "gzip", "models": [SERVED], "prices": {SERVED: PRICE},
                                "request_id_attribute": "app.request_id", "variant_attribute": "app.variant",
                                "metadata": {k: f"app.{k}" for k in ("topic", "locale", "user_tier", "shadow_of")}}}
    path.write_text(yaml.safe_dump(data))
    delete_prefix(s3, Partition(MODEL, DAY).path(cfg.defaults.logs_uri))  # no log lines left: the day is read from the exports alone
    run = daily_dag.test(run_conf={"target_date": DAY.isoformat(), "models": [MODEL]})
    assert run.state == "success"
    from_spans = results(s3, cfg)

    otel_cfg = load_config(path)
    shards = plan_shards(s3, otel_cfg, Partition(MODEL, DAY))
    listed = [uri for shard in shards for uri, _ in shard["files"]]
    assert len(listed) == files and "/day=04/hour=00/minute=00/" in listed[-1]  # the day's exports, the last one written after midnight
    read = [f for shard in shards for f in check_shard(s3, otel_cfg, shard)["files"]]
    skipped = sum(f.get("skipped", {}).get("not a GenAI span", 0) for f in read)
    assert skipped == len(rows) and all(f["problem"] is None for f in read)  # the HTTP server spans, one per request
    assert from_spans[1] == from_logs[1], "the same metrics"
    assert from_spans[0] == from_logs[0], "the same summary: counts, metrics, segments, drift, judge, experiments"
