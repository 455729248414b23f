"""Contract checks at the source: the row rules the pipeline's validation applies, run on one row before it is sent.

Types come from the contract's own coercion (``core.contract.coerce_record``: strict JSON
typing, timestamps with a UTC offset). The row rules are the contract's own
(``core.contract.row_rules``), the rules the pipeline's GX suite is built from
(``ingest.validation.contract_expectations``): required fields per model kind (text or
prediction only when the status is ``ok``), the allowed values, the ranges and the request
id's length. A rule reads a row as GX reads its column: NaN is a missing value. Rules that
need the deployment config (allowed variants, the model id) are checked when the caller names
them. The partition-window rule holds by construction: the emitter files each row under its
own timestamp's hour.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from modelwatch.core.contract import TYPE_ERRORS, RowRule, coerce_record, row_rules

KINDS = ("llm", "classifier", "regressor")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _broken(rule: RowRule, value: Any) -> str | None:
    """What a row's ``value`` of ``rule.field`` does wrong under ``rule``, or None when it keeps the rule."""
    if rule.check == "required":
        return f"{rule.field} is required{' when status is ok' if rule.status_ok else ''}" if _missing(value) else None
    if _missing(value):
        return None
    if rule.check == "allowed":
        return None if value in rule.allowed else f"{rule.field} must be one of {list(rule.allowed)}, got {value!r}"
    low, high = (-math.inf if rule.low is None else rule.low), (math.inf if rule.high is None else rule.high)
    if rule.check == "range":
        return None if low <= value <= high else f"{rule.field} must be within [{low:g}, {high:g}], got {value!r}"
    return None if low <= len(value) <= high else f"length of {rule.field} must be within [{low:g}, {high:g}], got {len(value)}"


def problems(row: Mapping[str, Any], kind: str, *, variants: Collection[str] | None = None, model_id: str | None = None) -> list[str]:
    """Every contract rule ``row`` breaks, as short sentences naming the field; empty when the row is valid."""
    if kind not in KINDS:
        raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
    typed = coerce_record(dict(row))
    found = [p.strip() for p in (typed.get(TYPE_ERRORS) or "").split(";") if p.strip()]
    untyped = {p.split(":", 1)[0] for p in found}
    for rule in row_rules(kind):
        if rule.field in untyped or (rule.status_ok and typed.get("status") != "ok"):
            continue
        problem = _broken(rule, typed.get(rule.field))
        if problem:
            found.append(problem)
    if variants is not None and typed.get("variant") is not None and typed["variant"] not in variants:
        found.append(f"variant must be one of {sorted(variants)}, got {typed['variant']!r}")
    if model_id is not None and typed.get("model_id") is not None and typed["model_id"] != model_id:
        found.append(f"model_id must be {model_id!r}, got {typed['model_id']!r}")
    return found
