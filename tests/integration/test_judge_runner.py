"""JudgeRunner against the fake judge server through the real anthropic and openai SDKs, and the S3 judgment cache on moto.

The server (tests/judge_server.py) listens on 127.0.0.1 only; nothing reaches the network.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid

import pytest
from judge_server import FakeJudgeServer
from modelwatch.judge.calls import TIMEOUT, JudgeBackend, JudgeCall, JudgeCallError, JudgeItem
from modelwatch.judge.heuristic import HeuristicJudge
from modelwatch.judge.llm import AnthropicJudge, OpenAICompatibleJudge
from modelwatch.judge.rubric import load_rubric, parse_judgment
from modelwatch.judge.runner import CACHED, FAILED, JUDGED, SKIPPED_BUDGET, JudgeRunner, JudgmentCache
from modelwatch.storage.s3 import ensure_bucket, list_objects, put_bytes

KEY = "sk-integration-secret-51c9"
PRICE_IN, PRICE_OUT = 0.003, 0.015  # USD per 1k tokens
RESPONSES = [
    "Open the login page, choose Forgot password and follow the emailed link.",
    "Refunds go back to the original card within 5 business days.",
    "You can change the delivery address until the parcel ships.",
    "I'm sorry, but I can't help with that.",
]


@pytest.fixture(scope="module")
def rubric():
    return load_rubric("support-v2")


@pytest.fixture()
def server(rubric):
    with FakeJudgeServer.for_rubric(rubric, api_key=KEY, slow_s=1.0, retry_after_s=0.0) as fake:
        yield fake


def make_backend(kind: str, server: FakeJudgeServer, *, key: str = KEY, timeout_s: float = 5.0) -> JudgeBackend:
    if kind == "anthropic":
        return AnthropicJudge(key, "claude-judge-test", base_url=server.anthropic_url, timeout_s=timeout_s, price_in=PRICE_IN, price_out=PRICE_OUT)
    return OpenAICompatibleJudge(key, "gpt-judge-test", base_url=server.openai_url, timeout_s=timeout_s, price_in=PRICE_IN, price_out=PRICE_OUT)


def make_items(n: int, prefix: str = "item") -> list[JudgeItem]:
    """Items whose prompt carries their id, so that faults can target one item however requests interleave."""
    return [JudgeItem(f"{prefix}-{i:02d}", f"[{prefix}-{i:02d}] Customer question number {i}: how do I fix my account?",
                      RESPONSES[i % len(RESPONSES)]) for i in range(n)]


def outcome(result, item_id: str):
    return next(o for o in result.outcomes if o.item_id == item_id)


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_both_backends_judge_every_item_through_their_sdk(kind, server, rubric):
    backend = make_backend(kind, server)
    items = make_items(8)
    result = JudgeRunner(backend, rubric, concurrency=4, seed=1).run(items)

    assert result.counts == {JUDGED: 8, CACHED: 0, FAILED: 0, SKIPPED_BUDGET: 0}
    assert server.stats()["by_wire"] == {kind: 8} and result.calls == 8
    for item in items:
        expected = server.judgment_for(rubric.prompt(item.prompt, item.response, item.reference)[1])
        got = outcome(result, item.item_id)
        assert got.judgment.scores == expected["scores"] and got.judgment.flags == expected["flags"]
        assert got.cost_usd == pytest.approx(got.input_tokens * PRICE_IN / 1000 + got.output_tokens * PRICE_OUT / 1000)
        assert 0 < got.cost_usd <= backend.max_cost_usd(item, rubric)
    assert result.input_tokens == sum(o.input_tokens for o in result.outcomes) > 0
    assert result.cost_usd == pytest.approx(sum(o.cost_usd for o in result.outcomes)) and result.cost_assumed_usd == 0
    assert {r.model for r in server.records()} == {backend.model}


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_faults_are_retried_then_counted_by_kind(kind, server, rubric):
    retries = 2
    plan = {
        "item-00": ["429", "429"],  # rate limited twice, then judged
        "item-01": ["500"],
        "item-02": ["slow"],  # beyond the 0.5 s client timeout
        "item-03": ["disconnect"],
        "item-04": ["malformed"],  # retried once, then judged
        "item-05": ["malformed", "invalid"],  # retried once, still bad: failed, never scored
        "item-06": ["503"] * (retries + 1),  # out of retries
        "item-07": ["prose"],  # a fenced judgment inside prose parses
    }
    for match, faults in plan.items():
        server.add_faults(faults, match=f"[{match}]")
    backend = make_backend(kind, server, timeout_s=0.5)
    items = make_items(9)
    result = JudgeRunner(backend, rubric, concurrency=3, retries=retries, backoff_s=0.01, max_backoff_s=0.05, seed=2).run(items)

    failed = {o.item_id: o for o in result.by_status(FAILED)}
    assert set(failed) == {"item-05", "item-06"}
    assert failed["item-05"].failure_kind == "malformed" and "also after one retry" in failed["item-05"].reason
    assert failed["item-06"].failure_kind == "server_error" and f"after {retries} retries" in failed["item-06"].reason
    assert all(o.judgment is None for o in failed.values())
    assert result.counts[JUDGED] == 7 and result.failures_by_kind == {"malformed": 1, "server_error": 1}
    assert result.errors_by_kind == {"rate_limited": 2, "server_error": 1 + retries + 1, "timeout": 1, "connection": 1, "malformed": 3}
    assert len(server.requests_matching("[item-05]")) == 2  # the malformed answer was retried exactly once
    assert len(server.requests_matching("[item-06]")) == retries + 1
    assert len(server.requests_matching("[item-00]")) == 3 and outcome(result, "item-00").attempts == 3
    assert result.calls == len(server.records()) == 9 + 2 + 1 + 1 + 1 + 1 + 1 + retries
    # the timed-out request may have been billed: it is charged its full reservation
    assert result.cost_assumed_usd == pytest.approx(backend.max_cost_usd(items[2], rubric))
    assert outcome(result, "item-02").cost_usd > backend.max_cost_usd(items[2], rubric)


def test_a_rejected_key_aborts_the_run_after_one_request(server, rubric):
    backend = make_backend("anthropic", server, key="sk-wrong")
    result = JudgeRunner(backend, rubric, concurrency=1).run(make_items(5))
    assert result.failures_by_kind == {"auth": 1, "aborted": 4}
    assert len(server.records()) == 1 and "auth" in result.stop_reason
    assert all(o.judgment is None for o in result.outcomes)


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_a_429_waits_what_the_server_asks_and_backoff_is_jittered_exponential(kind, rubric):
    """Retries go through modelwatch.retry: the SDK's retry-after header is honoured in full (above max_backoff_s too)."""
    with FakeJudgeServer.for_rubric(rubric, api_key=KEY, retry_after_s=7.0) as slow_server:
        slow_server.add_faults(["429", "500", "500"])
        sleeps: list[float] = []
        runner = JudgeRunner(make_backend(kind, slow_server), rubric, concurrency=1, retries=3, backoff_s=0.5, max_backoff_s=4.0, seed=3,
                             sleep=sleeps.append)
        result = runner.run(make_items(1))
    assert result.counts[JUDGED] == 1 and outcome(result, "item-00").attempts == 4
    assert sleeps[0] == 7.0  # the server's retry-after, not the 0.5 s nominal backoff
    assert 0.5 <= sleeps[1] < 1.0 and 1.0 <= sleeps[2] < 2.0  # retries 2 and 3: 0.5 * 2**(n-1), times a jitter in [0.5, 1)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_the_budget_is_never_exceeded_and_the_rest_is_skipped(concurrency, server, rubric):
    backend = make_backend("openai", server)
    items = make_items(20)
    bound = backend.max_cost_usd(items[0], rubric)
    budget = 2.5 * bound  # room for several calls at their real cost, not for 20
    result = JudgeRunner(backend, rubric, budget_usd=budget, concurrency=concurrency).run(items)

    assert result.spent_usd <= budget
    skipped = result.by_status(SKIPPED_BUDGET)
    assert skipped and result.counts[JUDGED] >= 2 and result.counts[JUDGED] + len(skipped) == 20
    assert all("budget" in o.reason for o in skipped)
    assert result.calls == result.counts[JUDGED] == len(server.records())
    # stopping was necessary: the dearest skipped call could not have fitted
    assert result.spent_usd + max(backend.max_cost_usd(items[int(o.item_id[-2:])], rubric) for o in skipped) > budget
    if concurrency == 1:
        assert [o.status for o in result.outcomes] == [JUDGED] * result.counts[JUDGED] + [SKIPPED_BUDGET] * len(skipped)


class FixedCostBackend(JudgeBackend):
    """Every call costs exactly its upper bound and takes ``delay_s``; the first call of each item in ``timeouts`` times out."""

    name = "fixed"

    def __init__(self, cost: float, timeouts: set[str] = frozenset(), delay_s: float = 0.05):
        super().__init__("fixed-cost-1")
        self.cost = cost
        self.timeouts = timeouts
        self.delay_s = delay_s
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def max_cost_usd(self, item, rubric) -> float:
        return self.cost

    def judge(self, item, rubric, *, timeout_s=None) -> JudgeCall:
        with self._lock:
            self.calls.append(item.item_id)
            first = self.calls.count(item.item_id) == 1
        time.sleep(self.delay_s)  # calls overlap, so in-flight reservations matter
        if first and item.item_id in self.timeouts:
            raise JudgeCallError(TIMEOUT, "timed out", retryable=True)
        text = json.dumps({"scores": dict.fromkeys(rubric.dimensions, 3), "flags": dict.fromkeys(rubric.flags, False), "reasoning": "r"})
        return JudgeCall(self.name, self.model, 1.0, text, parse_judgment(text, rubric), None, 10, 10, self.cost, 0.0)


def test_the_budget_holds_exactly_and_timeouts_are_charged(rubric):
    backend = FixedCostBackend(0.25)
    result = JudgeRunner(backend, rubric, budget_usd=1.0, concurrency=3).run(make_items(10))
    assert result.counts[JUDGED] == 4 and result.counts[SKIPPED_BUDGET] == 6
    assert result.cost_usd == 1.0 and len(backend.calls) == 4

    timing_out = FixedCostBackend(0.25, timeouts={"item-00"})
    result = JudgeRunner(timing_out, rubric, budget_usd=1.0, concurrency=1, backoff_s=0.0, max_backoff_s=0.0).run(make_items(10))
    assert result.cost_assumed_usd == 0.25 and result.cost_usd == 0.75 and result.spent_usd == 1.0
    assert result.counts[JUDGED] == 3 and timing_out.calls[:2] == ["item-00", "item-00"]


def test_max_calls_caps_the_requests(server, rubric):
    result = JudgeRunner(make_backend("anthropic", server), rubric, max_calls=3, concurrency=2).run(make_items(6))
    assert result.counts[JUDGED] == 3 and result.counts[SKIPPED_BUDGET] == 3 and len(server.records()) == 3
    assert all("max_calls 3 reached" in o.reason for o in result.by_status(SKIPPED_BUDGET))


@pytest.mark.parametrize("concurrency", [1, 3])
def test_the_concurrency_limit_is_respected(concurrency, rubric):
    with FakeJudgeServer.for_rubric(rubric, latency_s=0.2) as slow_server:
        backend = make_backend("openai", slow_server)
        result = JudgeRunner(backend, rubric, concurrency=concurrency).run(make_items(12))
        assert result.counts[JUDGED] == 12
        assert slow_server.stats()["max_in_flight"] == concurrency  # never more, and the limit is used


@pytest.fixture()
def reports_uri(s3) -> str:
    bucket = f"judge-{uuid.uuid4().hex[:12]}"
    ensure_bucket(s3, bucket)
    return f"s3://{bucket}/reports"


def test_the_s3_cache_makes_a_rerun_free(server, rubric, s3, reports_uri):
    cache = JudgmentCache(s3, reports_uri)
    backend = make_backend("anthropic", server)
    items = make_items(6) + [JudgeItem("copy-of-01", make_items(6)[1].prompt, make_items(6)[1].response)]
    server.add_faults(["malformed", "malformed"], match="[item-05]")  # fails in the first run: not cached

    first = JudgeRunner(backend, rubric, cache, concurrency=3).run(items)
    assert first.counts == {JUDGED: 6, CACHED: 0, FAILED: 1, SKIPPED_BUDGET: 0}
    assert outcome(first, "copy-of-01").duplicate_of == "item-01" and outcome(first, "copy-of-01").cost_usd == 0
    assert first.calls == 5 + 2 and len(list(list_objects(s3, cache.prefix))) == 5

    second = JudgeRunner(make_backend("anthropic", server), rubric, cache, concurrency=3).run(items)
    assert second.calls == 1 and second.counts[CACHED] == 6 and outcome(second, "item-05").status == JUDGED
    assert second.cost_usd == pytest.approx(outcome(second, "item-05").cost_usd)
    assert {o.item_id: o.judgment for o in second.outcomes} == {o.item_id: o.judgment for o in first.outcomes if o.judgment} | {
        "item-05": outcome(second, "item-05").judgment}

    third = JudgeRunner(backend, rubric, cache).run(items)
    assert third.calls == 0 and third.cost_usd == 0 and third.spent_usd == 0 and third.counts[CACHED] == 7
    assert len(server.records()) == 8

    bumped = rubric.model_copy(update={"version": "2.1"})  # another rubric version is another cache entry
    assert JudgeRunner(backend, bumped, cache).run(items[:2]).calls == 2


def test_an_unusable_cache_entry_is_judged_again_and_replaced(server, rubric, s3, reports_uri):
    cache = JudgmentCache(s3, reports_uri)
    backend = make_backend("openai", server)
    items = make_items(2)
    first = JudgeRunner(backend, rubric, cache).run(items)
    put_bytes(s3, cache.uri(first.outcomes[0].cache_key, rubric, backend), b'{"judgment": {"scores": {"helpfulness": 9}}}')
    second = JudgeRunner(backend, rubric, cache).run(items)
    assert [o.status for o in second.outcomes] == [JUDGED, CACHED] and second.calls == 1
    assert JudgeRunner(backend, rubric, cache).run(items).calls == 0


def test_the_heuristic_judge_runs_batched_and_cached(rubric, s3, reports_uri):
    cache = JudgmentCache(s3, reports_uri)
    texts: list[str] = []

    def embed(batch: list[str]):
        from modelwatch.embeddings import embed_texts

        texts.extend(batch)
        return embed_texts(batch)

    items = make_items(8)
    first = JudgeRunner(HeuristicJudge(embed=embed), rubric, cache).run(items)
    assert first.counts[JUDGED] == 8 and first.cost_usd == 0 and first.calls == 8
    assert all(o.confidence == 0.5 for o in first.outcomes)
    embedded = len(texts)
    second = JudgeRunner(HeuristicJudge(embed=embed), rubric, cache).run(items)
    assert second.counts[CACHED] == 8 and second.calls == 0 and len(texts) == embedded
    stricter = JudgeRunner(HeuristicJudge(embed=embed, toxicity_threshold=0.2), rubric, cache).run(items)
    assert stricter.counts[JUDGED] == 8  # another threshold is another judge: not served from the cache


def test_the_api_key_never_reaches_logs_or_results(server, rubric, caplog):
    caplog.set_level(logging.DEBUG)
    server.add_faults(["429", "500", "malformed", "malformed"])
    for key in (KEY, KEY + "-wrong"):
        backend = make_backend("openai", server, key=key)
        result = JudgeRunner(backend, rubric, concurrency=2, backoff_s=0.0, max_backoff_s=0.0).run(make_items(4))
        dumped = json.dumps(result.summary()) + json.dumps([o.to_dict() for o in result.outcomes], default=str) + repr(backend)
        assert KEY not in dumped
    refused = next(o for o in result.outcomes if o.failure_kind == "auth")
    assert refused.failure_kind == "auth" and "invalid API key '***'" in refused.reason  # the server echoed the key; it was scrubbed
    assert caplog.records and KEY not in caplog.text
