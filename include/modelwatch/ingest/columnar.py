"""The log contract's coercion applied column by column: a fast path for large batches.

``core.contract.coerce_record`` maps one record at a time (about twenty Python calls a row).
The batch paths compute the same canonical columns for a whole batch: ``columnar_json.coerce_batch``
for parsed JSON records, ``columnar_arrow.coerce_arrow`` for a Parquet file read as an Arrow
table, and ``probabilities`` for the probability column of both. This module holds what they
share: each field's values are checked in one pass and a clean column goes to Arrow in one call
(``coerce_column``); timestamps are matched and parsed with ``pyarrow.compute``; objects are
written by one reused C JSON encoder. Only the values of a column that are not clean go through
the contract's per-value rules (``core.contract.coerce_value``), so values and ``_type_errors``
are those of the per-row path.

The batch paths return None when equality with the per-row path cannot be guaranteed cheaply
(a value Arrow cannot hold, a dict subclass, objects nested close to the recursion limit, whose
outcome depends on the caller's stack depth: ``Fallback``); the caller then uses the per-row path.
"""

from __future__ import annotations

import json
import math
import operator
import sys
from collections.abc import Callable, Sequence
from itertools import repeat
from json.encoder import c_make_encoder, encode_basestring_ascii
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch.core.contract import (
    INT64_MAX,
    INT64_MIN,
    LINE,
    ROW_ID,
    SOURCE,
    TYPE_ERRORS,
    Field,
    coerce_value,
)
from modelwatch.ingest.schema import CANONICAL_SCHEMA

#: The canonical columns without the lineage columns the reader adds.
SCHEMA: pa.Schema = pa.schema([f for f in CANONICAL_SCHEMA if f.name not in (ROW_ID, SOURCE, LINE)])
TIMESTAMP = pa.timestamp("us", tz="UTC")
NONE_TYPE = type(None)
_CONTAINERS = (dict, list, tuple, set, frozenset)
NULL_TEXT = pa.scalar(None, pa.string())
# json.dumps(v, sort_keys=True, default=str) builds exactly this C encoder on every call (with a fresh dict of
# markers to detect cycles; without one a cycle ends in RecursionError, which answers None here as well).
_C_ENCODER = c_make_encoder(None, str, encode_basestring_ascii, None, ": ", ", ", True, False, True) if c_make_encoder else None
_ENCODER = json.JSONEncoder(sort_keys=True, default=str)

# Strings that datetime.fromisoformat(value.replace("Z", "+00:00")) parses as written here (RE2 syntax):
# year 0001-9999, real month/hour/minute/second ranges, 1-6 fraction digits, Z or a +-HH:MM offset.
# The day of the month and the UTC range are checked after the parse.
_ISO_UTC = (
    r"^(?P<Y>\d{3}[1-9]|\d{2}[1-9]\d|\d[1-9]\d{2}|[1-9]\d{3})-(?P<M>0[1-9]|1[0-2])-(?P<D>0[1-9]|[12]\d|3[01])"
    r"T(?P<h>[01]\d|2[0-3]):(?P<m>[0-5]\d):(?P<s>[0-5]\d)(?:\.(?P<f>\d{1,6}))?"
    r"(?:Z|(?P<sign>[+-])(?P<oh>[01]\d|2[0-3]):(?P<om>[0-5]\d))$"
)
_VERBATIM = r"^[ !#-\[\]-~]*$"  # printable ASCII without quote or backslash: JSON writes it unescaped
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
US_PER_DAY = 86_400_000_000
MIN_US = -719_162 * US_PER_DAY  # 0001-01-01T00:00:00Z
MAX_US = 2_932_897 * US_PER_DAY - 1  # 9999-12-31T23:59:59.999999Z

Problems = dict[int, str]  # row index -> problem text


class Fallback(Exception):
    """Equality with the per-row path cannot be guaranteed cheaply: use the per-row path."""


# --------------------------------------------------------------------------- guards


def _safe_depth() -> int:
    """Nesting below which encoding or repr cannot hit the recursion limit from any reasonable caller."""
    return sys.getrecursionlimit() // 2


def _nesting(value: Any, stop: int) -> int:
    """Container nesting depth of ``value`` (iterative, so it cannot recurse), counted up to ``stop``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, _CONTAINERS):
            continue
        deepest = max(deepest, depth)
        if deepest >= stop:
            return deepest
        stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def require_shallow(value: Any) -> None:
    if isinstance(value, _CONTAINERS) and _nesting(value, _safe_depth()) >= _safe_depth() - 1:
        raise Fallback


def encode_json(values: list[Any]) -> list[str]:
    """``json.dumps(v, sort_keys=True, default=str)`` of each value ("null" for None), as ``core.contract._json_text`` writes objects."""
    try:
        if _C_ENCODER is None:  # pragma: no cover - CPython has the C encoder
            texts = [_ENCODER.encode(v) for v in values]
        else:
            texts = list(map("".join, map(_C_ENCODER, values, repeat(0))))
    except Exception as exc:  # RecursionError depends on the caller's stack; others (circular, unsortable keys) raise per row too
        raise Fallback from exc
    limit = 2 * _safe_depth()  # a text nested d levels deep has at least 2d characters
    if texts and max(map(len, texts)) >= limit:
        for value, text in zip(values, texts):
            if len(text) >= limit and text.count("{") + text.count("[") >= _safe_depth() - 1:
                require_shallow(value)
    return texts


def to_array(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=type_)
    except (pa.ArrowException, UnicodeError, OverflowError, ValueError, TypeError) as exc:  # the per-row table fails alike
        raise Fallback from exc


def as_numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False, writable=True)


# --------------------------------------------------------------------------- JSON text of flat objects, key by key


def float_text(value: float) -> str:
    """The JSON encoder's float: repr, or NaN / Infinity / -Infinity (allow_nan)."""
    if math.isfinite(value):
        return float.__repr__(value)
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def _string_texts(strings: pa.Array) -> pa.Array:
    """Quoted strings where JSON keeps them as they are, "null" for null, null (encode in Python) otherwise."""
    quoted = pc.if_else(pc.match_substring_regex(strings, _VERBATIM), pc.binary_join_element_wise('"', strings, '"', ""), NULL_TEXT)
    return pc.if_else(strings.is_null(), "null", quoted)


def _value_texts(values: list[Any]) -> pa.Array:
    """JSON text of each of one key's Python values; str, int, bool and float columns without Python calls per value."""
    types = set(map(type, values)) - {NONE_TYPE}
    try:
        if types <= {str}:
            return _string_texts(pa.array(values, pa.string()))
        if types == {int}:
            ints = pa.array(values, pa.int64())
            return pc.if_else(ints.is_null(), "null", ints.cast(pa.string()))
        if types == {bool}:
            bools = pa.array(values, pa.bool_())
            return pc.if_else(bools.is_null(), "null", pc.if_else(bools, "true", "false"))
    except (pa.ArrowException, UnicodeError, OverflowError):  # an unpaired surrogate, an int beyond 64 bits
        pass
    if types == {float}:
        return pa.array(["null" if v is None else float_text(v) for v in values], pa.string())
    return to_array(encode_json(values), pa.string())


def arrow_value_texts(array: pa.Array) -> pa.Array:
    """JSON text of each value of an Arrow child column, as ``to_pylist()`` then the encoder writes it."""
    type_ = array.type
    if pa.types.is_null(type_):
        return pa.array(["null"] * len(array), pa.string())
    if type_ in STRING_TYPES:
        array.validate(full=True)  # invalid UTF-8 would fail to_pylist() in the per-row path
        return _string_texts(array.cast(pa.string()))
    if pa.types.is_integer(type_):
        return pc.if_else(array.is_null(), "null", array.cast(pa.string()))
    if pa.types.is_boolean(type_):
        return pc.if_else(array.is_null(), "null", pc.if_else(array, "true", "false"))
    return _value_texts(array.to_pylist())


def object_texts(n: int, texts: dict[str, pa.Array]) -> pa.Array:
    """'{"k": v, ...}' of ``n`` rows from each key's value texts, keys sorted as sort_keys does; null where a value's text is null."""
    if not texts:
        return pa.array(["{}"] * n, pa.string())
    items = [pc.binary_join_element_wise(f"{encode_basestring_ascii(key)}: ", texts[key], "") for key in sorted(texts)]
    return pc.binary_join_element_wise("{", pc.binary_join_element_wise(*items, ", "), "}", "")


def fill_texts(texts: pa.Array, objects: Callable[[list[int]], list[Any]]) -> pa.Array:
    """Rows whose text is null encoded by the encoder itself (``objects(rows)`` gives their values)."""
    if not texts.null_count:
        return texts
    rows = np.flatnonzero(as_numpy(texts.is_null())).tolist()
    full = texts.to_pylist()
    for i, text in zip(rows, encode_json(objects(rows))):
        full[i] = text
    return to_array(full, pa.string())


def dict_texts(dicts: list[Any]) -> pa.Array:
    """``json.dumps(d, sort_keys=True, default=str)`` of each dict, null for None."""
    rows = [i for i, d in enumerate(dicts) if d is not None]
    if len(rows) == len(dicts):
        return to_array(encode_json(dicts), pa.string())
    return scatter(len(dicts), rows, to_array(encode_json([dicts[i] for i in rows]), pa.string()))


def scatter(n: int, rows: list[int], values: pa.Array) -> pa.Array:
    """A column of ``n`` nulls holding ``values`` at ``rows``."""
    if len(rows) == n and all(map(operator.lt, rows, rows[1:])):
        return values
    index = np.full(n, len(rows), dtype=np.int64)
    index[rows] = np.arange(len(rows))
    return pa.concat_arrays([values, pa.nulls(1, values.type)]).take(index)


# --------------------------------------------------------------------------- per-value repair of unclean values


def bad_indices(values: list[Any], clean: tuple[type, ...]) -> list[int]:
    """Rows whose value is not exactly of a clean type (one C-level pass decides whether to look)."""
    if set(map(type, values)).issubset(clean):
        return []
    return [i for i, t in enumerate(map(type, values)) if t not in clean]


def _repair(values: list[Any], bad: list[int], rule: Callable[[Any], tuple[Any, str | None]]) -> tuple[list[Any], Problems]:
    """A copy of ``values`` with each bad value replaced by ``rule``'s canonical value, and the problems by row."""
    if not bad:
        return values, {}
    fixed, problems = list(values), {}
    for i in bad:
        try:
            fixed[i], problem = rule(values[i])
        except Exception as exc:  # RecursionError depends on the stack; anything else raises in coerce_record too
            raise Fallback from exc
        if problem:
            require_shallow(values[i])  # the problem text holds repr(value), which may recurse
            problems[i] = problem
    return fixed, problems


def _field_rule(field: Field) -> Callable[[Any], tuple[Any, str | None]]:
    return lambda value: coerce_value(field, value)


# --------------------------------------------------------------------------- one column of Python values per kind


def _strings(field: Field, values: list[Any]) -> tuple[pa.Array, Problems]:
    """string and scalar kinds: str as is; scalar numbers and bools become repr(value)."""
    fixed, problems = _repair(values, bad_indices(values, (str, NONE_TYPE)), _field_rule(field))
    return to_array(fixed, pa.string()), problems


def _numbers(field: Field, values: list[Any]) -> tuple[pa.Array, Problems]:
    """number kind: floats as is (NaN and infinities kept); ints within 64 bits become float(value)."""
    fixed, problems = _repair(values, bad_indices(values, (float, NONE_TYPE)), _field_rule(field))
    return to_array(fixed, pa.float64()), problems


def _integers(field: Field, values: list[Any], type_: pa.DataType, low: int, high: int) -> tuple[pa.Array, Problems]:
    """integer and feedback kinds: ints within [low, high] as is; integral floats become int(value)."""
    bad = bad_indices(values, (int, NONE_TYPE))
    fixed, problems = _repair(values, bad, _field_rule(field))
    try:
        return pa.array(fixed, type=type_), problems
    except (pa.ArrowException, OverflowError):
        pass
    outside = [i for i, v in enumerate(fixed) if v is not None and not low <= v <= high]
    if not set(outside).isdisjoint(bad):
        raise Fallback  # int(1e300) passes the contract's rule but no int64 column holds it: the per-row table fails
    refixed, more = _repair(fixed, outside, _field_rule(field))
    return to_array(refixed, type_), {**problems, **more}


def _objects(field: Field, values: list[Any]) -> tuple[pa.Array, Problems]:
    """object kind: dicts as sorted JSON text."""
    fixed, problems = _repair(values, bad_indices(values, (dict, NONE_TYPE)), _field_rule(field))
    return dict_texts(fixed), problems


def _iso_fields(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(UTC microseconds, real date?) of strings matching ``_ISO_UTC``, from their fields.

    Used when Arrow's own parser refuses a batch over an impossible date (2026-02-30): each
    string is checked on its own here. Days from the civil date follow Howard Hinnant's
    ``days_from_civil`` algorithm.
    """
    parts = pc.extract_regex(strings, _ISO_UTC)

    def number(name: str, width: int, right: bool = False) -> np.ndarray:
        text = pc.struct_field(parts, name)
        padded = pc.utf8_rpad(text, width, "0") if right else pc.utf8_lpad(text, width, "0")  # "" (no match, no group) -> 0
        return as_numpy(pc.cast(pc.fill_null(padded, "0" * width), pa.int64()))

    year, month, day = number("Y", 4), np.clip(number("M", 2), 1, 12), number("D", 2)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    real_date = day <= _DAYS_IN_MONTH[month - 1] + ((month == 2) & leap)
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    days = era * 146_097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719_468
    seconds = days * 86_400 + number("h", 2) * 3_600 + number("m", 2) * 60 + number("s", 2)
    sign = np.where(as_numpy(pc.fill_null(pc.equal(pc.struct_field(parts, "sign"), "-"), False)), -1, 1)
    seconds -= sign * (number("oh", 2) * 3_600 + number("om", 2) * 60)
    return seconds * 1_000_000 + number("f", 6, right=True), real_date


def _iso_micros(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(microseconds since the epoch in UTC, parsed?) of ISO-8601 strings with an explicit offset.

    Only strings matching ``_ISO_UTC`` with a real calendar date whose UTC instant lies in the
    years 1-9999 count as parsed: exactly the strings of this form that ``fromisoformat``
    accepts and ``astimezone(UTC)`` can convert.
    """
    matched = as_numpy(pc.fill_null(pc.match_substring_regex(strings, _ISO_UTC), False))
    try:
        micros = as_numpy(pc.fill_null(pc.if_else(matched, strings, NULL_TEXT).cast(TIMESTAMP).cast(pa.int64()), 0))
        parsed = matched
    except pa.ArrowInvalid:
        micros, real_date = _iso_fields(strings)
        parsed = matched & real_date
    return micros, parsed & (micros >= MIN_US) & (micros <= MAX_US)


def _timestamps(field: Field, values: list[Any]) -> tuple[pa.Array, Problems]:
    """timestamp kind: ISO-8601 strings with an offset, in UTC microseconds."""
    strings = values
    wrong_type = bad_indices(values, (str, NONE_TYPE))
    if wrong_type:
        strings = list(values)
        for i in wrong_type:
            strings[i] = None
    micros, valid = _iso_micros(to_array(strings, pa.string()))
    bad = [i for i in np.flatnonzero(~valid).tolist() if values[i] is not None]
    fixed, problems = _repair(values, bad, _field_rule(field))
    if bad:
        repaired = to_array([fixed[i] for i in bad], TIMESTAMP)  # datetimes (or None) exactly as the per-row table stores them
        index = np.array(bad, dtype=np.int64)
        micros[index] = as_numpy(pc.fill_null(repaired.cast(pa.int64()), 0))
        valid[index] = as_numpy(repaired.is_valid())
    return pa.array(micros, mask=~valid, type=TIMESTAMP), problems


def coerce_column(field: Field, values: list[Any]) -> tuple[pa.Array, Problems]:
    """One canonical column from the raw values of ``field`` (not probability)."""
    kind = field.kind
    if kind in ("string", "scalar"):
        return _strings(field, values)
    if kind == "number":
        return _numbers(field, values)
    if kind == "integer":
        return _integers(field, values, pa.int64(), INT64_MIN, INT64_MAX)
    if kind == "feedback":
        return _integers(field, values, pa.int8(), -128, 127)
    if kind == "object":
        return _objects(field, values)
    if kind == "timestamp":
        return _timestamps(field, values)
    raise AssertionError(f"unhandled kind {kind}")  # pragma: no cover


def _type_errors(n: int, ordered: list[Problems], row_errors: Problems) -> pa.Array:
    """``_type_errors`` as coerce_record joins it: fields in contract order, probability, then extra."""
    texts: list[str | None] = [None] * n
    for i in sorted(set().union(*ordered)):
        texts[i] = "; ".join(p[i] for p in ordered if i in p)
    for i, text in row_errors.items():
        texts[i] = text
    return to_array(texts, pa.string())


def assemble_table(n: int, columns: dict[str, pa.Array], ordered: list[Problems], row_errors: Problems) -> pa.Table:
    columns[TYPE_ERRORS] = _type_errors(n, ordered, row_errors)
    return pa.Table.from_arrays([columns[name] for name in SCHEMA.names], schema=SCHEMA)


# --------------------------------------------------------------------------- JSON records

STRING_TYPES = (pa.string(), pa.large_string(), pa.string_view())
