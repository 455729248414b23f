"""modelwatch.retry: the one retry helper (tenacity) of webhooks, notifications and the judge runners — on a fake clock."""

from __future__ import annotations

import random
import threading
import urllib.error
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from modelwatch.observe.webhook import WebhookError, post_json
from modelwatch.retry import (
    RetriesExhausted,
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
    retry_after_from_headers,
    retryable_status,
)


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(float(seconds))
        self.now += float(seconds)


class Transient(Exception):
    def __init__(self, retry_after_s: float | None = None):
        super().__init__("try again")
        self.retry_after_s = retry_after_s


class Permanent(Exception):
    pass


def failing(errors: list[Exception], result: str = "ok"):
    """A function that raises ``errors`` in turn, then returns ``result``; ``calls`` counts its calls."""

    def fn() -> str:
        fn.calls += 1
        if errors:
            raise errors.pop(0)
        return result

    fn.calls = 0
    return fn


def run(fn, policy: RetryPolicy, clock: FakeClock, seed: int = 0):
    return call_with_retries(fn, policy, retryable=lambda e: isinstance(e, Transient), sleep=clock.sleep, clock=clock,
                             uniform=random.Random(seed).random)


def test_retryable_statuses_are_408_425_429_and_5xx_only():
    assert [s for s in range(400, 600) if retryable_status(s)] == [408, 425, 429, *range(500, 600)]


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now=now) == pytest.approx(90.0)
    assert parse_retry_after("Tue, 01 Dec 2026 11:00:00 GMT", now=now) == 0.0  # a date already past: retry at once
    assert parse_retry_after("soon") is None and parse_retry_after("") is None and parse_retry_after(None) is None
    assert retry_after_from_headers({"Retry-After": "3"}) == 3.0
    assert retry_after_from_headers({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5  # the finer header wins


def test_retry_after_is_honoured_in_full_even_above_the_backoff_cap():
    clock = FakeClock()
    fn = failing([Transient(retry_after_s=7.0), Transient(retry_after_s=45.0)])
    assert run(fn, RetryPolicy(retries=3, backoff_s=0.5, max_backoff_s=2.0), clock) == "ok"
    assert fn.calls == 3 and clock.sleeps == [7.0, 45.0]


def test_a_retry_after_longer_than_allowed_ends_the_retries_instead_of_retrying_early():
    clock = FakeClock()
    fn = failing([Transient(retry_after_s=3600.0)])
    with pytest.raises(RetriesExhausted, match="asked to wait 3600 s") as info:
        run(fn, RetryPolicy(retries=3, max_retry_after_s=300.0), clock)
    assert fn.calls == 1 and clock.sleeps == [] and isinstance(info.value.__cause__, Transient)


def test_backoff_is_exponential_and_the_jitter_stays_within_half_to_all_of_it():
    policy = RetryPolicy(retries=8, backoff_s=0.5, max_backoff_s=8.0)
    for seed in range(50):
        clock = FakeClock()
        with pytest.raises(RetriesExhausted):
            run(failing([Transient() for _ in range(9)]), policy, clock, seed=seed)
        nominal = [min(8.0, 0.5 * 2**n) for n in range(8)]
        assert len(clock.sleeps) == 8
        assert all(0.5 * cap <= slept < cap for slept, cap in zip(clock.sleeps, nominal, strict=True)), clock.sleeps
    spread = {round(RetryPolicy(backoff_s=1.0).delay(1, random.Random(s).random()), 6) for s in range(20)}
    assert len(spread) == 20  # jittered: clients that failed together do not retry together


def test_no_retry_on_a_failure_the_caller_calls_permanent():
    clock = FakeClock()
    fn = failing([Permanent("400 bad request")])
    with pytest.raises(Permanent):
        run(fn, RetryPolicy(retries=5), clock)
    assert fn.calls == 1 and clock.sleeps == []


def test_attempts_are_bounded():
    clock = FakeClock()
    fn = failing([Transient() for _ in range(10)])
    with pytest.raises(RetriesExhausted, match="2 retries allowed") as info:
        run(fn, RetryPolicy(retries=2, backoff_s=0.1), clock)
    assert fn.calls == 3 == info.value.attempts and len(clock.sleeps) == 2


def test_no_retry_starts_whose_wait_would_end_past_the_deadline():
    clock = FakeClock()
    fn = failing([Transient(retry_after_s=4.0) for _ in range(10)])
    with pytest.raises(RetriesExhausted, match="past the 10 s deadline") as info:
        run(fn, RetryPolicy(retries=10, backoff_s=0.1, deadline_s=10.0), clock)
    assert clock.sleeps == [4.0, 4.0] and clock.now <= 10.0 and info.value.attempts == 3


def test_the_policy_refuses_impossible_settings():
    for bad in ({"retries": -1}, {"backoff_s": 2.0, "max_backoff_s": 1.0}, {"deadline_s": 0}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


# -- the webhook on top of it: real HTTP on 127.0.0.1, fake sleep -------------------------------------------


class _Scripted(BaseHTTPRequestHandler):
    script: list[tuple[int, dict[str, str]]] = []
    hits = 0

    def do_POST(self):  # noqa: N802 (http.server's name)
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, headers = self.script.pop(0) if self.script else (200, {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(b"ok" if status == 200 else b"nope")

    def log_message(self, *args):
        pass


@pytest.fixture()
def scripted():
    _Scripted.script, _Scripted.hits = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Scripted
    server.shutdown()
    server.server_close()


def test_the_webhook_waits_what_a_429_or_503_asks_for(scripted):
    url, handler = scripted
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    handler.script = [(429, {"Retry-After": "12"}), (503, {"Retry-After": later})]
    sleeps: list[float] = []
    result = post_json(url, {"a": 1}, retries=3, backoff_s=0.01, max_backoff_s=0.02, deadline_s=None, sleep=sleeps.append)
    assert result["attempts"] == 3 and handler.hits == 3
    assert sleeps[0] == 12.0 and 28.0 <= sleeps[1] <= 30.0


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_the_webhook_never_retries_a_client_error(scripted, status):
    url, handler = scripted
    handler.script = [(status, {})]
    sleeps: list[float] = []
    with pytest.raises(WebhookError, match=f"HTTP {status}.*not retried"):
        post_json(url, {}, retries=3, sleep=sleeps.append)
    assert handler.hits == 1 and sleeps == []


@pytest.mark.parametrize("status", [408, 425, 500, 502])
def test_the_webhook_retries_timeouts_too_early_and_server_errors(scripted, status):
    url, handler = scripted
    handler.script = [(status, {})]
    assert post_json(url, {}, retries=1, backoff_s=0.01, sleep=lambda s: None)["attempts"] == 2


def test_the_webhook_reports_why_it_stopped(scripted):
    url, handler = scripted
    handler.script = [(503, {"Retry-After": "50"})] * 3
    with pytest.raises(WebhookError, match=r"after 1 attempt \(the next retry in 50.0 s would end past the 20 s deadline\)"):
        post_json(url, {}, retries=5, deadline_s=20.0, sleep=lambda s: None)


def test_a_connection_error_is_retryable():
    assert call_with_retries(failing([urllib.error.URLError("refused")]), RetryPolicy(retries=1, backoff_s=0.0),
                             retryable=lambda e: isinstance(e, urllib.error.URLError), sleep=lambda s: None) == "ok"
