"""``coerce_arrow``: the contract's coercion for a Parquet file read as an Arrow table (see ``ingest.columnar``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch.core.contract import (
    EXTRA,
    FIELDS,
    KNOWN_FIELDS,
    Field,
)
from modelwatch.ingest.columnar import (
    MAX_US,
    MIN_US,
    NULL_TEXT,
    SCHEMA,
    STRING_TYPES,
    TIMESTAMP,
    US_PER_DAY,
    Fallback,
    Problems,
    arrow_value_texts,
    as_numpy,
    assemble_table,
    coerce_column,
    encode_json,
    fill_texts,
    float_text,
    object_texts,
    to_array,
)
from modelwatch.ingest.probabilities import MAX_CLASSES, coerce_probabilities

# --------------------------------------------------------------------------- Arrow tables (Parquet)

_INTS = (pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32())  # uint64 may exceed int64
_FLOATS = (pa.float32(), pa.float64())
_PYLIST_ERRORS = (pa.ArrowException, ValueError, OverflowError, UnicodeError, KeyError)  # to_pylist() on values Python cannot hold


def _native(field: Field, array: pa.Array) -> pa.Array | None:
    """The canonical column cast straight from Arrow when its type already fits, else None (go through Python)."""
    type_, kind = array.type, field.kind
    if pa.types.is_null(type_):
        return pa.nulls(len(array), SCHEMA.field(field.name).type)
    if kind == "string" or kind == "scalar":
        if type_ in STRING_TYPES:
            array.validate(full=True)  # invalid UTF-8 would fail to_pylist() in the per-row path
            return array.cast(pa.string())
        return array.cast(pa.string()) if kind == "scalar" and type_ in _INTS else None  # repr(int): its decimal digits
    if kind == "number" or kind == "probability":
        # float(int) and Arrow's unsafe int64 -> float64 cast both round to nearest, ties to even
        return array.cast(pa.float64(), safe=False) if type_ in _FLOATS or type_ in _INTS else None
    if kind == "integer":
        return array.cast(pa.int64()) if type_ in _INTS else None
    if kind == "feedback":
        if type_ not in _INTS:
            return None
        try:
            return array.cast(pa.int8())
        except pa.ArrowInvalid:  # beyond int8: those rows get their problem in Python
            return None
    if kind == "timestamp":
        return _native_timestamps(array)
    if kind == "object" and pa.types.is_struct(type_):
        return _struct_texts(array)
    return None


def _native_timestamps(array: pa.Array) -> pa.Array | None:
    """UTC microseconds of an Arrow timestamp column (naive values are UTC, as ``coerce_record`` takes naive datetimes).

    to_pylist() cannot make a datetime outside the years 1-9999 in the column's own time zone,
    so the per-row path fails there: columns reaching within a day of either end answer None.
    """
    type_ = array.type
    if not pa.types.is_timestamp(type_) or type_.unit == "ns":  # ns values become pandas Timestamps in Python
        return None
    if type_.tz is not None:
        array.slice(0, 1).to_pylist()  # a time zone Python cannot resolve fails the per-row path
    factor = {"s": 1_000_000, "ms": 1_000, "us": 1}[type_.unit]
    units = array.cast(pa.int64())
    bounds = pc.min_max(units)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is not None and not (MIN_US + US_PER_DAY) // factor <= low <= high <= (MAX_US - US_PER_DAY) // factor:
        raise Fallback
    return (pc.multiply(units, factor) if factor != 1 else units).cast(TIMESTAMP)


def _struct_texts(array: pa.StructArray) -> pa.Array | None:
    """JSON text of each struct row as to_pylist() and the encoder write it; None for duplicate field names."""
    names = [array.type.field(i).name for i in range(array.type.num_fields)]
    if len(set(names)) != len(names):
        return None
    children = dict(zip(names, array.flatten()))
    texts = object_texts(len(array), {k: arrow_value_texts(c) for k, c in children.items()})
    texts = pc.if_else(array.is_null(), NULL_TEXT, texts)
    failed = pc.and_(texts.is_null(), array.is_valid())
    if not pc.any(failed).as_py():
        return texts
    rows = np.flatnonzero(as_numpy(failed)).tolist()
    full = texts.to_pylist()
    for i, text in zip(rows, encode_json(array.take(rows).to_pylist())):
        full[i] = text
    return to_array(full, pa.string())


def _float_texts(values: pa.Array) -> pa.Array:
    """The JSON encoder's text of each float (``repr``; NaN, Infinity, -Infinity), "null" for null, with one C-level map."""
    x = as_numpy(pc.fill_null(values, 0.0))
    texts = list(map(float.__repr__, x.tolist()))
    for i in np.flatnonzero(~np.isfinite(x)).tolist():
        texts[i] = float_text(float(x[i]))
    return pc.if_else(values.is_null(), "null", pa.array(texts, pa.string()))


def _struct_probabilities(array: pa.StructArray, prediction: pa.Array | None) -> tuple[pa.Array, pa.Array, Problems] | None:
    """(probability, class_probabilities, problems) of a struct probability column (a class map per row), by Arrow kernels.

    A row is done here when the struct is present and every class value is a number: its class
    map text is ``object_texts`` of the values as floats (what ``json.dumps(probs, sort_keys=True)``
    writes) and its confidence the predicted class's value, else the maximum — taken here only
    where no value is NaN and the maximum is not zero, where Python's ``max`` in field order and
    the order-free maximum agree bit for bit (as ``probabilities._class_maps``). Other rows go through
    ``coerce_probabilities``. None when the column's shape rules this out (duplicate or too many
    fields, a field that is not a number, a prediction column that is not text).
    """
    type_ = array.type
    names = [type_.field(i).name for i in range(type_.num_fields)]
    if not names or len(set(names)) != len(names) or len(names) > MAX_CLASSES:
        return None
    if prediction is not None and not (prediction.type in STRING_TYPES or pa.types.is_null(prediction.type)):
        return None
    children = array.flatten()  # the struct's nulls merged into each child
    if not all(pa.types.is_floating(c.type) or c.type in _INTS for c in children):
        return None
    n = len(array)
    predicted = pc.fill_null(prediction.cast(pa.string()), "None") if prediction is not None else pa.array(["None"] * n, pa.string())
    floats = [c.cast(pa.float64(), safe=False) for c in children]
    present = as_numpy(array.is_valid())
    complete = present.copy()
    has_nan, hit = np.zeros(n, bool), np.zeros(n, bool)
    best, chosen = np.full(n, -np.inf), np.zeros(n)
    for name, values in zip(names, floats):
        valid = as_numpy(values.is_valid())
        complete &= valid
        x = as_numpy(pc.fill_null(values, -np.inf))
        has_nan |= valid & np.isnan(x)
        best = np.where(valid & (x > best), x, best)
        here = valid & as_numpy(pc.equal(predicted, name))
        chosen, hit = np.where(here, x, chosen), hit | here
    done = complete & (hit | (~has_nan & (best != 0)))
    texts = object_texts(n, {name: _float_texts(values) for name, values in zip(names, floats)})
    texts = pc.if_else(pa.array(done), texts, NULL_TEXT)
    confidence, valid = np.where(hit, chosen, best), done.copy()
    problems: Problems = {}
    slow = np.flatnonzero(present & ~done).tolist()
    if slow:
        slow_values = array.take(slow).to_pylist()
        slow_predictions = prediction.take(slow).to_pylist() if prediction is not None else [None] * len(slow)
        slow_conf, slow_texts, slow_problems = coerce_probabilities(slow_values, lambda: slow_predictions)
        text_list = texts.to_pylist()
        for j, i in enumerate(slow):
            value = slow_conf[j].as_py()
            confidence[i], valid[i] = (value, True) if value is not None else (0.0, False)
            text_list[i] = slow_texts[j].as_py()
            if j in slow_problems:
                problems[i] = slow_problems[j]
        texts = to_array(text_list, pa.string())
    return pa.array(np.where(valid, confidence, 0.0), mask=~valid, type=pa.float64()), texts, problems


def _coerce_table(table: pa.Table) -> pa.Table:
    names = table.column_names
    if len(set(names)) != len(names):
        raise Fallback  # to_pylist keeps one of the duplicates
    n = table.num_rows
    arrays = {name: table.column(name).combine_chunks() for name in names}
    cache: dict[str, list[Any]] = {}

    def values(name: str) -> list[Any]:
        if name not in cache:
            cache[name] = arrays[name].to_pylist() if name in arrays else [None] * n
        return cache[name]

    columns: dict[str, pa.Array] = {}
    ordered: list[Problems] = []
    for field in FIELDS:
        native = _native(field, arrays[field.name]) if field.name in arrays else pa.nulls(n, SCHEMA.field(field.name).type)
        if field.kind == "probability":
            struct = _struct_probabilities(arrays["probability"], arrays.get("prediction")) \
                if native is None and "probability" in arrays and pa.types.is_struct(arrays["probability"].type) else None
            if native is not None:
                columns["probability"], columns["class_probabilities"], problems = native, pa.nulls(n, pa.string()), {}
            elif struct is not None:
                columns["probability"], columns["class_probabilities"], problems = struct
            else:
                columns["probability"], columns["class_probabilities"], problems = coerce_probabilities(values("probability"), lambda: values("prediction"))
            probability_problems = problems
            continue
        if native is not None:
            columns[field.name], problems = native, {}
        else:
            columns[field.name], problems = coerce_column(field, values(field.name))
        ordered.append(problems)
    ordered.append(probability_problems)
    unknown = sorted(name for name in names if name not in KNOWN_FIELDS)
    if unknown:  # every row of to_pylist() holds every column, null or not
        extra = object_texts(n, {name: arrow_value_texts(arrays[name]) for name in unknown})
        columns[EXTRA] = fill_texts(extra, lambda rows: [{k: arrays[k][i].as_py() for k in unknown} for i in rows])
    else:
        columns[EXTRA] = pa.nulls(n, pa.string())
    ordered.append({})
    return assemble_table(n, columns, ordered, {})


def coerce_arrow(table: pa.Table) -> pa.Table | None:
    """The canonical columns (``SCHEMA``) of a Parquet file read as an Arrow table, or None.

    Equal to ``pa.Table.from_pylist([coerce_record(r) for r in table.to_pylist()], schema=SCHEMA)``
    whenever it returns a table. Columns whose Arrow type already fits are cast, struct columns
    written as JSON text from their children, a struct probability column (class maps) coerced by
    Arrow kernels (``_struct_probabilities``); other columns go through their Python values and
    the contract's rules.
    """
    try:
        return _coerce_table(table)
    except (Fallback, *_PYLIST_ERRORS):
        return None
