"""What one model call contributes to its log row: response text, token counts, cost and status.

Model clients return different shapes. These functions read the common ones without
importing any SDK (duck typing on attribute and key names):

- response text: a ``str``; an Anthropic ``Message`` (``content`` blocks with ``text``);
  an OpenAI ``ChatCompletion`` (``choices[0].message.content``) or ``Completion``
  (``choices[0].text``); the same shapes as plain dicts; or ``{"response": ...}``;
- token counts: a usage object or dict with ``input_tokens``/``output_tokens`` (Anthropic)
  or ``prompt_tokens``/``completion_tokens`` (OpenAI), found on the result's ``usage``;
  otherwise a tokenizer the caller passes (any ``str -> int``, or an object with
  ``encode(str) -> list``, such as a ``tiktoken`` encoding or a Hugging Face tokenizer);
- status: ``timeout`` for ``TimeoutError`` and any exception class named ``*Timeout*``
  (``httpx.ReadTimeout``, ``openai.APITimeoutError``, ``anthropic.APITimeoutError``),
  ``refused_by_filter`` for ``RefusedByFilter`` or a response stopped by a content filter
  (OpenAI ``finish_reason == "content_filter"``, Anthropic ``stop_reason == "refusal"``),
  ``error`` for any other exception, else ``ok``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Tokenizer = Callable[[str], int] | Any  # a counting function, or an object with encode()


class RefusedByFilter(Exception):  # noqa: N818 - named after the contract's status value
    """Raise from a model callable when a safety filter refused the request; logged as ``refused_by_filter``."""

    def __init__(self, message: str = "refused by filter", response: str | None = None):
        super().__init__(message)
        self.response = response


@dataclass(frozen=True)
class Price:
    """USD per 1,000 prompt and completion tokens of one model."""

    prompt_per_1k: float
    completion_per_1k: float

    def __post_init__(self) -> None:
        for name in ("prompt_per_1k", "completion_per_1k"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ValueError(f"Price.{name}: expected a finite number >= 0 (USD per 1,000 tokens), got {value!r}")

    def cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
        """Cost in USD, rounded to 1e-8; None when either count is unknown."""
        if prompt_tokens is None or completion_tokens is None:
            return None
        return round(prompt_tokens / 1000 * self.prompt_per_1k + completion_tokens / 1000 * self.completion_per_1k, 8)


def price_table(prices: Mapping[str, Price | Mapping[str, float]]) -> dict[str, Price]:
    """``{model_id: Price}`` from Price objects or ``{"prompt": x, "completion": y}`` mappings (USD per 1k tokens)."""
    out: dict[str, Price] = {}
    for model_id, price in prices.items():
        if isinstance(price, Price):
            out[model_id] = price
            continue
        missing = {"prompt", "completion"} - set(price)
        if missing:
            raise ValueError(f"price table entry {model_id!r}: missing {sorted(missing)}; expected {{'prompt': usd_per_1k, 'completion': usd_per_1k}}")
        out[model_id] = Price(price["prompt"], price["completion"])
    return out


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return int(value)


def usage_tokens(usage: Any) -> tuple[int | None, int | None]:
    """(prompt tokens, completion tokens) from an Anthropic or OpenAI usage object or dict; Nones when absent."""
    if usage is None:
        return None, None
    prompt = _count(_get(usage, "input_tokens"))
    completion = _count(_get(usage, "output_tokens"))
    if prompt is None and completion is None:
        prompt = _count(_get(usage, "prompt_tokens"))
        completion = _count(_get(usage, "completion_tokens"))
    return prompt, completion


def result_usage(result: Any) -> Any:
    """The usage part of a model result (``result.usage`` or ``result["usage"]``), or None."""
    return None if result is None or isinstance(result, str) else _get(result, "usage")


def response_text(result: Any) -> str | None:
    """The answer text of a model result in any of the shapes listed in the module docstring; None if not found."""
    if result is None or isinstance(result, str):
        return result
    direct = _get(result, "response")
    if isinstance(direct, str):
        return direct
    content = _get(result, "content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # Anthropic: a list of content blocks
        texts = [_get(block, "text") for block in content if _get(block, "type") in (None, "text")]
        texts = [t for t in texts if isinstance(t, str)]
        if texts:
            return "".join(texts)
    choices = _get(result, "choices")
    if isinstance(choices, list) and choices:
        first = choices[0]
        message = _get(first, "message")
        text = _get(message, "content") if message is not None else _get(first, "text")
        if isinstance(text, str):
            return text
    return None


def filtered(result: Any) -> bool:
    """Whether the provider stopped the answer with a content filter (OpenAI) or a refusal (Anthropic)."""
    if result is None or isinstance(result, str):
        return False
    if _get(result, "stop_reason") == "refusal":
        return True
    choices = _get(result, "choices")
    return isinstance(choices, list) and bool(choices) and _get(choices[0], "finish_reason") == "content_filter"


def count_tokens(tokenizer: Tokenizer | None, text: str | None) -> int | None:
    """Tokens in ``text`` by the caller's tokenizer: a function returning a count, or an object with ``encode``."""
    if tokenizer is None or text is None:
        return None if tokenizer is None else 0
    encode = getattr(tokenizer, "encode", None)
    value = len(encode(text)) if callable(encode) else tokenizer(text)
    count = _count(value)
    if count is None:
        raise TypeError(f"tokenizer returned {value!r} for a text; expected a non-negative integer count (or encode() returning a list)")
    return count


def is_timeout(exc: BaseException) -> bool:
    """``TimeoutError`` (which is also ``asyncio.TimeoutError`` and ``socket.timeout``) or any class named ``*Timeout*`` in its MRO."""
    return isinstance(exc, TimeoutError) or any("timeout" in cls.__name__.lower() for cls in type(exc).__mro__)


def status_of(exc: BaseException | None, result: Any = None) -> str:
    """The contract status of a finished call: ``ok``, ``error``, ``timeout`` or ``refused_by_filter``."""
    if exc is None:
        return "refused_by_filter" if filtered(result) else "ok"
    if isinstance(exc, RefusedByFilter):
        return "refused_by_filter"
    return "timeout" if is_timeout(exc) else "error"


def iso_utc(moment: datetime) -> str:
    """``2026-11-03T10:00:00.123Z``: the contract's timestamp form (UTC, milliseconds)."""
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {moment!r} has no time zone; pass an aware datetime (UTC)")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
