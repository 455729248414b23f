"""Judge many items: S3 cache first, then the backend under a budget, a call cap, a concurrency limit and retries.

``JudgeRunner(backend, rubric, cache, budget_usd, max_calls, concurrency, retries, timeout_s).run(items)``
returns a ``RunResult`` with one ``ItemOutcome`` per item, in input order:

- ``cached``: found in the cache; no call, no cost.
- ``judged``: judged now (and written to the cache).
- ``failed``: no valid judgment; ``failure_kind`` and ``reason`` say why. Never a score.
- ``skipped_budget``: not attempted because the budget or ``max_calls`` ran out.

Budget. Before each request the runner reserves the backend's upper bound on that
call's cost (``JudgeBackend.max_cost_usd``: the messages' UTF-8 bytes as input tokens
plus overhead, ``max_tokens`` output tokens) and makes the request only if everything
spent and reserved plus this reservation fits in ``budget_usd``. After the call the
reservation is replaced by the reported cost. A timed-out request may still have been
processed and billed, so it is charged its full reservation (``cost_assumed_usd``).
When a call does not fit while others are in flight, the worker waits for them to
settle; when it does not fit with nothing in flight, the run stops and every item not
yet started is ``skipped_budget``. So spent + assumed never exceeds the budget, unless
a server reports more tokens than the upper bound (logged as a warning).

Retries (``modelwatch.judge.attempts``, the loop the pairwise runner shares, on
``modelwatch.retry``). Rate limits (429, honouring retry-after), 5xx, 408/409, timeouts and
connection errors are retried up to ``retries`` times with exponential backoff and
jitter (``backoff_s * 2**(n-1)``, capped at ``max_backoff_s``, times a random factor in
[0.5, 1)), and none past ``deadline_s`` per item. An answer that does not parse or validate
is retried once, then the item fails as ``malformed``. 401/403 and 404 stop the run (every
later request would fail too): the remaining items fail as ``aborted``. Each request counts
as one call.

Cache (``JudgmentCache``): one JSON object per judgment at
``{reports_uri}/_cache/judgments/{rubric}@{version}/{backend}/{model}/{key}.json``, where
``key`` is the sha256 of the rubric (name, version, content hash), the prompt format
(``rubric.PROMPT_FORMAT``: how traffic text is placed in the prompt), the backend's
``cache_identity`` (name, model; the heuristic's thresholds too) and the item's prompt,
response and reference. One object per key rather than parquet shards (as
``EmbeddingCache`` uses) because a judgment costs money: each is written the moment it
is paid for (a run killed halfway keeps what it bought), writes are ``If-None-Match: *``
creates that never race (shards are read-modify-write, so concurrent runs lose each
other's rows and would pay again), and a day's few hundred judgments make a few hundred
small parallel GETs. Failures are not cached, so a re-run retries them. A cache read
error other than "no such key" fails the run rather than silently paying to re-judge.
Items with identical content are judged once per run; the copies share the outcome
(``duplicate_of``) at no cost.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from modelwatch.judge.attempts import ABORTED, FAILED, JUDGED, SKIPPED_BUDGET, JudgeRequests, Stop, Tally, check_run_settings
from modelwatch.judge.budget import BudgetLedger, RunTotals
from modelwatch.judge.calls import MALFORMED, JudgeBackend, JudgeCall, JudgeItem
from modelwatch.judge.rubric import PROMPT_FORMAT, Judgment, Rubric, rubric_hash
from modelwatch.retry import RetryPolicy
from modelwatch.storage.s3 import get_json, put_if_absent, put_json

log = logging.getLogger(__name__)

CACHED = "cached"
STATUSES = (JUDGED, CACHED, FAILED, SKIPPED_BUDGET)
__all__ = ["ABORTED", "BATCH_SIZE", "CACHED", "FAILED", "JUDGED", "SKIPPED_BUDGET", "STATUSES", "ItemOutcome", "JudgeRunner", "JudgmentCache",
           "RunResult", "cache_key"]
BATCH_SIZE = 256  # items per judge_many call of a batched (local) backend


# -- results -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemOutcome:
    """What happened to one item. ``cost_usd`` includes assumed costs of its timed-out requests."""

    item_id: str
    status: str
    cache_key: str
    judgment: Judgment | None = None
    failure_kind: str | None = None
    reason: str | None = None
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    backend: str = ""
    model: str = ""
    confidence: float | None = None
    duplicate_of: str | None = None  # the earlier item with identical content whose outcome this shares (at no cost)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["judgment"] = self.judgment.model_dump() if self.judgment else None
        return out


@dataclass(kw_only=True)
class RunResult(RunTotals):
    """Per-item outcomes and run totals."""

    outcomes: list[ItemOutcome]
    max_calls: int | None
    cache_write_errors: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """Items per status (duplicates included; ``failures_by_kind`` counts each distinct content once)."""
        found = Counter(o.status for o in self.outcomes)
        return {status: found.get(status, 0) for status in STATUSES}

    def by_status(self, status: str) -> list[ItemOutcome]:
        return [o for o in self.outcomes if o.status == status]

    def judgments(self) -> dict[str, Judgment]:
        """item_id -> judgment for the judged and cached items."""
        return {o.item_id: o.judgment for o in self.outcomes if o.judgment is not None}

    def summary(self) -> dict[str, Any]:
        """The totals as a JSON-ready dict (no per-item outcomes)."""
        return {**self.totals(), "items": len(self.outcomes), **self.counts, "max_calls": self.max_calls, "cache_write_errors": self.cache_write_errors}


# -- the cache ---------------------------------------------------------------------------------------------


def cache_key(item: JudgeItem, rubric: Rubric, rubric_digest: str, backend: JudgeBackend) -> str:
    """Hex sha256 of the rubric (name, version, content hash), the prompt format, the backend's ``cache_identity`` (name, model,
    ...), prompt, response and reference."""
    payload = [rubric.name, rubric.version, rubric_digest, PROMPT_FORMAT, backend.cache_identity, item.prompt, item.response, item.reference]
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


def _path_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@+=-]", "_", text)


class JudgmentCache:
    """Judgments in S3, one JSON object per cache key (see the module docstring for why).

    Reads and writes go through ``io_threads`` threads; a boto3 client is thread-safe.
    An entry that no longer validates against the rubric is treated as a miss and
    overwritten.
    """

    def __init__(self, client, reports_uri: str, *, io_threads: int = 16):
        if io_threads < 1:
            raise ValueError(f"io_threads must be positive, got {io_threads}")
        self.client = client
        self.prefix = f"{reports_uri.rstrip('/')}/_cache/judgments/"
        self.io_threads = io_threads

    def uri(self, key: str, rubric: Rubric, backend: JudgeBackend) -> str:
        return f"{self.prefix}{_path_part(rubric.name)}@{_path_part(rubric.version)}/{_path_part(backend.name)}/{_path_part(backend.model)}/{key}.json"

    def get(self, key: str, rubric: Rubric, backend: JudgeBackend) -> dict[str, Any] | None:
        """The cached record (its ``judgment`` validated against ``rubric``), or None when absent or unusable."""
        from botocore.exceptions import ClientError

        uri = self.uri(key, rubric, backend)
        try:
            record = get_json(self.client, uri)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        except ValueError:
            log.warning("judgment cache entry %s is not JSON; judging again", uri)
            return {"_corrupt": True}
        try:
            record["judgment"] = Judgment.model_validate(record["judgment"], context={"rubric": rubric})
        except (KeyError, TypeError, ValidationError) as exc:
            log.warning("judgment cache entry %s is unusable (%s); judging again", uri, str(exc).splitlines()[0])
            return {"_corrupt": True}
        return record

    def get_many(self, keys: Sequence[str], rubric: Rubric, backend: JudgeBackend) -> dict[str, dict[str, Any]]:
        """key -> record for the keys present (in parallel); unusable entries map to ``{"_corrupt": True}``."""
        if not keys:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.io_threads, len(keys)), thread_name_prefix="judge-cache") as pool:
            found = pool.map(lambda k: (k, self.get(k, rubric, backend)), keys)
            return {k: record for k, record in found if record is not None}

    def put(self, key: str, rubric: Rubric, backend: JudgeBackend, record: dict[str, Any], *, overwrite: bool = False) -> None:
        """Store a record: a conditional create (an existing entry for the same key is the same judgment), or a replace."""
        uri = self.uri(key, rubric, backend)
        if overwrite:
            put_json(self.client, uri, record)
        else:
            put_if_absent(self.client, uri, json.dumps(record, sort_keys=True, default=str).encode())


def _cache_record(key: str, item: JudgeItem, call: JudgeCall, rubric: Rubric, rubric_digest: str) -> dict[str, Any]:
    return {"key": key, "item_id": item.item_id, "judgment": call.judgment.model_dump() if call.judgment else None,
            "raw_text": call.raw_text, "backend": call.backend, "model": call.model, "confidence": call.confidence,
            "rubric": rubric.name, "rubric_version": rubric.version, "rubric_hash": rubric_digest, "input_tokens": call.input_tokens,
            "output_tokens": call.output_tokens, "cost_usd": call.cost_usd, "latency_s": call.latency_s,
            "judged_at": datetime.now(UTC).isoformat(timespec="seconds")}


# -- the runner --------------------------------------------------------------------------------------------


class JudgeRunner:
    """Judge items with ``backend`` against ``rubric``; see the module docstring for cache, budget and retries.

    ``budget_usd`` / ``max_calls`` None mean unlimited. ``concurrency`` bounds the requests
    in flight; ``timeout_s`` is each request's timeout (None: the backend's own); ``deadline_s``
    bounds one item's retries in time (None: ``retries`` alone). ``sleep`` and ``seed`` exist for tests.
    """

    def __init__(self, backend: JudgeBackend, rubric: Rubric, cache: JudgmentCache | None = None, budget_usd: float | None = None,
                 max_calls: int | None = None, concurrency: int = 4, retries: int = 3, timeout_s: float | None = None, *, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, deadline_s: float | None = None, seed: int | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        check_run_settings(concurrency, budget_usd, timeout_s, max_calls)
        self.backend = backend
        self.rubric = rubric
        self.cache = cache
        self.budget_usd = budget_usd
        self.max_calls = max_calls
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retry_policy = RetryPolicy(retries=retries, backoff_s=backoff_s, max_backoff_s=max_backoff_s, deadline_s=deadline_s)
        self._requests = JudgeRequests(self.retry_policy, seed=seed, sleep=sleep)
        self._rubric_digest = rubric_hash(rubric)

    def __repr__(self) -> str:
        return (f"JudgeRunner(backend={self.backend!r}, rubric={self.rubric.name}@{self.rubric.version}, budget_usd={self.budget_usd}, "
                f"max_calls={self.max_calls}, concurrency={self.concurrency})")

    def run(self, items: Sequence[JudgeItem]) -> RunResult:
        """Judge ``items``: cache lookups, then the misses (each distinct content once), then totals."""
        start = time.perf_counter()
        ledger = BudgetLedger(self.budget_usd, self.max_calls)
        keys = [cache_key(item, self.rubric, self._rubric_digest, self.backend) for item in items]
        first: dict[str, int] = {}
        for index, key in enumerate(keys):
            first.setdefault(key, index)

        results: dict[str, ItemOutcome] = {}
        cached = self.cache.get_many(list(first), self.rubric, self.backend) if self.cache else {}
        corrupt = {k for k, record in cached.items() if record.get("_corrupt")}
        for key, record in cached.items():
            if key not in corrupt:
                results[key] = self._from_cache(items[first[key]], key, record)
        todo = [(key, items[index]) for key, index in first.items() if key not in results]
        if todo:
            free = self.backend.batched and all(self.backend.max_cost_usd(item, self.rubric) == 0 for _, item in todo)
            judge = self._judge_batched if free else self._judge_concurrently
            results.update(judge(todo, ledger, corrupt))

        outcomes = []
        for index, (item, key) in enumerate(zip(items, keys, strict=True)):
            outcome = results[key]
            if first[key] != index:
                outcome = replace(outcome, item_id=item.item_id, duplicate_of=items[first[key]].item_id, attempts=0, input_tokens=0,
                                  output_tokens=0, cost_usd=0.0)
            outcomes.append(outcome)
        result = RunResult(
            **RunTotals.from_ledger(ledger), outcomes=outcomes, backend=self.backend.describe(), rubric=self.rubric.name,
            rubric_version=self.rubric.version, max_calls=self.max_calls, wall_time_s=time.perf_counter() - start,
            failures_by_kind=dict(Counter(o.failure_kind for o in outcomes if o.status == FAILED and o.duplicate_of is None)),
            cache_write_errors=ledger.cache_write_errors)
        log.info("judge run %s@%s with %s: %s", self.rubric.name, self.rubric.version, self.backend.model,
                 {k: v for k, v in result.summary().items() if k not in ("backend", "rubric", "rubric_version")})
        return result

    # -- one item, with retries --------------------------------------------------------------------------

    def _outcome(self, key: str, item: JudgeItem, status: str, **fields: Any) -> ItemOutcome:
        return ItemOutcome(item_id=item.item_id, status=status, cache_key=key, backend=self.backend.name, model=self.backend.model,
                           confidence=self.backend.confidence, **fields)

    def _from_cache(self, item: JudgeItem, key: str, record: dict[str, Any]) -> ItemOutcome:
        return replace(self._outcome(key, item, CACHED, judgment=record["judgment"]), confidence=record.get("confidence", self.backend.confidence))

    def _judge_one(self, key: str, item: JudgeItem, ledger: BudgetLedger, overwrite: bool) -> ItemOutcome:
        estimate = self.backend.max_cost_usd(item, self.rubric)
        tally = Tally()
        answer = self._requests.run(lambda: self.backend.judge(item, self.rubric, timeout_s=self.timeout_s), estimate=estimate,
                                    reserve=lambda: ledger.reserve(estimate), ledger=ledger, tally=tally, name=f"item {item.item_id}")
        counted = {k: v for k, v in tally.fields().items() if k != "latency_s"}
        if isinstance(answer, Stop):
            return self._outcome(key, item, answer.status, failure_kind=answer.failure_kind, reason=answer.reason, **counted)
        self._store(key, item, answer, ledger, overwrite)
        return self._outcome(key, item, JUDGED, judgment=answer.judgment, latency_s=answer.latency_s, **counted)

    def _store(self, key: str, item: JudgeItem, call: JudgeCall, ledger: BudgetLedger, overwrite: bool) -> None:
        if self.cache is None:
            return
        try:
            self.cache.put(key, self.rubric, self.backend, _cache_record(key, item, call, self.rubric, self._rubric_digest), overwrite=overwrite)
        except Exception as exc:  # the judgment stands; only its caching failed
            ledger.count_cache_write_error()
            log.warning("could not cache the judgment of item %s: %s: %s", item.item_id, type(exc).__name__, exc)

    # -- many items --------------------------------------------------------------------------------------

    def _judge_concurrently(self, todo: list[tuple[str, JudgeItem]], ledger: BudgetLedger, corrupt: set[str]) -> dict[str, ItemOutcome]:
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo)), thread_name_prefix="judge") as pool:
            futures = {key: pool.submit(self._judge_one, key, item, ledger, key in corrupt) for key, item in todo}
            return {key: future.result() for key, future in futures.items()}

    def _judge_batched(self, todo: list[tuple[str, JudgeItem]], ledger: BudgetLedger, corrupt: set[str]) -> dict[str, ItemOutcome]:
        """A free local backend (the heuristic judge): ``judge_many`` in batches, ``max_calls`` items at most, cached in parallel."""
        out: dict[str, ItemOutcome] = {}
        allowed = todo if self.max_calls is None else todo[: self.max_calls]
        for key, item in todo[len(allowed):]:
            out[key] = self._outcome(key, item, SKIPPED_BUDGET, reason=f"max_calls {self.max_calls} reached")
        if len(allowed) < len(todo):
            ledger.stop_reason = f"max_calls {self.max_calls} reached"
        for start in range(0, len(allowed), BATCH_SIZE):
            batch = allowed[start : start + BATCH_SIZE]
            calls = self.backend.judge_many([item for _, item in batch], self.rubric)
            ledger.calls += len(batch)
            for (key, item), call in zip(batch, calls, strict=True):
                if call.ok:
                    out[key] = self._outcome(key, item, JUDGED, judgment=call.judgment, attempts=1, latency_s=call.latency_s)
                else:
                    ledger.errors[MALFORMED] += 1
                    out[key] = self._outcome(key, item, FAILED, failure_kind=MALFORMED, reason=call.parse_error, attempts=1)
            if self.cache is not None:
                judged = [(key, item, call) for (key, item), call in zip(batch, calls, strict=True) if call.ok]
                with ThreadPoolExecutor(max_workers=min(self.cache.io_threads, max(1, len(judged))), thread_name_prefix="judge-cache") as pool:
                    list(pool.map(lambda kic: self._store(kic[0], kic[1], kic[2], ledger, kic[0] in corrupt), judged))
        return out
