"""Contract checks at the source: the row rules the pipeline's validation applies, run on one row before it is sent.

Types come from the contract's own coercion (``core.contract.coerce_record``: strict JSON
typing, timestamps with a UTC offset). The row rules are those of the contract suites
``include/config/gx/log_contract*.json`` that do not depend on a monitoring run: required
fields per model kind, the status set, value ranges, the feedback set, the request id's
length, and text/prediction required when the status is ``ok``. Rules that need the
deployment config (allowed variants, the model id) are checked when the caller names them.
The partition-window rule holds by construction: the emitter files each row under its
own timestamp's hour.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from modelwatch.core.contract import FIELDS, STATUSES, TYPE_ERRORS, coerce_record, required_fields

# Upper bounds of include/config/gx/log_contract.json (lower bounds come from contract.FIELDS).
MAXIMUM: dict[str, float] = {"latency_ms": 86_400_000, "cost_usd": 1000, "prompt_tokens": 10_000_000, "completion_tokens": 10_000_000, "probability": 1}
REQUEST_ID_LENGTH = (1, 256)
FEEDBACK = (-1, 0, 1)
_MINIMUM: dict[str, float] = {f.name: f.minimum for f in FIELDS if f.minimum is not None} | {"probability": 0.0}
KINDS = ("llm", "classifier", "regressor")


def problems(row: Mapping[str, Any], kind: str, *, variants: Collection[str] | None = None, model_id: str | None = None) -> list[str]:
    """Every contract rule ``row`` breaks, as short sentences naming the field; empty when the row is valid."""
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
    typed = coerce_record(dict(row))
    found = [p.strip() for p in (typed.get(TYPE_ERRORS) or "").split(";") if p.strip()]
    untyped = {p.split(":", 1)[0] for p in found}
    for name in required_fields(kind):
        if typed.get(name) is None and name not in untyped:
            found.append(f"{name} is required")
    status = typed.get("status")
    if status is not None and status not in STATUSES:
        found.append(f"status must be one of {list(STATUSES)}, got {status!r}")
    if status == "ok":
        wanted = "response" if kind == "llm" else "prediction"
        if typed.get(wanted) is None and wanted not in untyped:
            found.append(f"{wanted} is required when status is ok")
    for name, low in _MINIMUM.items():
        value = typed.get(name)
        high = MAXIMUM.get(name, math.inf)
        if value is not None and not (low <= value <= high):
            found.append(f"{name} must be within [{low:g}, {high:g}], got {value!r}")
    feedback = typed.get("feedback")
    if feedback is not None and feedback not in FEEDBACK:
        found.append(f"feedback must be one of {list(FEEDBACK)}, got {feedback!r}")
    request_id = typed.get("request_id")
    if request_id is not None and not (REQUEST_ID_LENGTH[0] <= len(request_id) <= REQUEST_ID_LENGTH[1]):
        found.append(f"length of request_id must be within {list(REQUEST_ID_LENGTH)}, got {len(request_id)}")
    if variants is not None and typed.get("variant") is not None and typed["variant"] not in variants:
        found.append(f"variant must be one of {sorted(variants)}, got {typed['variant']!r}")
    if model_id is not None and typed.get("model_id") is not None and typed["model_id"] != model_id:
        found.append(f"model_id must be {model_id!r}, got {typed['model_id']!r}")
    return found
