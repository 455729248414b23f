"""JSON POSTs to webhooks (deployment endpoints, notification hooks) with a timeout and bounded retries.

Connection errors, timeouts and 5xx/429 answers are retried with exponential backoff;
other 4xx answers are a caller's mistake and fail at once with the server's message.
Standard library only (urllib), so the library needs no HTTP client of its own.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class WebhookError(RuntimeError):
    """A webhook could not be delivered; the message names the URL, the attempts and the last error."""


def post_json(url: str, payload: dict[str, Any], *, timeout_s: float = 10.0, retries: int = 3, backoff_s: float = 0.5,
              headers: dict[str, str] | None = None) -> dict[str, Any]:
    """POST ``payload`` as JSON; returns ``{"status", "body", "attempts"}`` or raises WebhookError."""
    data = json.dumps(payload, default=str).encode()
    last = "no attempt made"
    for attempt in range(1, retries + 2):
        request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return {"status": response.status, "body": response.read(4096).decode("utf-8", "replace"), "attempts": attempt}
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read(512).decode('utf-8', 'replace')}"
            if exc.code not in RETRYABLE_STATUS:
                raise WebhookError(f"POST {url} refused ({last}); not retried: fix the request or the endpoint") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt <= retries:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    raise WebhookError(f"POST {url} failed after {retries + 1} attempts; last error {last}")
