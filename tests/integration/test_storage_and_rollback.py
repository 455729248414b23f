"""Storage and rollback against the real S3-compatible server over HTTP."""

import json
import threading
import uuid

import pyarrow as pa
from modelwatch.rollback.actions import RoutingDocumentAction, apply_rollback
from modelwatch.storage.s3 import (
    ParquetSink,
    delete_prefix,
    ensure_bucket,
    exists,
    get_json,
    get_table,
    list_objects,
    put_bytes,
    put_if_absent,
    put_json,
    put_table,
)


def bucket(s3) -> str:
    name = f"t-{uuid.uuid4().hex[:12]}"
    ensure_bucket(s3, name)
    return name


def test_atomic_put_leaves_no_temporary_object(s3):
    b = bucket(s3)
    put_bytes(s3, f"s3://{b}/a/x.bin", b"one")
    put_bytes(s3, f"s3://{b}/a/x.bin", b"two")
    assert [u for u, _ in list_objects(s3, f"s3://{b}/")] == [f"s3://{b}/a/x.bin"]
    table = pa.table({"a": [1, 2, 3]})
    put_table(s3, f"s3://{b}/t.parquet", table)
    assert get_table(s3, f"s3://{b}/t.parquet").equals(table)
    put_json(s3, f"s3://{b}/j.json", {"k": [1]})
    assert get_json(s3, f"s3://{b}/j.json") == {"k": [1]}
    assert delete_prefix(s3, f"s3://{b}/a") == 1 and not exists(s3, f"s3://{b}/a/x.bin")


def test_parquet_sink_streams_batches_into_one_object_or_none(s3):
    """Row groups spool to disk and land as one object (here 12 MiB, above boto3's multipart threshold), read back whole."""
    import numpy as np
    import pytest

    b = bucket(s3)
    rng = np.random.default_rng(5)
    batches = [pa.table({"x": rng.random(400_000), "n": rng.integers(0, 2**62, 400_000)}) for _ in range(2)]
    with ParquetSink(s3, f"s3://{b}/p.parquet", batches[0].schema) as sink:
        for batch in batches:
            sink.write(batch)
    assert sink.rows == 800_000 and dict(list_objects(s3, f"s3://{b}/"))[f"s3://{b}/p.parquet"] > 8 * 2**20
    assert get_table(s3, f"s3://{b}/p.parquet").equals(pa.concat_tables(batches))
    assert get_table(s3, f"s3://{b}/p.parquet", columns=["n"]).column_names == ["n"]
    with pytest.raises(RuntimeError), ParquetSink(s3, f"s3://{b}/q.parquet", batches[0].schema) as sink:
        sink.write(batches[0])
        raise RuntimeError("the producer failed halfway")
    assert not exists(s3, f"s3://{b}/q.parquet"), "a failed stream writes nothing"


def test_put_if_absent_is_a_conditional_create(s3):
    b = bucket(s3)
    assert put_if_absent(s3, f"s3://{b}/lock", b"first") is True
    assert put_if_absent(s3, f"s3://{b}/lock", b"second") is False
    assert s3.get_object(Bucket=b, Key="lock")["Body"].read() == b"first"


def breach(b, breach_id="b1"):
    return {"model_id": "m", "experiment_id": "exp-1", "control": "control", "treatment": "treatment", "breach_id": breach_id,
            "reason": "error_rate = 0.05 > max 0.02 on 400 requests", "detected_at": "2026-11-08T00:10:00+00:00",
            "reports_uri": f"s3://{b}/reports", "routing_uri": f"s3://{b}/routing/m.json"}


def test_rollback_rewrites_routing_and_keeps_other_experiments(s3):
    b = bucket(s3)
    put_json(s3, f"s3://{b}/routing/m.json", {"experiments": {"exp-0": {"state": "running", "weights": {"a": 0.5, "b": 0.5}}}})
    result = apply_rollback(s3, f"s3://{b}/reports", breach(b), RoutingDocumentAction(s3, f"s3://{b}/routing/m.json"), "run-1")
    assert result["outcome"] == "rolled_back"
    routing = get_json(s3, f"s3://{b}/routing/m.json")
    assert routing["experiments"]["exp-1"]["weights"] == {"control": 1.0, "treatment": 0.0}
    assert routing["experiments"]["exp-0"]["state"] == "running"
    audit = get_json(s3, result["audit_uri"])
    assert audit["breach"]["breach_id"] == "b1" and audit["outcome"] == "rolled_back"
    again = apply_rollback(s3, f"s3://{b}/reports", breach(b), RoutingDocumentAction(s3, f"s3://{b}/routing/m.json"), "run-2")
    assert again["outcome"] == "already_applied"
    later = apply_rollback(s3, f"s3://{b}/reports", breach(b, "b2"), RoutingDocumentAction(s3, f"s3://{b}/routing/m.json"), "run-3")
    assert later["outcome"] == "already_rolled_back"


def test_concurrent_rollbacks_of_one_breach_act_once(s3):
    b = bucket(s3)
    results, barrier = [], threading.Barrier(6)

    def fire(i):
        barrier.wait()
        results.append(apply_rollback(s3, f"s3://{b}/reports", breach(b), RoutingDocumentAction(s3, f"s3://{b}/routing/m.json"), f"run-{i}"))

    threads = [threading.Thread(target=fire, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = sorted(r["outcome"] for r in results)
    assert outcomes.count("rolled_back") == 1, outcomes
    assert set(outcomes) <= {"rolled_back", "claimed_elsewhere", "already_applied"}
    audits = [u for u, _ in list_objects(s3, f"s3://{b}/reports/_audit") if not u.endswith(".claim.json")]
    assert len(audits) == 1
    assert json.loads(s3.get_object(Bucket=b, Key=audits[0].split(f"s3://{b}/")[1])["Body"].read())["outcome"] == "rolled_back"
