"""Benchmark suite "serving": the serving client's cost per request and its sustained throughput on one core.

``run(size)`` returns records ``{"suite", "case", "metric", "value", "unit", "alternative",
"alternative_value", "target"}``; ``size`` is "small" (a quick pass) or "full".

The process is pinned to one CPU (``os.sched_setaffinity``) and S3 is an in-memory stub,
so the figures are the client's own CPU cost, not the network's.

* Emitter overhead per request: ``LogEmitter.record_call`` for one LLM call (usage object
  read, cost computed, row checked against the contract, JSON-encoded, buffered), with the
  background flusher running; median over rounds, µs per row. With the default redaction
  set on, as the alternative.
* Router overhead per request: ``Router.call`` around a model that returns at once
  (assignment, kill-switch decision from a cached document, the emitter's row), against
  calling the model directly (the alternative).
* Sustained rows/s: rows recorded and flushed (gzip JSON lines, one object per hour
  partition) in a single thread, end to end, by size-triggered flushes of 5,000 rows.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace as NS
from typing import Any

from modelwatch.serving import Experiment, KillSwitch, LogEmitter, Price, Router

from bench.common import pin_to_one_core, suite_helpers

SUITE = "serving"
log, record = suite_helpers(SUITE)
SIZES: dict[str, dict[str, int]] = {"full": {"rows": 200_000, "rounds": 7}, "small": {"rows": 20_000, "rounds": 3}}
Record = dict[str, Any]


class NullS3:
    """Accepts every put and keeps only the byte count: S3 without the network."""

    def __init__(self):
        self.bytes = 0
        self.routing = json.dumps({"experiments": {}}).encode()

    def put_object(self, Bucket, Key, Body, **_):  # noqa: N803 - boto3's argument names
        self.bytes += len(Body)

    def get_object(self, Bucket, Key):  # noqa: N803
        return {"Body": NS(read=lambda: self.routing)}


PROMPT = "Why was I charged $12.99 twice on my Visa card? I already contacted support about order #A1043, please escalate this."
ANSWER = "I checked your account: the second $12.99 charge is a pending authorisation and will drop off in 3-5 days."
RESULT = NS(content=[NS(type="text", text=ANSWER)], usage=NS(input_tokens=31, output_tokens=24), stop_reason="end_turn")


def _emitter(spill: str, **kw: Any) -> LogEmitter:
    return LogEmitter(NullS3(), "s3://logs/inference", "support-bot-v3", price=Price(0.5, 1.5), spill_dir=spill, **kw)


def _per_row_us(rows: int, rounds: int, redact: bool, spill: str) -> float:
    from datetime import UTC, datetime

    medians = []
    for _ in range(rounds):
        em = _emitter(spill, redact=redact, max_rows=5_000)
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        for i in range(rows):
            em.record_call(started_at=started, latency_ms=812.5, result=RESULT, variant="control", request_id=f"r-{i}", prompt=PROMPT,
                           experiment_id="exp-042", metadata={"topic": "billing", "locale": "en-US"})
        medians.append((time.perf_counter() - t0) / rows * 1e6)
        em.close()
    return statistics.median(medians)


def emitter_overhead(rows: int, rounds: int, spill: str) -> list[Record]:
    plain = _per_row_us(rows, rounds, False, spill)
    redacted = _per_row_us(rows, rounds, True, spill)
    log(f"record_call: {plain:.1f} µs/row, with redaction {redacted:.1f} µs/row")
    return [record(f"LogEmitter.record_call, one LLM call, background flusher on, median of {rounds} x {rows:,} rows", "overhead_per_request",
                   round(plain, 2), "µs", "same with redaction (email, card, phone)", round(redacted, 2), "<= 200 µs")]


def router_overhead(rows: int, rounds: int, spill: str) -> list[Record]:
    def model(payload: str) -> Any:
        return RESULT

    em = _emitter(spill, max_rows=5_000)
    switch = KillSwitch(em.client, "s3://serving/routing.json", refresh_s=3600, background=False)
    router = Router(em, control=model, treatment=model, experiment=Experiment("exp-042", {"control": 0.9, "treatment": 0.1}), kill_switch=switch)
    routed, direct = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(rows):
            router.call(PROMPT, request_id=f"r-{i}", metadata={"topic": "billing"})
        routed.append((time.perf_counter() - t0) / rows * 1e6)
        t0 = time.perf_counter()
        for _ in range(rows):
            model(PROMPT)
        direct.append((time.perf_counter() - t0) / rows * 1e6)
    router.close()
    em.close()
    value, alt = statistics.median(routed), statistics.median(direct)
    log(f"Router.call: {value:.1f} µs/request, the model alone {alt:.3f} µs")
    return [record(f"Router.call around an instant model (assignment, kill switch, row), median of {rounds} x {rows:,}", "overhead_per_request",
                   round(value, 2), "µs", "the model called directly", round(alt, 3), "<= 300 µs")]


def sustained(rows: int, spill: str) -> list[Record]:
    from datetime import UTC, datetime, timedelta

    em = _emitter(spill, background=False, max_rows=5_000)
    start = datetime(2026, 11, 3, tzinfo=UTC)
    t0 = time.perf_counter()
    for i in range(rows):
        em.record(request_id=f"r-{i}", timestamp=start + timedelta(seconds=i * 86_400 / rows), variant="control", latency_ms=812.5,
                  prompt=PROMPT, response=ANSWER, prompt_tokens=31, completion_tokens=24, experiment_id="exp-042",
                  metadata={"topic": "billing", "locale": "en-US"})
    em.close()
    seconds = time.perf_counter() - t0
    stats = em.stats()
    assert stats["flushed"] == rows and stats["invalid"] == 0, stats
    rate = rows / seconds
    log(f"sustained: {rate:,.0f} rows/s ({em.client.bytes / rows:.0f} compressed bytes/row)")
    return [record(f"record + check + gzip flush, one thread on one core, {rows:,} rows over 24 hour partitions", "rows_per_second",
                   round(rate), "rows/s", None, None, ">= 5000 rows/s")]


def run(size: str) -> list[Record]:
    """All records of the suite; ``size`` is "small" or "full"."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    pin_to_one_core()
    cfg = SIZES[size]
    with tempfile.TemporaryDirectory(prefix="bench-serving-spill-") as spill:
        return (emitter_overhead(cfg["rows"] // 4, cfg["rounds"], spill) + router_overhead(cfg["rows"] // 4, cfg["rounds"], spill)
                + sustained(cfg["rows"], spill))


if __name__ == "__main__":
    for rec in run(sys.argv[1] if len(sys.argv) > 1 else "small"):
        print(json.dumps(rec, ensure_ascii=False))
