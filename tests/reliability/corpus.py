"""The bad-input corpus: one entry per kind of broken partition file, with the outcome it must have.

Each ``Case`` builds the files of one partition (``make(day) -> {file name: bytes}``) and
states what extract + validate must do with them: how many rows are valid, how many are
quarantined and with which reason, and which file-level problem is reported. The rows a
case produces are counted by construction (``rows_in``), so the test checks the invariant
rows in = rows valid + rows quarantined against what was written, not against what was read.

Every partition belongs to ``support-bot-v3`` (an LLM model: prompt, token counts and
response are required) and holds a few good rows besides the bad ones.
"""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

MODEL = "support-bot-v3"
MB = 1024 * 1024


def good(day: date, i: int, **override) -> dict:
    """A contract-valid LLM log row of ``day``."""
    row = {
        "request_id": f"req-{day:%Y%m%d}-{i:05d}",
        "timestamp": f"{day.isoformat()}T{i % 24:02d}:{i % 60:02d}:00Z",
        "model_id": MODEL,
        "variant": "production",
        "status": "ok",
        "latency_ms": 120.0 + i,
        "prompt": f"Where is my order {i}?",
        "response": "It left the warehouse yesterday.",
        "prompt_tokens": 6,
        "completion_tokens": 7,
        "cost_usd": 0.0001,
        "metadata": {"topic": "shipping", "locale": "en-US"},
    }
    row.update(override)
    return {k: v for k, v in row.items() if v is not _DROP}


_DROP = object()  # good(..., field=_DROP) leaves the field out


def lines(rows: list) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def goods(day: date, n: int, start: int = 0) -> list[dict]:
    return [good(day, i) for i in range(start, start + n)]


def parquet(rows: list[dict] | pa.Table) -> bytes:
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def gzip_cut_after(first: bytes, rest: bytes, tail: bytes = b"") -> bytes:
    """A gzip stream holding ``first`` in full, then ``rest`` compressed but cut off (``tail`` appended instead of the end).

    A full flush after ``first`` makes everything before the cut decodable, so the lines
    that survive are known exactly.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = comp.compress(first) + comp.flush(zlib.Z_FULL_FLUSH)
    body = comp.compress(rest) + comp.flush()
    return head + body[: len(body) // 3] + tail


def nested(depth: int) -> dict:
    value: dict = {"leaf": True}
    for _ in range(depth):
        value = {"a": value}
    return value


@dataclass(frozen=True)
class Case:
    """One kind of bad input and the outcome it must have."""

    name: str
    how: str  # how the bytes are made, in words
    make: Callable[[date], dict[str, bytes]]  # file name under the partition -> bytes
    rows_in: int  # rows the files hold that can reach the reader (non-blank lines, Parquet rows)
    valid: int
    quarantined: int
    reason: str | None = None  # a substring of every quarantined row's reasons
    file_problem: str | None = None  # a substring of some file's problem
    kept: Callable[[list[dict]], bool] | None = None  # a property of the valid rows (e.g. extra fields kept)
    damaged: int = 0  # files whose content is partly or wholly lost at the source (counted in the summary)


CASES: list[Case] = [
    Case("truncated_gzip", "gzip of 8 lines, full flush, then 8 more lines whose compressed stream is cut at a third",
         lambda d: {"part-0.jsonl.gz": gzip_cut_after(lines(goods(d, 8)), lines(goods(d, 8, 8)))},
         rows_in=9, valid=8, quarantined=1, reason="cut off by the damaged gzip stream",
         file_problem="truncated (the file was cut short); 8 complete lines decoded before the cut, the rest of the file is lost at the source", damaged=1),
    Case("corrupt_gzip_midstream", "gzip of 6 lines, full flush, then garbage bytes instead of the rest of the stream",
         lambda d: {"part-0.jsonl.gz": gzip_cut_after(lines(goods(d, 6)), b"", b"\xff\x00garbage" * 10)},
         rows_in=6, valid=6, quarantined=0, file_problem="6 complete lines decoded before the damage", damaged=1),
    Case("gzip_header_only_garbage", "a gzip magic number followed by random bytes, next to a good file",
         lambda d: {"part-0.jsonl.gz": b"\x1f\x8b\x08\x00" + bytes(range(256)), "part-1.jsonl": lines(goods(d, 3))},
         rows_in=3, valid=3, quarantined=0, file_problem="gzip data is corrupt", damaged=1),
    Case("non_utf8_bytes", "a line with Latin-1 bytes (caf\\xe9, \\xff) among good lines",
         lambda d: {"part-0.jsonl": lines([*goods(d, 4), json.dumps(good(d, 9)).encode().replace(b"Where", b"caf\xe9 \xff")])},
         rows_in=5, valid=4, quarantined=1, reason="not UTF-8"),
    Case("json_line_cut_in_half", "the last line stops in the middle of an object (no closing brace, no newline)",
         lambda d: {"part-0.jsonl": lines(goods(d, 4)) + json.dumps(good(d, 9)).encode()[:70]},
         rows_in=5, valid=4, quarantined=1, reason="cut in half"),
    Case("zero_byte_file", "an empty object next to a good file",
         lambda d: {"part-0.jsonl": b"", "part-1.jsonl": lines(goods(d, 3))},
         rows_in=3, valid=3, quarantined=0, file_problem="zero-byte"),
    Case("blank_lines_only", "a file of newlines and spaces, next to a good file",
         lambda d: {"part-0.jsonl": b"\n  \n\t\n\n", "part-1.jsonl": lines(goods(d, 2))},
         rows_in=2, valid=2, quarantined=0),
    Case("json_not_an_object", "lines holding an array, a string, a number and null",
         lambda d: {"part-0.jsonl": lines([*goods(d, 2), b"[1, 2]", b'"text"', b"42", b"null"])},
         rows_in=6, valid=2, quarantined=4, reason="must be a JSON object"),
    Case("parquet_other_schema", "a Parquet file of another table (id, value, ts columns)",
         lambda d: {"part-0.parquet": parquet(pa.table({"id": [1, 2, 3], "value": ["a", "b", "c"], "ts": [1.0, 2.0, 3.0]})),
                    "part-1.jsonl": lines(goods(d, 2))},
         rows_in=5, valid=2, quarantined=3, reason="request_id is required"),
    Case("parquet_wrong_column_types", "a Parquet file whose latency_ms and prompt_tokens columns are strings",
         lambda d: {"part-0.parquet": parquet([{**good(d, i), "latency_ms": "120", "prompt_tokens": "6"} for i in range(3)])},
         rows_in=3, valid=0, quarantined=3, reason="latency_ms: expected number"),
    Case("corrupt_parquet", "PAR1 magic with garbage between, next to a good file",
         lambda d: {"part-0.parquet": b"PAR1" + b"\x00garbage" * 20 + b"PAR1", "part-1.jsonl": lines(goods(d, 2))},
         rows_in=2, valid=2, quarantined=0, file_problem="not a readable Parquet file", damaged=1),
    Case("missing_required_fields", "rows without latency_ms, without request_id, without prompt_tokens",
         lambda d: {"part-0.jsonl": lines([*goods(d, 3), good(d, 10, latency_ms=_DROP), good(d, 11, request_id=_DROP),
                                          good(d, 12, prompt_tokens=_DROP)])},
         rows_in=6, valid=3, quarantined=3, reason="is required"),
    Case("wrong_types", "latency as a string, tokens as a float, timestamp as a number, boolean latency, list prediction",
         lambda d: {"part-0.jsonl": lines([*goods(d, 2), good(d, 10, latency_ms="12"), good(d, 11, prompt_tokens=3.5),
                                          good(d, 12, timestamp=1_700_000_000), good(d, 13, latency_ms=True), good(d, 14, prediction=[1])])},
         rows_in=7, valid=2, quarantined=5, reason="expected"),
    Case("negative_latency", "latency_ms of -5",
         lambda d: {"part-0.jsonl": lines([*goods(d, 3), good(d, 10, latency_ms=-5.0)])},
         rows_in=4, valid=3, quarantined=1, reason="latency_ms must be within"),
    Case("nan_and_inf_latency", "the non-standard JSON literals NaN, Infinity and -Infinity, and 1e400 (overflows to inf)",
         lambda d: {"part-0.jsonl": lines([*goods(d, 2), *(json.dumps(good(d, 10 + i, latency_ms=0.5)).replace("0.5", lit).encode()
                                                           for i, lit in enumerate(["NaN", "Infinity", "-Infinity", "1e400"]))])},
         rows_in=6, valid=2, quarantined=4, reason="latency_ms (must be within|is required; got missing or NaN)"),
    Case("integers_beyond_64_bits", "prompt_tokens 10**30, latency 10**400 (no float holds it), feedback 10**20",
         lambda d: {"part-0.jsonl": lines([*goods(d, 2), good(d, 10, prompt_tokens=10**30), good(d, 11, latency_ms=10**400),
                                          good(d, 12, feedback=10**20)])},
         rows_in=5, valid=2, quarantined=3, reason="out of range|expected -1, 0 or 1"),
    Case("duplicate_request_ids", "the same request_id three times, once in a second file",
         lambda d: {"part-0.jsonl": lines([*goods(d, 3), good(d, 0, latency_ms=999.0)]), "part-1.jsonl": lines([good(d, 0)])},
         rows_in=5, valid=3, quarantined=2, reason="duplicate request_id"),
    Case("timestamps_outside_partition", "rows stamped the day before, the day after, and without a UTC offset",
         lambda d: {"part-0.jsonl": lines([*goods(d, 3), good(d, 10, timestamp=f"{d - timedelta(days=1)}T23:59:59Z"),
                                          good(d, 11, timestamp=f"{d + timedelta(days=1)}T00:00:00Z"),
                                          good(d, 12, timestamp=f"{d}T10:00:00")])},
         rows_in=6, valid=3, quarantined=3, reason="timestamp"),
    Case("timestamp_beyond_year_9999", "9999-12-31T23:59:59-14:00, which is in year 10000 once in UTC",
         lambda d: {"part-0.jsonl": lines([*goods(d, 2), good(d, 10, timestamp="9999-12-31T23:59:59-14:00")])},
         rows_in=3, valid=2, quarantined=1, reason="outside the years 1-9999"),
    Case("unknown_variant_model_status", "variant canary-7, another model's id, status 'weird'",
         lambda d: {"part-0.jsonl": lines([*goods(d, 3), good(d, 10, variant="canary-7"), good(d, 11, model_id="other-model"),
                                          good(d, 12, status="weird")])},
         rows_in=6, valid=3, quarantined=3, reason="must be one of"),
    Case("prompt_of_several_mb", "one 3 MB prompt (over the model suite's 200k-character limit) and one 150k prompt (under it)",
         lambda d: {"part-0.jsonl": lines([*goods(d, 2), good(d, 10, prompt="x" * (3 * MB)), good(d, 11, prompt="y" * 150_000)])},
         rows_in=4, valid=3, quarantined=1, reason="length of prompt",
         kept=lambda rows: any(len(r["prompt"] or "") == 150_000 for r in rows)),
    Case("deeply_nested_metadata", "metadata nested 200 levels (kept) and a line nested 5,000 levels (beyond the JSON decoder)",
         lambda d: {"part-0.jsonl": lines([*goods(d, 2), good(d, 10, metadata=nested(200)),
                                          b'{"request_id": "deep", "metadata": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001])},
         rows_in=4, valid=3, quarantined=1, reason="nested deeper",
         kept=lambda rows: any('"a": {"a"' in (r["metadata"] or "") for r in rows)),
    Case("extra_unknown_fields", "rows with fields the contract does not know (trace_id, nested debug object)",
         lambda d: {"part-0.jsonl": lines([good(d, i, trace_id=f"t{i}", debug={"shard": i, "tags": ["a"]}) for i in range(3)])},
         rows_in=3, valid=3, quarantined=0,
         kept=lambda rows: all(json.loads(r["extra"])["trace_id"].startswith("t") for r in rows)),
    Case("partition_mixing_formats", "JSONL, gzipped JSONL, Parquet and a CSV file in one partition",
         lambda d: {"part-0.jsonl": lines(goods(d, 2)), "part-1.jsonl.gz": gzip.compress(lines(goods(d, 2, 2))),
                    "part-2.parquet": parquet(goods(d, 2, 4)), "part-3.csv": b"request_id,latency_ms\nx,1\n"},
         rows_in=6, valid=6, quarantined=0, file_problem="unsupported file type"),
    Case("name_and_content_disagree", "gzip bytes named .jsonl, and plain JSON lines named .jsonl.gz",
         lambda d: {"part-0.jsonl": gzip.compress(lines(goods(d, 2))), "part-1.jsonl.gz": lines(goods(d, 2, 2))},
         rows_in=4, valid=4, quarantined=0, file_problem="rename the file"),
    Case("utf8_bom_and_crlf", "a file starting with a UTF-8 byte-order mark, with Windows line endings",
         lambda d: {"part-0.jsonl": b"\xef\xbb\xbf" + lines(goods(d, 3)).replace(b"\n", b"\r\n")},
         rows_in=3, valid=3, quarantined=0),
    Case("unpaired_surrogate_escape", "a JSON string holding \\ud800 alone (valid JSON text, not valid Unicode)",
         lambda d: {"part-0.jsonl": lines([*goods(d, 2), json.dumps(good(d, 10)).replace("Where", "\\ud800Where").encode()])},
         rows_in=3, valid=2, quarantined=1, reason="unpaired UTF-16 surrogate"),
    Case("out_of_range_values", "probability 1.7, feedback 5, negative cost, empty request_id, 300-character request_id",
         lambda d: {"part-0.jsonl": lines([*goods(d, 2), good(d, 10, probability=1.7), good(d, 11, feedback=5), good(d, 12, cost_usd=-1.0),
                                          good(d, 13, request_id=""), good(d, 14, request_id="r" * 300)])},
         rows_in=7, valid=2, quarantined=5),
    Case("null_response_on_ok", "status ok with a null response (allowed only when the request failed)",
         lambda d: {"part-0.jsonl": lines([*goods(d, 2), good(d, 10, response=None), good(d, 11, status="error", response=None)])},
         rows_in=4, valid=3, quarantined=1, reason="response is required when"),
]
