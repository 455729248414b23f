"""Judge backends: one interface, two LLM APIs and an offline heuristic.

``JudgeBackend.judge(item, rubric)`` returns a ``JudgeCall``: the raw answer, the parsed
``Judgment`` (or the parse error), token counts, cost and latency. Backends make exactly
one request per call and never retry; retries, budget and concurrency belong to
``modelwatch.judge.runner``. A failed request raises ``JudgeCallError`` whose ``kind``
(``rate_limited``, ``server_error``, ``timeout``, ``connection``, ``auth``, ``not_found``,
``client_error``, ``error``) and ``retryable``/``fatal`` say what the runner should do.

- ``AnthropicJudge``: the ``anthropic`` SDK's Messages API, ``client.messages.create``.
- ``OpenAICompatibleJudge``: the ``openai`` SDK's ``client.chat.completions.create``, for
  OpenAI and any server speaking that wire format (vLLM, Ollama, LiteLLM, ...).
- ``HeuristicJudge``: no LLM. Embedding similarity (all-MiniLM-L6-v2), the refusal
  pattern of ``modelwatch.baseline.columns``, the alt-profanity-check classifier and text checks,
  declared ``confidence`` 0.5. See its docstring for every signal.

Credentials: ``backend_from_settings`` takes what the Airflow connection ``llm_judge``
holds (password = API key, extra = base_url, prices, ...). This module never reads an
environment variable for a key and never logs one; reprs show ``api_key='***'``. The API
key is always passed to the SDK explicitly, so the SDKs do not fall back to theirs.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelwatch.judge.rubric import Judgment, Rubric
from modelwatch.retry import retry_after_from_headers, retryable_status

log = logging.getLogger(__name__)

# Failure kinds (JudgeCallError.kind; the runner counts failures by these).
RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
TIMEOUT = "timeout"
CONNECTION = "connection"
AUTH = "auth"
NOT_FOUND = "not_found"
CLIENT_ERROR = "client_error"
MALFORMED = "malformed"
ERROR = "error"

# Tokens a chat request adds around its messages (role markers, the chat template). Generous on purpose:
# it is part of the upper bound on a call's cost that the runner reserves against the budget.
REQUEST_OVERHEAD_TOKENS = 64
DEFAULT_MAX_TOKENS = 512
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class JudgeItem:
    """One answer to judge: the prompt, the model's response and, when known, a reference answer."""

    item_id: str
    prompt: str
    response: str
    reference: str | None = None


@dataclass(frozen=True)
class Pricing:
    """USD per 1,000 input and output tokens."""

    input_per_1k: float
    output_per_1k: float

    def __post_init__(self) -> None:
        for name in ("input_per_1k", "output_per_1k"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number of USD per 1k tokens, got {value!r}")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return input_tokens * self.input_per_1k / 1000 + output_tokens * self.output_per_1k / 1000


@dataclass(frozen=True)
class JudgeCall:
    """The outcome of one judge request that got an answer (well-formed or not).

    ``judgment`` is None when the answer did not parse or validate; ``parse_error`` says
    why. ``usage_reported`` is False when the server sent no token counts: the cost is
    then the call's upper-bound estimate, never zero.
    """

    backend: str
    model: str
    confidence: float
    raw_text: str
    judgment: Judgment | None
    parse_error: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float
    usage_reported: bool = True

    @property
    def ok(self) -> bool:
        return self.judgment is not None


@dataclass(frozen=True)
class Completion:
    """One answered request made with ``_LLMJudge.ask`` (any messages, e.g. a pairwise comparison): text, usage, latency.

    ``usage_reported`` is False when the server sent no token counts (price the call at its upper bound then).
    """

    text: str
    input_tokens: int
    output_tokens: int
    usage_reported: bool
    latency_s: float


class JudgeCallError(Exception):
    """A judge request that failed without an answer: HTTP error, timeout, connection failure."""

    def __init__(self, kind: str, message: str, *, retryable: bool = False, fatal: bool = False, status: int | None = None,
                 retry_after_s: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.fatal = fatal  # no later request can succeed (bad key, unknown model): stop the run
        self.status = status
        self.retry_after_s = retry_after_s


class Secret:
    """A credential that does not show itself: repr and str are ``'***'``; ``reveal()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None):
        self._value = value or None

    def reveal(self) -> str | None:
        return self._value

    def __bool__(self) -> bool:
        return self._value is not None

    def __repr__(self) -> str:
        return "'***'" if self._value else "None"

    __str__ = __repr__


def token_upper_bound(text: str) -> int:
    """An upper bound on the tokens of ``text``: its UTF-8 byte count (a byte-level BPE token covers at least one byte)."""
    return len(text.encode("utf-8"))


# -- the interface -----------------------------------------------------------------------------------------


class JudgeBackend(ABC):
    """A judge: ``judge(item, rubric)`` -> ``JudgeCall``; ``max_cost_usd`` bounds a call's cost before it is made."""

    name: str = "backend"
    confidence: float = 1.0  # declared trust in this backend's judgments, reported next to them
    batched: bool = False  # True when judge_many is cheaper than one judge() per item

    def __init__(self, model: str):
        self.model = model

    @abstractmethod
    def judge(self, item: JudgeItem, rubric: Rubric, *, timeout_s: float | None = None) -> JudgeCall:
        """Judge one item with one request; raise JudgeCallError when the request fails."""

    def judge_many(self, items: Sequence[JudgeItem], rubric: Rubric) -> list[JudgeCall]:
        """Judge several items; the default makes one ``judge`` call each."""
        return [self.judge(item, rubric) for item in items]

    def max_cost_usd(self, item: JudgeItem, rubric: Rubric) -> float:
        """The most one call for ``item`` can cost (USD); 0 for local backends."""
        return 0.0

    def describe(self) -> dict[str, Any]:
        """What to record next to the judgments: backend, model, confidence (no credentials)."""
        return {"backend": self.name, "model": self.model, "confidence": self.confidence}

    @property
    def cache_identity(self) -> str:
        """What, besides the rubric and the item, determines a judgment: part of the judgment cache key."""
        return f"{self.name}:{self.model}"


# -- LLM backends ------------------------------------------------------------------------------------------


def translate_sdk_error(exc: BaseException, sdk: Any) -> JudgeCallError | None:
    """Map an ``anthropic`` or ``openai`` SDK exception (both define the same classes) to a JudgeCallError; None if foreign.

    APITimeoutError -> timeout, APIConnectionError -> connection, RateLimitError -> rate_limited
    (with the server's retry-after: ``retry-after-ms``, or ``Retry-After`` in seconds or as an HTTP date),
    APIStatusError 5xx/408/425 and 409 (the SDKs' own lock-timeout retry) -> server_error (retryable),
    401/403 -> auth and 404 -> not_found (fatal for the run), other 4xx -> client_error.
    """
    if isinstance(exc, sdk.APITimeoutError):
        return JudgeCallError(TIMEOUT, "the request timed out", retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return JudgeCallError(CONNECTION, f"connection failed: {exc}", retryable=True)
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        message = f"HTTP {status}: {str(getattr(exc, 'message', exc))[:300]}"
        retry_after = retry_after_from_headers(getattr(exc.response, "headers", None))
        if isinstance(exc, sdk.RateLimitError) or status == 429:
            return JudgeCallError(RATE_LIMITED, message, retryable=True, status=status, retry_after_s=retry_after)
        if retryable_status(status) or status == 409:
            return JudgeCallError(SERVER_ERROR, message, retryable=True, status=status, retry_after_s=retry_after)
        if status in (401, 403):
            return JudgeCallError(AUTH, f"{message} (check the llm_judge connection's API key)", fatal=True, status=status)
        if status == 404:
            return JudgeCallError(NOT_FOUND, f"{message} (check the model name and base_url)", fatal=True, status=status)
        return JudgeCallError(CLIENT_ERROR, message, status=status)
    if isinstance(exc, sdk.APIError):
        return JudgeCallError(ERROR, f"{type(exc).__name__}: {exc}")
    return None
