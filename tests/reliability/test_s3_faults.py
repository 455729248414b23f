"""S3 faults between the client and the S3 server: retried with backoff, then a clear failure; writes stay atomic.

Faults are injected by ``faulty_s3.FaultyS3``, an HTTP proxy in front of the moto server,
so the real botocore retry machinery (``storage.config_kwargs``) and the real server
are exercised, on whole-object GETs and PUTs and on the ranged GETs of a column read.
Writers are killed mid-upload in a subprocess to show that no partial object ever becomes
visible.
"""

from __future__ import annotations

import gzip
import html
import io
import os
import signal
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus import lines
from faulty_s3 import Fault, FaultyS3
from modelwatch.core.partition import Partition
from modelwatch.storage.s3 import (
    S3Error,
    S3Unreachable,
    ensure_bucket,
    exists,
    get_bytes,
    get_json,
    get_table,
    list_objects,
    make_client,
    put_bytes,
    put_json,
    put_table,
)

RETRIES = 4  # botocore retries.max_attempts (retries after the first request)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def proxy(s3_server):
    server = FaultyS3(s3_server.endpoint, seed=7).start()
    yield server
    server.stop()


@pytest.fixture()
def faulty(proxy):
    """A client through the proxy: 4 retries, 1 s timeouts (so an injected timeout costs 1 s, not 60)."""
    return make_client(endpoint_url=proxy.endpoint, max_attempts=RETRIES, mode="standard", connect_timeout=1, read_timeout=1)


@pytest.fixture()
def bucket(s3) -> str:
    name = f"faults-{uuid.uuid4().hex[:10]}"
    ensure_bucket(s3, name)
    return name


TRANSIENT = [
    ("GET", "slowdown"), ("GET", "internal_error"), ("GET", "bad_gateway"), ("GET", "timeout"), ("GET", "reset"), ("GET", "truncate_body"),
    ("PUT", "slowdown"), ("PUT", "internal_error"), ("PUT", "reset"), ("PUT", "timeout"),
    ("LIST", "slowdown"), ("LIST", "timeout"), ("HEAD", "internal_error"), ("HEAD", "reset"),
]


@pytest.mark.parametrize(("op", "kind"), TRANSIENT, ids=[f"{o}-{k}" for o, k in TRANSIENT])
def test_transient_fault_is_retried_and_the_call_succeeds(s3, proxy, faulty, bucket, op, kind):
    uri = f"s3://{bucket}/data/obj.bin"
    body = os.urandom(50_000)
    put_bytes(s3, uri, body)
    method = {"LIST": "GET", "PUT": "PUT"}.get(op, op)
    fault = proxy.add(Fault(kind, method=method, path_contains="" if op == "LIST" else "obj.bin",
                            query_contains="list-type=2" if op == "LIST" else None, times=2, delay_s=2.0))
    if op == "GET":
        assert get_bytes(faulty, uri) == body
    elif op == "PUT":
        assert put_bytes(faulty, uri, body[::-1]) == uri and get_bytes(s3, uri) == body[::-1]
    elif op == "LIST":
        assert list(list_objects(faulty, f"s3://{bucket}/data")) == [(uri, len(body))]
    else:
        assert exists(faulty, uri)
    assert fault.fired == 2 and proxy.injected(kind) == 2


PERSISTENT = [("slowdown", S3Error, "throttling"), ("internal_error", S3Error, "kept failing"), ("bad_gateway", S3Error, "kept failing"),
              ("timeout", S3Unreachable, "did not answer"), ("reset", S3Unreachable, "did not answer")]


@pytest.mark.parametrize(("kind", "error", "advice"), PERSISTENT, ids=[p[0] for p in PERSISTENT])
def test_persistent_fault_fails_after_the_retries_naming_the_object(s3, proxy, faulty, bucket, kind, error, advice):
    uri = f"s3://{bucket}/logs/part-7.jsonl"
    put_bytes(s3, uri, b"{}\n")
    proxy.add(Fault(kind, method="GET", path_contains="part-7", times=None, delay_s=1.5))
    with pytest.raises(error) as raised:
        get_bytes(faulty, uri)
    assert uri in str(raised.value) and advice in str(raised.value)
    assert proxy.injected(kind) == RETRIES + 1  # the first request and every retry, then it gives up
    if error is S3Error:
        assert f"after {RETRIES + 1} attempt(s)" in str(raised.value)


IAM_HINT = "README.md, 'Privacy and permissions'"


def test_ensure_bucket_creates_a_bucket_s3_says_does_not_exist(s3, proxy):
    name = f"faults-new-{uuid.uuid4().hex[:10]}"
    ensure_bucket(make_client(endpoint_url=proxy.endpoint), name)  # HEAD answers 404: the bucket is created
    ensure_bucket(s3, name)  # and found the second time
    assert [s.method for s in proxy.seen if name in s.path] == ["HEAD", "PUT"]
    s3.head_bucket(Bucket=name)


def test_ensure_bucket_refused_names_the_permission_and_creates_nothing(proxy, faulty):
    """A 403 on the check is a missing s3:ListBucket, not a missing bucket: creating one would hide the real problem."""
    name = f"faults-denied-{uuid.uuid4().hex[:10]}"
    proxy.add(Fault("access_denied", method="HEAD", path_contains=name, times=None))
    with pytest.raises(S3Error) as raised:
        ensure_bucket(faulty, name)
    message = str(raised.value)
    assert f"HeadBucket of s3://{name} failed" in message and f"lack s3:ListBucket on arn:aws:s3:::{name}:" in message and IAM_HINT in message
    assert "does not exist" not in message
    assert [s.method for s in proxy.seen if name in s.path] == ["HEAD"]


def test_ensure_bucket_failing_otherwise_says_so_and_creates_nothing(proxy, faulty):
    name = f"faults-down-{uuid.uuid4().hex[:10]}"
    proxy.add(Fault("internal_error", method="HEAD", path_contains=name, times=None))
    with pytest.raises(S3Error) as raised:
        ensure_bucket(faulty, name)
    assert "kept failing through every retry" in str(raised.value) and "ListBucket" not in str(raised.value)
    assert {s.method for s in proxy.seen if name in s.path} == {"HEAD"}


DENIED = [
    ("get", "GET", "lack s3:GetObject on arn:aws:s3:::{bucket}/data/obj.bin:", "also answers 403 for an object that does not exist"),
    ("exists", "HEAD", "lack s3:GetObject on arn:aws:s3:::{bucket}/data/obj.bin:", "also answers 403 for an object that does not exist"),
    ("list", "GET", "lack s3:ListBucket on arn:aws:s3:::{bucket} for the prefix data/:", None),
    ("put", "PUT", "lack s3:PutObject on arn:aws:s3:::{bucket}/data/obj.bin:", None),
    ("column read", "GET", "lack s3:GetObject on arn:aws:s3:::{bucket}/data/obj.bin:", "also answers 403 for an object that does not exist"),
]


@pytest.mark.parametrize(("op", "method", "permission", "note"), DENIED, ids=[d[0] for d in DENIED])
def test_access_denied_names_the_action_and_resource_missing_from_the_policy(s3, proxy, faulty, bucket, op, method, permission, note):
    uri = f"s3://{bucket}/data/obj.bin"
    put_table(s3, uri, pa.table({"a": [1, 2]}))
    proxy.add(Fault("access_denied", method=method, path_contains=bucket, query_contains="list-type=2" if op == "list" else None, times=None))
    calls = {"get": lambda: get_bytes(faulty, uri), "exists": lambda: exists(faulty, uri),
             "list": lambda: list(list_objects(faulty, f"s3://{bucket}/data")), "put": lambda: put_bytes(faulty, uri, b"y"),
             "column read": lambda: get_table(faulty, uri, columns=["a"])}
    with pytest.raises(S3Error) as raised:
        calls[op]()
    message = str(raised.value)
    assert permission.format(bucket=bucket) in message and IAM_HINT in message
    assert note is None or note.format(bucket=bucket) in message
    assert proxy.injected("access_denied") == 1  # a refusal is not retried


def test_unreadable_earlier_summaries_never_fail_publish_and_the_page_says_why(s3, proxy, capfd):
    """A 403 and a 5xx that outlasts the retries on two earlier days' summaries: both days are gaps whose reason the page shows."""
    from conftest import bundled_config_data, scoped_config
    from modelwatch.runner import extract, publish

    cfg = scoped_config(s3, "rel-history", bundled_config_data("rel-history"))
    model, day = "churn-classifier-v2", date(2027, 3, 10)
    readable, denied, failing = date(2027, 3, 7), date(2027, 3, 9), date(2027, 3, 8)
    earlier = Partition(model, readable)
    publish(s3, cfg, extract(s3, cfg, earlier), None, None, {"run_id": "earlier"})  # a real summary (no traffic that day)
    summary = get_json(s3, f"{earlier.path(cfg.defaults.reports_uri)}/summary.json")
    for d in (denied, failing):  # equally good summaries, which S3 will not hand out
        put_json(s3, f"{Partition(model, d).path(cfg.defaults.reports_uri)}/summary.json", {**summary, "partition": Partition(model, d).to_dict()})
    proxy.add(Fault("access_denied", method="GET", path_contains=f"{denied.isoformat()}/summary.json", times=None))  # keys' "=" is sent as %3D
    proxy.add(Fault("internal_error", method="GET", path_contains=f"{failing.isoformat()}/summary.json", times=None))
    client = make_client(endpoint_url=proxy.endpoint, max_attempts=1, mode="standard")

    partition = Partition(model, day)
    published = publish(client, cfg, extract(client, cfg, partition), None, None, {"run_id": "today"})

    assert published["outcome"] == "no_traffic"
    page = html.unescape(get_bytes(s3, f"{partition.path(cfg.defaults.reports_uri)}/index.html").decode())
    denied_uri, failing_uri = (f"{Partition(model, d).path(cfg.defaults.reports_uri)}/summary.json" for d in (denied, failing))
    assert f"S3 GetObject of {denied_uri} failed" in page and "lack s3:GetObject on arn:aws:s3:::rel-history-reports/" in page
    assert f"S3 GetObject of {failing_uri} failed after 2 attempt(s)" in page and "kept failing through every retry" in page
    assert page.count("the day is shown as a gap") == 2
    index = get_bytes(s3, f"{cfg.defaults.reports_uri}/index.html").decode()
    assert f"dt={day.isoformat()}/index.html" in index and f"dt={readable.isoformat()}/index.html" in index  # the index was rebuilt
    out = capfd.readouterr().out
    assert f"WARNING site index: S3 GetObject of {denied_uri} failed" in out and f"WARNING site index: S3 GetObject of {failing_uri} failed" in out
    assert proxy.injected("access_denied") == 2 and proxy.injected("internal_error") == 4  # page and index each read both days once


def test_adaptive_mode_default_retries_throttling(s3, proxy, bucket):
    """The default client config (adaptive retries) rides out a burst of SlowDown answers."""
    uri = f"s3://{bucket}/x.json"
    put_json(s3, uri, {"a": 1})
    proxy.add(Fault("slowdown", method="GET", path_contains="x.json", times=5))
    client = make_client(endpoint_url=proxy.endpoint)
    assert client.meta.config.retries["mode"] == "adaptive"
    assert get_bytes(client, uri) == get_bytes(s3, uri) and proxy.injected("slowdown") == 5


def test_failed_write_names_the_final_object_and_leaves_nothing_there(s3, proxy, faulty, bucket):
    uri = f"s3://{bucket}/reports/model_id=m/dt=2027-01-01/summary.json"
    proxy.add(Fault("internal_error", method="PUT", times=None))
    with pytest.raises(S3Error) as raised:
        put_json(faulty, uri, {"outcome": "ok"})
    assert f"PutObject of {uri} failed after {RETRIES + 1} attempt(s)" in str(raised.value)
    assert [(seen.method, seen.path.split("?")[0]) for seen in proxy.seen] == [("PUT", f"/{bucket}/reports/model_id%3Dm/dt%3D2027-01-01/summary.json")] * (RETRIES + 1)
    assert not exists(s3, uri)


def _parquet_of_row_groups(groups: int, rows_per_group: int) -> tuple[pa.Table, bytes]:
    rng = np.random.default_rng(3)
    rows = groups * rows_per_group
    table = pa.table({"x": rng.random(rows), "blob": [rng.bytes(120) for _ in range(rows)], "n": rng.integers(0, 9, rows)})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=rows_per_group)
    return table, buf.getvalue()


RANGED_FAULTS = ["slowdown", "internal_error", "reset", "timeout", "truncate_body"]


@pytest.mark.parametrize("kind", RANGED_FAULTS)
def test_column_read_rides_out_faults_on_its_ranged_gets(s3, proxy, faulty, bucket, kind):
    """Faults on the tail GET, then on a chunk range: the client's retries (a cut-off body: the reader's own) deliver the same bytes."""
    from modelwatch.storage.ranged import RangedObject

    uri = f"s3://{bucket}/work/valid.parquet"
    table, body = _parquet_of_row_groups(3, 12_000)
    s3.put_object(Bucket=bucket, Key="work/valid.parquet", Body=body)
    on_tail = proxy.add(Fault(kind, method="GET", path_contains="valid.parquet", times=2, delay_s=2.0))
    assert get_table(faulty, uri, columns=["n", "x"]).equals(table.select(["n", "x"]))
    assert on_tail.fired == 2

    source = RangedObject(faulty, uri, tail_bytes=4096)
    on_chunk = proxy.add(Fault(kind, method="GET", path_contains="valid.parquet", times=2, delay_s=2.0))
    source.prefetch([(100, 150_100)])
    refetched = 2 if kind == "truncate_body" else 0  # a body cut off is fetched again by the reader; botocore retries the others inside one call
    assert on_chunk.fired == 2 and source.requests == 2 + refetched
    assert source.seek(100) == 100 and source.read(150_000) == body[100:150_100]


def test_column_read_failing_through_the_retries_names_the_object(proxy, faulty, s3, bucket):
    uri = f"s3://{bucket}/work/valid.parquet"
    _, body = _parquet_of_row_groups(3, 12_000)
    s3.put_object(Bucket=bucket, Key="work/valid.parquet", Body=body)
    proxy.add(Fault("internal_error", method="GET", path_contains="valid.parquet", times=None))
    with pytest.raises(S3Error) as raised:
        get_table(faulty, uri, columns=["x"])
    assert f"GetObject of {uri} failed after {RETRIES + 1} attempt(s)" in str(raised.value) and "kept failing" in str(raised.value)


def test_stage_under_random_faults_gives_the_same_outputs(s3_server, s3, proxy):
    """extract + validate through a proxy failing 30% of requests write exactly what a clean run writes."""
    from conftest import bundled_config_data, scoped_config
    from modelwatch.core.partition import Partition
    from modelwatch.runner import extract, validate
    from modelwatch.runtime.generate import Scenario, classifier_day
    from modelwatch.storage.keys import quarantine_uri, work_uri

    cfg = scoped_config(s3, "rel-faults", bundled_config_data("rel-faults"))
    day = date(2026, 11, 2)
    rows, _ = classifier_day("churn-classifier-v2", day, 600, 3, Scenario())
    partition = Partition("churn-classifier-v2", day)
    put_bytes(s3, f"{partition.path(cfg.defaults.logs_uri)}/part-0.jsonl.gz", gzip.compress(lines(rows[:300])))
    put_bytes(s3, f"{partition.path(cfg.defaults.logs_uri)}/part-1.jsonl", lines([*rows[300:], b'{"request_id": "cut', b"\xff\xfe"]))
    clean = validate(s3, cfg, extract(s3, cfg, partition))
    outputs = [work_uri(cfg, partition, n) for n in ("shards/valid-00000-of-00001.parquet", "shards/quarantine-00000-of-00001.parquet",
                                                     "shards/ids-00000-of-00001.parquet", "valid.json")] + [quarantine_uri(cfg, partition)]
    expected = {u: get_bytes(s3, u) for u in outputs}

    for kind in ("slowdown", "internal_error", "reset"):
        proxy.add(Fault(kind, times=None, rate=0.1))
    client = make_client(endpoint_url=proxy.endpoint, max_attempts=8, mode="standard", connect_timeout=1, read_timeout=5)
    faulted = validate(client, cfg, extract(client, cfg, partition))
    injected = proxy.injected()
    proxy.clear()
    assert injected >= 3, "the run met faults"
    assert faulted == clean and faulted["rows_read"] == faulted["rows_valid"] + faulted["rows_quarantined"] == 602
    assert {u: get_bytes(s3, u) for u in outputs} == expected


_WRITER = """
import sys
from modelwatch.storage.s3 import make_client, put_bytes
client = make_client(endpoint_url=sys.argv[1], max_attempts=0, read_timeout=120)
put_bytes(client, sys.argv[2], b"N" * 4_000_000)
"""


def _kill_writer_when(proxy: FaultyS3, fault: Fault, uri: str) -> None:
    proxy.add(fault)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, proxy.endpoint, uri], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert fault.hit.wait(120), "the writer never reached the injected stall"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_writer_killed_mid_upload_leaves_no_object(s3, proxy, bucket):
    uri = f"s3://{bucket}/reports/model_id=m/dt=2027-01-01/metrics.parquet"
    _kill_writer_when(proxy, Fault("stall", method="PUT", path_contains="metrics.parquet", delay_s=20), uri)
    assert not exists(s3, uri) and list(list_objects(s3, f"s3://{bucket}/reports")) == []


def test_writer_killed_mid_upload_of_a_new_version_keeps_the_old_one(s3, proxy, bucket):
    uri = f"s3://{bucket}/reports/model_id=m/dt=2027-01-01/summary.json"
    put_bytes(s3, uri, b'{"version": 1}')
    _kill_writer_when(proxy, Fault("stall", method="PUT", path_contains="summary.json", delay_s=20), uri)
    assert get_bytes(s3, uri) == b'{"version": 1}'  # readers see the old complete version, never a part of the new one
    assert [u for u, _ in list_objects(s3, f"s3://{bucket}/reports")] == [uri]


def test_baseline_whose_manifest_write_fails_is_not_visible(s3, proxy):
    """A multi-object output is published manifest-last: without the manifest, readers treat it as absent."""
    from conftest import bundled_config_data, scoped_config
    from modelwatch.baseline.build import build_baseline
    from modelwatch.baseline.store import BaselineMissing, load_baseline
    from modelwatch.core.partition import Partition
    from modelwatch.runtime.generate import Scenario, classifier_day
    from modelwatch.storage.keys import baseline_prefix

    cfg = scoped_config(s3, "rel-manifest", bundled_config_data("rel-manifest"))
    for offset in range(3):
        day = date(2026, 11, 1 + offset)
        rows = classifier_day("churn-classifier-v2", day, 150, 5, Scenario())[0]
        put_bytes(s3, f"{Partition('churn-classifier-v2', day).path(cfg.defaults.logs_uri)}/part-0.jsonl", lines(rows))
    proxy.add(Fault("internal_error", method="PUT", path_contains="manifest.json", times=None))
    client = make_client(endpoint_url=proxy.endpoint, max_attempts=1, mode="standard")
    with pytest.raises(S3Error, match="manifest.json"):
        build_baseline(client, cfg, "churn-classifier-v2", date(2026, 11, 1), date(2026, 11, 3), progress=lambda _: None)
    prefix = baseline_prefix(cfg.defaults.reports_uri, "churn-classifier-v2", "2026-11-01_2026-11-03")
    assert exists(s3, f"{prefix}/reference.parquet") and not exists(s3, f"{prefix}/manifest.json")
    with pytest.raises(BaselineMissing, match="manifest.json is missing"):
        load_baseline(s3, cfg, cfg.model("churn-classifier-v2"))


def test_stage_reading_an_unreachable_object_fails_naming_it(s3, proxy):
    from conftest import bundled_config_data, scoped_config
    from modelwatch.core.partition import Partition
    from modelwatch.runner import extract
    from modelwatch.storage.keys import work_uri

    cfg = scoped_config(s3, "rel-unreach", bundled_config_data("rel-unreach"))
    partition = Partition("support-bot-v3", date(2027, 2, 1))
    log = f"{partition.path(cfg.defaults.logs_uri)}/part-0.jsonl"
    put_bytes(s3, log, b'{"request_id": "a"}\n')
    proxy.add(Fault("internal_error", method="GET", path_contains="part-0.jsonl", times=None))
    with pytest.raises(S3Error) as raised:
        extract(make_client(endpoint_url=proxy.endpoint, max_attempts=1, mode="standard"), cfg, partition)
    assert log in str(raised.value)
    assert not exists(s3, work_uri(cfg, partition, "shards/valid-00000-of-00001.parquet"))  # nothing half-done for the next stage to pick up
