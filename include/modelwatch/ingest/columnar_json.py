"""``coerce_batch``: the canonical columns of a batch of parsed JSON records, column by column (``ingest.columnar``)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import pyarrow as pa

from modelwatch.core.contract import EXTRA, FIELDS, KNOWN_FIELDS, describe_value
from modelwatch.ingest.columnar import Fallback, Problems, assemble_table, coerce_column, dict_texts, require_shallow, scatter
from modelwatch.ingest.probabilities import coerce_probabilities

_GATHER_CHUNK = 1024  # records per gathering pass: their dicts stay in the CPU cache across the fields


def _gather(records: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], list[int]]:
    """(values of every contract field, rows holding keys the contract does not know), as ``record.get`` gives them."""
    raw: dict[str, list[Any]] = {field.name: [] for field in FIELDS}
    known: list[bool] = []
    for start in range(0, len(records), _GATHER_CHUNK):
        chunk = records[start : start + _GATHER_CHUNK]
        for name, values in raw.items():
            values.extend(map(dict.get, chunk, repeat(name, len(chunk))))
        known.extend(map(KNOWN_FIELDS.issuperset, chunk))
    return raw, [i for i, ok in enumerate(known) if not ok] if not all(known) else []


def _coerce_records(records: list[Any]) -> pa.Table:
    n = len(records)
    types = set(map(type, records))
    row_errors: Problems = {}
    if types - {dict}:
        if any(issubclass(t, dict) for t in types - {dict}):
            raise Fallback  # a dict subclass may answer .get and .items differently from its keys
        for i, record in enumerate(records):
            if type(record) is not dict:
                require_shallow(record)
                row_errors[i] = f"row: expected a JSON object, got {describe_value(record)}"
        records = [r if type(r) is dict else {} for r in records]
    raw, extra_rows = _gather(records)
    columns: dict[str, pa.Array] = {}
    ordered: list[Problems] = []
    for field in FIELDS:
        if field.kind != "probability":
            columns[field.name], problems = coerce_column(field, raw[field.name])
            ordered.append(problems)
    columns["probability"], columns["class_probabilities"], problems = coerce_probabilities(raw["probability"], lambda: raw["prediction"])
    ordered.append(problems)
    extras = [{k: v for k, v in records[i].items() if k not in KNOWN_FIELDS} for i in extra_rows]
    columns[EXTRA] = scatter(n, extra_rows, dict_texts(extras)) if extra_rows else pa.nulls(n, pa.string())
    ordered.append({})
    return assemble_table(n, columns, ordered, row_errors)


def coerce_batch(records: Sequence[Any]) -> pa.Table | None:
    """The canonical columns (``SCHEMA``) of a batch of parsed JSON values, or None.

    Equal to ``pa.Table.from_pylist([coerce_record(r) for r in records], schema=SCHEMA)``
    whenever it returns a table; None when that equality cannot be guaranteed cheaply
    (including every input for which the per-row table cannot be built at all).
    """
    try:
        return _coerce_records(list(records))
    except Fallback:
        return None
