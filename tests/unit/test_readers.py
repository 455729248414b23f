import gzip
import io
import json
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
from modelwatch.ingest.readers import assemble, detect_format, open_file, read_file

GOOD = {"request_id": "r1", "timestamp": "2026-11-01T10:00:00Z", "model_id": "m", "variant": "production", "status": "ok", "latency_ms": 5.0}


def lines(*rows) -> bytes:
    return b"".join((json.dumps(r).encode() if isinstance(r, dict) else r) + b"\n" for r in rows)


def test_detect_format():
    assert detect_format("s3://b/part-0.jsonl.gz") == "jsonl.gz"
    assert detect_format("s3://b/part-0.JSONL") == "jsonl"
    assert detect_format("s3://b/part-0.parquet") == "parquet"
    assert detect_format("s3://b/part-0.csv") is None


def test_jsonl_counts_every_non_blank_line():
    data = lines(GOOD, b"", {**GOOD, "request_id": "r2"}, b"   ", b'{"request_id": "r3", "latency_ms": 1', b"[1, 2]")
    read = read_file(data, "s3://b/part.jsonl")
    assert len(read.rows) == 2 and read.rows_read == 4
    reasons = [r["reasons"] for r in read.rejects]
    assert "not valid JSON" in reasons[0] and "cut in half" in reasons[0]
    assert "must be a JSON object, got list" in reasons[1]
    assert [r["_line"] for r in read.rejects] == [5, 6]


def test_non_utf8_line_is_rejected_with_its_raw_bytes_escaped():
    read = read_file(lines(GOOD, b'{"prompt": "caf\xe9"}'), "s3://b/part.jsonl")
    assert len(read.rows) == 1
    assert "not UTF-8" in read.rejects[0]["reasons"] and "\\xe9" in read.rejects[0]["raw"]


def test_gzip_round_trip_and_multi_member():
    data = gzip.compress(lines(GOOD)) + gzip.compress(lines({**GOOD, "request_id": "r2"}))
    read = read_file(data, "s3://b/p.jsonl.gz")
    assert read.problem is None and [r["request_id"] for r in read.rows] == ["r1", "r2"]


def test_truncated_gzip_keeps_what_decoded_and_reports_the_file():
    body = lines(*[{**GOOD, "request_id": f"r{i}", "prompt": "x" * 50} for i in range(200)])
    data = gzip.compress(body)[:-40]
    read = read_file(data, "s3://b/p.jsonl.gz")
    assert "truncated" in read.problem
    assert 150 < len(read.rows) < 200
    assert all(r["_type_errors"] is None for r in read.rows)


def test_corrupt_gzip_is_a_file_problem():
    read = read_file(b"\x1f\x8b\x08\x00garbage-garbage", "s3://b/p.jsonl.gz")
    assert read.problem and "gzip" in read.problem and read.rows_read == 0


def test_zero_byte_and_unknown_type():
    assert read_file(b"", "s3://b/p.jsonl").rows_read == 0
    other = read_file(b"a,b\n", "s3://b/p.csv")
    assert "unsupported file type" in other.problem


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def test_parquet_with_nested_structs():
    table = pa.Table.from_pylist([{**GOOD, "features": {"a": 1.0, "plan": "basic"}, "probability": {"yes": 0.7, "no": 0.3}, "prediction": "yes"}])
    read = read_file(_parquet(table), "s3://b/p.parquet")
    row = read.rows[0]
    assert json.loads(row["features"]) == {"a": 1.0, "plan": "basic"} and row["probability"] == 0.7


def test_parquet_with_a_different_schema_reads_rows_with_missing_fields():
    read = read_file(_parquet(pa.table({"id": [1, 2], "value": ["a", "b"]})), "s3://b/p.parquet")
    assert len(read.rows) == 2
    assert all(r["request_id"] is None for r in read.rows)
    assert json.loads(read.rows[0]["extra"]) == {"id": 1, "value": "a"}


def test_corrupt_parquet_is_a_file_problem():
    read = read_file(b"PAR1 not really parquet", "s3://b/p.parquet")
    assert "not a readable Parquet file" in read.problem


def test_assemble_gives_one_row_id_sequence():
    a = read_file(lines(GOOD, b"{bad"), "s3://b/a.jsonl")
    b = read_file(lines({**GOOD, "request_id": "r2"}), "s3://b/b.jsonl")
    rows, rejects = assemble([a, b])
    ids = rows["_row_id"].to_pylist() + rejects["_row_id"].to_pylist()
    assert sorted(ids) == [0, 1, 2]
    assert rows.num_rows == 2 and rejects.num_rows == 1


def test_parquet_damaged_after_its_first_row_groups_keeps_the_rows_before_the_damage():
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from modelwatch.ingest.readers import open_file

    buffer = io.BytesIO()
    pq.write_table(pa.table({"request_id": [f"r{i}" for i in range(30)], "latency_ms": [float(i) for i in range(30)]}), buffer, row_group_size=10)
    data = bytearray(buffer.getvalue())
    last = pq.ParquetFile(io.BytesIO(bytes(data))).metadata.row_group(2)
    start = min(last.column(c).dictionary_page_offset or last.column(c).data_page_offset for c in range(last.num_columns))
    size = sum(last.column(c).total_compressed_size for c in range(last.num_columns))
    data[start : start + size] = b"\xff" * size
    stream = open_file(bytes(data), "s3://b/p.parquet", batch_rows=10)
    batches = list(stream.batches)
    assert [b.rows for b in batches] == [10, 10] and batches[1].lines[-1] == 20
    assert stream.problem.startswith("s3://b/p.parquet: Parquet file damaged after row 20") and stream.damaged
    read = read_file(bytes(data), "s3://b/p.parquet")  # the whole-file reader in 50,000-row batches: the damage is in its first batch
    assert read.rows_read == 0 and "damaged after row 0" in read.problem


def gzip_cut_after(first: bytes, rest: bytes, tail: bytes = b"") -> bytes:
    """``first`` in full (a full flush makes it decodable), then ``rest`` compressed and cut at a third, ``tail`` appended."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = comp.compress(first) + comp.flush(zlib.Z_FULL_FLUSH)
    body = comp.compress(rest) + comp.flush()
    return head + body[: len(body) // 3] + tail


def numbered(prefix: str, n: int) -> bytes:
    return lines(*[{**GOOD, "request_id": f"{prefix}{i}", "prompt": "where is my order?"} for i in range(n)])


def test_gzip_cut_short_names_the_file_the_lines_decoded_and_that_the_rest_is_lost():
    partial = b'{"request_id": "b0", "timestamp": "2026-11'  # the stream stops inside line 9
    stream = open_file(gzip_cut_after(numbered("a", 8) + partial, b""), "s3://b/dt=1/part-0.jsonl.gz")
    batches = list(stream.batches)
    assert sum(b.rows for b in batches) == 8
    assert [(r["_line"], r["reasons"], r["raw"]) for b in batches for r in b.rejects] == [(9, "line cut off by the damaged gzip stream", partial.decode())]
    assert stream.damaged
    assert stream.problem.startswith("s3://b/dt=1/part-0.jsonl.gz: gzip stream is truncated (the file was cut short)")
    assert "8 complete lines decoded before the cut" in stream.problem and "the rest of the file is lost at the source" in stream.problem


def test_gzip_corrupt_midstream_says_how_many_lines_decoded_before_the_damage():
    read = read_file(gzip_cut_after(numbered("a", 6), b"", b"\xff\x00garbage" * 10), "s3://b/p.jsonl.gz")
    assert len(read.rows) == 6 and not read.rejects and read.damaged
    assert read.problem.startswith("s3://b/p.jsonl.gz: gzip data is corrupt (")
    assert "6 complete lines decoded before the damage" in read.problem and "lost at the source" in read.problem


def test_only_files_that_lost_content_are_damaged():
    assert read_file(b"PAR1 not really parquet", "s3://b/p.parquet").damaged
    misnamed = read_file(gzip.compress(lines(GOOD)), "s3://b/p.jsonl")
    assert "rename the file" in misnamed.problem and not misnamed.damaged and len(misnamed.rows) == 1
    assert not read_file(b"a,b\n", "s3://b/p.csv").damaged
    assert not read_file(gzip.compress(lines(GOOD)), "s3://b/p.jsonl.gz").damaged
