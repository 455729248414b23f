"""A whole partition read into memory (the baseline build's path; daily runs stream shards) and the redaction of its texts."""

from __future__ import annotations

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.storage.s3 import get_bytes, list_objects


def read_partition(client, cfg: MonitoringConfig, partition: Partition):
    """Every log file of the partition as (canonical rows, read-stage rejects, per-file records).

    With ``defaults.redact_pii`` the text fields and the rejected lines are redacted here,
    the one place traffic enters the pipeline (daily runs and baselines alike).
    """
    from modelwatch.ingest.readers import assemble, read_file

    reads, files = [], []
    for uri, size in list_objects(client, partition.path(cfg.defaults.logs_uri)):
        read = read_file(get_bytes(client, uri), uri) if size else None
        if read is None:
            files.append({"uri": uri, "format": "empty", "rows_read": 0, "problem": "zero-byte file", "damaged": False})
            continue
        reads.append(read)
        files.append({"uri": uri, "format": read.fmt, "rows_read": read.rows_read, "rows_rejected": len(read.rejects), "problem": read.problem,
                      "damaged": read.damaged})
    rows, rejects = assemble(reads)
    if cfg.defaults.redact_pii:
        from modelwatch.core.redaction import TEXT_FIELDS

        rows, rejects = redact_columns(rows, TEXT_FIELDS), redact_columns(rejects, ("raw",))
    return rows, rejects, files


DIGIT_CHAIN = r"[0-9](?:[ ().+-]{0,2}[0-9]){6}"  # what every phone or card match contains (see redact_columns)


def redact_columns(table, columns: tuple[str, ...]):
    """``table`` with personal data masked in the string ``columns`` (``modelwatch.core.redaction``'s documented rules).

    Only texts that could hold a finding go through ``core.redaction.redact``: an email needs an
    ``@``; a phone (7 digits at least, with ``+``) or a card (13) needs 7 digits in a chain where
    at most two of `` ().+-`` separate neighbours. A text with non-ASCII characters may hold
    digits of other scripts (Python's ``\\d``), so it is always checked.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from modelwatch.core.redaction import redact

    for name in columns:
        if name not in table.column_names:
            continue
        index = table.schema.get_field_index(name)
        column = table.column(index).combine_chunks()
        maybe = pc.or_(pc.or_(pc.match_substring(column, "@"), pc.match_substring_regex(column, DIGIT_CHAIN)), pc.invert(pc.string_is_ascii(column)))
        rows = np.flatnonzero(pc.fill_null(maybe, False).to_numpy(zero_copy_only=False))
        if rows.size:
            texts = column.take(pa.array(rows)).to_pylist()
            values = column.to_pylist()
            for i, text in zip(rows.tolist(), texts):
                values[i] = redact(text)
            table = table.set_column(index, table.schema.field(index), pa.array(values, type=table.schema.field(index).type))
    return table
