"""JSON POSTs to webhooks (deployment endpoints, notification hooks) with a timeout and bounded retries.

Retries follow :mod:`modelwatch.retry`: connection errors, timeouts and 408/425/429/5xx
answers are retried with exponential backoff and jitter, waiting at least what a 429 or
503 asks for in ``Retry-After``; every other 4xx is a caller's mistake and fails at once
with the server's message. Standard library only for HTTP (urllib), so the library needs
no HTTP client of its own.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from modelwatch.retry import RetriesExhausted, RetryPolicy, call_with_retries, retry_after_from_headers, retryable_status

DEFAULT_DEADLINE_S = 120.0  # a webhook call, retries included, gives up after about this long


class WebhookError(RuntimeError):
    """A webhook could not be delivered; the message names the URL, the attempts and the last error."""


class _RetryableAnswer(Exception):
    """A 408/425/429/5xx answer: retried, after at least ``retry_after_s`` when the server said so."""

    def __init__(self, status: int, body: str, retry_after_s: float | None):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.retry_after_s = retry_after_s


def _transient(error: BaseException) -> bool:
    """A retryable answer, or no answer: a connection that failed or timed out (HTTP errors never get here: see ``attempt``)."""
    return isinstance(error, _RetryableAnswer | urllib.error.URLError | TimeoutError | ConnectionError)


def _describe(error: BaseException) -> str:
    if isinstance(error, _RetryableAnswer):
        return str(error)
    return f"{type(error).__name__}: {getattr(error, 'reason', error)}"


def post_json(url: str, payload: dict[str, Any], *, timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.5,
              max_backoff_s: float = 30.0, deadline_s: float | None = DEFAULT_DEADLINE_S, headers: dict[str, str] | None = None,
              sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """POST ``payload`` as JSON; returns ``{"status", "body", "attempts"}`` or raises WebhookError."""
    data = json.dumps(payload, default=str).encode()
    policy = RetryPolicy(retries=retries, backoff_s=backoff_s, max_backoff_s=max(max_backoff_s, backoff_s), deadline_s=deadline_s)
    attempts = 0

    def attempt() -> dict[str, Any]:
        nonlocal attempts
        attempts += 1
        request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return {"status": response.status, "body": response.read(4096).decode("utf-8", "replace"), "attempts": attempts}
        except urllib.error.HTTPError as exc:
            body = exc.read(512).decode("utf-8", "replace")
            if retryable_status(exc.code):
                raise _RetryableAnswer(exc.code, body, retry_after_from_headers(exc.headers)) from None
            raise WebhookError(f"POST {url} refused (HTTP {exc.code}: {body}); not retried: fix the request or the endpoint") from None

    try:
        return call_with_retries(attempt, policy, retryable=_transient, sleep=sleep)
    except RetriesExhausted as exc:
        attempts = f"{exc.attempts} attempt{'s' if exc.attempts != 1 else ''}"
        raise WebhookError(f"POST {url} failed after {attempts} ({exc.reason}); last error {_describe(exc.last)}") from None
