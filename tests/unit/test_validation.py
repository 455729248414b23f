import json
from datetime import date

import pytest
from modelwatch.config import load_config
from modelwatch.core.contract import required_fields
from modelwatch.core.partition import Partition
from modelwatch.ingest.readers import assemble, batch_tables, open_file, read_file
from modelwatch.ingest.validation import (
    SUITES_DIR,
    ContractViolation,
    StreamValidator,
    contract_expectations,
    enforce_invalid_share,
    load_suite_file,
    validate_partition,
)
from modelwatch.runtime.generate import ExperimentPlan, Scenario, llm_day

CFG = load_config()
LLM = CFG.model("support-bot-v3")
DAY = date(2026, 11, 3)
PART = Partition(LLM.id, DAY)
GOOD = {"request_id": "r0", "timestamp": "2026-11-03T10:00:00Z", "model_id": LLM.id, "variant": "control", "status": "ok",
        "latency_ms": 420.0, "prompt": "hi", "response": "hello", "prompt_tokens": 2, "completion_tokens": 1}


def run(rows):
    body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    table, rejects = assemble([read_file(body, "s3://b/part.jsonl")])
    assert rejects.num_rows == 0
    return validate_partition(table, LLM, PART)


def reasons_of(outcome) -> dict[int, str]:
    return {r["_line"]: r["reasons"] for r in outcome.rejects.to_pylist()}


CASES = [
    ({"latency_ms": -5.0}, "latency_ms must be within [0,"),
    ({"latency_ms": float("nan")}, "latency_ms is required; got missing or NaN"),
    ({"latency_ms": float("inf")}, "latency_ms must be within"),
    ({"latency_ms": "slow"}, "latency_ms: expected number, got str"),
    ({"variant": "arm-z"}, "variant must be one of ['control', 'production', 'shadow', 'treatment']; got 'arm-z'"),
    ({"status": "exploded"}, "status must be one of"),
    ({"status": None}, "status is required"),
    ({"model_id": "other-model"}, "model_id must be one of ['support-bot-v3']"),
    ({"timestamp": "2026-11-04T00:00:00Z"}, "timestamp inside the partition"),
    ({"timestamp": "2026-11-02T23:59:59Z"}, "got '2026-11-02T23:59:59+00:00'"),
    ({"prompt": None}, "prompt is required"),
    ({"response": None}, 'response is required when status == "ok"'),
    ({"prompt_tokens": -1}, "prompt_tokens must be within"),
    ({"feedback": 5}, "feedback must be one of [-1, 0, 1]"),
    ({"cost_usd": -0.1}, "cost_usd must be within"),
    ({"request_id": ""}, "length of request_id"),
    ({"prompt": "x" * 200_001}, "length of prompt must be within [1, 200000]"),
]


@pytest.mark.parametrize("change, reason", CASES, ids=[c[1][:40] for c in CASES])
def test_each_broken_row_is_quarantined_with_its_reason(change, reason):
    rows = [{**GOOD, "request_id": f"r{i}"} for i in range(5)]
    rows[2] = {**rows[2], **change}
    outcome = run(rows)
    assert outcome.rows_in == 5 and outcome.rows_valid == 4 and outcome.rows_quarantined == 1
    assert reason in reasons_of(outcome)[3]


def test_error_rows_may_have_no_response_and_extra_fields_are_kept():
    rows = [{**GOOD, "status": "error", "response": None}, {**GOOD, "request_id": "r1", "trace": {"span": 1}}]
    outcome = run(rows)
    assert outcome.rows_quarantined == 0
    assert json.loads(outcome.valid["extra"].to_pylist()[1]) == {"trace": {"span": 1}}


def test_duplicates_keep_the_first_occurrence():
    outcome = run([GOOD, {**GOOD, "latency_ms": 1.0}, {**GOOD, "request_id": "r9"}, GOOD])
    assert outcome.rows_valid == 2
    reasons = reasons_of(outcome)
    assert set(reasons) == {2, 4}
    assert "duplicate request_id 'r0' (first seen at s3://b/part.jsonl:1)" in reasons[2]


def test_all_reasons_of_a_row_are_recorded():
    outcome = run([{**GOOD, "variant": "zz", "latency_ms": -1.0, "feedback": 7}])
    reason = reasons_of(outcome)[1]
    assert "variant must be one of" in reason and "latency_ms must be within" in reason and "feedback must be one of" in reason
    assert outcome.failures["feedback must be one of [-1, 0, 1]"] == 1


def test_hour_partition_window():
    outcome = validate_partition(
        assemble([read_file(json.dumps(GOOD).encode(), "s3://b/p.jsonl")])[0], LLM, Partition(LLM.id, DAY, 11)
    )
    assert "timestamp inside the partition [2026-11-03T11:00:00+00:00, 2026-11-03T12:00:00+00:00)" in outcome.rejects["reasons"][0].as_py()


def test_generated_traffic_is_valid_and_counts_add_up():
    rows = llm_day(LLM.id, DAY, 800, seed=3, scenario=Scenario(), plan=ExperimentPlan())
    outcome = run(rows)
    assert outcome.rows_quarantined == 0 and outcome.rows_valid == 800


def test_enforce_invalid_share_names_partition_rule_and_examples():
    enforce_invalid_share(100, 5, {"r": 5}, {"r": ["-1"]}, 0.05, "partition s3://x")
    with pytest.raises(ContractViolation) as info:
        enforce_invalid_share(100, 6, {"latency_ms must be within [0, 1]": 6}, {"latency_ms must be within [0, 1]": ["-5.0", "-1.0"]}, 0.05, "partition s3://logs/m/dt=1")
    text = str(info.value)
    assert "partition s3://logs/m/dt=1" in text and "6 of 100 rows (6.0%)" in text
    assert "latency_ms must be within [0, 1]: 6 rows, e.g. -5.0, -1.0" in text and "max_invalid_share" in text


def test_the_contract_expectations_cover_the_contracts_required_fields():
    for kind in ("llm", "classifier", "regressor"):
        checked = {e["kwargs"]["column"] for e in contract_expectations(kind) if e["type"] == "expect_column_values_to_not_be_null"}
        assert checked == set(required_fields(kind))
    with pytest.raises(FileNotFoundError, match="fix validation.suite"):
        load_suite_file("missing.json", SUITES_DIR)


def test_an_example_names_file_and_line_and_says_missing_for_a_missing_field():
    rows = [{**GOOD, "request_id": f"r{i}"} for i in range(4)]
    del rows[2]["latency_ms"]
    rows[3]["latency_ms"] = float("nan")  # the non-standard JSON literal NaN: present, but not a number
    outcome = run(rows)
    assert outcome.examples["latency_ms is required"] == ["s3://b/part.jsonl line 3: missing", "s3://b/part.jsonl line 4: NaN"]
    outcome = run([{**GOOD, "latency_ms": -5.0}, {**GOOD, "request_id": "r1", "latency_ms": "slow"}])
    assert outcome.examples["latency_ms must be within [0, 600000]"] == ["s3://b/part.jsonl line 1: -5.0"]
    assert outcome.examples["type: latency_ms"] == ["s3://b/part.jsonl line 2: expected number, got str 'slow'"]


def test_read_rejects_count_under_their_rule_with_file_line_and_the_first_200_characters():
    long_cut = '{"request_id": "r9", "prompt": "' + "x" * 300
    data = json.dumps(GOOD).encode() + b"\n" + long_cut.encode() + b"\n" + b'{"prompt": "caf\xe9"}\n'
    _, rejects = batch_tables(next(open_file(data, "s3://b/part.jsonl").batches), 0)
    validator = StreamValidator(LLM, PART)
    validator.count_read_rejects(rejects)
    assert validator.failures == {"readable JSON line: not valid JSON": 1, "readable JSON line: line is not UTF-8": 1}
    assert validator.examples["readable JSON line: not valid JSON"] == [f"s3://b/part.jsonl line 2: {long_cut[:200]!r}"]
    assert validator.examples["readable JSON line: line is not UTF-8"] == ["s3://b/part.jsonl line 3: " + repr('{"prompt": "caf\\xe9"}')]


def test_invalid_share_error_names_the_files_with_most_rejects_and_the_damaged_files():
    damaged = {"uri": "s3://logs/m/dt=1/b.jsonl.gz", "format": "jsonl.gz", "rows_read": 9, "damaged": True,
               "problem": "s3://logs/m/dt=1/b.jsonl.gz: gzip stream is truncated (the file was cut short); 8 complete lines decoded ..."}
    fine = {"uri": "s3://logs/m/dt=1/a.jsonl", "format": "jsonl", "rows_read": 91, "damaged": False, "problem": None}
    with pytest.raises(ContractViolation) as info:
        enforce_invalid_share(100, 7, {"r": 7}, {"r": ["s3://logs/m/dt=1/a.jsonl line 3: missing"]}, 0.05, "partition s3://logs/m/dt=1",
                              rejects_by_file={"s3://logs/m/dt=1/a.jsonl": 6, "s3://logs/m/dt=1/b.jsonl.gz": 1}, files=[fine, damaged])
    text = str(info.value)
    assert "r: 7 rows, e.g. s3://logs/m/dt=1/a.jsonl line 3: missing" in text
    assert "Files with the most rejects: s3://logs/m/dt=1/a.jsonl (6 rows), s3://logs/m/dt=1/b.jsonl.gz (1 row)" in text
    assert "Damaged files (what followed the damage is lost at the source):\n  - s3://logs/m/dt=1/b.jsonl.gz: gzip stream is truncated" in text
