"""The columnar coercion equals the per-row contract coercion, value for value and problem for problem.

Reference: ``pa.Table.from_pylist([coerce_record(r) for r in records], schema=SCHEMA)`` (for
Arrow tables, over ``table.to_pylist()``). ``coerce_batch`` / ``coerce_arrow`` may answer None
(the caller then takes the per-row path) but must never answer a different table. Float
columns are compared bit for bit (NaN payloads and the sign of zero included).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, time, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modelwatch.core.contract import FIELDS, coerce_record
from modelwatch.ingest.columnar import SCHEMA, _iso_micros
from modelwatch.ingest.columnar_arrow import coerce_arrow
from modelwatch.ingest.columnar_json import coerce_batch
from modelwatch.runtime.generate import ExperimentPlan, Scenario, broken_rows, classifier_day, jsonl_bytes, llm_day

DAY = date(2026, 11, 1)
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def reference(records: list) -> pa.Table | None:
    """The per-row path's table, or None when Arrow cannot hold what it produced."""
    try:
        return pa.Table.from_pylist([coerce_record(r) for r in records], schema=SCHEMA)
    except (pa.ArrowException, UnicodeError, OverflowError, ValueError, TypeError):
        return None


def assert_same(got: pa.Table, want: pa.Table) -> None:
    assert got.schema.equals(want.schema), (got.schema, want.schema)
    assert got.num_rows == want.num_rows
    for name in SCHEMA.names:
        a, b = got.column(name).combine_chunks(), want.column(name).combine_chunks()
        assert a.is_null().equals(b.is_null()), name
        if pa.types.is_floating(a.type):
            bits_a = np.asarray(a.fill_null(0.0).to_numpy(zero_copy_only=False)).view(np.int64)
            bits_b = np.asarray(b.fill_null(0.0).to_numpy(zero_copy_only=False)).view(np.int64)
            mismatch = np.flatnonzero(bits_a != bits_b)
            assert not len(mismatch), (name, a.take(mismatch[:5]), b.take(mismatch[:5]))
        elif not a.equals(b):
            diff = [i for i, (x, y) in enumerate(zip(a.to_pylist(), b.to_pylist())) if x != y][:3]
            raise AssertionError((name, [(a[i], b[i]) for i in diff]))


def check(records: list, *, fast: bool = True) -> pa.Table | None:
    """coerce_batch equals the reference; with ``fast`` it must also have answered (not None)."""
    return compare(coerce_batch(records), reference(records), fast)


def compare(got: pa.Table | None, want: pa.Table | None, fast: bool) -> pa.Table | None:
    if want is None:
        assert got is None, "the per-row table cannot be built, so the batch must defer to it"
        return None
    if fast:
        assert got is not None, "fell back to the per-row path"
    if got is not None:
        assert_same(got, want)
    return got


def json_round_trip(rows: list[dict]) -> list:
    return [json.loads(line) for line in jsonl_bytes(rows, gz=False).decode().splitlines()]


# --------------------------------------------------------------------------- (a) realistic traffic


@pytest.fixture(scope="module")
def llm_records() -> list:
    rows = llm_day("support-bot-v3", DAY, 1500, 7, Scenario(shadow_share=0.1, toxic_burst_on=DAY), ExperimentPlan())
    return json_round_trip(rows)


@pytest.fixture(scope="module")
def classifier_records() -> list:
    return json_round_trip(classifier_day("churn-clf", DAY, 1000, 7, Scenario())[0])


def test_generator_llm_traffic_takes_the_fast_path_and_equals_the_per_row_path(llm_records):
    got = check(llm_records)
    assert got.num_rows == len(llm_records) and got["_type_errors"].null_count == got.num_rows


def test_generator_classifier_traffic_takes_the_fast_path_and_equals_the_per_row_path(classifier_records):
    got = check(classifier_records)
    assert got["class_probabilities"].null_count == 0 and got["probability"].null_count == 0


def test_generator_timestamps_parse_vectorised_not_row_by_row(llm_records):
    micros, parsed = _iso_micros(pa.array([r["timestamp"] for r in llm_records]))
    assert parsed.all()
    assert micros[0] == (datetime.fromisoformat(llm_records[0]["timestamp"].replace("Z", "+00:00")) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_generator_broken_rows_equal_the_per_row_path(llm_records):
    broken = []
    for line in broken_rows("support-bot-v3", DAY, 40, 3):
        try:
            broken.append(json.loads(line))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
    got = check(llm_records[:200] + broken + llm_records[200:400])
    assert got["_type_errors"].null_count < got.num_rows


def test_empty_batch():
    assert coerce_batch([]).equals(SCHEMA.empty_table())


# --------------------------------------------------------------------------- (b) every bad-value kind of the reliability corpus

GOOD = {"request_id": "req-1", "timestamp": "2026-11-01T10:00:00Z", "model_id": "support-bot-v3", "variant": "production", "status": "ok",
        "latency_ms": 120.0, "prompt": "Where is my order?", "response": "It left yesterday.", "prompt_tokens": 6, "completion_tokens": 7,
        "cost_usd": 0.0001, "metadata": {"topic": "shipping", "locale": "en-US"}}


def nested(depth: int) -> dict:
    value: dict = {"leaf": True}
    for _ in range(depth):
        value = {"a": value}
    return value


BAD_VALUES: list[tuple[str, object]] = [
    # wrong types (corpus: wrong_types, parquet_wrong_column_types)
    ("latency_ms", "12"), ("latency_ms", True), ("latency_ms", False), ("prompt_tokens", 3.5), ("prompt_tokens", 6.0), ("prompt_tokens", "6"),
    ("prompt_tokens", True), ("timestamp", 1_700_000_000), ("timestamp", None), ("prediction", [1]), ("prediction", {"a": 1}), ("request_id", 5),
    ("request_id", ["x"]), ("features", [1, 2]), ("features", "tenure=3"), ("metadata", "shipping"), ("metadata", 3), ("status", None),
    # numbers at the edges: NaN and infinities (JSON literals and 1e400), >64-bit ints, 2**53 + 1, negative zero
    ("latency_ms", math.nan), ("latency_ms", math.inf), ("latency_ms", -math.inf), ("latency_ms", -0.0), ("latency_ms", 10**400),
    ("latency_ms", 2**53 + 1), ("latency_ms", 2**63 - 1), ("latency_ms", -(2**63)), ("latency_ms", 2**63), ("cost_usd", 5e-324),
    ("prompt_tokens", 10**30), ("prompt_tokens", 2**63), ("prompt_tokens", -(2**63) - 1), ("prompt_tokens", math.nan), ("prompt_tokens", 1e300),
    ("quality_score", 7), ("quality_score", -1.5),
    # feedback out of range, as a bool, as a float
    ("feedback", 10**20), ("feedback", 5), ("feedback", 127), ("feedback", 128), ("feedback", -128), ("feedback", -129), ("feedback", 1.0),
    ("feedback", 0.5), ("feedback", True), ("feedback", "1"), ("feedback", math.inf),
    # timestamps: no offset, outside the partition, beyond year 9999 once in UTC, odd formats
    ("timestamp", "2026-11-01T10:00:00"), ("timestamp", "2026-10-31T23:59:59Z"), ("timestamp", "9999-12-31T23:59:59-14:00"),
    ("timestamp", "0001-01-01T00:00:00+01:00"), ("timestamp", "0001-01-01T00:00:00Z"), ("timestamp", "9999-12-31T23:59:59.999999Z"),
    ("timestamp", "0000-12-31T23:00:00-01:00"), ("timestamp", "2026-02-30T00:00:00Z"), ("timestamp", "2024-02-29T12:00:00Z"),
    ("timestamp", "2100-02-29T12:00:00Z"), ("timestamp", "2026-11-01 10:00:00Z"), ("timestamp", "2026-11-01T10:00:00z"),
    ("timestamp", "2026-11-01T10:00:00+0200"), ("timestamp", "2026-11-01T10:00:00+02"), ("timestamp", "2026-11-01T10:00:00.1234567Z"),
    ("timestamp", "2026-11-01T10:00:00.5-05:30"), ("timestamp", "2026-11-01T10:00:00,5Z"), ("timestamp", "2026-11-01T24:00:00Z"),
    ("timestamp", "2026-11-01T10:00:60Z"), ("timestamp", "2026-11-01T10:00:00+24:00"), ("timestamp", "2026-11-01T10:00:00+23:59"),
    ("timestamp", "2026-11-01T10:00:00-00:00"), ("timestamp", "2026-11-01"), ("timestamp", "20261101T100000Z"), ("timestamp", "2026-W44-7"),
    ("timestamp", "2026-11-01T10:00Z"), ("timestamp", "2026-11-01T10Z"), ("timestamp", "yesterday"), ("timestamp", ""),
    ("timestamp", "2026-11-01T10:00:00ZZ"), ("timestamp", "2026-11-01T10:00:00Z\n"), ("timestamp", "２０２６-11-01T10:00:00Z"),
    # strings: empty, long, a 150k prompt, non-ASCII
    ("request_id", ""), ("request_id", "r" * 300), ("prompt", "y" * 150_000), ("prompt", "café ☕ \u2028 \x00"), ("response", None),
    ("variant", "canary-7"), ("model_id", "other-model"), ("status", "weird"),
    # objects: deep (kept), keys and values JSON escapes, floats
    ("metadata", nested(200)), ("metadata", {}), ("metadata", {"q": 'say "hi"\\', "é": "ü", "n": None, "f": 1e400, "b": [True, None]}),
    ("metadata", {"z": 1, "a": {"y": 2.5, "b": math.nan}}), ("features", {"tenure": 3.0, "plan": "basic", "calls": 2}),
    # predictions and probabilities: scalars, class maps, ties and zeros, NaN, ints, bools, empty maps
    ("prediction", 3), ("prediction", 2.5), ("prediction", True), ("prediction", 10**30), ("prediction", math.nan),
    ("probability", 1.7), ("probability", 1), ("probability", True), ("probability", 10**400), ("probability", math.nan), ("probability", "0.5"),
    ("probability", {}), ("probability", {"a": "x"}), ("probability", {"a": None}), ("probability", {"a": 0.2, "b": True}),
    ("probability", {"a": 10**30}), ("probability", {"a": 1, "b": 0.5}), ("probability", [0.2, 0.8]),
]

CLASS_MAPS: list[tuple[object, object]] = [  # (prediction, probability)
    ("churn", {"churn": 0.8, "stay": 0.2}), ("stay", {"churn": 0.8, "stay": 0.2}), ("other", {"churn": 0.3, "stay": 0.7}),
    (None, {"None": 0.2, "churn": 0.8}), (None, {"churn": 0.3}), (1, {"1": 0.25, "0": 0.75}), (True, {"True": 0.6, "False": 0.4}),
    ("x", {"a": -0.0, "b": 0.0}), ("x", {"a": 0.0, "b": -0.0}), ("x", {"b": -0.0, "a": 0.0}), ("x", {"b": 0.0, "a": -0.0}), ("x", {"a": math.nan, "b": 0.5}), ("x", {"a": 0.5, "b": math.nan}),
    ("a", {"a": math.nan, "b": 0.5}), ("x", {"a": -math.inf}), ("x", {"a": math.inf, "b": 1.0}), ("x", {"ü\"": 0.1, "a\\": 0.9}),
    ([1], {"a": 0.5}), ("x", {"a": 0.5, "b": 0.5}),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES, ids=[f"{f}={str(v)[:30]!r}" for f, v in BAD_VALUES])
def test_each_bad_value_mixed_into_clean_traffic_equals_the_per_row_path(llm_records, field, value):
    bad = {**GOOD, field: value}
    check(llm_records[:50] + [bad, {**bad, "request_id": "req-2"}] + llm_records[50:100])


@pytest.mark.parametrize(("prediction", "probability"), CLASS_MAPS, ids=[f"{p!r}:{q}" for p, q in CLASS_MAPS])
def test_class_maps_take_the_predicted_class_or_pythons_max(classifier_records, prediction, probability):
    check(classifier_records[:30] + [{**GOOD, "prediction": prediction, "probability": probability}] + classifier_records[30:60])


def test_missing_fields_extra_fields_and_several_problems_in_one_row(llm_records):
    missing = [{k: v for k, v in GOOD.items() if k != drop} for drop in ("latency_ms", "request_id", "prompt_tokens", "timestamp")]
    extra = [{**GOOD, "trace_id": f"t{i}", "debug": {"shard": i, "tags": ["a"]}} for i in range(3)]
    many = {**GOOD, "timestamp": "2026-11-01T10:00:00", "latency_ms": "fast", "feedback": "9", "metadata": [1], "probability": {"a": "b"},
            "trace_id": "t", "_type_errors": "spoofed", "extra": {"x": 1}, "class_probabilities": 3}
    got = check(llm_records[:20] + missing + extra + [many] + llm_records[20:40])
    errors = got["_type_errors"].to_pylist()[20 + 4 + 3]
    assert errors.index("timestamp:") < errors.index("latency_ms:") < errors.index("feedback:") < errors.index("metadata:") < errors.index("probability:")


def test_non_dict_records_get_the_row_error_and_nulls(llm_records):
    got = check(llm_records[:10] + [[1, 2], "text", 42, None, True, 1.5, [[[]]]] + llm_records[10:20])
    assert got["_type_errors"][10].as_py().startswith("row: expected a JSON object, got list")
    assert got["request_id"][10].as_py() is None


def test_an_impossible_date_among_offsets_parses_the_others_field_by_field():
    texts = ["2026-02-30T00:00:00Z", "2026-11-01T10:00:00.5-05:30", "2026-11-01T01:00:00+02:00", "2024-02-29T23:59:59.999999-23:59",
             "2026-04-31T00:00:00+01:00", "0001-01-01T00:30:00+01:00", "9999-12-31T23:00:00-01:00", "9999-12-31T23:00:00-00:59"]
    micros, parsed = _iso_micros(pa.array(texts))
    assert parsed.tolist() == [False, True, True, True, False, False, False, True]
    check([{"timestamp": t} for t in texts])


def test_every_row_bad_in_one_column(llm_records):
    check([{**r, "latency_ms": str(r["latency_ms"])} for r in llm_records[:300]])
    check([{**r, "timestamp": r["timestamp"].replace("Z", "")} for r in llm_records[:300]])
    check([{**r, "timestamp": r["timestamp"].replace("-11-01", "-02-30")} for r in llm_records[:300]])
    check([{**r, "latency_ms": int(r["latency_ms"])} for r in llm_records[:300]])


def test_unpaired_surrogates_defer_where_the_per_row_table_fails_and_are_escaped_in_objects(llm_records):
    assert check(llm_records[:20] + [{**GOOD, "prompt": "\ud800Where"}]) is None
    check(llm_records[:20] + [{**GOOD, "metadata": {"topic": "\ud800"}, "\udc00key": 1}])


def test_nesting_near_the_recursion_limit_defers_to_the_per_row_path(llm_records):
    assert check(llm_records[:5] + [{**GOOD, "metadata": nested(200)}]) is not None
    assert coerce_batch(llm_records[:5] + [{**GOOD, "metadata": nested(700)}]) is None
    assert coerce_batch(llm_records[:5] + [{**GOOD, "prediction": [nested(700)]}]) is None
    assert coerce_batch(llm_records[:5] + [[nested(700)]]) is None


def test_python_values_json_cannot_produce_defer_or_match():
    class Record(dict):
        pass

    assert coerce_batch([Record(GOOD)]) is None
    cyclic: dict = {}
    cyclic["self"] = cyclic
    assert coerce_batch([{**GOOD, "metadata": cyclic}]) is None  # the per-row path raises ValueError
    check([{**GOOD, "timestamp": datetime(2026, 11, 1, 10, tzinfo=timezone(timedelta(hours=2)))}, {**GOOD, "timestamp": datetime(2026, 11, 1)},
           {**GOOD, "probability": {1: 0.4, "1": 0.6}}, {**GOOD, "metadata": {"when": datetime(2026, 11, 1)}}], fast=False)


# --------------------------------------------------------------------------- (c) property: arbitrary JSON-ish records

scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=30) | st.sampled_from([2**53 + 1, 2**63 - 1, 2**63, -(2**63), -0.0, 127, 128, -129]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@st.composite
def timestamps(draw) -> str:
    """ISO-8601-like strings around every boundary the fast path must agree with fromisoformat on."""
    year = draw(st.sampled_from([0, 1, 99, 999, 1970, 2024, 2026, 2100, 9999]))
    month, day = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    hour, minute, second = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
    fraction = draw(st.sampled_from(["", ".", ".5", ".12", ".123", ".1234", ".12345", ".123456", ".1234567", ",5"]))
    offset = draw(st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "+02:00", "-05:30", "+23:59", "-23:59", "+24:00", "+05:60", "+0200", "+02", "ZZ"]))
    sep = draw(st.sampled_from(["T", "T", "T", " ", "t"]))
    return f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}{fraction}{offset}"


field_values = {f.name: json_values for f in FIELDS} | {
    "timestamp": timestamps() | json_values,
    "probability": st.dictionaries(st.sampled_from(["a", "b", "None", "1"]), st.floats() | st.integers(-3, 3) | st.none(), max_size=3) | json_values,
    "prediction": st.sampled_from(["a", "b", "None", None, 1, True]) | json_values,
}
records = st.fixed_dictionaries({}, optional={**field_values, "trace_id": json_values, "extra": json_values}) | json_values


@SETTINGS
@given(st.lists(records, min_size=1, max_size=8))
def test_arbitrary_records_equal_the_per_row_path(batch):
    check(batch)


@SETTINGS
@given(st.lists(timestamps(), min_size=1, max_size=12))
def test_arbitrary_timestamp_strings_parse_as_fromisoformat_does(texts):
    check([{"timestamp": t} for t in texts])


# --------------------------------------------------------------------------- (d) Arrow tables as read from Parquet


def check_arrow(table: pa.Table, *, fast: bool = True) -> pa.Table | None:
    """coerce_arrow equals the per-row path over ``table.to_pylist()`` (None when that cannot even list the rows)."""
    try:
        records = table.to_pylist()
    except (pa.ArrowException, UnicodeError, OverflowError, ValueError, TypeError, KeyError):
        assert coerce_arrow(table) is None
        return None
    return compare(coerce_arrow(table), reference(records), fast)


def test_generator_parquet_tables_with_struct_columns_take_the_fast_path():
    llm = llm_day("support-bot-v3", DAY, 800, 3, Scenario(shadow_share=0.1), ExperimentPlan())
    table = pa.Table.from_pylist(llm)
    assert pa.types.is_struct(table.schema.field("metadata").type)
    check_arrow(table)
    classifier = pa.Table.from_pylist(classifier_day("churn-clf", DAY, 500, 3, Scenario())[0])
    assert pa.types.is_struct(classifier.schema.field("probability").type)
    check_arrow(classifier)
    check_arrow(table.slice(100, 50))  # sliced arrays carry an offset
    check_arrow(pa.concat_tables([table.slice(0, 10), table.slice(10, 10)]))  # several chunks


def test_native_arrow_types_are_cast_as_python_would_coerce_them():
    n = 6
    ts = [datetime(2026, 11, 1, 10, 0, i, 123456, tzinfo=UTC) for i in range(n)]
    table = pa.table({
        "request_id": pa.array([f"r{i}" for i in range(n)], pa.large_string()),
        "timestamp": pa.array(ts, pa.timestamp("us", tz="Europe/Berlin")),
        "model_id": pa.array(["m"] * n).dictionary_encode(),
        "variant": pa.array(["production", None, "shadow", "a", "b", "c"], pa.string_view()),
        "latency_ms": pa.array([1.5, None, math.nan, -0.0, math.inf, 3.25], pa.float32()),
        "prompt_tokens": pa.array([1, 2, None, 4, 5, 6], pa.int32()),
        "completion_tokens": pa.array([1, 2, 3, 4, 5, 2**64 - 1], pa.uint64()),
        "cost_usd": pa.array([2**53 + 1, 2**62 + 1, -(2**63), 0, None, 7], pa.int64()),
        "prediction": pa.array([1, -5, None, 2**40, 0, 3], pa.int64()),
        "probability": pa.array([0.5, None, 0.25, 1.0, 0.0, 0.75], pa.float32()),
        "feedback": pa.array([-1, 0, 1, 200, None, 5], pa.int64()),
        "quality_score": pa.nulls(n),
        "features": pa.array([{"a": 1}, None, {"a": 2}, {"a": 3}, {"a": None}, {"a": 5}], pa.map_(pa.string(), pa.int64())),
        "metadata": pa.array([[1], None, [], [2, 3], [4], [5]], pa.list_(pa.int64())),
        "trace_id": pa.array(["t"] * n),
        "when": pa.array(ts, pa.timestamp("ms")),
    })
    check_arrow(table)
    for unit in ("s", "ms", "us", "ns"):
        for tz in (None, "UTC", "+05:30", "America/New_York"):
            check_arrow(pa.table({"timestamp": pa.array([datetime(2026, 3, 8, 7, 30), None, datetime(1, 1, 3)], pa.timestamp("us")).cast(pa.timestamp(unit, tz=tz), safe=False)}),
                        fast=unit != "ns")
    both = check_arrow(pa.table({"latency_ms": pa.array(["1", "2", None]), "prediction": pa.array([1.5, None, math.nan]),
                                 "probability": pa.array([True, None, False])}))
    assert both["_type_errors"][0].as_py().startswith("latency_ms: ") and "; probability: " in both["_type_errors"][0].as_py()


def test_a_time_of_day_column_named_timestamp_is_a_type_error_like_coerce_record():
    table = check_arrow(pa.table({"timestamp": pa.array([time(10), None], pa.time64("us"))}))
    assert table["_type_errors"][0].as_py() == coerce_record({"timestamp": time(10)})["_type_errors"]


def test_invalid_utf8_in_a_string_column_defers_as_to_pylist_fails():
    bad = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(np.array([0, 2], np.int32).tobytes()), pa.py_buffer(b"\xff\xfe")])
    assert coerce_arrow(pa.table({"request_id": bad})) is None
    assert coerce_arrow(pa.table({"metadata": pa.StructArray.from_arrays([bad], names=["k"])})) is None


def test_struct_columns_write_json_as_the_encoder_does():
    children = {
        "s": pa.array(["plain", 'quote " and \\ back', "ünïcode", "\x00 control", "back\\slash", "\x7f"]),
        "i": pa.array([1, None, -3, 2**40, 0, 5], pa.int64()),
        "u": pa.array([1, 2, 3, 4, 5, 2**64 - 1], pa.uint64()),
        "f": pa.array([math.nan, None, 1.5, math.inf, -math.inf, 1e16], pa.float64()),
        "h": pa.array([0.1, 2.5, None, 1.0, -0.0, 3.0], pa.float32()),
        "b": pa.array([True, False, None, True, True, False]),
        "n": pa.nulls(6),
        "l": pa.array([[1], None, [], [2, 3], [4], [5]]),
        "d": pa.array([datetime(2026, 1, 1)] * 6, pa.timestamp("us")),
        "nested": pa.array([{"x": "y"}] * 3 + [None] * 3),
        "é \"key\"": pa.array(["v"] * 6),
    }
    struct = pa.StructArray.from_arrays(list(children.values()), names=list(children), mask=pa.array([False, False, True, False, False, False]))
    check_arrow(pa.table({"metadata": struct, "features": pa.StructArray.from_arrays([], names=[], mask=pa.array([False] * 5 + [True]))}))
    check_arrow(pa.table({"metadata": pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])}), fast=False)


def test_other_schemas_zero_rows_and_duplicate_columns():
    check_arrow(pa.table({"id": [1, 2, 3], "value": ["a", "b", "c"], "ts": [1.0, 2.0, 3.0]}))
    check_arrow(pa.table({"request_id": pa.array([], pa.string())}))
    check_arrow(pa.table({"latency_ms": pa.array(["120", "fast"]), "prompt_tokens": pa.array(["6", "7"])}))
    assert coerce_arrow(pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["x", "x"])) is None


@pytest.mark.parametrize("micros", [253_402_300_799_000_000 + 10**9, -62_135_596_800_000_000 - 10**9], ids=["after-9999", "before-0001"])
def test_timestamps_out_of_pythons_range_defer(micros):
    for tz in (None, "UTC"):
        far = pa.array([1_700_000_000_000_000, micros], pa.int64()).cast(pa.timestamp("us", tz=tz))
        check_arrow(pa.table({"timestamp": far}), fast=False)
        assert coerce_arrow(pa.table({"timestamp": far})) is None


def test_timestamps_whose_local_time_leaves_pythons_range_defer():
    first_hour = pa.array([datetime(2026, 1, 1, tzinfo=UTC), datetime(1, 1, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us", tz="-05:00"))
    check_arrow(pa.table({"timestamp": first_hour}), fast=False)
    assert coerce_arrow(pa.table({"timestamp": first_hour})) is None


arrow_columns = {
    "request_id": st.text(max_size=10), "timestamp": st.datetimes(min_value=datetime(1, 1, 3), max_value=datetime(9999, 12, 29), timezones=st.just(UTC)),
    "latency_ms": st.floats(), "prompt_tokens": st.integers(-(2**63), 2**63 - 1), "feedback": st.integers(-200, 200),
    "prediction": st.sampled_from(["churn", "stay"]), "probability": st.fixed_dictionaries({"churn": st.floats(), "stay": st.floats()}),
    "metadata": st.fixed_dictionaries({"topic": st.text(max_size=5), "n": st.integers(-5, 5), "x": st.floats(), "ok": st.booleans()}),
    "features": st.fixed_dictionaries({"tags": st.lists(st.text(max_size=3), max_size=2)}), "extra_col": st.text(max_size=5) | st.none(),
}


@SETTINGS
@given(st.lists(st.fixed_dictionaries({}, optional={k: v | st.none() for k, v in arrow_columns.items()}), min_size=1, max_size=8))
def test_arbitrary_typed_parquet_tables_equal_the_per_row_path(rows):
    columns = sorted({k for r in rows for k in r})
    table = pa.table({k: pa.array([r.get(k) for r in rows]) for k in columns}) if columns else pa.table({"x": [None] * len(rows)})
    check_arrow(table)
