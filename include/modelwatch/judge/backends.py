"""The judge backend named by the settings, with credentials from the ``llm_judge`` connection."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from modelwatch.judge.calls import JudgeBackend
from modelwatch.judge.heuristic import HeuristicJudge
from modelwatch.judge.llm import AnthropicJudge, OpenAICompatibleJudge

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
