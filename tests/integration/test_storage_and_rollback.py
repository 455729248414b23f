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


class Requests:
    """The S3 requests a client sends (botocore's before-send, retries included) and the body bytes it receives."""

    def __init__(self, client):
        self.sent: list[tuple[str, str, str | None]] = []  # (operation, URL, Range header)
        self.bytes_received = 0
        client.meta.events.register("before-send.s3", self._sent)
        client.meta.events.register("after-call.s3", self._received)

    def _sent(self, request, event_name, **_):
        byte_range = request.headers.get("Range")
        self.sent.append((event_name.rsplit(".", 1)[-1], request.url, byte_range.decode() if isinstance(byte_range, bytes) else byte_range))

    def _received(self, http_response, **_):
        self.bytes_received += int(http_response.headers.get("content-length", 0) or 0)

    def operations(self) -> list[str]:
        return [operation for operation, _, _ in self.sent]


def test_a_write_is_one_put_of_the_final_key(s3_server):
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    b = bucket(client)
    seen = Requests(client)
    put_bytes(client, f"s3://{b}/a/x.bin", b"one")
    put_bytes(client, f"s3://{b}/a/x.bin", b"two")
    table = pa.table({"a": [1, 2, 3]})
    put_table(client, f"s3://{b}/t.parquet", table)
    put_json(client, f"s3://{b}/j.json", {"k": [1]})
    assert seen.operations() == ["PutObject"] * 4
    assert [url.rsplit(f"/{b}/", 1)[1] for _, url, _ in seen.sent] == ["a/x.bin", "a/x.bin", "t.parquet", "j.json"]
    assert sorted(u for u, _ in list_objects(client, f"s3://{b}/")) == [f"s3://{b}/a/x.bin", f"s3://{b}/j.json", f"s3://{b}/t.parquet"]
    assert get_table(client, f"s3://{b}/t.parquet").equals(table)
    assert get_json(client, f"s3://{b}/j.json") == {"k": [1]}
    assert delete_prefix(client, f"s3://{b}/a") == 1 and not exists(client, f"s3://{b}/a/x.bin")


def _wide_table(rows: int, groups: int) -> tuple[pa.Table, bytes]:
    """A table whose incompressible prompt column dwarfs the others, written with ``groups`` row groups (as a shard's sink writes batches)."""
    import io

    import numpy as np
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    table = pa.table({"request_id": [f"req-{i:09d}" for i in range(rows)], "latency_ms": rng.gamma(2.0, 300.0, rows),
                      "prompt": [rng.bytes(150) for _ in range(rows)], "status": rng.choice(["ok", "error"], rows)})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=rows // groups)
    return table, buf.getvalue()


def test_a_column_read_fetches_its_chunks_and_the_footer_not_the_object(s3_server):
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    b = bucket(client)
    table, body = _wide_table(40_000, 4)  # 1.5 MiB of prompt per row group: more than the gap a read spans
    client.put_object(Bucket=b, Key="valid.parquet", Body=body)
    seen = Requests(client)

    got = get_table(client, f"s3://{b}/valid.parquet", columns=["status", "latency_ms"])

    assert got.equals(table.select(["status", "latency_ms"])), "the columns in the order asked, every row"
    assert set(seen.operations()) == {"GetObject"} and all(rng and rng.startswith("bytes=") for _, _, rng in seen.sent)
    assert seen.bytes_received < len(body) / 4, (seen.bytes_received, len(body))
    assert len(seen.sent) <= 1 + 4, "the tail, then at most one ranged GET per row group"
    seen.sent.clear()
    seen.bytes_received = 0
    assert get_table(client, f"s3://{b}/valid.parquet").equals(table)
    assert seen.operations() == ["GetObject"] and seen.sent[0][2] is None and seen.bytes_received == len(body)


def test_a_column_read_of_a_small_object_is_one_request(s3_server):
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    b = bucket(client)
    table = pa.table({"a": list(range(50)), "b": [str(i) for i in range(50)]})
    put_table(client, f"s3://{b}/small.parquet", table)
    seen = Requests(client)
    assert get_table(client, f"s3://{b}/small.parquet", columns=["b"]).equals(table.select(["b"]))
    assert seen.operations() == ["GetObject"]


def test_a_column_read_of_a_nested_column_gets_all_its_leaves(s3):
    b = bucket(s3)
    table = pa.table({"id": ["a", "b"], "metadata": [{"topic": "x", "locale": "en"}, {"topic": "y", "locale": None}], "n": [1, 2]})
    put_table(s3, f"s3://{b}/nested.parquet", table)
    assert get_table(s3, f"s3://{b}/nested.parquet", columns=["metadata", "id"]).equals(table.select(["metadata", "id"]))


def test_an_object_replaced_between_ranges_fails_the_read_not_mixes_versions(s3):
    import pytest
    from modelwatch.storage.ranged import RangedObject
    from modelwatch.storage.s3 import S3Error

    b = bucket(s3)
    _, body = _wide_table(20_000, 2)
    s3.put_object(Bucket=b, Key="v.parquet", Body=body)
    source = RangedObject(s3, f"s3://{b}/v.parquet", tail_bytes=1024)
    s3.put_object(Bucket=b, Key="v.parquet", Body=body[::-1])
    with pytest.raises(S3Error) as raised:
        source.prefetch([(0, 4096)])
    assert f"s3://{b}/v.parquet" in str(raised.value) and raised.value.response["Error"]["Code"] in ("PreconditionFailed", "412")


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
