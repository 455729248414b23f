"""One retry policy for every outbound call: webhooks, notifications and the judge's LLM requests.

``call_with_retries(fn, policy, retryable=...)`` runs ``fn`` under a ``tenacity.Retrying``
controller and

- retries only what ``retryable`` accepts (for HTTP: connection errors, timeouts and the
  statuses of :func:`retryable_status` — 408, 425, 429 and 5xx; never another 4xx, which is
  the caller's mistake and would fail again),
- waits ``backoff_s * 2**(n-1)`` seconds before retry ``n``, capped at ``max_backoff_s``,
  times a random factor in [0.5, 1): the "equal jitter" of Brooker, *Exponential Backoff
  And Jitter* (AWS Architecture Blog, 2015), which keeps at least half of the exponential
  spacing while spreading clients that failed together,
- honours a server's ``Retry-After`` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date; also
  the ``retry-after-ms`` header the OpenAI and Anthropic APIs send) in full: the wait is at
  least what the server asked for, never shortened by the cap (a retry sent earlier would
  only be refused again). A server asking for more than ``max_retry_after_s`` ends the
  retries at once,
- makes at most ``retries + 1`` attempts and, with ``deadline_s``, starts no retry whose
  wait would end past the deadline (counted from the first attempt), so the whole call
  takes at most about ``deadline_s`` plus one attempt's own timeout.

When the retries end without success the last error is raised as the ``__cause__`` of a
:class:`RetriesExhausted` that says how many attempts were made and why no further one
was; an error ``retryable`` refuses is raised as it is, after that single attempt.
``sleep``, ``clock`` and ``uniform`` are injectable, so tests run with a fake clock and a
seeded jitter and never really sleep.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import tenacity

T = TypeVar("T")

RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})  # Request Timeout, Too Early, Too Many Requests


def retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth retrying: 408, 425, 429 or any 5xx (RFC 9110 §15.5.9, RFC 8470 §5.2, RFC 6585 §4, §15.6)."""
    return status in RETRYABLE_CLIENT_STATUSES or 500 <= status <= 599


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delay-seconds (``"120"``) or an HTTP-date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``, measured from ``now``, default the current UTC time).

    A date in the past is 0; an unreadable value is None (no advice: the backoff alone decides).
    """
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; an obsolete form without a zone is read as UTC too
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_after_from_headers(headers: Mapping[str, str] | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from response headers: ``retry-after-ms`` when present, else ``Retry-After`` (any letter case)."""
    if not headers:
        return None
    lowered = {str(k).lower(): v for k, v in headers.items()}
    milliseconds = lowered.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except (TypeError, ValueError):
            pass
    return parse_retry_after(lowered.get("retry-after"), now=now)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one call; see the module docstring for the schedule."""

    retries: int = 3  # retries after the first attempt
    backoff_s: float = 0.5  # nominal wait before the first retry
    max_backoff_s: float = 30.0  # cap of the exponential part (a server's Retry-After may ask for more)
    deadline_s: float | None = None  # no retry whose wait would end later than this after the first attempt
    max_retry_after_s: float = 300.0  # a server asking to wait longer than this ends the retries

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must not be negative, got {self.retries}")
        if self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            raise ValueError(f"need 0 <= backoff_s <= max_backoff_s, got {self.backoff_s} and {self.max_backoff_s}")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive (or None for no deadline), got {self.deadline_s}")
        if self.max_retry_after_s < 0:
            raise ValueError(f"max_retry_after_s must not be negative, got {self.max_retry_after_s}")

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def delay(self, retry: int, uniform: float, retry_after_s: float | None = None) -> float:
        """Seconds before retry number ``retry`` (1-based), ``uniform`` in [0, 1): equal jitter, at least ``retry_after_s``."""
        nominal = min(self.max_backoff_s, self.backoff_s * 2 ** (retry - 1))
        jittered = nominal * (0.5 + 0.5 * uniform)
        return jittered if retry_after_s is None else max(jittered, retry_after_s)


class RetriesExhausted(Exception):
    """A retryable call that still failed: ``attempts`` made, ``reason`` no further one was; ``last`` (also ``__cause__``)."""

    def __init__(self, last: BaseException, attempts: int, reason: str):
        super().__init__(f"{type(last).__name__}: {last} ({attempts} attempt{'s' if attempts != 1 else ''}; {reason})")
        self.last = last
        self.attempts = attempts
        self.reason = reason


def retry_after_attribute(error: BaseException) -> float | None:
    """The default ``retry_after``: an error's ``retry_after_s`` attribute when it has one."""
    value = getattr(error, "retry_after_s", None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy, *, retryable: Callable[[BaseException], bool],
                      retry_after: Callable[[BaseException], float | None] = retry_after_attribute, sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic, uniform: Callable[[], float] = random.random) -> T:
    """``fn()`` under ``policy``: retried while ``retryable(error)``; raises :class:`RetriesExhausted` when the retries end.

    ``retry_after(error)`` is the server's requested wait in seconds (None: no advice).
    ``uniform`` draws the jitter (pass ``random.Random(seed).random`` for a reproducible schedule).
    """
    started = clock()
    ended: list[str] = []

    def wait(state: tenacity.RetryCallState) -> float:
        return policy.delay(state.attempt_number, uniform(), retry_after(_error(state)))

    def stop(state: tenacity.RetryCallState) -> bool:
        asked = retry_after(_error(state))
        if state.attempt_number >= policy.attempts:
            ended.append(f"{policy.retries} retr{'y' if policy.retries == 1 else 'ies'} allowed")
        elif asked is not None and asked > policy.max_retry_after_s:
            ended.append(f"the server asked to wait {asked:.0f} s (Retry-After), more than the {policy.max_retry_after_s:.0f} s allowed")
        elif policy.deadline_s is not None and clock() - started + state.upcoming_sleep > policy.deadline_s:
            ended.append(f"the next retry in {state.upcoming_sleep:.1f} s would end past the {policy.deadline_s:g} s deadline")
        return bool(ended)

    controller = tenacity.Retrying(stop=stop, wait=wait, retry=tenacity.retry_if_exception(retryable), sleep=sleep, reraise=True)
    attempts = 0

    def attempt() -> T:
        nonlocal attempts
        attempts += 1
        return fn()

    try:
        return controller(attempt)
    except Exception as error:
        if ended:
            raise RetriesExhausted(error, attempts, ended[0]) from error
        raise


def _error(state: tenacity.RetryCallState) -> BaseException:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    if error is None:  # only failed attempts are retried (retry_if_exception), so there is always one
        raise RuntimeError("a retry was scheduled without a failed attempt")
    return error
