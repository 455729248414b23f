"""The two LLM judge backends: Anthropic Messages and any OpenAI-compatible chat-completions endpoint."""

from __future__ import annotations

import json
import threading
import time
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

from modelwatch.judge.calls import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TIMEOUT_S,
    REQUEST_OVERHEAD_TOKENS,
    Completion,
    JudgeBackend,
    JudgeCall,
    JudgeItem,
    Pricing,
    Secret,
    token_upper_bound,
    translate_sdk_error,
)
from modelwatch.judge.rubric import JudgmentParseError, Rubric, parse_judgment


class _LLMJudge(JudgeBackend):
    """Shared by the LLM backends: the SDK client (made once, thread-safe), pricing, the cost bound, error mapping."""

    confidence = 1.0

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

    # -- requests with other messages (modelwatch.judge.pairwise) -----------------------------------------

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
