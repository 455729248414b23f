"""Parquet columns read from S3 with HTTP range requests: the footer and the chunks of the wanted columns, not the object.

``read_columns`` opens one ranged GET on the object's tail (``Range: bytes=-N``), which also
gives the object's size, so no HEAD is needed; a small object arrives whole in that one request.
pyarrow parses the footer from that tail; the byte ranges of the wanted columns' chunks in
every row group (``ColumnChunkMetaData``: first page offset, ``total_compressed_size``) are
merged when the gap between two is under ``HOLE_BYTES`` (small columns between wanted ones
are read through; the text columns a stage skips, hundreds of KiB per row group, are not),
and the merged ranges are fetched ``PARALLEL_GETS`` at a time, so the extra requests cost
about one round trip, not one each. pyarrow then decodes from those bytes. Every GET goes through the
caller's boto3 client, so its retries with backoff apply, and a failure names the object and
the permission it lacks (``S3Error``).

A ranged GET pins the object's ETag (``If-Match``): an object replaced between two ranges
fails the read (412) rather than mixing two versions.
"""

from __future__ import annotations

import io
import logging
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import IncompleteReadError, ResponseStreamingError

from modelwatch.core.uris import split_uri

TAIL_BYTES = 256 * 1024  # first request: the footer of a day's shard (a few KiB per row group) and then some
HOLE_BYTES = 128 * 1024  # two wanted ranges closer than this are fetched as one, gap included
PARALLEL_GETS = 8  # ranged GETs in flight at once (the client's connection pool holds 10)
_log = logging.getLogger(__name__)


class RangedObject(io.RawIOBase):
    """A read-only, seekable file over one S3 object; each read outside the cached tail is one ranged GET."""

    def __init__(self, client, uri: str, tail_bytes: int = TAIL_BYTES):
        super().__init__()
        self.client, self.uri = client, uri
        self.bucket, self.key = split_uri(uri)
        self.requests = 0
        self.bytes_fetched = 0
        self._lock = threading.Lock()
        self._etag: str | None = None
        self._position = 0
        tail, self.size = self._fetch(f"bytes=-{tail_bytes}")
        self._segments: list[tuple[int, bytes]] = [(self.size - len(tail), tail)]  # (start, bytes) fetched so far

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """Fetch each ``(start, end)`` range not already held in one GET (the part in the tail is not fetched again)."""
        from concurrent.futures import ThreadPoolExecutor

        tail_start = self._segments[0][0]
        wanted = [(start, min(end, tail_start) if start < tail_start else end) for start, end in ranges]
        wanted = [(start, end) for start, end in wanted if end > start and self._held(start, end) is None]
        if len(wanted) == 1:
            fetched = [self._fetch(f"bytes={wanted[0][0]}-{wanted[0][1] - 1}")[0]]
        else:
            with ThreadPoolExecutor(max_workers=PARALLEL_GETS, thread_name_prefix="modelwatch-range") as pool:
                fetched = [body for body, _ in pool.map(lambda r: self._fetch(f"bytes={r[0]}-{r[1] - 1}"), wanted)]
        self._segments += [(start, body) for (start, _), body in zip(wanted, fetched, strict=True)]

    def _held(self, start: int, end: int) -> bytes | None:
        for first, data in self._segments:
            if first <= start and end <= first + len(data):
                return data[start - first : end - first]
        return None

    def _fetch(self, byte_range: str) -> tuple[bytes, int]:
        """``(body, object size)`` of one ranged GET; a body cut off mid-download is fetched again (botocore does not retry that)."""
        from modelwatch.storage.s3 import BODY_READ_ATTEMPTS, S3Unreachable, _naming

        extra = {"IfMatch": self._etag} if self._etag else {}
        for attempt in range(1, BODY_READ_ATTEMPTS + 1):
            with _naming("GetObject", self.uri):
                response = self.client.get_object(Bucket=self.bucket, Key=self.key, Range=byte_range, **extra)
            with self._lock:
                self.requests += 1
            try:
                body = response["Body"].read()
            except (IncompleteReadError, ResponseStreamingError) as exc:
                if attempt == BODY_READ_ATTEMPTS:
                    raise S3Unreachable("GetObject", self.uri, exc) from exc
                _log.warning("ranged download of %s cut off (%s); attempt %d of %d", self.uri, exc, attempt + 1, BODY_READ_ATTEMPTS)
                time.sleep(0.2 * 2**attempt)
                continue
            with self._lock:
                self.bytes_fetched += len(body)
                self._etag = self._etag or response.get("ETag")
            return body, _object_size(response, len(body))
        raise AssertionError("unreachable")  # pragma: no cover

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int = -1) -> bytes:
        start = self._position
        end = self.size if size is None or size < 0 else min(self.size, start + size)
        if start >= end:
            return b""
        data = self._held(start, end)
        if data is None:
            data, _ = self._fetch(f"bytes={start}-{end - 1}")
        self._position = start + len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _object_size(response: dict, received: int) -> int:
    """The whole object's size from ``Content-Range: bytes a-b/size`` (absent when S3 sent the whole object)."""
    content_range = response.get("ContentRange") or ""
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else received


def chunk_ranges(metadata: pq.FileMetaData, columns: list[str]) -> list[tuple[int, int]]:
    """``(start, end)`` byte ranges of the chunks of ``columns`` (a nested column: all its leaves) in every row group, sorted."""
    wanted = tuple(columns)
    ranges = []
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for index in range(row_group.num_columns):
            chunk = row_group.column(index)
            path = chunk.path_in_schema
            if path in wanted or path.startswith(tuple(f"{name}." for name in wanted)):
                offsets = [o for o in (chunk.dictionary_page_offset, chunk.data_page_offset) if o is not None and o > 0]
                start = min(offsets) if offsets else chunk.data_page_offset
                ranges.append((start, start + chunk.total_compressed_size))
    return sorted(ranges)


def coalesce(ranges: list[tuple[int, int]], hole_bytes: int = HOLE_BYTES) -> list[tuple[int, int]]:
    """Sorted ranges merged where the gap between neighbours is under ``hole_bytes``."""
    merged: list[tuple[int, int]] = []
    for start, end in ranges:
        if merged and start - merged[-1][1] < hole_bytes:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def read_columns(client, uri: str, columns: list[str], tail_bytes: int = TAIL_BYTES, hole_bytes: int = HOLE_BYTES) -> pa.Table:
    """The named columns of a Parquet object, in the order asked, fetching only its footer and those columns' chunks."""
    source = RangedObject(client, uri, tail_bytes)
    parquet = pq.ParquetFile(source)
    source.prefetch(coalesce(chunk_ranges(parquet.metadata, columns), hole_bytes))
    return parquet.read(columns=columns).select(columns)
