"""The log contract in Arrow: the canonical schema every reader produces and the schema of a rejected row."""

from __future__ import annotations

import pyarrow as pa

from modelwatch.core.contract import EXTRA, FIELDS, LINE, ROW_ID, SOURCE, TYPE_ERRORS, Kind

_ARROW_TYPE: dict[Kind, pa.DataType] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "number": pa.float64(),
    "integer": pa.int64(),
    "feedback": pa.int8(),
    "object": pa.string(),  # JSON text
    "scalar": pa.string(),  # class labels as given; numbers rendered with repr()
    "probability": pa.float64(),
}

# The contract in Arrow: the reader's output schema (the contract module itself stays free of pyarrow,
# so the serving client can use it without the pipeline's dependencies).
CANONICAL_SCHEMA: pa.Schema = pa.schema(
    [pa.field(ROW_ID, pa.int64(), nullable=False), pa.field(SOURCE, pa.string()), pa.field(LINE, pa.int64())]
    + [pa.field(f.name, _ARROW_TYPE[f.kind]) for f in FIELDS]
    + [
        pa.field("class_probabilities", pa.string()),  # JSON text when probability was a class map
        pa.field(EXTRA, pa.string()),  # JSON text of unknown fields, kept not rejected
        pa.field(TYPE_ERRORS, pa.string()),  # "; "-joined coercion problems, null when clean
    ]
)
CANONICAL_COLUMNS: list[str] = CANONICAL_SCHEMA.names
REJECT_SCHEMA = pa.schema(
    [
        pa.field(ROW_ID, pa.int64()),
        pa.field(SOURCE, pa.string()),
        pa.field(LINE, pa.int64()),
        pa.field("stage", pa.string()),
        pa.field("reasons", pa.string()),
        pa.field("raw", pa.string()),
    ]
)
RAW_LIMIT = 64_000  # characters of a rejected line kept in the quarantine record
