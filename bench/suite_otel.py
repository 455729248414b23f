"""Benchmark suite "otel": OpenTelemetry GenAI spans read and mapped to log rows per core, beside log lines.

``run(size)`` returns records ``{"suite", "case", "metric", "value", "unit", "alternative",
"alternative_value", "target"}``; ``size`` is "small" (a quick pass) or "full".

The process is pinned to one CPU (``os.sched_setaffinity``); the files are in memory, so the
figures are the reader's CPU cost, not S3's. The same requests (chat spans made with the
OpenTelemetry SDK, the span maker of the tests, with the current GenAI attribute names, a
feature flag and two metadata attributes; every other span an HTTP span that is skipped) are:

* gzipped OTLP/JSON exports (the Collector's ``otlp_json`` marshaler), and gzipped OTLP protobuf
  exports (``otlp_proto``), 1,000 requests per file, read by ``ingest.otel.open_export``;
* gzipped JSON lines (``readers.open_file``), the alternative;

then coerced to the canonical table (``readers.batch_tables``). Median of the rounds, requests/s.
"""

from __future__ import annotations

import gzip
import json
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import pin_to_one_core, suite_helpers

SUITE = "otel"
log, record = suite_helpers(SUITE)
SIZES: dict[str, dict[str, int]] = {"full": {"requests": 100_000, "rounds": 5}, "small": {"requests": 10_000, "rounds": 3}}
PER_FILE = 1_000
DAY = date(2026, 11, 3)
PREFIX = "s3://otel-archive/traces"
Record = dict[str, Any]


def _requests(n: int) -> list[dict[str, Any]]:
    start = datetime(2026, 11, 3, tzinfo=UTC)
    return [{"request_id": f"r-{i}", "timestamp": (start + timedelta(seconds=i * 86_400 / n)).isoformat(), "model_id": "support-bot-v3",
             "variant": "treatment" if i % 10 == 0 else "control", "experiment_id": "exp-042", "status": "ok", "latency_ms": 812.5 + i % 97,
             "prompt": f"Why was I charged twice on order #{i}? I already contacted support, please escalate this.",
             "response": "The second charge is a pending authorisation and will drop off in 3-5 days.", "prompt_tokens": 21, "completion_tokens": 17,
             "metadata": {"topic": "billing", "locale": "en-US"}} for i in range(n)]


def _exports(requests: list[dict[str, Any]]) -> dict[str, list[tuple[str, bytes]]]:
    """The requests as gzipped exports of both marshalers (an HTTP span beside each chat span)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from otel_spans import SpanMaker, chat_attributes, export_bytes, export_key

    maker = SpanMaker()
    files: dict[str, list[tuple[str, bytes]]] = {"otlp_json": [], "otlp_proto": []}
    for n in range(0, len(requests), PER_FILE):
        for r in requests[n : n + PER_FILE]:
            at = datetime.fromisoformat(r["timestamp"])
            attrs = chat_attributes("gpt-support-3", r["prompt"], r["response"], r["prompt_tokens"], r["completion_tokens"])
            attrs |= {"app.request_id": r["request_id"], "app.topic": "billing", "app.locale": "en-US", "feature_flag.key": "exp-042",
                      "feature_flag.result.variant": r["variant"]}
            maker.span("POST /v1/answer", at, r["latency_ms"] + 2, {"http.request.method": "POST", "http.route": "/v1/answer"})
            maker.span("chat gpt-support-3", at, r["latency_ms"], attrs)
        spans = maker.finished()
        written = datetime.fromisoformat(requests[n]["timestamp"])
        for marshaler in files:
            files[marshaler].append((export_key(PREFIX, written, n, marshaler, True), export_bytes(spans, marshaler, gzipped=True)))
    return files


def _log_files(requests: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    return [(f"s3://logs/inference/model_id=support-bot-v3/dt={DAY}/part-{n:05d}.jsonl.gz",
             gzip.compress("".join(json.dumps(r) + "\n" for r in requests[n : n + PER_FILE]).encode())) for n in range(0, len(requests), PER_FILE)]


def _config():
    from modelwatch.config import parse_config

    return parse_config({"models": [{"id": "support-bot-v3", "kind": "llm",
                                     "experiments": [{"id": "exp-042", "split": {"treatment": 0.1}, "assignment": "external"}],
                                     "source": {"otel": {"uri": PREFIX, "compression": "gzip", "request_id_attribute": "app.request_id",
                                                         "metadata": {"topic": "app.topic", "locale": "app.locale"}}}}]})


def _read_rate(files: list[tuple[str, bytes]], opener, rounds: int) -> tuple[float, int]:
    """(median requests/s over ``rounds``, rows per round) of opening every file and coercing its batches."""
    from modelwatch.ingest.readers import batch_tables

    rates, rows = [], 0
    for _ in range(rounds):
        rows = 0
        t0 = time.perf_counter()
        for uri, data in files:
            for batch in opener(data, uri).batches:
                table, _ = batch_tables(batch, rows)
                rows += table.num_rows
        rates.append(rows / (time.perf_counter() - t0))
    return statistics.median(rates), rows


def read_and_map(n: int, rounds: int) -> list[Record]:
    from modelwatch.core.partition import Partition
    from modelwatch.ingest.otel import open_export
    from modelwatch.ingest.readers import open_file

    requests = _requests(n)
    exports, logs = _exports(requests), _log_files(requests)
    cfg = _config()
    model, partition = cfg.model("support-bot-v3"), Partition("support-bot-v3", DAY)
    lines, line_rows = _read_rate(logs, open_file, rounds)
    out = []
    for marshaler, files in exports.items():
        source = model.source.otel.model_copy(update={"marshaler": marshaler})
        rate, rows = _read_rate(files, lambda data, uri, s=source: open_export(data, uri, model, s, partition), rounds)
        assert rows == line_rows == n, (rows, line_rows, n)
        size = sum(len(d) for _, d in files) / n
        log(f"{marshaler}: {rate:,.0f} requests/s ({size:.0f} gzipped bytes per request, with its HTTP span); JSON lines {lines:,.0f} rows/s")
        out.append(record(f"gzipped {marshaler} exports read, mapped and coerced on one core, {n:,} chat spans + {n:,} HTTP spans skipped",
                          "requests_per_second", round(rate), "requests/s", "the same requests as gzipped JSON lines", round(lines)))
    return out


def run(size: str) -> list[Record]:
    """All records of the suite; ``size`` is "small" or "full"."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    pin_to_one_core()
    cfg = SIZES[size]
    return read_and_map(cfg["requests"], cfg["rounds"])


if __name__ == "__main__":
    for rec in run(sys.argv[1] if len(sys.argv) > 1 else "small"):
        print(json.dumps(rec, ensure_ascii=False))
