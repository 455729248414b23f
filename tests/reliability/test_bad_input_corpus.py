"""Every kind of bad input in the corpus through the real extract + validate stages on the S3 server.

Each case gets its own day of ``support-bot-v3``; the files are written to the logs
prefix, then ``pipeline.extract`` and ``pipeline.validate`` run as the DAG runs them. The
invariant rows in = rows valid + rows quarantined is checked against the rows the case
wrote, and every quarantined row carries its reason and where it came from.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta

import pytest
from corpus import CASES, MODEL, Case, good, goods, gzip_cut_after, lines
from modelwatch.core.partition import Partition
from modelwatch.ingest.valid import read_valid
from modelwatch.ingest.validation import ContractViolation
from modelwatch.runner import extract, validate
from modelwatch.storage.keys import quarantine_uri
from modelwatch.storage.s3 import get_table, put_bytes

FIRST_DAY = date(2027, 1, 1)


@pytest.fixture(scope="module")
def world(s3_server):
    from conftest import bundled_config_data, scoped_config
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    data = bundled_config_data("rel-corpus")
    llm = next(m for m in data["models"] if m["id"] == MODEL)
    llm["validation"]["max_invalid_share"] = 1.0  # the corpus checks counts; the limit has its own test below
    return client, scoped_config(client, "rel-corpus", data)


def _write(client, cfg, day: date, files: dict[str, bytes]) -> Partition:
    partition = Partition(MODEL, day)
    for name, body in files.items():
        put_bytes(client, f"{partition.path(cfg.defaults.logs_uri)}/{name}", body)
    return partition


def test_corpus_is_large_and_named_once():
    names = [c.name for c in CASES]
    assert len(names) >= 25 and len(set(names)) == len(names)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_has_its_outcome_and_loses_no_row(world, case: Case):
    client, cfg = world
    partition = _write(client, cfg, FIRST_DAY + timedelta(days=CASES.index(case)), case.make(FIRST_DAY + timedelta(days=CASES.index(case))))
    extracted = extract(client, cfg, partition)
    validated = validate(client, cfg, extracted)

    assert extracted["rows_read"] == case.rows_in, extracted["files"]
    assert (validated["rows_valid"], validated["rows_quarantined"]) == (case.valid, case.quarantined), validated["failures"]
    assert validated["rows_read"] == validated["rows_valid"] + validated["rows_quarantined"]

    quarantine = get_table(client, quarantine_uri(cfg, partition)).to_pylist()
    valid = read_valid(client, cfg, partition).to_pylist()
    assert len(quarantine) == case.quarantined and len(valid) == case.valid
    ids = sorted([r["_row_id"] for r in quarantine] + [r["_row_id"] for r in valid])
    assert ids == list(range(case.rows_in)), "every row read is either valid or quarantined, exactly once"
    for row in quarantine:
        assert row["reasons"] and row["_source"].startswith(partition.path(cfg.defaults.logs_uri)) and row["_line"] >= 1, row
        assert row["raw"] is not None
        if case.reason:
            assert re.search(case.reason, row["reasons"]), row["reasons"]
    if case.file_problem:
        problems = [f["problem"] or "" for f in extracted["files"]]
        assert any(case.file_problem in p for p in problems), problems
    else:
        assert all(f["problem"] is None for f in extracted["files"]), extracted["files"]
    if case.kept:
        assert case.kept(valid)
    damaged = [f for f in extracted["files"] if f["damaged"]]
    assert extracted["files_damaged"] == len(damaged) == case.damaged, extracted["files"]
    assert all(f["problem"].startswith(f"{f['uri']}: ") for f in damaged), "a damaged file's problem names the file"


def test_too_many_bad_rows_fail_the_stage_naming_partition_rule_and_fix(s3_server):
    from conftest import bundled_config_data, scoped_config
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    cfg = scoped_config(client, "rel-limit", bundled_config_data("rel-limit"))
    day = date(2027, 3, 1)
    rows = [good(day, i) for i in range(10)] + [good(day, 10 + i, latency_ms=-1.0) for i in range(3)]
    partition = _write(client, cfg, day, {"part-0.jsonl": lines(rows)})
    extracted = extract(client, cfg, partition)
    with pytest.raises(ContractViolation) as raised:
        validate(client, cfg, extracted)
    message = str(raised.value)
    assert partition.path(cfg.defaults.logs_uri) in message and "3 of 13 rows" in message
    assert "latency_ms must be within" in message and "max_invalid_share" in message and "fix the producer" in message
    uri = f"{partition.path(cfg.defaults.logs_uri)}/part-0.jsonl"
    assert f"e.g. {uri} line 11: -1.0, {uri} line 12: -1.0, {uri} line 13: -1.0" in message
    assert f"Files with the most rejects: {uri} (3 rows)" in message
    # the quarantine was written before the stage failed: nothing is lost, the rows can be inspected
    assert get_table(client, quarantine_uri(cfg, partition)).num_rows == 3


def test_a_gzip_cut_short_fails_the_limit_naming_the_file_what_was_decoded_and_what_is_lost(s3_server):
    """The bundled 5% limit: 1 cut line of 19 fails the stage; the message says which file, what survived and that the rest is gone."""
    from conftest import bundled_config_data, scoped_config
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    cfg = scoped_config(client, "rel-cut", bundled_config_data("rel-cut"))
    day = date(2027, 3, 2)
    cut = b'{"request_id": "req-cut", "timestamp": "2027-03-02T10:00:00Z", "model_id": "support-bo'
    partition = _write(client, cfg, day, {"part-0.jsonl": lines(goods(day, 10)), "part-1.jsonl.gz": gzip_cut_after(lines(goods(day, 8, 100)) + cut, b"")})
    extracted = extract(client, cfg, partition)
    with pytest.raises(ContractViolation) as raised:
        validate(client, cfg, extracted)
    message = str(raised.value)
    uri = f"{partition.path(cfg.defaults.logs_uri)}/part-1.jsonl.gz"
    assert "1 of 19 rows" in message
    assert f"readable JSON line: line cut off by the damaged gzip stream: 1 row, e.g. {uri} line 9: {cut.decode()!r}" in message
    assert f"Files with the most rejects: {uri} (1 row)" in message
    assert (f"  - {uri}: gzip stream is truncated (the file was cut short); 8 complete lines decoded before the cut, "
            "the rest of the file is lost at the source") in message


def test_summary_counts_damaged_files(world):
    from modelwatch.runner import profile, publish

    client, cfg = world
    case = next(c for c in CASES if c.name == "truncated_gzip")
    day = date(2027, 4, 2)
    partition = _write(client, cfg, day, {**case.make(day), "part-1.jsonl": lines(goods(day, 3, 50))})
    extracted = extract(client, cfg, partition)
    validated = validate(client, cfg, extracted)
    summary = json.loads(client.get_object(**_loc(publish(client, cfg, extracted, validated, profile(client, cfg, validated, "daily"),
                                                            {"run_id": "t"})["summary_uri"]))["Body"].read())
    assert summary["rows"] == {"read": 12, "valid": 11, "quarantined": 1}
    assert summary["files_damaged"] == 1 and [f["damaged"] for f in summary["files"]] == [True, False]


def test_summary_records_the_counts(world):
    """The counts reach the published summary too (what an analyst reads)."""
    from modelwatch.runner import profile, publish

    client, cfg = world
    case = next(c for c in CASES if c.name == "duplicate_request_ids")
    day = date(2027, 4, 1)
    partition = _write(client, cfg, day, case.make(day))
    extracted = extract(client, cfg, partition)
    validated = validate(client, cfg, extracted)
    summary = json.loads(client.get_object(**_loc(publish(client, cfg, extracted, validated, profile(client, cfg, validated, "daily"),
                                                            {"run_id": "t"})["summary_uri"]))["Body"].read())
    assert summary["rows"] == {"read": case.rows_in, "valid": case.valid, "quarantined": case.quarantined}


def _loc(uri: str) -> dict:
    bucket, _, key = uri[5:].partition("/")
    return {"Bucket": bucket, "Key": key}
