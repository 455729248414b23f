"""OpenTelemetry GenAI spans (made with the SDK, serialized as the Collector writes them) read as log rows by ``ingest.otel``."""

import gzip
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from modelwatch.config import parse_config
from modelwatch.core.partition import Partition
from modelwatch.ingest.otel import export_time, list_exports, open_export
from modelwatch.ingest.readers import batch_tables

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from otel_spans import SpanMaker, chat_attributes, export_bytes, export_key  # noqa: E402

DAY = date(2026, 11, 3)
NOON = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
PREFIX = "s3://otel-archive/traces"


def config(**source):
    return parse_config({"models": [{
        "id": "support-bot-v3", "kind": "llm",
        "experiments": [{"id": "exp-042", "split": {"treatment": 0.1}, "assignment": "external"}],
        "source": {"otel": {"uri": PREFIX, "models": ["gpt-support-3"], "prices": {"gpt-support-3": {"input": 2.0, "output": 8.0}},
                            "request_id_attribute": "app.request_id", "metadata": {"topic": "app.topic", "region": "cloud.region"}, **source}},
    }]})


def read(cfg, data, key, partition=Partition("support-bot-v3", DAY)):
    stream = open_export(data, key, cfg.model("support-bot-v3"), cfg.model("support-bot-v3").source.otel, partition)
    batches = list(stream.batches)
    rows = [r for b in batches for r in batch_tables(b, 0)[0].to_pylist()]
    rejects = [r for b in batches for r in b.rejects]
    return stream, rows, rejects


def chat(maker, request_id, at=NOON, current=True, **extra):
    attrs = chat_attributes("gpt-support-3", f"how do I reset {request_id}?", f"answer {request_id}", 12, 30, current=current)
    maker.span("chat gpt-support-3", at, 840.5, {**attrs, "app.request_id": request_id, "app.topic": "billing", **extra})


@pytest.mark.parametrize("marshaler", ["otlp_json", "otlp_proto"])
@pytest.mark.parametrize("gzipped", [False, True])
def test_current_and_older_convention_names_map_to_the_same_row(marshaler, gzipped):
    cfg = config(marshaler=marshaler, compression="gzip" if gzipped else "none")
    maker = SpanMaker(**{"cloud.region": "eu-west-1"})
    chat(maker, "r-new", current=True)
    chat(maker, "r-old", current=False)
    key = export_key(PREFIX, NOON, 1, marshaler, gzipped)
    stream, rows, rejects = read(cfg, export_bytes(maker.finished(), marshaler, gzipped), key)
    assert stream.problem is None and not stream.damaged and rejects == [] and stream.skipped == {}
    assert stream.fmt == marshaler + (".gz" if gzipped else "")
    by_id = {r["request_id"]: r for r in rows}
    for rid in ("r-new", "r-old"):
        row = by_id[rid]
        assert row["prompt"] == f"how do I reset {rid}?" and row["response"] == f"answer {rid}"
        assert (row["prompt_tokens"], row["completion_tokens"]) == (12, 30)
        assert row["cost_usd"] == pytest.approx((12 * 2.0 + 30 * 8.0) / 1e6)
        assert row["latency_ms"] == pytest.approx(840.5)
        assert row["timestamp"] == NOON.replace(tzinfo=None) or row["timestamp"].astimezone(UTC) == NOON
        assert (row["status"], row["variant"], row["model_id"]) == ("ok", "production", "support-bot-v3")
        assert json.loads(row["metadata"]) == {"topic": "billing", "region": "eu-west-1"}  # a span attribute and a resource attribute
    assert [r["_line"] for r in rows] == [1, 2]


def test_events_and_indexed_attributes_of_older_instrumentations_give_the_texts():
    cfg = config()
    maker = SpanMaker()
    base = {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-support-3", "gen_ai.usage.prompt_tokens": 5, "gen_ai.usage.completion_tokens": 7}
    maker.span("chat", NOON, 10, {**base, "app.request_id": "events"},
               events=[("gen_ai.system.message", {"content": "be brief"}), ("gen_ai.user.message", {"content": "hi there"}),
                       ("gen_ai.choice", {"index": 0, "finish_reason": "stop", "message": json.dumps({"content": "hello"})})])
    maker.span("chat", NOON, 10, {**base, "app.request_id": "content-events"},
               events=[("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps([{"role": "user", "content": "q?"}])}),
                       ("gen_ai.content.completion", {"gen_ai.completion": json.dumps([{"role": "assistant", "content": "a."}])})])
    maker.span("chat", NOON, 10, {**base, "app.request_id": "openllmetry", "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "indexed?",
                                  "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "indexed."})
    _, rows, rejects = read(cfg, export_bytes(maker.finished()), export_key(PREFIX, NOON, 2))
    assert rejects == []
    texts = {r["request_id"]: (r["prompt"], r["response"]) for r in rows}
    assert texts == {"events": ("hi there", "hello"), "content-events": ("q?", "a."), "openllmetry": ("indexed?", "indexed.")}


def test_spans_that_are_no_model_request_are_counted_and_skipped():
    cfg = config()
    maker = SpanMaker()
    chat(maker, "kept")
    maker.span("GET /v1/answer", NOON, 900, {"http.request.method": "GET", "http.route": "/v1/answer"})
    maker.span("embeddings", NOON, 20, {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": "gpt-support-3"})
    maker.span("execute_tool lookup", NOON, 20, {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"})
    other = chat_attributes("other-model", "p", "r", 1, 1)
    maker.span("chat other-model", NOON, 20, other)
    stream, rows, rejects = read(cfg, export_bytes(maker.finished()), export_key(PREFIX, NOON, 3))
    assert [r["request_id"] for r in rows] == ["kept"] and rejects == []
    assert stream.skipped == {"not a GenAI span": 1, "GenAI operation 'embeddings' is not a model request": 1,
                              "GenAI operation 'execute_tool' is not a model request": 1, "another model's span": 1}


def test_arms_come_from_the_feature_flag_or_a_configured_attribute():
    maker = SpanMaker()
    chat(maker, "flagged", **{"feature_flag.key": "exp-042", "feature_flag.result.variant": "treatment"})
    chat(maker, "old-flag", **{"feature_flag.key": "exp-042", "feature_flag.variant": "control"})
    chat(maker, "plain")
    chat(maker, "attr", **{"app.arm": "treatment"})
    chat(maker, "no-variant", **{"feature_flag.key": "exp-042"})
    data = export_bytes(maker.finished())
    _, rows, _ = read(config(), data, export_key(PREFIX, NOON, 4))
    arms = {r["request_id"]: (r["variant"], r["experiment_id"]) for r in rows}
    assert arms == {"flagged": ("treatment", "exp-042"), "old-flag": ("control", "exp-042"), "plain": ("production", None), "attr": ("production", None),
                    "no-variant": (None, "exp-042")}  # no variant: the validator quarantines the row
    _, rows, _ = read(config(variant_attribute="app.arm"), data, export_key(PREFIX, NOON, 4))
    assert {r["request_id"]: r["variant"] for r in rows}["attr"] == "treatment"
    assert {r["request_id"]: r["experiment_id"] for r in rows}["attr"] == "exp-042"


def test_error_timeout_and_content_filter_statuses():
    maker = SpanMaker()
    chat(maker, "failed", **{"error.type": "openai.APIError"})
    maker.span("chat", NOON, 30_000, {**chat_attributes("gpt-support-3", "slow?", None, 3, 0), "app.request_id": "slow", "error.type": "TimeoutError"},
               error=True)
    chat(maker, "filtered", **{"gen_ai.response.finish_reasons": ["content_filter"]})
    _, rows, _ = read(config(), export_bytes(maker.finished()), export_key(PREFIX, NOON, 5))
    assert {r["request_id"]: r["status"] for r in rows} == {"failed": "error", "slow": "timeout", "filtered": "refused_by_filter"}


def test_unreadable_messages_are_a_read_reject_with_the_reason_and_position():
    maker = SpanMaker()
    chat(maker, "fine")
    chat(maker, "bad", **{"gen_ai.input.messages": json.dumps({"not": "messages"}) + "x"})
    chat(maker, "numbers", **{"gen_ai.input.messages": "[1, 2]"})
    chat(maker, "scalar", **{"gen_ai.input.messages": "42"})
    stream, rows, rejects = read(config(), export_bytes(maker.finished()), export_key(PREFIX, NOON, 6))
    assert [r["request_id"] for r in rows] == ["fine", "bad", "scalar"]  # text that is no JSON list or object is the prompt's plain text
    assert rows[1]["prompt"] == json.dumps({"not": "messages"}) + "x" and rows[2]["prompt"] == "42"
    assert [(r["_line"], r["reasons"]) for r in rejects] == [(3, "gen_ai.input.messages must be a list of messages (role and parts), got list")]
    assert "app.request_id" in rejects[0]["raw"]


def test_a_span_without_tokens_reaches_the_validator_without_them():
    """Missing contract fields are left out, so the validator quarantines the row with its required-field reason."""
    maker = SpanMaker()
    attrs = {k: v for k, v in chat_attributes("gpt-support-3", "p", "r", 1, 1).items() if "usage" not in k}
    maker.span("chat", NOON, 10, {**attrs, "app.request_id": "no-tokens"})
    _, rows, _ = read(config(), export_bytes(maker.finished()), export_key(PREFIX, NOON, 7))
    assert rows[0]["prompt_tokens"] is None and rows[0]["completion_tokens"] is None and rows[0]["cost_usd"] is None


@pytest.mark.parametrize("marshaler", ["otlp_json", "otlp_proto"])
def test_a_damaged_export_is_the_files_problem_with_the_position_and_a_reject(marshaler):
    maker = SpanMaker()
    for i in range(40):
        chat(maker, f"r{i}")
    spans = maker.finished()
    whole = export_bytes(spans[:20], marshaler) + export_bytes(spans[20:], marshaler) if marshaler == "otlp_proto" else export_bytes(spans, marshaler)
    cut = gzip.compress(whole)[: len(gzip.compress(whole)) * 3 // 4]
    key = export_key(PREFIX, NOON, 8, marshaler, gzipped=True)
    stream, rows, rejects = read(config(marshaler=marshaler, compression="gzip"), cut, key)
    assert stream.damaged and stream.problem.startswith(key) and "gzip stream is truncated" in stream.problem
    assert len(rejects) == 1 and rejects[0]["reasons"] == "spans lost to the damaged export file"
    if marshaler == "otlp_proto":  # whole resource spans before the damage are kept (two exports concatenated: two ResourceSpans)
        assert "OTLP protobuf damaged at byte" in stream.problem and len(rows) == 20 and rejects[0]["_line"] == 21
    else:
        assert "not valid OTLP/JSON" in stream.problem and "at byte" in stream.problem and rows == [] and rejects[0]["_line"] == 1


def test_spans_near_a_partition_boundary_are_read_by_the_partition_they_started_in():
    cfg = config()
    maker = SpanMaker()
    chat(maker, "late-of-the-2nd", at=datetime(2026, 11, 2, 23, 59, 58, tzinfo=UTC))
    chat(maker, "of-the-3rd", at=datetime(2026, 11, 3, 0, 0, 1, tzinfo=UTC))
    data = export_bytes(maker.finished())
    key = export_key(PREFIX, datetime(2026, 11, 3, 0, 1, tzinfo=UTC), 9)
    third, rows3, _ = read(cfg, data, key, Partition("support-bot-v3", DAY))
    second, rows2, _ = read(cfg, data, key, Partition("support-bot-v3", DAY - timedelta(days=1)))
    assert [r["request_id"] for r in rows3] == ["of-the-3rd"] and third.skipped == {"span of the previous partition (read with it)": 1}
    assert [r["request_id"] for r in rows2] == ["late-of-the-2nd"] and second.skipped == {"span of the next partition (read with it)": 1}


def test_export_time_parses_the_partition_directories():
    source = config().model("support-bot-v3").source.otel
    assert export_time(source, f"{PREFIX}/year=2026/month=11/day=03/hour=07/minute=42/traces_1.json") == datetime(2026, 11, 3, 7, 42, tzinfo=UTC)
    assert export_time(source, f"{PREFIX}/elsewhere/traces_1.json") is None
    assert export_time(source, f"{PREFIX}/year=2026/month=11/day=31/hour=07/minute=42/traces_1.json") is None
    daily = config(partition_format="dt=%Y-%m-%d").model("support-bot-v3").source.otel
    assert export_time(daily, f"{PREFIX}/dt=2026-11-03/traces_1.json") == datetime(2026, 11, 3, tzinfo=UTC)


def test_listing_takes_the_days_traces_and_the_late_minutes_after_it(s3):
    from modelwatch.storage.s3 import ensure_bucket, put_bytes

    ensure_bucket(s3, "otel-archive")
    keys = {
        export_key(PREFIX, datetime(2026, 11, 2, 23, 58, tzinfo=UTC), 1): False,
        export_key(PREFIX, datetime(2026, 11, 3, 0, 0, tzinfo=UTC), 2): True,
        export_key(PREFIX, datetime(2026, 11, 3, 23, 59, tzinfo=UTC), 3): True,
        export_key(PREFIX, datetime(2026, 11, 4, 0, 4, tzinfo=UTC), 4): True,  # within late_minutes (5)
        export_key(PREFIX, datetime(2026, 11, 4, 0, 5, tzinfo=UTC), 5): False,
        export_key(PREFIX, datetime(2026, 11, 3, 12, 0, tzinfo=UTC), 6).replace("traces_", "logs_"): False,  # the exporter's logs
    }
    for key in keys:
        put_bytes(s3, key, b"{}")
    listed = [uri for uri, _ in list_exports(s3, config().model("support-bot-v3").source.otel, Partition("support-bot-v3", DAY))]
    assert listed == sorted(k for k, wanted in keys.items() if wanted)
    hour = [uri for uri, _ in list_exports(s3, config().model("support-bot-v3").source.otel, Partition("support-bot-v3", DAY, 23))]
    assert hour == sorted(k for k, wanted in keys.items() if wanted and "hour=00/minute=00" not in k)


def test_an_otel_source_needs_external_or_hash_assignment():
    from modelwatch.config import ConfigError

    with pytest.raises(ConfigError, match="set assignment: external"):
        parse_config({"models": [{"id": "m", "kind": "llm", "experiments": [{"id": "e"}], "source": {"otel": {"uri": PREFIX}}}]})
    with pytest.raises(ConfigError, match="partition_format"):
        parse_config({"models": [{"id": "m", "kind": "llm", "source": {"otel": {"uri": PREFIX, "partition_format": "%H/%M"}}}]})


@pytest.mark.parametrize("document", [{"resourceSpans": [{"scopeSpans": [{"spans": "x"}]}]}, [1, 2],
                                      {"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "zz", "attributes": [{"key": "gen_ai.system"}]}]}]}]}])
def test_json_that_is_no_trace_export_is_a_damaged_file(document):
    key = export_key(PREFIX, NOON, 10)
    stream, rows, rejects = read(config(), json.dumps(document).encode(), key)
    assert stream.damaged and rows == [] and len(rejects) == 1
    assert "OTLP/JSON" in stream.problem and stream.problem.startswith(key)


def test_an_hour_of_exports_is_checked_with_its_damaged_file_quarantined_at_its_position(s3):
    """plan_shards lists the hour's exports, check_shard reads them as rows and quarantines the damage with file and position."""
    import uuid

    from modelwatch.ingest.stage import check_shard, plan_shards
    from modelwatch.storage.s3 import ensure_bucket, get_table, put_bytes

    tag = uuid.uuid4().hex[:8]
    prefix = f"s3://otel-{tag}/traces"
    ensure_bucket(s3, f"otel-{tag}")
    cfg = parse_config({"defaults": {"reports_uri": f"s3://otel-{tag}/reports"}, "models": [{
        "id": "support-bot-v3", "kind": "llm", "cadence": ["hourly"],
        "source": {"otel": {"uri": prefix, "marshaler": "otlp_proto", "compression": "gzip", "request_id_attribute": "app.request_id"}}}]})
    maker = SpanMaker()
    for i in range(6):
        chat(maker, f"r{i}", at=NOON + timedelta(minutes=i))
    spans = maker.finished()
    put_bytes(s3, export_key(prefix, NOON + timedelta(minutes=1), 1, "otlp_proto", True), export_bytes(spans[:3], "otlp_proto", True))
    whole = gzip.compress(export_bytes(spans[3:4], "otlp_proto") + export_bytes(spans[4:], "otlp_proto"))
    damaged = export_key(prefix, NOON + timedelta(minutes=7), 2, "otlp_proto", True)
    put_bytes(s3, damaged, whole[: len(whole) - 30])
    put_bytes(s3, export_key(prefix, NOON + timedelta(hours=2), 3, "otlp_proto", True), export_bytes(spans, "otlp_proto", True))  # another hour

    shards = plan_shards(s3, cfg, Partition("support-bot-v3", DAY, 12))
    assert [len(s["files"]) for s in shards] == [2]
    checked = check_shard(s3, cfg, shards[0])
    assert checked["rows_valid"] == 4 and checked["rows_quarantined"] == 1 and checked["read_rejects"] == 1
    assert [f["damaged"] for f in checked["files"]] == [False, True] and checked["files"][1]["problem"].startswith(damaged)
    quarantine = get_table(s3, f"s3://otel-{tag}/reports/_work/model_id=support-bot-v3/dt={DAY}/hour=12/shards/quarantine-00000-of-00001.parquet")
    (row,) = quarantine.to_pylist()
    assert (row["_source"], row["_line"], row["reasons"]) == (damaged, 2, "spans lost to the damaged export file")
