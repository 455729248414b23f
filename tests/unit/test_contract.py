import json
import math

import pyarrow as pa
from modelwatch.core.contract import FIELDS, TYPE_ERRORS, coerce_record, flatten, required_fields
from modelwatch.ingest.schema import CANONICAL_SCHEMA


def test_schema_has_every_contract_field_and_lineage():
    names = set(CANONICAL_SCHEMA.names)
    assert {f.name for f in FIELDS} <= names
    assert {"_row_id", "_source", "_line", "extra", TYPE_ERRORS} <= names
    assert CANONICAL_SCHEMA.field("timestamp").type == pa.timestamp("us", tz="UTC")


def test_required_fields_by_kind():
    assert "prompt" in required_fields("llm") and "features" not in required_fields("llm")
    assert "features" in required_fields("classifier") and "prompt" not in required_fields("regressor")


def test_clean_record_coerces_without_problems():
    row = coerce_record({"request_id": "r1", "timestamp": "2026-11-01T10:00:00Z", "model_id": "m", "variant": "production",
                         "status": "ok", "latency_ms": 12, "prompt_tokens": 3, "metadata": {"topic": "billing"}})
    assert row[TYPE_ERRORS] is None
    assert row["latency_ms"] == 12.0 and isinstance(row["latency_ms"], float)
    assert row["timestamp"].isoformat() == "2026-11-01T10:00:00+00:00"
    assert json.loads(row["metadata"]) == {"topic": "billing"}
    assert row["extra"] is None


def test_wrong_types_become_null_with_reasons():
    row = coerce_record({"latency_ms": "fast", "prompt_tokens": 2.5, "feedback": "up", "timestamp": "yesterday", "status": True})
    problems = row[TYPE_ERRORS]
    for text in ("latency_ms: expected number", "prompt_tokens: expected integer", "feedback: expected -1, 0 or 1",
                 "timestamp: not ISO-8601", "status: expected string"):
        assert text in problems
    assert row["latency_ms"] is None and row["prompt_tokens"] is None


def test_booleans_are_not_numbers_and_naive_timestamps_are_rejected():
    row = coerce_record({"latency_ms": True, "timestamp": "2026-11-01T10:00:00"})
    assert "latency_ms: expected number, got bool" in row[TYPE_ERRORS]
    assert "no UTC offset" in row[TYPE_ERRORS]


def test_non_finite_numbers_are_kept_for_the_range_rule():
    assert math.isinf(coerce_record({"latency_ms": float("inf")})["latency_ms"])


def test_unknown_fields_are_kept_in_extra():
    row = coerce_record({"request_id": "r", "trace_id": "abc", "nested": {"a": [1, 2]}})
    assert json.loads(row["extra"]) == {"trace_id": "abc", "nested": {"a": [1, 2]}}


def test_probability_map_gives_confidence_of_prediction():
    row = coerce_record({"prediction": "churn", "probability": {"churn": 0.8, "stay": 0.2}})
    assert row["probability"] == 0.8
    assert json.loads(row["class_probabilities"]) == {"churn": 0.8, "stay": 0.2}
    assert coerce_record({"prediction": 3.5})["prediction"] == "3.5"


def test_non_object_row_is_a_type_error():
    assert "expected a JSON object" in coerce_record([1, 2])[TYPE_ERRORS]


def test_flatten_extracts_keys_and_serialises_nested_values():
    cols = flatten(['{"topic": "a", "deep": {"x": 1}}', None, '{"topic": "b"}'], ["topic", "deep"])
    assert cols["topic"] == ["a", None, "b"]
    assert cols["deep"] == ['{"x": 1}', None, None]


def test_values_no_column_can_hold_are_type_errors_not_crashes():
    from datetime import date, time

    from modelwatch.core.contract import coerce_record

    row = coerce_record({"prompt_tokens": 1e300, "timestamp": time(10, 0)})
    assert row["prompt_tokens"] is None and "prompt_tokens: integer out of range" in row["_type_errors"]
    assert row["timestamp"] is None and "timestamp: expected ISO-8601 string, got time" in row["_type_errors"]
    assert coerce_record({"timestamp": date(2026, 11, 1)})["timestamp"] is None  # a date has no time of day or offset
