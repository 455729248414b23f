"""The inference-log contract: one definition used by the reader, the validator and the generator.

A serving layer emits one JSON object per request (a JSON line or a Parquet row).
``FIELDS`` is the single source of truth; from it come the canonical Arrow schema
(``ingest.schema.CANONICAL_SCHEMA``), the per-value coercion rules (``coerce_record``) and the
row rules (``row_rules``): which fields a model kind requires (some only when the status is
``ok``), the allowed values, the ranges and the lengths. The pipeline's Great Expectations
suite is built from those rules (``ingest.validation.contract_expectations``) and the serving
client checks a row against the same rules before sending it (``serving.checks``).

Nested objects (``features``, ``metadata``, ``probability`` as a class map) and
unknown extra fields are kept losslessly as JSON text in the canonical table, so
that any partition fits one schema; ``flatten`` turns ``metadata.topic`` style
paths into real columns when a stage needs them.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal

Kind = Literal["string", "timestamp", "number", "integer", "feedback", "object", "scalar", "probability"]
Requirement = Literal["always", "llm", "classic", "optional"]

STATUSES: tuple[str, ...] = ("ok", "error", "timeout", "refused_by_filter")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Lineage columns added by the reader: where each row came from.
ROW_ID = "_row_id"
SOURCE = "_source"
LINE = "_line"
TYPE_ERRORS = "_type_errors"
EXTRA = "extra"


@dataclass(frozen=True)
class Field:
    """One field of the log contract, with its row rules: requirement, range, allowed values, length."""

    name: str
    kind: Kind
    required: Requirement
    meaning: str
    minimum: float | None = None  # a present value must be >= minimum and <= maximum
    maximum: float | None = None
    allowed: tuple[Any, ...] | None = None  # a present value must be one of these
    length: tuple[int, int] | None = None  # a present string's length must be within [low, high]
    only_when_ok: bool = False  # the requirement holds for rows whose status is ok (an error may have no output)


FIELDS: tuple[Field, ...] = (
    Field("request_id", "string", "always", "unique per model and day", length=(1, 256)),
    Field("timestamp", "timestamp", "always", "ISO-8601 UTC arrival time, inside its partition"),
    Field("model_id", "string", "always", "deployed model (or checkpoint) id"),
    Field("variant", "string", "always", "production, an experiment arm, or shadow"),
    Field("experiment_id", "string", "optional", "set when an experiment routed the request"),
    Field("status", "string", "always", "ok, error, timeout or refused_by_filter", allowed=STATUSES),
    Field("latency_ms", "number", "always", "end-to-end latency in milliseconds", minimum=0, maximum=86_400_000),
    Field("prompt", "string", "llm", "text in"),
    Field("response", "string", "llm", "text out; may be null when status is not ok", only_when_ok=True),
    Field("prompt_tokens", "integer", "llm", "prompt token count", minimum=0, maximum=10_000_000),
    Field("completion_tokens", "integer", "llm", "completion token count", minimum=0, maximum=10_000_000),
    Field("cost_usd", "number", "optional", "cost of this request in USD", minimum=0, maximum=1000),
    Field("reference", "string", "optional", "known good answer (golden-set traffic)"),
    Field("features", "object", "classic", "model inputs: name -> number or string"),
    Field("prediction", "scalar", "classic", "model output: class label or number; may be null when status is not ok", only_when_ok=True),
    Field("probability", "probability", "optional", "confidence: number, or class -> number", minimum=0, maximum=1),
    Field("quality_score", "number", "optional", "any online quality signal"),
    Field("feedback", "feedback", "optional", "-1, 0 or 1 (thumbs down / none / up)", allowed=(-1, 0, 1)),
    Field("metadata", "object", "optional", "segment keys and anything else"),
)
FIELD_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
KNOWN_FIELDS: frozenset[str] = frozenset(FIELD_BY_NAME)



def _requires(field: Field, model_kind: str) -> bool:
    return field.required in ("always", "llm" if model_kind == "llm" else "classic")


def required_fields(model_kind: str) -> list[str]:
    """Fields a row of a model of this kind (``llm``, ``classifier``, ``regressor``) must carry; some only when its status
    is ok (``only_when_ok``: ``response`` of an LLM, ``prediction`` of a classic model)."""
    return [f.name for f in FIELDS if _requires(f, model_kind)]


RuleCheck = Literal["required", "allowed", "range", "length"]


@dataclass(frozen=True)
class RowRule:
    """One row-level rule of the contract: what a present (or required) value of ``field`` must satisfy.

    ``status_ok``: the rule applies to rows whose status is ``ok`` only. ``low``/``high`` bound a
    range (``range``) or a string's length (``length``); ``allowed`` lists the values of ``allowed``.
    """

    check: RuleCheck
    field: str
    status_ok: bool = False
    low: float | None = None
    high: float | None = None
    allowed: tuple[Any, ...] = ()


def row_rules(model_kind: str) -> list[RowRule]:
    """The contract's row rules for a model kind, from ``FIELDS``: required fields, then allowed values, ranges and lengths.

    Rules that need a monitoring run or a deployment (the allowed variants, the model id, the
    partition's time window, duplicate request ids) are not row rules of the contract.
    """
    rules = [RowRule("required", f.name) for f in FIELDS if _requires(f, model_kind) and not f.only_when_ok]
    rules += [RowRule("required", f.name, status_ok=True) for f in FIELDS if _requires(f, model_kind) and f.only_when_ok]
    rules += [RowRule("allowed", f.name, allowed=f.allowed) for f in FIELDS if f.allowed is not None]
    rules += [RowRule("range", f.name, low=f.minimum, high=f.maximum) for f in FIELDS if f.minimum is not None or f.maximum is not None]
    rules += [RowRule("length", f.name, low=f.length[0], high=f.length[1]) for f in FIELDS if f.length is not None]
    return rules


def _fits_float(value: int | float) -> bool:
    return isinstance(value, float) or INT64_MIN <= value <= INT64_MAX


def describe_value(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:
        text = "(nested too deeply to show)"
    return f"{type(value).__name__} {text[:60]}{'…' if len(text) > 60 else ''}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _to_utc(ts: Any, shown: str) -> tuple[Any, str | None]:
    """A timezone-aware datetime in UTC, or a problem when the shift leaves the years 1-9999."""
    try:
        return ts.astimezone(UTC), None
    except OverflowError:
        return None, f"timestamp: {shown} is outside the years 1-9999 once converted to UTC"


def _json_text(name: str, value: Any) -> tuple[str | None, str | None]:
    """An object as canonical JSON text, or a problem when it nests deeper than the encoder can go."""
    try:
        return json.dumps(value, sort_keys=True, default=str), None
    except RecursionError:
        return None, f"{name}: object nested deeper than the JSON encoder's recursion limit (~{sys.getrecursionlimit()} levels); flatten it"


def coerce_value(field: Field, value: Any) -> tuple[Any, str | None]:
    """Return (canonical value, problem). JSON numbers are numbers: "12" is not a latency."""
    if value is None:
        return None, None
    kind = field.kind
    if kind == "string":
        return (value, None) if isinstance(value, str) else (None, f"{field.name}: expected string, got {describe_value(value)}")
    if kind == "timestamp":
        from datetime import datetime

        if not isinstance(value, str):
            if isinstance(value, datetime):  # Parquet timestamps arrive as datetime (a time of day or a date is not a timestamp)
                return _to_utc(value if value.tzinfo else value.replace(tzinfo=UTC), repr(value))
            return None, f"timestamp: expected ISO-8601 string, got {describe_value(value)}"
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None, f"timestamp: not ISO-8601: {value[:40]!r}"
        if ts.tzinfo is None:
            return None, f"timestamp: no UTC offset in {value[:40]!r} (write e.g. 2026-11-01T10:00:00Z)"
        return _to_utc(ts, repr(value[:40]))
    if kind in ("number", "integer"):
        if not _is_number(value):
            return None, f"{field.name}: expected {kind}, got {describe_value(value)}"
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            # A JSON integer beyond 64 bits: no column can hold it and float() may overflow.
            return None, f"{field.name}: {kind} out of range, got {describe_value(value)}"
        if kind == "integer" and not float(value).is_integer():
            return None, f"{field.name}: expected integer, got {value!r}"
        if kind == "integer" and not INT64_MIN <= int(value) <= INT64_MAX:  # an integral float such as 1e300
            return None, f"{field.name}: {kind} out of range, got {describe_value(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            # Kept as a value so that the range expectation reports it with the row.
            return float(value), None
        return (int(value) if kind == "integer" else float(value)), None
    if kind == "feedback":
        # any small integer reaches the validator (which names the allowed set); beyond int8 nothing can hold it
        if _is_number(value) and -128 <= value <= 127 and float(value).is_integer():
            return int(value), None
        return None, f"feedback: expected -1, 0 or 1, got {describe_value(value)}"
    if kind == "object":
        if isinstance(value, dict):
            return _json_text(field.name, value)
        return None, f"{field.name}: expected object, got {describe_value(value)}"
    if kind == "scalar":
        if isinstance(value, str):
            return value, None
        if _is_number(value) or isinstance(value, bool):
            return repr(value), None
        return None, f"{field.name}: expected number or string, got {describe_value(value)}"
    raise AssertionError(f"unhandled kind {kind}")  # pragma: no cover


def coerce_probability(value: Any, prediction: Any) -> tuple[float | None, str | None, str | None]:
    """(confidence, class map as JSON, problem). A class map's confidence is that of the prediction."""
    if value is None:
        return None, None, None
    if _is_number(value) and _fits_float(value):
        return float(value), None, None
    if isinstance(value, dict) and value and all(_is_number(v) and _fits_float(v) for v in value.values()):
        probs = {str(k): float(v) for k, v in value.items()}
        confidence = probs.get(str(prediction), max(probs.values()))
        return confidence, json.dumps(probs, sort_keys=True), None
    return None, None, f"probability: expected number or object class -> number, got {describe_value(value)}"


def coerce_record(record: Any) -> dict[str, Any]:
    """Map one raw log object onto the canonical columns (without lineage columns).

    Never raises: values of the wrong type become null and their problems are joined
    into ``_type_errors`` so the validator can quarantine the row with that reason.
    """
    if not isinstance(record, dict):
        return {TYPE_ERRORS: f"row: expected a JSON object, got {describe_value(record)}"}
    out: dict[str, Any] = {}
    problems: list[str] = []
    for field in FIELDS:
        if field.kind == "probability":
            continue
        value, problem = coerce_value(field, record.get(field.name))
        out[field.name] = value
        if problem:
            problems.append(problem)
    confidence, class_map, problem = coerce_probability(record.get("probability"), record.get("prediction"))
    out["probability"], out["class_probabilities"] = confidence, class_map
    if problem:
        problems.append(problem)
    extra = {k: v for k, v in record.items() if k not in KNOWN_FIELDS}
    out[EXTRA], problem = _json_text("extra fields", extra) if extra else (None, None)
    if problem:
        problems.append(problem)
    out[TYPE_ERRORS] = "; ".join(problems) if problems else None
    return out


def flatten(objects_json: list[str | None], keys: list[str]) -> dict[str, list[Any]]:
    """Pull ``keys`` out of a column of JSON objects: ``{"topic": [...], "locale": [...]}``."""
    columns: dict[str, list[Any]] = {k: [] for k in keys}
    for text in objects_json:
        obj = json.loads(text) if text else {}
        for k in keys:
            value = obj.get(k)
            columns[k].append(value if isinstance(value, (str, int, float, bool)) or value is None else json.dumps(value))
    return columns


def contract_markdown() -> str:
    """The contract as a Markdown table (used by the docs and `modelwatch contract`)."""
    lines = ["| field | type | required | meaning |", "|---|---|---|---|"]
    lines += [f"| {f.name} | {f.kind} | {f.required}{' (when status is ok)' if f.only_when_ok else ''} | {f.meaning} |" for f in FIELDS]
    return "\n".join(lines)
