"""Probabilities of the log contract, column by column: a float, or a class map whose confidence is its predicted class's value.

``coerce_probabilities`` is the fast path of ``core.contract.coerce_probability`` for a batch
(class-map confidences with NumPy, the canonical text by one C JSON encoder); ``read_class_maps``
reads the stored canonical text back into one float column per class with Arrow's JSON reader,
so no class map is parsed in Python on either side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch.core.contract import coerce_probability
from modelwatch.ingest.columnar import NONE_TYPE, Fallback, Problems, as_numpy, bad_indices, encode_json, require_shallow, scatter, to_array

MAX_CLASSES = 64  # class maps with more distinct classes in a batch go through contract.coerce_probability row by row


def _class_maps(maps: list[dict[Any, Any]], predictions: list[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(confidence, done?) of dict probabilities as ``core.contract.coerce_probability`` computes them.

    A row is done here when every value is a float and its prediction a str or None; its
    confidence is the value of the predicted class, else the maximum, taken here only where
    no value is NaN and the maximum is not zero: there Python's ``max`` in insertion order
    and the order-free maximum agree bit for bit. Other rows go through ``_probability``.
    """
    keys = set().union(*maps)
    if len(keys) > MAX_CLASSES or any(type(k) is not str for k in keys):
        return None
    m = len(maps)
    predicted_ok = np.array([type(p) is str or p is None for p in predictions], dtype=bool)
    try:
        predicted = pa.array(["None" if p is None else p if type(p) is str else None for p in predictions], pa.string())
    except (pa.ArrowException, UnicodeError):
        return None
    done, nonempty, has_nan, hit = (np.ones(m, bool), np.zeros(m, bool), np.zeros(m, bool), np.zeros(m, bool))
    best, chosen = np.full(m, -np.inf), np.zeros(m)
    for key in keys:
        has = np.array(list(map(dict.__contains__, maps, repeat(key))), dtype=bool)
        values = list(map(dict.get, maps, repeat(key)))
        if not set(map(type, values)) <= {float, NONE_TYPE}:
            floats = np.array([type(v) is float for v in values], dtype=bool)
            done &= ~has | floats
            values = [v if type(v) is float else None for v in values]
        array = pa.array(values, pa.float64())
        valid = has & as_numpy(array.is_valid())
        done &= ~has | valid  # a class with a null value is a problem row
        x = as_numpy(pc.fill_null(array, -np.inf))
        has_nan |= valid & np.isnan(x)
        best = np.where(valid & (x > best), x, best)
        here = valid & as_numpy(pc.fill_null(pc.equal(predicted, key), False))
        chosen, hit = np.where(here, x, chosen), hit | here
        nonempty |= has
    done &= nonempty & predicted_ok & (hit | (~has_nan & (best != 0)))
    return np.where(hit, chosen, best), done


def coerce_probabilities(values: list[Any], predictions: Callable[[], list[Any]]) -> tuple[pa.Array, pa.Array, Problems]:
    """(probability, class_probabilities, problems): floats as is, class maps vectorised, the rest by ``_probability``."""
    n = len(values)
    bad = bad_indices(values, (float, NONE_TYPE))
    if not bad:
        return to_array(values, pa.float64()), pa.nulls(n, pa.string()), {}
    prediction = predictions()
    plain = list(values)
    for i in bad:
        plain[i] = None
    confidence, valid = as_numpy(pc.fill_null(to_array(plain, pa.float64()), 0.0)), np.array([v is not None for v in plain], dtype=bool)
    class_rows, class_texts = [], pa.array([], pa.string())
    slow = bad
    maps = [i for i in bad if type(values[i]) is dict]
    if maps:
        vectorised = _class_maps([values[i] for i in maps], [prediction[i] for i in maps])
        if vectorised is not None:
            conf, done = vectorised
            class_rows = [i for i, ok in zip(maps, done.tolist()) if ok]
            confidence[class_rows], valid[class_rows] = conf[done], True
            # str keys and float values only: json.dumps({str(k): float(v)}, sort_keys=True) is the dict's own text
            class_texts = to_array(encode_json([values[i] for i in class_rows]), pa.string())
            finished = set(class_rows)
            slow = [i for i in bad if i not in finished]
    slow_texts, problems = [], {}
    for i in slow:
        if isinstance(values[i], dict):
            require_shallow(prediction[i])  # str(prediction) of a class map may recurse
        try:
            value, text, problem = coerce_probability(values[i], prediction[i])
        except Exception as exc:
            raise Fallback from exc
        if problem:
            require_shallow(values[i])
            problems[i] = problem
        confidence[i], valid[i] = (value, True) if value is not None else (0.0, False)
        slow_texts.append(text)
    rows = class_rows + slow
    class_maps = scatter(n, rows, pa.concat_arrays([class_texts, to_array(slow_texts, pa.string())])) if rows else pa.nulls(n, pa.string())
    return pa.array(confidence, mask=~valid, type=pa.float64()), class_maps, problems


_CLASS_MAP_BLOCK = 16 << 20  # bytes per block of Arrow's JSON reader (each block is parsed on its own thread)


def _newline_joined(texts: pa.Array) -> pa.Buffer:
    """The texts of a string array back to back, each followed by a newline: one JSON-lines buffer, built by Arrow kernels."""
    lines = pc.binary_join_element_wise(texts, pa.scalar("", texts.type), pa.scalar("\n", texts.type))
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64 if pa.types.is_large_string(lines.type) else np.int32)
    start, stop = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    return lines.buffers()[2][start:stop]


def read_class_maps(texts: pa.Array | pa.ChunkedArray, classes: Sequence[str] | None = None) -> tuple[pa.Table, np.ndarray] | None:
    """(one float64 column per class, has-a-map mask) of the canonical ``class_probabilities`` JSON text, parsed by Arrow's JSON reader.

    No text is parsed in Python: the column is joined into one JSON-lines buffer (a missing map
    becomes ``{}``) and read by ``pyarrow.json`` in C++. ``classes`` given: exactly those columns
    (a class a map omits is null; other keys are ignored); None: every key any map holds, sorted.
    None when the text is not what ``core.contract.coerce_probability`` writes — one flat object of
    numbers per row — so the caller parses it row by row instead.
    """
    import pyarrow.json as pj

    array = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        return None
    n = len(array)
    has_map = as_numpy(array.is_valid())
    if n == 0:
        return pa.table({c: pa.array([], pa.float64()) for c in classes or ()}), has_map
    if not pc.all(pc.starts_with(pc.fill_null(array, "{"), "{")).as_py() or pc.any(pc.match_substring(array, "\n")).as_py():
        return None  # not one object per row: the JSON reader would see other rows
    block = _newline_joined(pc.fill_null(array.cast(pa.large_string()), "{}"))
    parse = pj.ParseOptions(explicit_schema=pa.schema([(c, pa.float64()) for c in classes]), unexpected_field_behavior="ignore") \
        if classes is not None else pj.ParseOptions()
    try:
        table = pj.read_json(pa.BufferReader(block), read_options=pj.ReadOptions(block_size=max(1 << 20, min(len(block), _CLASS_MAP_BLOCK))),
                             parse_options=parse)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != n or not all(pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t) for t in table.schema.types):
        return None
    if classes is None:
        table = table.select(sorted(table.column_names))
    return table.cast(pa.schema([(name, pa.float64()) for name in table.column_names])), has_map
