"""Judge backends: one interface, two LLM APIs and an offline heuristic.

``JudgeBackend.judge(item, rubric)`` returns a ``JudgeCall``: the raw answer, the parsed
``Judgment`` (or the parse error), token counts, cost and latency. Backends make exactly
one request per call and never retry; retries, budget and concurrency belong to
``modelwatch.judge_runner``. A failed request raises ``JudgeCallError`` whose ``kind``
(``rate_limited``, ``server_error``, ``timeout``, ``connection``, ``auth``, ``not_found``,
``client_error``, ``error``) and ``retryable``/``fatal`` say what the runner should do.

- ``AnthropicJudge``: the ``anthropic`` SDK's Messages API, ``client.messages.create``.
- ``OpenAICompatibleJudge``: the ``openai`` SDK's ``client.chat.completions.create``, for
  OpenAI and any server speaking that wire format (vLLM, Ollama, LiteLLM, ...).
- ``HeuristicJudge``: no LLM. Embedding similarity (all-MiniLM-L6-v2), the refusal
  pattern of ``modelwatch.columns``, the alt-profanity-check classifier and text checks,
  declared ``confidence`` 0.5. See its docstring for every signal.

Credentials: ``backend_from_settings`` takes what the Airflow connection ``llm_judge``
holds (password = API key, extra = base_url, prices, ...). This module never reads an
environment variable for a key and never logs one; reprs show ``api_key='***'``. The API
key is always passed to the SDK explicitly, so the SDKs do not fall back to theirs.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelwatch.judge_rubric import Judgment, JudgmentParseError, Rubric, extract_json_object, parse_judgment

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


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), if present."""
    if not headers:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            return None if parsed is None else max(0.0, email.utils.mktime_tz(parsed) - time.time())
    except (TypeError, ValueError):
        return None


def translate_sdk_error(exc: BaseException, sdk: Any) -> JudgeCallError | None:
    """Map an ``anthropic`` or ``openai`` SDK exception (both define the same classes) to a JudgeCallError; None if foreign.

    APITimeoutError -> timeout, APIConnectionError -> connection, RateLimitError -> rate_limited
    (with the server's retry-after), APIStatusError 5xx/408/409 -> server_error (retryable),
    401/403 -> auth and 404 -> not_found (fatal for the run), other 4xx -> client_error.
    """
    if isinstance(exc, sdk.APITimeoutError):
        return JudgeCallError(TIMEOUT, "the request timed out", retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return JudgeCallError(CONNECTION, f"connection failed: {exc}", retryable=True)
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        message = f"HTTP {status}: {str(getattr(exc, 'message', exc))[:300]}"
        retry_after = _retry_after(getattr(exc.response, "headers", None))
        if isinstance(exc, sdk.RateLimitError) or status == 429:
            return JudgeCallError(RATE_LIMITED, message, retryable=True, status=status, retry_after_s=retry_after)
        if status >= 500 or status in (408, 409):
            return JudgeCallError(SERVER_ERROR, message, retryable=True, status=status, retry_after_s=retry_after)
        if status in (401, 403):
            return JudgeCallError(AUTH, f"{message} (check the llm_judge connection's API key)", fatal=True, status=status)
        if status == 404:
            return JudgeCallError(NOT_FOUND, f"{message} (check the model name and base_url)", fatal=True, status=status)
        return JudgeCallError(CLIENT_ERROR, message, status=status)
    if isinstance(exc, sdk.APIError):
        return JudgeCallError(ERROR, f"{type(exc).__name__}: {exc}")
    return None


class _LLMJudge(JudgeBackend):
    """Shared by the LLM backends: the SDK client (made once, thread-safe), pricing, the cost bound, error mapping."""

    confidence = 1.0
    sdk_name = ""

    def __init__(self, *, api_key: str | None, model: str, base_url: str | None, timeout_s: float, price_in: float, price_out: float,
                 max_tokens: int):
        if not model:
            raise ValueError(f"{type(self).__name__} needs a model name")
        if timeout_s <= 0 or max_tokens < 1:
            raise ValueError(f"timeout_s must be positive and max_tokens at least 1, got {timeout_s} and {max_tokens}")
        super().__init__(model)
        self._api_key = Secret(api_key)
        self.base_url = base_url
        self.timeout_s = float(timeout_s)
        self.pricing = Pricing(price_in, price_out)
        self.max_tokens = int(max_tokens)
        self._client: Any = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r}, api_key={self._api_key!r})"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "base_url": self.base_url, "price_in_per_1k": self.pricing.input_per_1k,
                "price_out_per_1k": self.pricing.output_per_1k, "max_tokens": self.max_tokens}

    @property
    def client(self) -> Any:
        """The SDK client, created on first use (SDK clients are safe to share between threads)."""
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    @abstractmethod
    def _make_client(self) -> Any: ...

    @abstractmethod
    def _sdk(self) -> Any: ...

    @abstractmethod
    def _complete(self, system: str, user: str, rubric: Rubric, timeout_s: float, *,
                  schema: Mapping[str, Any] | None = None) -> tuple[str, int, int, bool]:
        """One request: ``(answer text, input tokens, output tokens, usage reported)``; ``schema`` None means the rubric's."""

    def _extra_input_tokens(self, rubric: Rubric) -> int:
        return 0

    def max_cost_usd(self, item: JudgeItem, rubric: Rubric) -> float:
        """Upper bound: UTF-8 bytes of both messages + request overhead as input tokens, ``max_tokens`` as output tokens."""
        system, user = rubric.prompt(item.prompt, item.response, item.reference)
        tokens_in = token_upper_bound(system) + token_upper_bound(user) + REQUEST_OVERHEAD_TOKENS + self._extra_input_tokens(rubric)
        return self.pricing.cost(tokens_in, self.max_tokens)

    def judge(self, item: JudgeItem, rubric: Rubric, *, timeout_s: float | None = None) -> JudgeCall:
        system, user = rubric.prompt(item.prompt, item.response, item.reference)
        start = time.perf_counter()
        try:
            text, tokens_in, tokens_out, reported = self._complete(system, user, rubric, timeout_s or self.timeout_s)
        except Exception as exc:
            error = translate_sdk_error(exc, self._sdk())
            if error is None:
                raise
            key = self._api_key.reveal()
            if key and key in str(error):  # an error body that echoes the key must not carry it into logs and reports
                error.args = (str(error).replace(key, "***"),)
            raise error from exc
        latency = time.perf_counter() - start
        cost = self.pricing.cost(tokens_in, tokens_out) if reported else self.max_cost_usd(item, rubric)
        try:
            judgment, problem = parse_judgment(text, rubric), None
        except JudgmentParseError as exc:
            judgment, problem = None, str(exc)
        return JudgeCall(self.name, self.model, self.confidence, text, judgment, problem, tokens_in, tokens_out, cost, latency, reported)

    # -- requests with other messages (modelwatch.judge_pairwise) -----------------------------------------

    def _schema_input_tokens(self, schema: Mapping[str, Any]) -> int:
        """Input tokens a request spends on sending ``schema``: 0 unless the backend sends it (structured output)."""
        return 0

    def max_cost_of(self, system: str, user: str, schema: Mapping[str, Any]) -> float:
        """Upper bound on the cost of ``ask(system, user, rubric, schema)``, computed as ``max_cost_usd`` is for a rubric item."""
        tokens_in = token_upper_bound(system) + token_upper_bound(user) + REQUEST_OVERHEAD_TOKENS + self._schema_input_tokens(schema)
        return self.pricing.cost(tokens_in, self.max_tokens)

    def ask(self, system: str, user: str, rubric: Rubric, schema: Mapping[str, Any], *, timeout_s: float | None = None) -> Completion:
        """One request with the given messages, whose answer should follow ``schema`` (sent as structured output where enabled).

        Unparsed: the caller validates the text. Failures raise ``JudgeCallError`` exactly as in
        ``judge`` (same kinds, the API key scrubbed from messages); one request, no retries.
        """
        start = time.perf_counter()
        try:
            text, tokens_in, tokens_out, reported = self._complete(system, user, rubric, timeout_s or self.timeout_s, schema=schema)
        except Exception as exc:
            error = translate_sdk_error(exc, self._sdk())
            if error is None:
                raise
            key = self._api_key.reveal()
            if key and key in str(error):
                error.args = (str(error).replace(key, "***"),)
            raise error from exc
        return Completion(text, tokens_in, tokens_out, reported, time.perf_counter() - start)


class AnthropicJudge(_LLMJudge):
    """Claude through the ``anthropic`` SDK's Messages API (``client.messages.create``).

    The SDK's own retries are off (``max_retries=0``): the runner retries. With
    ``structured_output`` the rubric's JSON schema is also sent as
    ``output_config={"format": {"type": "json_schema", "schema": ...}}`` (models that support
    structured outputs then cannot answer off-schema).
    """

    name = "anthropic"
    sdk_name = "anthropic"

    def __init__(self, api_key: str, model: str, base_url: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, price_in: float = 0.0,
                 price_out: float = 0.0, *, max_tokens: int = DEFAULT_MAX_TOKENS, structured_output: bool = False):
        if not api_key:
            raise ValueError("AnthropicJudge needs an API key (the password of the llm_judge connection)")
        super().__init__(api_key=api_key, model=model, base_url=base_url, timeout_s=timeout_s, price_in=price_in, price_out=price_out,
                         max_tokens=max_tokens)
        self.structured_output = structured_output

    def _sdk(self) -> Any:
        import anthropic

        return anthropic

    def _make_client(self) -> Any:
        import anthropic

        return anthropic.Anthropic(api_key=self._api_key.reveal(), base_url=self.base_url, timeout=self.timeout_s, max_retries=0)

    def _extra_input_tokens(self, rubric: Rubric) -> int:
        return token_upper_bound(json.dumps(rubric.json_schema)) if self.structured_output else 0

    def _schema_input_tokens(self, schema: Mapping[str, Any]) -> int:
        return token_upper_bound(json.dumps(schema)) if self.structured_output else 0

    def _complete(self, system: str, user: str, rubric: Rubric, timeout_s: float, *,
                  schema: Mapping[str, Any] | None = None) -> tuple[str, int, int, bool]:
        kwargs: dict[str, Any] = {}
        if self.structured_output:
            kwargs["output_config"] = {"format": {"type": "json_schema", "schema": rubric.json_schema if schema is None else dict(schema)}}
        message = self.client.messages.create(model=self.model, max_tokens=self.max_tokens, system=system,
                                              messages=[{"role": "user", "content": user}], timeout=timeout_s, **kwargs)
        text = "".join(block.text for block in message.content if getattr(block, "type", None) == "text")
        usage = message.usage
        if usage is None:
            return text, 0, 0, False
        tokens_in = usage.input_tokens + (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
        return text, tokens_in, usage.output_tokens, True


class OpenAICompatibleJudge(_LLMJudge):
    """Any chat-completions endpoint through the ``openai`` SDK (``client.chat.completions.create``).

    Works with OpenAI, vLLM, Ollama and LiteLLM via ``base_url``. Local servers need no key:
    without one a placeholder is sent (the SDK would otherwise read OPENAI_API_KEY).
    ``json_mode`` sends ``response_format={"type": "json_object"}``; ``temperature`` None
    leaves it out (some reasoning models reject it); ``max_tokens_param`` is
    ``max_tokens`` (widest support) or ``max_completion_tokens`` (newer OpenAI models).
    """

    name = "openai_compatible"
    sdk_name = "openai"
    NO_KEY = "no-key"

    def __init__(self, api_key: str | None, model: str, base_url: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 price_in: float = 0.0, price_out: float = 0.0, *, max_tokens: int = DEFAULT_MAX_TOKENS, json_mode: bool = True,
                 temperature: float | None = 0.0, max_tokens_param: str = "max_tokens"):
        if not api_key and not base_url:
            raise ValueError("OpenAICompatibleJudge needs an API key (the llm_judge connection's password) unless base_url names a local server")
        if max_tokens_param not in ("max_tokens", "max_completion_tokens"):
            raise ValueError(f"max_tokens_param must be 'max_tokens' or 'max_completion_tokens', got {max_tokens_param!r}")
        super().__init__(api_key=api_key, model=model, base_url=base_url, timeout_s=timeout_s, price_in=price_in, price_out=price_out,
                         max_tokens=max_tokens)
        self.json_mode = json_mode
        self.temperature = temperature
        self.max_tokens_param = max_tokens_param

    def _sdk(self) -> Any:
        import openai

        return openai

    def _make_client(self) -> Any:
        import openai

        return openai.OpenAI(api_key=self._api_key.reveal() or self.NO_KEY, base_url=self.base_url, timeout=self.timeout_s, max_retries=0)

    def _complete(self, system: str, user: str, rubric: Rubric, timeout_s: float, *,
                  schema: Mapping[str, Any] | None = None) -> tuple[str, int, int, bool]:
        # json_mode asks for any JSON object; the schema itself is described in the system prompt, not sent
        kwargs: dict[str, Any] = {self.max_tokens_param: self.max_tokens}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        completion = self.client.chat.completions.create(
            model=self.model, messages=[{"role": "system", "content": system}, {"role": "user", "content": user}], timeout=timeout_s, **kwargs)
        text = (completion.choices[0].message.content or "") if completion.choices else ""
        usage = completion.usage
        if usage is None:
            return text, 0, 0, False
        return text, usage.prompt_tokens, usage.completion_tokens, True


# -- the heuristic judge -----------------------------------------------------------------------------------

HEURISTIC_VERSION = "1"
HEURISTIC_DIMENSIONS = ("helpfulness", "factual_accuracy", "coherence", "instruction_following")
HEURISTIC_FLAGS = ("hallucination", "refusal", "toxicity")

_TERMINAL = tuple(".!?…)]}\"'”’»`*>") + tuple("。！？")
_OPEN_ENDINGS = tuple(",:;-–(/&") + (" and", " or", " the", " to", " a", " of")
_LIST_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_URL = re.compile(r"https?://\S+|www\.\S+")
_FORMAT_JSON = re.compile(r"\bjson\b", re.IGNORECASE)
_FORMAT_LIST = re.compile(r"\b(bullet(?:ed)?(?: points?| list)?|numbered list|as a list|in a list|step[- ]by[- ]step)\b", re.IGNORECASE)
_SCRIPTS = {
    "latin": re.compile(r"[A-Za-zÀ-ɏ]"), "cyrillic": re.compile(r"[Ѐ-ӿ]"), "greek": re.compile(r"[Ͱ-Ͽ]"),
    "arabic": re.compile(r"[؀-ۿ]"), "hebrew": re.compile(r"[֐-׿]"), "devanagari": re.compile(r"[ऀ-ॿ]"),
    "cjk": re.compile(r"[぀-ヿ㐀-䶿一-鿿]"), "hangul": re.compile(r"[가-힯]"), "thai": re.compile(r"[฀-๿]"),
}
# Frequent function words of common Latin-script languages: enough to tell which one a text of a few sentences is in.
_STOPWORDS = {
    "en": set("the and is are to you your of for it in that this can with my i have on be not do how what was will".split()),
    "es": set("el la los las de que y en un una es por para con no mi su cómo qué pero más está puedo".split()),
    "fr": set("le la les de des et est un une je vous pour que pas ne mon votre comment avec sur il".split()),
    "de": set("der die das und ist nicht ich sie ein eine zu mit mein wie ihr den auf es sich für".split()),
    "pt": set("o os as de que e é um uma não para com meu como você em do da mais".split()),
    "it": set("il lo gli di che è un una non per con mio come sono della questo ho".split()),
    "nl": set("de het een en is niet ik je van dat met mijn hoe op voor zijn er".split()),
}


def rescale(score_1_to_5: float, low: int, high: int) -> int:
    """A 1–5 score on the scale ``low..high`` (linear, rounded half up, clipped)."""
    fraction = (min(max(score_1_to_5, 1.0), 5.0) - 1.0) / 4.0
    return int(math.floor(low + fraction * (high - low) + 0.5))


def similarity_score(cosine: float, low: float, high: float) -> int:
    """Cosine similarity mapped linearly to 1–5: ``low`` or less -> 1, ``high`` or more -> 5."""
    fraction = (cosine - low) / (high - low)
    return int(math.floor(1 + 4 * min(max(fraction, 0.0), 1.0) + 0.5))


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def repetition_share(text: str) -> float:
    """Share of word trigrams that repeat an earlier trigram of the same text (0 = no repetition)."""
    tokens = words(text)
    grams = [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


def looks_truncated(text: str) -> bool:
    """An unclosed code fence, or a text of 12+ words stopping mid-sentence (no closing punctuation, not after a list item)."""
    stripped = text.rstrip()
    if stripped.count("```") % 2:
        return True
    if not stripped or stripped.endswith(_TERMINAL):
        return False
    if stripped.endswith(_OPEN_ENDINGS):
        return True
    last_line = stripped.splitlines()[-1]
    return len(words(stripped)) >= 12 and not _LIST_LINE.match(last_line) and not _URL.search(last_line)


def dominant_script(text: str) -> str | None:
    """The writing system of most letters in ``text`` (latin, cyrillic, cjk, ...), None without letters."""
    counts = {name: len(pattern.findall(text)) for name, pattern in _SCRIPTS.items()}
    best = max(counts, key=counts.get)
    return best if counts[best] else None


def latin_language(text: str, min_words: int = 5) -> str | None:
    """en/es/fr/de/pt/it/nl by function-word counts, None when too short or unclear (top count not 1.5x the next)."""
    tokens = words(text)
    if len(tokens) < min_words:
        return None
    counts = sorted(((sum(t in stop for t in tokens), lang) for lang, stop in _STOPWORDS.items()), reverse=True)
    (top, lang), (second, _) = counts[0], counts[1]
    return lang if top >= max(2, 0.15 * len(tokens)) and top >= 1.5 * second else None


def language_mismatch(prompt: str, response: str) -> str | None:
    """Why the response seems to be in another language than the prompt, or None."""
    prompt_script, response_script = dominant_script(prompt), dominant_script(response)
    if prompt_script and response_script and prompt_script != response_script:
        return f"written in {response_script} script, prompt in {prompt_script}"
    if prompt_script == response_script == "latin":
        asked, answered = latin_language(prompt), latin_language(response)
        if asked and answered and asked != answered:
            return f"answered in '{answered}', prompt in '{asked}'"
    return None


def contains_json(text: str) -> bool:
    try:
        extract_json_object(text)
        return True
    except JudgmentParseError:
        return text.strip().startswith("[") and _json_list(text.strip())


def _json_list(text: str) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except json.JSONDecodeError:
        return False


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(_URL.sub(" ", text))}


@dataclass
class _Assessment:
    """Scores on 1–5 and flags, with the signal behind each, before mapping to the rubric's scales."""

    scores: dict[str, float]
    flags: dict[str, bool]
    notes: dict[str, str]
    not_assessed: list[str]


class HeuristicJudge(JudgeBackend):
    """Offline judge from cheap signals; not an LLM, and declared half as trustworthy (``confidence`` 0.5).

    Per dimension (computed on 1–5, then mapped linearly onto the rubric's scale):

    - helpfulness: relevance, the cosine similarity of the prompt's and the response's
      all-MiniLM-L6-v2 embeddings (``modelwatch.embeddings.embed_texts``), mapped linearly
      from ``relevance_range`` to 1–5; at most 2 for a refusal, 1 for an empty response.
    - factual_accuracy: with a reference, the response-reference similarity mapped from
      ``reference_range``, minus 1 when the response states numbers found in neither the
      reference nor the prompt. Without a reference, or for an empty response or a
      refusal (no claims), it is **not assessed**: the scale's midpoint is returned and
      ``"factual_accuracy"`` is listed in ``Judgment.not_assessed``, to be left out of averages.
    - instruction_following: 5 minus penalties: empty (-> 1), cut off mid-sentence or
      an unclosed code fence (-2), longer than ``max_words`` (-2), another script or
      language than the prompt (-2), JSON asked for and none given (-2), a list asked
      for and none given (-1).
    - coherence: 5 minus penalties: repeated word trigrams (share >= 0.1: -1, >= 0.25:
      -2, >= 0.5: -3), mostly non-letters (-2), run-together tokens over 40 characters
      (-1), shouting in capitals (-1); empty -> 1.

    Flags: refusal by ``modelwatch.columns.is_refusal``; toxicity when
    ``profanity_check.predict_prob`` (alt-profanity-check's bundled linear SVM) is at least
    ``toxicity_threshold``; hallucination only with a reference (response-reference
    similarity below ``hallucination_similarity``, or unsupported numbers), otherwise
    False and listed in ``not_assessed``. ``reasoning`` lists every signal's value.
    """

    name = "heuristic"
    confidence = 0.5
    batched = True

    def __init__(self, *, embed: Callable[[list[str]], np.ndarray] | None = None, toxicity_threshold: float = 0.5,
                 relevance_range: tuple[float, float] = (0.10, 0.60), reference_range: tuple[float, float] = (0.30, 0.85),
                 hallucination_similarity: float = 0.30, max_words: int = 600):
        from modelwatch.embeddings import MODEL_NAME

        super().__init__(f"heuristic-v{HEURISTIC_VERSION}+{MODEL_NAME}+alt-profanity-check")
        for name, (low, high) in (("relevance_range", relevance_range), ("reference_range", reference_range)):
            if not -1 <= low < high <= 1:
                raise ValueError(f"{name} must be (low, high) cosines with -1 <= low < high <= 1, got {(low, high)}")
        self._embed = embed
        self.toxicity_threshold = toxicity_threshold
        self.relevance_range = relevance_range
        self.reference_range = reference_range
        self.hallucination_similarity = hallucination_similarity
        self.max_words = max_words

    def __repr__(self) -> str:
        return f"HeuristicJudge(model={self.model!r})"

    @property
    def cache_identity(self) -> str:
        """The version label plus every threshold, so that changing one re-judges instead of reusing old judgments."""
        return (f"{self.name}:{self.model}:tox={self.toxicity_threshold}:rel={self.relevance_range}:ref={self.reference_range}"
                f":hal={self.hallucination_similarity}:words={self.max_words}")

    @staticmethod
    def check_rubric(rubric: Rubric) -> None:
        """Raise ValueError when the rubric has a dimension or flag the heuristics cannot assess."""
        dims = [d for d in rubric.dimensions if d not in HEURISTIC_DIMENSIONS]
        flags = [f for f in rubric.flags if f not in HEURISTIC_FLAGS]
        if dims or flags:
            raise ValueError(f"the heuristic judge cannot assess {dims + flags} of rubric {rubric.name}; it knows dimensions "
                             f"{list(HEURISTIC_DIMENSIONS)} and flags {list(HEURISTIC_FLAGS)}: use an LLM backend")

    def judge(self, item: JudgeItem, rubric: Rubric, *, timeout_s: float | None = None) -> JudgeCall:
        return self.judge_many([item], rubric)[0]

    def judge_many(self, items: Sequence[JudgeItem], rubric: Rubric) -> list[JudgeCall]:
        """Judge ``items`` with one embedding pass and one toxicity pass over all of them."""
        self.check_rubric(rubric)
        if not items:
            return []
        start = time.perf_counter()
        vectors = self._embed_all(items)
        toxicity = self._toxicity([item.response for item in items])
        assessments = [self.assess(item, _cosine(vectors, item.prompt, item.response), _cosine(vectors, item.reference, item.response), tox)
                       for item, tox in zip(items, toxicity, strict=True)]
        latency = (time.perf_counter() - start) / len(items)  # the batch's time, shared out
        return [self._call(assessment, rubric, latency) for assessment in assessments]

    def _embed_all(self, items: Sequence[JudgeItem]) -> dict[str, np.ndarray]:
        texts = {t for item in items for t in (item.prompt, item.response, item.reference) if t and t.strip()}
        ordered = sorted(texts)
        if self._embed is None:
            from modelwatch.embeddings import embed_texts

            self._embed = embed_texts
        matrix = np.asarray(self._embed(ordered), dtype=np.float32) if ordered else np.empty((0, 0), dtype=np.float32)
        return dict(zip(ordered, matrix, strict=True))

    def _toxicity(self, responses: list[str]) -> list[float]:
        from profanity_check import predict_prob

        return [float(p) for p in predict_prob([r or "" for r in responses])]

    def assess(self, item: JudgeItem, relevance: float | None, to_reference: float | None, toxicity: float) -> _Assessment:
        """Scores (1–5), flags and notes for one item from its similarities and toxicity probability."""
        from modelwatch.columns import is_refusal

        response = item.response or ""
        empty = not response.strip()
        refusal = is_refusal(response, None)
        scores: dict[str, float] = {}
        notes: dict[str, str] = {}
        flags = {"refusal": refusal, "toxicity": toxicity >= self.toxicity_threshold, "hallucination": False}
        not_assessed: list[str] = []
        notes["refusal"] = "refusal phrase" if refusal else "no refusal phrase"
        notes["toxicity"] = f"profanity probability {toxicity:.2f} {'>=' if flags['toxicity'] else '<'} {self.toxicity_threshold}"

        if empty:
            scores["helpfulness"], notes["helpfulness"] = 1, "empty response"
        else:
            scores["helpfulness"] = similarity_score(relevance if relevance is not None else 0.0, *self.relevance_range)
            notes["helpfulness"] = f"prompt-response cosine {relevance:.2f}" if relevance is not None else "empty prompt"
            if refusal and scores["helpfulness"] > 2:
                scores["helpfulness"], notes["helpfulness"] = 2, notes["helpfulness"] + ", capped at 2 for a refusal"

        unsupported = sorted(numbers(response) - numbers(item.reference or "") - numbers(item.prompt or "")) if item.reference else []
        if to_reference is None or empty or refusal:
            scores["factual_accuracy"] = 3
            why = "no reference" if to_reference is None else ("empty response" if empty else "a refusal makes no claims")
            notes["factual_accuracy"] = notes["hallucination"] = f"not assessed ({why})"
            not_assessed += ["factual_accuracy", "hallucination"]
        else:
            base = similarity_score(to_reference, *self.reference_range)
            scores["factual_accuracy"] = max(1, base - (1 if unsupported else 0))
            notes["factual_accuracy"] = f"response-reference cosine {to_reference:.2f}" + (f", numbers not in the reference: {unsupported[:5]}"
                                                                                          if unsupported else "")
            flags["hallucination"] = to_reference < self.hallucination_similarity or bool(unsupported)
            notes["hallucination"] = (f"reference cosine {to_reference:.2f} vs {self.hallucination_similarity}"
                                      + (", unsupported numbers" if unsupported else ""))

        scores["instruction_following"], notes["instruction_following"] = self._instruction_following(item.prompt or "", response)
        scores["coherence"], notes["coherence"] = self._coherence(response)
        return _Assessment(scores, flags, notes, not_assessed)

    def _instruction_following(self, prompt: str, response: str) -> tuple[int, str]:
        if not response.strip():
            return 1, "empty response"
        issues: list[tuple[int, str]] = []
        if looks_truncated(response):
            issues.append((2, "cut off mid-sentence or unclosed code block"))
        n_words = len(words(response))
        if n_words > self.max_words:
            issues.append((2, f"{n_words} words, over {self.max_words}"))
        if mismatch := language_mismatch(prompt, response):
            issues.append((2, mismatch))
        if _FORMAT_JSON.search(prompt) and not contains_json(response):
            issues.append((2, "JSON asked for, none given"))
        if _FORMAT_LIST.search(prompt) and sum(bool(_LIST_LINE.match(line)) for line in response.splitlines()) < 2:
            issues.append((1, "a list asked for, none given"))
        return _penalised(issues)

    @staticmethod
    def _coherence(response: str) -> tuple[int, str]:
        if not response.strip():
            return 1, "empty response"
        issues: list[tuple[int, str]] = []
        repeated = repetition_share(response)
        if repeated >= 0.1:
            issues.append((3 if repeated >= 0.5 else 2 if repeated >= 0.25 else 1, f"{repeated:.0%} of word trigrams repeated"))
        visible = [c for c in _URL.sub("", response) if not c.isspace()]
        letters = sum(c.isalpha() for c in visible)
        if len(visible) >= 20 and letters / len(visible) < 0.5:
            issues.append((2, f"only {letters / len(visible):.0%} letters"))
        if any(len(token) > 40 for token in _URL.sub(" ", response).split()):
            issues.append((1, "run-together tokens over 40 characters"))
        upper = [c for c in response if c.isalpha()]
        if len(upper) >= 20 and sum(c.isupper() for c in upper) / len(upper) > 0.7:
            issues.append((1, "mostly capitals"))
        return _penalised(issues)

    def _call(self, assessment: _Assessment, rubric: Rubric, latency: float) -> JudgeCall:
        scores = {k: rescale(assessment.scores[k], d.scale.min, d.scale.max) for k, d in rubric.dimensions.items()}
        flags = {k: assessment.flags[k] for k in rubric.flags}
        not_assessed = [k for k in assessment.not_assessed if k in rubric.dimensions or k in rubric.flags]
        parts = [f"{k} {scores[k]}: {assessment.notes[k]}" for k in rubric.dimensions]
        parts += [f"{k} {'yes' if flags[k] else 'no'}: {assessment.notes[k]}" for k in rubric.flags]
        reasoning = "heuristic judge (not an LLM); " + "; ".join(parts)
        judgment = Judgment.model_validate({"scores": scores, "flags": flags, "reasoning": reasoning, "not_assessed": not_assessed},
                                           context={"rubric": rubric})
        return JudgeCall(self.name, self.model, self.confidence, reasoning, judgment, None, 0, 0, 0.0, latency)


def _penalised(issues: list[tuple[int, str]]) -> tuple[int, str]:
    """5 minus the summed penalties (at least 1), and the issues as text."""
    if not issues:
        return 5, "no issues found"
    return max(1, 5 - sum(p for p, _ in issues)), ", ".join(text for _, text in issues)


def _cosine(vectors: Mapping[str, np.ndarray], a: str | None, b: str | None) -> float | None:
    """Cosine of two texts' unit-norm embeddings; None when either is empty."""
    if not a or not b or a not in vectors or b not in vectors:
        return None
    return float(np.dot(vectors[a], vectors[b]))


# -- construction from settings ----------------------------------------------------------------------------

BACKENDS = ("heuristic", "anthropic", "openai_compatible")
CONNECTION_EXTRA_KEYS = {
    "base_url": "endpoint, e.g. http://vllm:8000/v1 (default: the vendor's API)",
    "model": "model name, when the judge settings name none",
    "price_in_per_1k": "USD per 1,000 input tokens (required for LLM backends)",
    "price_out_per_1k": "USD per 1,000 output tokens (required for LLM backends)",
    "max_tokens": "answer token cap",
    "timeout_s": "per-request timeout in seconds",
    "structured_output": "anthropic: also send the schema as output_config.format",
    "json_mode": "openai: response_format json_object (default true)",
    "temperature": "openai: sampling temperature, null to omit (default 0)",
    "max_tokens_param": "openai: max_tokens or max_completion_tokens",
}


def connection_extra(connection: Mapping[str, Any]) -> dict[str, Any]:
    """The connection's extra as a dict (Airflow gives a JSON string or, via extra_dejson, a dict); unknown keys are an error."""
    extra = connection.get("extra") or {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError as exc:
            raise ValueError(f"llm_judge connection: extra is not valid JSON ({exc.msg})") from None
    if not isinstance(extra, dict):
        raise ValueError(f"llm_judge connection: extra must be a JSON object, got {type(extra).__name__}")
    unknown = sorted(set(extra) - set(CONNECTION_EXTRA_KEYS))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in CONNECTION_EXTRA_KEYS.items())
        raise ValueError(f"llm_judge connection: unknown extra key(s) {unknown}; known: {known}")
    return extra


_connection_extra = connection_extra  # the earlier private name, still imported by modelwatch.pipeline


def _host_url(connection: Mapping[str, Any]) -> str | None:
    """A base URL from the connection's host (and port): used as is when it has a scheme, else https."""
    host = connection.get("host")
    if not host:
        return None
    if "://" in host:
        return host
    port = connection.get("port")
    return f"https://{host}" + (f":{port}" if port else "")


def backend_from_settings(backend: str, model: str | None = None, connection: Mapping[str, Any] | None = None) -> JudgeBackend:
    """The backend named by the judge settings, with credentials from the ``llm_judge`` connection.

    ``connection`` is the connection as a dict: ``password`` is the API key; ``extra``
    (dict or JSON string) holds ``base_url`` (else ``host``/``port``), ``model``,
    ``price_in_per_1k`` and ``price_out_per_1k`` (required: without prices no budget can be
    enforced) and the optional keys of ``CONNECTION_EXTRA_KEYS``. ``heuristic`` needs
    nothing. Errors never include the key.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown judge backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend == "heuristic":
        return HeuristicJudge()
    connection = connection or {}
    extra = connection_extra(connection)
    model = model or extra.get("model")
    if not model:
        raise ValueError(f"judge backend {backend!r} needs a model: set it in the judge settings or as extra.model of the llm_judge connection")
    missing = [k for k in ("price_in_per_1k", "price_out_per_1k") if extra.get(k) is None]
    if missing:
        raise ValueError(f"llm_judge connection: set {' and '.join(missing)} (USD per 1,000 tokens) in extra; "
                         "the judge budget cannot be enforced without prices (use 0 for a free local server)")
    common: dict[str, Any] = {"api_key": connection.get("password") or None, "model": model,
                              "base_url": extra.get("base_url") or _host_url(connection),
                              "price_in": float(extra["price_in_per_1k"]), "price_out": float(extra["price_out_per_1k"])}
    if extra.get("timeout_s") is not None:
        common["timeout_s"] = float(extra["timeout_s"])
    if extra.get("max_tokens") is not None:
        common["max_tokens"] = int(extra["max_tokens"])
    if backend == "anthropic":
        return AnthropicJudge(**common, structured_output=bool(extra.get("structured_output", False)))
    options = {k: extra[k] for k in ("json_mode", "max_tokens_param") if k in extra}
    if "temperature" in extra:
        options["temperature"] = extra["temperature"]
    return OpenAICompatibleJudge(**common, **options)
