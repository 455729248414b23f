"""LogEmitter: contract rows built, checked, buffered and flushed to S3 as gzip JSON lines, from a background thread.

Life of a row:

1. **Built** by ``record`` (explicit fields: replays, backfills, generators) or by
   ``record_call``/``track`` (a live call: latency measured around it, tokens from the
   result's usage object or the caller's tokenizer, cost from the price table, status
   from the exception), optionally redacted (``modelwatch.core.redaction``).
2. **Checked** against the contract (``serving.checks``). An invalid row is counted,
   logged with its problems and handed to ``on_invalid``; it is never sent.
3. **Buffered** per hour partition of its timestamp, as encoded JSON lines.
4. **Flushed** when the buffer holds ``max_rows`` rows or ``max_bytes`` bytes, when its
   oldest row is ``max_age_s`` old, on ``flush()``, and on ``close()`` (registered with
   ``atexit``). Each partition's rows become one object
   ``model_id=/dt=/hour=/part-<name>.jsonl.gz``; the name is fixed when the batch is formed.
5. **Spilled** to the local directory when S3 cannot be reached (any error of the put),
   under that same key, and re-sent by the background thread with exponential backoff;
   while S3 is known to be down, batches go straight to disk. A re-sent batch writes the
   key its first attempt meant to write, so a retry never duplicates a row. If even the
   disk fails, the batch stays in memory and is retried; only rows still unstored when
   ``close()`` returns count as ``dropped``.

Counters (``stats()``; ``serving.prometheus`` exposes them): ``emitted`` (rows accepted),
``invalid``, ``flushed`` (rows that reached S3, re-sent ones included), ``spilled``,
``resent``, ``dropped``; and the gauges ``buffered``, ``pending_batches``, ``spill_pending``.
"""

from __future__ import annotations

import atexit
import gzip
import json
import logging
import os
import tempfile
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelwatch.core.redaction import TEXT_FIELDS, Rule
from modelwatch.core.redaction import redact_fields as _redact_fields
from modelwatch.core.uris import split_uri
from modelwatch.serving.calls import Price, Tokenizer, count_tokens, iso_utc, response_text, result_usage, status_of, usage_tokens
from modelwatch.serving.checks import KINDS, problems
from modelwatch.serving.layout import PartNamer, parse_timestamp, partition_prefix, uuid_part_name
from modelwatch.serving.spool import Spool

log = logging.getLogger("modelwatch.serving")

COUNTERS = ("emitted", "invalid", "flushed", "spilled", "resent", "dropped")


def default_spill_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "modelwatch-spill")


def serving_s3_client(endpoint_url: str | None = None, region: str = "us-east-1", connect_timeout_s: float = 2.0, read_timeout_s: float = 10.0):
    """A boto3 S3 client with short timeouts and few retries: an unreachable S3 makes the emitter spill quickly."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                        config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=connect_timeout_s, read_timeout=read_timeout_s))


@dataclass
class Batch:
    """Rows of one partition with their final S3 URI, fixed when the batch is formed."""

    uri: str
    body: bytes
    rows: int


@dataclass
class _Buffer:
    lines: dict[str, list[bytes]] = field(default_factory=dict)
    rows: int = 0
    size: int = 0
    oldest: float | None = None  # monotonic time of the oldest buffered row


class LogEmitter:
    """Builds, checks, buffers and ships contract rows for one model; thread-safe.

    ``client`` is a boto3 S3 client (``serving_s3_client()`` gives one with short timeouts).
    ``kind`` is the model kind (``llm``, ``classifier``, ``regressor``) whose required
    fields are checked. ``price`` is the model's ``Price`` (cost per 1k tokens) or a table
    ``{model_id: Price}``. ``tokenizer`` counts tokens when a result carries no usage; an LLM
    emitter needs one unless every row gets its counts otherwise (a failed call has no
    usage object, and the contract requires ``prompt_tokens``).
    ``redact`` applies these redaction rules (``True``: the default set) to prompt, response
    and reference before a row leaves the process. ``variants``, when given, is the set of
    variants the deployment allows. ``background=False`` runs no thread: flushes happen in
    the caller on size, ``flush()`` and ``close()`` (scripts, replays).
    """

    def __init__(self, client, logs_uri: str, model_id: str, kind: str = "llm", *, price: Price | Mapping[str, Price] | None = None,
                 tokenizer: Tokenizer | None = None, redact: bool | tuple[Rule, ...] = False, variants: Collection[str] | None = None,
                 max_rows: int = 5_000, max_bytes: int = 8 * 2**20, max_age_s: float = 30.0, spill_dir: str | os.PathLike[str] | None = None,
                 retry_initial_s: float = 1.0, retry_max_s: float = 60.0, background: bool = True, part_namer: PartNamer = uuid_part_name,
                 on_invalid: Callable[[Mapping[str, Any], list[str]], None] | None = None, compresslevel: int = 6):
        if kind not in KINDS:
            raise ValueError(f"LogEmitter kind must be one of {KINDS}, got {kind!r}")
        split_uri(logs_uri)
        if max_rows < 1 or max_bytes < 1 or max_age_s <= 0:
            raise ValueError(f"max_rows, max_bytes must be >= 1 and max_age_s > 0, got {max_rows}, {max_bytes}, {max_age_s}")
        self.client, self.logs_uri, self.model_id, self.kind = client, logs_uri.rstrip("/"), model_id, kind
        self.price, self.tokenizer, self.on_invalid = price, tokenizer, on_invalid
        self.redaction: tuple[Rule, ...] | None = _rules(redact)
        self.variants = frozenset(variants) if variants is not None else None
        self.max_rows, self.max_bytes, self.max_age_s = max_rows, max_bytes, max_age_s
        self.retry_initial_s, self.retry_max_s = retry_initial_s, retry_max_s
        self.part_namer, self.compresslevel = part_namer, compresslevel
        self.spool = Spool(spill_dir if spill_dir is not None else default_spill_dir())
        self._buffer = _Buffer()
        self._pending: list[Batch] = []  # batches neither in S3 nor on disk (the disk failed too): retried
        self._counts: Counter[str] = Counter({name: 0 for name in COUNTERS})
        self.invalid_reasons: Counter[str] = Counter()
        self._lock = threading.Lock()  # buffer and counters
        self._flush_lock = threading.Lock()  # one flush or re-send at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._s3_down_until = 0.0  # monotonic; while in the future, batches go straight to the spool
        self._backoff = retry_initial_s
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name=f"modelwatch-emitter-{model_id}", daemon=True)
            self._thread.start()
        _at_exit(self)

    # -- building rows ---------------------------------------------------------------------------------------

    def record(self, *, latency_ms: float, variant: str = "production", status: str = "ok", request_id: str | None = None,
               timestamp: datetime | str | None = None, model_id: str | None = None, usage: Any = None, **fields: Any) -> bool:
        """Build, check and buffer one row from explicit fields; returns whether it was accepted.

        ``fields`` are any contract fields (``prompt``, ``response``, ``prompt_tokens``,
        ``completion_tokens``, ``cost_usd``, ``experiment_id``, ``features``, ``prediction``,
        ``probability``, ``reference``, ``quality_score``, ``feedback``, ``metadata``) and
        extra fields (kept by the pipeline). Token counts missing here come from ``usage``,
        then from the tokenizer; a missing cost comes from the price table. None values of
        optional fields are left out (``response`` is kept: null is meaningful on error).
        """
        model_id = model_id or self.model_id
        moment = timestamp if timestamp is not None else datetime.now(UTC)
        row: dict[str, Any] = {
            "request_id": request_id or uuid.uuid4().hex,
            "timestamp": iso_utc(moment) if isinstance(moment, datetime) else moment,
            "model_id": model_id,
            "variant": variant,
            "status": status,
            "latency_ms": round(latency_ms, 3) if isinstance(latency_ms, float) else latency_ms,
        }
        if self.kind == "llm":
            self._fill_tokens(fields, usage, model_id)
        for name, value in fields.items():
            if value is not None or name == "response":
                row[name] = value
        if self.redaction is not None:
            row = _redact_fields(row, TEXT_FIELDS, self.redaction)
        return self.emit(row)

    def _fill_tokens(self, fields: dict[str, Any], usage: Any, model_id: str) -> None:
        prompt_tokens, completion_tokens = usage_tokens(usage)
        if fields.get("prompt_tokens") is None:
            fields["prompt_tokens"] = prompt_tokens if prompt_tokens is not None else count_tokens(self.tokenizer, fields.get("prompt"))
        if fields.get("completion_tokens") is None:
            if completion_tokens is not None:
                fields["completion_tokens"] = completion_tokens
            else:  # no answer text (an error, a timeout): nothing was completed
                fields["completion_tokens"] = 0 if fields.get("response") is None else count_tokens(self.tokenizer, fields["response"])
        if fields.get("cost_usd") is None:
            price = self.price.get(model_id) if isinstance(self.price, Mapping) else self.price
            if price is not None:
                fields["cost_usd"] = price.cost(fields["prompt_tokens"], fields["completion_tokens"])

    def record_call(self, *, started_at: datetime, latency_ms: float, result: Any = None, error: BaseException | None = None,
                    variant: str = "production", request_id: str | None = None, **fields: Any) -> bool:
        """Log one finished model call: status from ``error``/``result``, response text and usage read from ``result``."""
        status = status_of(error, result)
        if self.kind == "llm" and "response" not in fields:
            refused_text = getattr(error, "response", None) if error is not None else None
            fields["response"] = response_text(result) if error is None else refused_text
        return self.record(latency_ms=latency_ms, variant=variant, status=status, request_id=request_id, timestamp=started_at,
                           usage=result_usage(result) if error is None else None, **fields)

    @contextmanager
    def track(self, *, variant: str = "production", request_id: str | None = None, **fields: Any) -> Iterator[TrackedCall]:
        """Measure the block as one call: ``with emitter.track(prompt=p) as call: call.result = model(p)``.

        The latency is the block's wall time; an exception escaping the block sets the
        status (and is re-raised); the row is logged when the block ends.
        """
        call = TrackedCall(request_id=request_id or uuid.uuid4().hex, started_at=datetime.now(UTC))
        t0 = time.perf_counter()
        error: BaseException | None = None
        try:
            yield call
        except BaseException as exc:
            error = exc
            raise
        finally:
            latency_ms = (time.perf_counter() - t0) * 1000
            self.record_call(started_at=call.started_at, latency_ms=latency_ms, result=call.result, error=error, variant=variant,
                             request_id=call.request_id, **{**fields, **call.fields})

    # -- checking and buffering --------------------------------------------------------------------------------

    def emit(self, row: Mapping[str, Any]) -> bool:
        """Check one complete row against the contract and buffer it; an invalid row is counted and reported, never sent."""
        if self._closed:
            raise RuntimeError(f"LogEmitter for {self.model_id} is closed; create a new one (rows after close() would be lost)")
        found = problems(row, self.kind, variants=self.variants)
        if found:
            self._reject(row, found)
            return False
        line = (json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode()
        prefix = partition_prefix(self.logs_uri, row["model_id"], parse_timestamp(row["timestamp"]))
        with self._lock:
            buf = self._buffer
            buf.lines.setdefault(prefix, []).append(line)
            buf.rows += 1
            buf.size += len(line)
            if buf.oldest is None:
                buf.oldest = time.monotonic()
            self._counts["emitted"] += 1
            due = buf.rows >= self.max_rows or buf.size >= self.max_bytes
        if due:
            if self._thread is not None:
                self._wake.set()
            else:
                self.flush()
        return True

    def _reject(self, row: Mapping[str, Any], found: list[str]) -> None:
        with self._lock:
            self._counts["invalid"] += 1
            rules = [problem.split(", got ")[0] for problem in found]
            first = not all(self.invalid_reasons[rule] for rule in rules)
            self.invalid_reasons.update(rules)
        if first:  # each rule's first breach is logged; invalid_reasons keeps the counts per rule
            log.warning("modelwatch: %s row %r breaks the log contract and was not sent: %s", self.model_id, row.get("request_id"), "; ".join(found))
        if self.on_invalid is not None:
            try:
                self.on_invalid(row, found)
            except Exception:  # noqa: BLE001 - a reporting hook must not break the caller's request
                log.exception("modelwatch: on_invalid hook failed")

    # -- flushing, spilling, re-sending ------------------------------------------------------------------------

    def flush(self) -> None:
        """Ship every buffered row now (to S3, or to the spill directory), then try the spilled batches if S3 is up."""
        with self._flush_lock:
            with self._lock:
                taken, self._buffer = self._buffer, _Buffer()
            batches = [self._batch(prefix, lines) for prefix, lines in taken.lines.items()]
            for batch in self._pending_batches() + batches:
                self._ship(batch)
            if time.monotonic() >= self._s3_down_until:
                self._resend()

    def _batch(self, prefix: str, lines: list[bytes]) -> Batch:
        body = gzip.compress(b"".join(lines), compresslevel=self.compresslevel, mtime=0)
        return Batch(f"{prefix}/{self.part_namer(prefix)}", body, len(lines))

    def _pending_batches(self) -> list[Batch]:
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    def _put(self, uri: str, body: bytes) -> None:
        bucket, key = split_uri(uri)
        self.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/gzip")

    def _ship(self, batch: Batch) -> None:
        """S3 if it is not known to be down, else (or on failure) the spool; memory if the disk fails too."""
        if time.monotonic() >= self._s3_down_until:
            try:
                self._put(batch.uri, batch.body)
            except Exception as exc:  # noqa: BLE001 - any failure of the put means: keep the batch, try later
                self._mark_down(exc, batch.uri)
            else:
                self._mark_up()
                self._count("flushed", batch.rows)
                return
        try:
            self.spool.put(batch.uri, batch.body)
        except OSError as exc:
            log.error("modelwatch: cannot spill %s to %s (%s); keeping it in memory", batch.uri, self.spool.directory, exc)
            with self._lock:
                self._pending.append(batch)
            return
        self._count("spilled", batch.rows)

    def _resend(self) -> None:
        for spilled in self.spool.pending(self.logs_uri):
            try:
                body = self.spool.read(spilled)
            except FileNotFoundError:  # re-sent by another emitter sharing the directory
                continue
            try:
                self._put(spilled.uri, body)
            except Exception as exc:  # noqa: BLE001
                self._mark_down(exc, spilled.uri)
                return
            self._mark_up()
            self.spool.remove(spilled)
            rows = gzip.decompress(body).count(b"\n")
            self._count("flushed", rows)
            self._count("resent", rows)

    def _mark_down(self, exc: Exception, uri: str) -> None:
        now = time.monotonic()
        if now >= self._s3_down_until:
            log.warning("modelwatch: cannot write %s (%s: %s); spilling to %s and retrying in %.0f s",
                        uri, type(exc).__name__, exc, self.spool.directory, self._backoff)
        self._s3_down_until = now + self._backoff
        self._backoff = min(self._backoff * 2, self.retry_max_s)

    def _mark_up(self) -> None:
        self._s3_down_until = 0.0
        self._backoff = self.retry_initial_s

    def _count(self, name: str, n: int) -> None:
        with self._lock:
            self._counts[name] += n

    def _due(self) -> bool:
        with self._lock:
            buf = self._buffer
            aged = buf.oldest is not None and time.monotonic() - buf.oldest >= self.max_age_s
            return aged or buf.rows >= self.max_rows or buf.size >= self.max_bytes or bool(self._pending)

    def _run(self) -> None:
        tick = min(self.max_age_s / 2, 1.0)
        while not self._stop.is_set():
            self._wake.wait(tick)
            self._wake.clear()
            try:
                if self._due():
                    self.flush()
                elif time.monotonic() >= self._s3_down_until:
                    with self._flush_lock:
                        self._resend()
            except Exception:  # noqa: BLE001 - the flusher must survive anything and keep the rows
                log.exception("modelwatch: emitter flush failed; rows stay buffered or spilled")

    # -- life cycle and counters -------------------------------------------------------------------------------

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread, flush everything (to S3 or the spill directory); idempotent. Rows left unstored count as dropped."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._s3_down_until = 0.0  # one last attempt at S3 for whatever is left
        self.flush()
        with self._lock:
            lost = sum(b.rows for b in self._pending)
            self._counts["dropped"] += lost
        if lost:
            log.error("modelwatch: %d rows of %s could be stored neither in S3 nor in %s", lost, self.model_id, self.spool.directory)

    def stats(self) -> dict[str, int]:
        """Counters and gauges: emitted, invalid, flushed, spilled, resent, dropped, buffered, pending_batches, spill_pending."""
        with self._lock:
            out = dict(self._counts)
            out["buffered"] = self._buffer.rows
            out["pending_batches"] = len(self._pending)
        out["spill_pending"] = len(self.spool.pending(self.logs_uri))
        return out

    def __enter__(self) -> LogEmitter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class TrackedCall:
    """Handle of ``LogEmitter.track``: set ``result`` (and any extra row ``fields``) inside the block."""

    request_id: str
    started_at: datetime
    result: Any = None
    fields: dict[str, Any] = field(default_factory=dict)


def _rules(redact: bool | tuple[Rule, ...]) -> tuple[Rule, ...] | None:
    if redact is True:
        from modelwatch.core.redaction import DEFAULT_RULES

        return DEFAULT_RULES
    return tuple(redact) if redact else None


_LIVE: weakref.WeakSet[LogEmitter] = weakref.WeakSet()


def _at_exit(emitter: LogEmitter) -> None:
    _LIVE.add(emitter)


@atexit.register
def _close_all() -> None:
    """Flush every live emitter at interpreter exit (rows of an emitter never closed are not lost)."""
    for emitter in list(_LIVE):
        try:
            emitter.close(timeout_s=5.0)
        except Exception:  # noqa: BLE001
            log.exception("modelwatch: closing the emitter of %s at exit failed", emitter.model_id)
