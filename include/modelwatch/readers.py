"""Readers for log partition files: JSON lines, gzipped JSON lines and Parquet.

Each reader turns the bytes of one file into canonical rows (``contract.coerce_record``)
plus read-stage rejects. A line that is not JSON, not UTF-8, or not an object becomes a
rejected row with its reason and raw text; a file that cannot be read at all (corrupt
Parquet, gzip that breaks midway) is reported as a file problem with whatever rows were
recovered before the damage. Every non-blank line is a row read: nothing is dropped silently.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from modelwatch.contract import CANONICAL_SCHEMA, LINE, ROW_ID, SOURCE, coerce_record

FORMATS = {".jsonl.gz": "jsonl.gz", ".json.gz": "jsonl.gz", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
REJECT_SCHEMA = pa.schema(
    [
        pa.field(ROW_ID, pa.int64()),
        pa.field(SOURCE, pa.string()),
        pa.field(LINE, pa.int64()),
        pa.field("stage", pa.string()),
        pa.field("reasons", pa.string()),
        pa.field("raw", pa.string()),
    ]
)
RAW_LIMIT = 64_000  # characters of a rejected line kept in the quarantine record


def detect_format(uri: str) -> str | None:
    """Format from the file name, or None for files that are not log files."""
    lower = uri.lower()
    for suffix, fmt in FORMATS.items():
        if lower.endswith(suffix):
            return fmt
    return None


@dataclass
class FileRead:
    """What one file yielded: canonical rows, rejects, and a file-level problem if any."""

    source: str
    fmt: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None

    @property
    def rows_read(self) -> int:
        return len(self.rows) + len(self.rejects)


def _gunzip_tolerant(data: bytes) -> tuple[bytes, str | None]:
    """Decompress gzip (all members); on damage return what decoded cleanly and the problem."""
    out = io.BytesIO()
    rest = data
    try:
        while rest:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out.write(d.decompress(rest))
            if not d.eof:
                return out.getvalue(), "gzip stream is truncated (file cut short); lines after the cut are lost at the source"
            rest = d.unused_data.lstrip(b"\x00")
    except zlib.error as exc:
        return out.getvalue(), f"gzip data is corrupt ({exc}); lines after the damage are lost at the source"
    return out.getvalue(), None


def _reject(source: str, line: int, reason: str, raw: str) -> dict[str, Any]:
    return {SOURCE: source, LINE: line, "stage": "read", "reasons": reason, "raw": raw[:RAW_LIMIT]}


def _row(source: str, line: int, record: Any) -> dict[str, Any]:
    row = coerce_record(record)
    row[SOURCE], row[LINE] = source, line
    return row


def read_jsonl(data: bytes, source: str, gzipped: bool) -> FileRead:
    result = FileRead(source, "jsonl.gz" if gzipped else "jsonl")
    if gzipped:
        data, result.problem = _gunzip_tolerant(data)
    lines = data.split(b"\n")
    if result.problem and lines and lines[-1].strip():
        # The last line of a damaged stream is partial: say so rather than a JSON error.
        tail = lines.pop()
        result.rejects.append(_reject(source, len(lines) + 1, "line cut off by the damaged gzip stream", tail.decode("utf-8", "backslashreplace")))
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            result.rejects.append(_reject(source, number, f"line is not UTF-8 (bad byte at offset {exc.start}); re-encode the producer's output as UTF-8", raw.decode("utf-8", "backslashreplace")))
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            result.rejects.append(_reject(source, number, f"not valid JSON ({exc.msg} at column {exc.colno}); the line may be cut in half", text))
            continue
        if not isinstance(record, dict):
            result.rejects.append(_reject(source, number, f"a log line must be a JSON object, got {type(record).__name__}", text))
            continue
        result.rows.append(_row(source, number, record))
    result.rejects.sort(key=lambda r: r[LINE])
    return result


def read_parquet(data: bytes, source: str) -> FileRead:
    import pyarrow.parquet as pq

    result = FileRead(source, "parquet")
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        result.problem = f"not a readable Parquet file ({exc}); re-export it or remove it from the partition"
        return result
    for number, record in enumerate(table.to_pylist(), start=1):
        result.rows.append(_row(source, number, record))
    return result


def read_file(data: bytes, source: str) -> FileRead:
    """Read one partition file by its extension."""
    fmt = detect_format(source)
    if fmt == "parquet":
        return read_parquet(data, source)
    if fmt in ("jsonl", "jsonl.gz"):
        return read_jsonl(data, source, gzipped=fmt == "jsonl.gz")
    result = FileRead(source, "unknown")
    result.problem = "unsupported file type; log files end in .jsonl, .jsonl.gz or .parquet"
    return result


def assemble(reads: list[FileRead]) -> tuple[pa.Table, pa.Table]:
    """Combine file reads into (canonical rows, read-stage rejects) with one row id sequence."""
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    next_id = 0
    for read in reads:
        for row in read.rows:
            row[ROW_ID] = next_id
            next_id += 1
            rows.append(row)
        for reject in read.rejects:
            reject[ROW_ID] = next_id
            next_id += 1
            rejects.append(reject)
    return (
        pa.Table.from_pylist(rows, schema=CANONICAL_SCHEMA),
        pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA),
    )
