"""The one ingestion path: log files read, coerced, redacted and validated batch by batch; and the redaction of texts.

Daily runs (``ingest.stage.check_shard``: one task per shard of a partition) and baselines
(``baseline.build``: every shard of each day of the window, in turn) read traffic through
``validated_batches``, so both hold one batch (``defaults.batch_rows``) at a time and validate
with the same contract (``ingest.validation.StreamValidator``). With ``defaults.redact_pii`` the
text fields and the rejected lines are redacted here, the one place traffic enters the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelwatch.config import MonitoringConfig
from modelwatch.storage.s3 import get_bytes

if TYPE_CHECKING:
    import pyarrow as pa

    from modelwatch.core.partition import Partition
    from modelwatch.ingest.readers import FileStream
    from modelwatch.ingest.validation import StreamValidator


@dataclass
class StreamTally:
    """What ``validated_batches`` read: one record per file, and the rows that came out valid or quarantined."""

    files: list[dict[str, Any]] = field(default_factory=list)
    read_rejects: int = 0  # lines the readers rejected (not UTF-8, not JSON, cut), before validation
    rows_valid: int = 0
    rows_quarantined: int = 0  # read rejects and validation rejects

    @property
    def rows_read(self) -> int:
        return sum(f["rows_read"] for f in self.files)


def validated_batches(client, cfg: MonitoringConfig, files: Iterable[tuple[str, int]], validator: StreamValidator, first_row_id: int,
                      tally: StreamTally, where: str) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(valid rows, quarantined rows) of ``files`` (URI, size; read in this order), about ``defaults.batch_rows`` rows at a time.

    Each file is opened batch by batch (``open_traffic_file``: a log file or a Collector export), coerced (``readers.batch_tables``),
    redacted and validated once per ``batch_rows`` rows across files (GX runs per batch; the
    validator finds repeated request ids across every batch it is given). Row ids count up from
    ``first_row_id``. ``tally`` receives the file records and counts; once the files are read, rows
    read must equal valid plus quarantined (``where`` names the partition or shard if not).
    """
    import pyarrow as pa

    from modelwatch.ingest.readers import batch_tables

    batch_rows = cfg.defaults.batch_rows
    pending: list[tuple[pa.Table, pa.Table]] = []  # coerced batches not yet validated

    def validate_pending() -> tuple[pa.Table, pa.Table]:
        ok, invalid = validator.check(pa.concat_tables([rows for rows, _ in pending]))
        quarantined = pa.concat_tables([rejects for _, rejects in pending] + [invalid]).sort_by("_row_id")
        pending.clear()
        tally.rows_valid += ok.num_rows
        tally.rows_quarantined += quarantined.num_rows
        return ok, quarantined

    next_id = first_row_id
    for uri, size in files:
        if not size:
            tally.files.append({"uri": uri, "format": "empty", "rows_read": 0, "problem": "zero-byte file", "damaged": False})
            continue
        stream = open_traffic_file(cfg, validator.partition, get_bytes(client, uri), uri, batch_rows)
        rows_read = rejected = 0
        for batch in stream.batches:
            rows, rejects = batch_tables(batch, next_id)
            next_id += rows.num_rows + rejects.num_rows
            if cfg.defaults.redact_pii:
                from modelwatch.core.redaction import TEXT_FIELDS

                rows, rejects = redact_columns(rows, TEXT_FIELDS), redact_columns(rejects, ("raw",))
            validator.count_read_rejects(rejects)  # after redaction: its examples show raw text
            pending.append((rows, rejects))
            rows_read += rows.num_rows + rejects.num_rows
            rejected += rejects.num_rows
            if sum(r.num_rows for r, _ in pending) >= batch_rows:
                yield validate_pending()
        tally.files.append({"uri": uri, "format": stream.fmt, "rows_read": rows_read, "rows_rejected": rejected, "problem": stream.problem,
                            "damaged": stream.damaged, **({"skipped": stream.skipped} if stream.skipped else {})})
        tally.read_rejects += rejected
    if pending:
        yield validate_pending()
    if tally.rows_read != tally.rows_valid + tally.rows_quarantined:
        raise AssertionError(f"{where}: rows read {tally.rows_read} != valid {tally.rows_valid} + quarantined {tally.rows_quarantined}")


def open_traffic_file(cfg: MonitoringConfig, partition: Partition, data: bytes, uri: str, batch_rows: int) -> FileStream:
    """One file of a partition's traffic: a Collector export of the model's OpenTelemetry source (``ingest.otel``), else a log file."""
    from modelwatch.ingest.otel import open_export, otel_source
    from modelwatch.ingest.readers import open_file

    source = otel_source(cfg, partition.model_id)
    if source is None:
        return open_file(data, uri, batch_rows)
    return open_export(data, uri, cfg.model(partition.model_id), source, partition, batch_rows)


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
