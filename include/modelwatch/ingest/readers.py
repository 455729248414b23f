"""Readers for log partition files: JSON lines, gzipped JSON lines and Parquet.

Each reader turns the bytes of one file into canonical rows (``core.contract.coerce_record``)
plus read-stage rejects. A line that is not JSON, not UTF-8, or not an object becomes a
rejected row with its reason and raw text; a file that cannot be read at all (corrupt
Parquet, gzip that breaks midway) is reported as a file problem with whatever rows were
recovered before the damage, and is marked damaged. Every non-blank line is a row read:
nothing is dropped silently. A file problem starts with the file's URI, so it reads alone.

``json_lines`` (the tolerant gzip decoder and the split into lines) is shared with the
label reader (``concept``), so log and label files keep the same clean prefix and report
their damage in the same words.
"""

from __future__ import annotations

import io
import json
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pyarrow as pa

from modelwatch.core.contract import LINE, ROW_ID, SOURCE, coerce_record
from modelwatch.ingest.schema import CANONICAL_SCHEMA, RAW_LIMIT, REJECT_SCHEMA

FORMATS = {".jsonl.gz": "jsonl.gz", ".json.gz": "jsonl.gz", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
BATCH_ROWS = 50_000  # rows per batch when a file is streamed (``open_file``)
UTF8_BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"


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
    damaged: bool = False  # part or all of the file's content is lost at the source (see ``FileStream``)

    @property
    def rows_read(self) -> int:
        return len(self.rows) + len(self.rejects)


GZIP_CHUNK = 1 << 16


def _inflate_member(data: bytes, out: io.BytesIO) -> tuple[bytes, bool]:
    """Inflate one gzip member from ``data`` into ``out``; returns (bytes after the member, complete?).

    Input goes in 64 KiB chunks; when a chunk hits damage it is replayed byte by byte from
    a copy of the decompressor, so every byte before the damage is kept (zlib.error then
    propagates with ``out`` holding the clean prefix).
    """
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for start in range(0, len(data), GZIP_CHUNK):
        chunk = data[start : start + GZIP_CHUNK]
        saved = d.copy()
        try:
            out.write(d.decompress(chunk))
        except zlib.error:
            for i in range(len(chunk)):
                out.write(saved.decompress(chunk[i : i + 1]))  # raises at the damaged byte
            raise
        if d.eof:
            return d.unused_data + data[start + GZIP_CHUNK :], True
    return b"", d.eof


class GzipDamage(NamedTuple):
    """What broke a gzip stream, said without the file, and how a problem names the point where decoding stopped."""

    what: str  # "gzip stream is truncated (the file was cut short)" or "gzip data is corrupt (<zlib's message>)"
    point: str  # "cut" or "damage"


def gunzip_tolerant(data: bytes) -> tuple[bytes, GzipDamage | None]:
    """Decompress gzip (all members): every byte that decoded cleanly, and the damage that stopped it (None when none did)."""
    out = io.BytesIO()
    rest = data
    try:
        while rest:
            rest, complete = _inflate_member(rest, out)
            if not complete:
                return out.getvalue(), GzipDamage("gzip stream is truncated (the file was cut short)", "cut")
            rest = rest.lstrip(b"\x00")
    except zlib.error as exc:
        return out.getvalue(), GzipDamage(f"gzip data is corrupt ({exc})", "damage")
    return out.getvalue(), None


CUT_LINE = "line cut off by the damaged gzip stream"


@dataclass
class JsonLines:
    """The lines of a JSON-lines file (gzipped or not), numbered from 1 as ``sed -n Np`` counts them.

    ``lines`` are the complete lines (blank ones included); ``cut`` is the partial line a
    damaged gzip stream ends in (line ``len(lines) + 1``), None when there is none;
    ``problem`` names the file, how many lines decoded before the damage and that the
    rest is lost at the source, None when the file decoded whole.
    """

    lines: list[bytes]
    cut: bytes | None = None
    problem: str | None = None


def json_lines(data: bytes, source: str, gzipped: bool) -> JsonLines:
    """Split a JSON-lines file into lines; a damaged gzip keeps its clean prefix (``gunzip_tolerant``).

    A UTF-8 byte-order mark at the start is dropped (PowerShell and Excel exports write one).
    """
    damage = None
    if gzipped:
        data, damage = gunzip_tolerant(data)
    data = data.removeprefix(UTF8_BOM)
    lines = data.split(b"\n")
    del data
    if damage is None:
        return JsonLines(lines)
    tail = lines.pop()  # after the last newline: empty, or the line the damage cut
    decoded = f"{len(lines)} complete line{'' if len(lines) == 1 else 's'}"
    problem = f"{source}: {damage.what}; {decoded} decoded before the {damage.point}, the rest of the file is lost at the source; re-send the file from its producer"
    return JsonLines(lines, tail if tail.strip() else None, problem)


def _reject(source: str, line: int, reason: str, raw: str) -> dict[str, Any]:
    return {SOURCE: source, LINE: line, "stage": "read", "reasons": reason, "raw": raw[:RAW_LIMIT]}


def _row(source: str, line: int, record: Any) -> dict[str, Any]:
    row = coerce_record(record)
    row[SOURCE], row[LINE] = source, line
    return row


def _parse_line(text: str) -> tuple[Any, str | None]:
    """(JSON value, problem) of one line; never raises."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at column {exc.colno}); the line may be cut in half"
    except RecursionError:
        return None, f"JSON nested deeper than the decoder's recursion limit (~{sys.getrecursionlimit()} levels); flatten the object"
    if not isinstance(record, dict):
        return None, f"a log line must be a JSON object, got {type(record).__name__}"
    if "\\u" in text and _has_lone_surrogate(record):
        return None, "a string holds an unpaired UTF-16 surrogate escape (e.g. \\ud800), which is not Unicode text; fix the producer's JSON encoder"
    return record, None


def _has_lone_surrogate(record: dict[str, Any]) -> bool:
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except RecursionError:
        return False  # the nesting is reported by the contract coercion
    return False


@dataclass
class RawBatch:
    """Up to ``batch_rows`` parsed rows of one file, not yet coerced: JSON objects with their line numbers,
    or a slice of a Parquet file as Arrow; plus the read-stage rejects among those lines."""

    source: str
    lines: list[int] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)
    arrow: pa.Table | None = None
    rejects: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.records) if self.arrow is None else self.arrow.num_rows


@dataclass
class FileStream:
    """One file opened for batch reading: its format, its batches, and a file-level problem (found on opening or while reading)."""

    source: str
    fmt: str
    problem: str | None
    batches: Iterator[RawBatch]
    damaged: bool = False  # content lost at the source: a damaged gzip stream, an unreadable or damaged Parquet file
    skipped: dict[str, int] = field(default_factory=dict)  # records that are not rows, by reason (``ingest.otel``: spans of no model request)

    def add_problem(self, text: str, damaged: bool = False) -> None:
        """Record one more problem; the file's URI starts the problem once, whatever the number of parts."""
        self.problem = f"{self.problem}; {text}" if self.problem else f"{self.source}: {text}"
        self.damaged = self.damaged or damaged


def _jsonl_batches(lines: list[bytes], source: str, cut_tail: bytes | None, batch_rows: int) -> Iterator[RawBatch]:
    batch = RawBatch(source)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            batch.rejects.append(_reject(source, number, f"line is not UTF-8 (bad byte at offset {exc.start}); re-encode the producer's output as UTF-8", raw.decode("utf-8", "backslashreplace")))
            continue
        record, problem = _parse_line(text)
        if problem:
            batch.rejects.append(_reject(source, number, problem, text))
            continue
        batch.lines.append(number)
        batch.records.append(record)
        if len(batch.records) >= batch_rows:
            yield batch
            batch = RawBatch(source)
    if cut_tail is not None:
        # The last line of a damaged stream is partial: say so rather than a JSON error.
        batch.rejects.append(_reject(source, len(lines) + 1, CUT_LINE, cut_tail.decode("utf-8", "backslashreplace")))
    if batch.records or batch.rejects:
        yield batch


def open_jsonl(data: bytes, source: str, gzipped: bool, batch_rows: int = BATCH_ROWS) -> FileStream:
    """A JSON-lines file (gzipped or not) as batches of parsed objects; damaged gzip keeps its clean prefix (``json_lines``)."""
    split = json_lines(data, source, gzipped)
    batches = _jsonl_batches(split.lines, source, split.cut, batch_rows)
    return FileStream(source, "jsonl.gz" if gzipped else "jsonl", split.problem, batches, damaged=split.problem is not None)


def _parquet_batches(parquet, stream: FileStream, batch_rows: int) -> Iterator[RawBatch]:
    """Row groups as batches; damage found after the first row group ends the file with the stream's problem."""
    line = 1
    try:
        for record_batch in parquet.iter_batches(batch_size=batch_rows):
            table = pa.Table.from_batches([record_batch])
            yield RawBatch(stream.source, lines=list(range(line, line + table.num_rows)), arrow=table)
            line += table.num_rows
    except (pa.ArrowException, OSError) as exc:
        stream.add_problem(f"Parquet file damaged after row {line - 1} ({' '.join(str(exc).split())}); the rows after the damage are lost at the source",
                           damaged=True)


def open_parquet(data: bytes, source: str, batch_rows: int = BATCH_ROWS) -> FileStream:
    """A Parquet file as batches of Arrow rows (``ParquetFile.iter_batches``); an unreadable file is the file's problem."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        if parquet.metadata.num_rows:
            parquet.read_row_group(0, columns=[])  # fail on a corrupt body now, as a file problem, not mid-stream
    except (pa.ArrowException, OSError) as exc:
        return FileStream(source, "parquet", f"{source}: not a readable Parquet file ({exc}); re-export it or remove it from the partition", iter(()),
                          damaged=True)
    stream = FileStream(source, "parquet", None, iter(()))
    stream.batches = _parquet_batches(parquet, stream, batch_rows)
    return stream


def _collect(stream: FileStream) -> FileRead:
    """A whole file's rows (``coerce_record``, row by row) and rejects from its batches."""
    result = FileRead(stream.source, stream.fmt)
    for batch in stream.batches:
        records = batch.records if batch.arrow is None else batch.arrow.to_pylist()
        result.rows += [_row(stream.source, line, record) for line, record in zip(batch.lines, records)]
        result.rejects += batch.rejects
    result.problem, result.damaged = stream.problem, stream.damaged  # known once the batches are read
    result.rejects.sort(key=lambda r: r[LINE])
    return result


def sniff_format(data: bytes) -> str | None:
    """Format from the content's magic bytes (gzip ``1f 8b``, Parquet ``PAR1``), None when neither."""
    if data[:2] == GZIP_MAGIC:
        return "jsonl.gz"
    if data[:4] == PARQUET_MAGIC and data[-4:] == PARQUET_MAGIC:
        return "parquet"
    return None


def open_file(data: bytes, source: str, batch_rows: int = BATCH_ROWS) -> FileStream:
    """Open one partition file by its content when its magic bytes say gzip or Parquet, else by its extension.

    A file whose name and content disagree (gzip bytes named ``.jsonl``) is read by its
    content, and the mismatch is reported as the file's problem so the producer gets fixed.
    """
    named = detect_format(source)
    if named is None:
        return FileStream(source, "unknown", f"{source}: unsupported file type; log files end in .jsonl, .jsonl.gz or .parquet", iter(()))
    sniffed = sniff_format(data)
    fmt = sniffed or ("jsonl" if named == "jsonl.gz" and data[:1] in (b"{", b"\n", b" ", UTF8_BOM[:1]) else named)
    stream = open_parquet(data, source, batch_rows) if fmt == "parquet" else open_jsonl(data, source, fmt == "jsonl.gz", batch_rows)
    if fmt != named:
        stream.add_problem(f"named .{named} but the content is {fmt}; read as {fmt}, rename the file")
    return stream


def read_file(data: bytes, source: str) -> FileRead:
    """One partition file, whole: canonical rows (row by row) and rejects (see ``open_file``)."""
    return _collect(open_file(data, source))


def batch_tables(batch: RawBatch, first_row_id: int) -> tuple[pa.Table, pa.Table]:
    """(canonical rows, read-stage rejects) of one batch; row ids from ``first_row_id``: the rows, then the rejects.

    Columns are coerced together (``columnar``) when that gives the row-by-row result;
    otherwise (a value Arrow cannot hold) row by row, as ``read_file`` does.
    """
    from modelwatch.ingest.columnar_arrow import coerce_arrow
    from modelwatch.ingest.columnar_json import coerce_batch

    n = batch.rows
    columns = coerce_batch(batch.records) if batch.arrow is None else coerce_arrow(batch.arrow)
    rejects = [{**r, ROW_ID: first_row_id + n + i} for i, r in enumerate(batch.rejects)]
    if columns is not None:
        lineage = [pa.array(range(first_row_id, first_row_id + n), pa.int64()), pa.array([batch.source] * n, pa.string()), pa.array(batch.lines, pa.int64())]
        table = pa.Table.from_arrays(lineage + columns.columns, schema=CANONICAL_SCHEMA)
    else:
        records = batch.records if batch.arrow is None else batch.arrow.to_pylist()
        rows = [{**_row(batch.source, line, record), ROW_ID: first_row_id + i} for i, (line, record) in enumerate(zip(batch.lines, records))]
        table, unstorable = _to_table(rows)
        rejects = sorted(rejects + unstorable, key=lambda r: r[ROW_ID])
    return table, pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)


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
    table, unstorable = _to_table(rows)
    rejects += unstorable
    rejects.sort(key=lambda r: r[ROW_ID])
    return table, pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA)


def _to_table(rows: list[dict[str, Any]]) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Canonical rows as an Arrow table; a row Arrow cannot hold becomes a reject instead of failing the file.

    Coercion already rules out what is known to break the conversion; this is the last
    guard that keeps rows read = rows valid + rows quarantined whatever the input.
    """
    try:
        return pa.Table.from_pylist(rows, schema=CANONICAL_SCHEMA), []
    except (pa.ArrowException, UnicodeError, OverflowError, ValueError, TypeError):
        pass
    kept, rejected = [], []
    for row in rows:
        try:
            pa.Table.from_pylist([row], schema=CANONICAL_SCHEMA)
        except (pa.ArrowException, UnicodeError, OverflowError, ValueError, TypeError) as exc:
            raw = json.dumps({k: v for k, v in row.items() if k not in (ROW_ID, SOURCE, LINE)}, default=repr, ensure_ascii=True)
            rejected.append({**_reject(row[SOURCE], row[LINE], f"row cannot be stored in the canonical schema ({type(exc).__name__}: {exc})", raw),
                             ROW_ID: row[ROW_ID]})
            continue
        kept.append(row)
    return pa.Table.from_pylist(kept, schema=CANONICAL_SCHEMA), rejected
