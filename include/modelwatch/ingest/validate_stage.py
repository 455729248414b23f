"""The validate stage (the reduce step): repeats across shards, one quarantine, the valid rows' manifest, the invalid-share limit."""

from __future__ import annotations

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.results import ExtractRecord, ValidateRecord
from modelwatch.stages import StageContext, StageResult, Upstream, record
from modelwatch.storage.keys import quarantine_uri, shard_uri, valid_manifest_uri
from modelwatch.storage.s3 import get_table, put_json, put_table
from modelwatch.summaries import manifest_summaries

NAME = "validate"
NEEDS: tuple[str, ...] = ("extract",)


def run(ctx: StageContext, upstream: Upstream) -> StageResult[ValidateRecord]:
    """The reduce step over the extracted partition."""
    return StageResult(NAME, _validate(ctx.client, ctx.cfg, record(upstream["extract"]), ctx.summarize))


def _validate(client, cfg: MonitoringConfig, extracted: ExtractRecord, summarize=None) -> ValidateRecord:
    """The reduce step: repeats across shards, one quarantine, the valid rows' manifest; then the invalid-share limit."""
    from modelwatch.ingest.shards import merge_failures
    from modelwatch.ingest.validation import enforce_invalid_share

    partition = Partition.from_dict(extracted["partition"])
    model = cfg.model(partition.model_id)
    shards = extracted["shards"]
    count = len(shards)
    failures, examples = merge_failures(shards)
    repeats = _cross_shard_repeats(client, [shard_uri(cfg, partition, "ids", i, count) for i in range(count)]) if count > 1 else {}
    moved = _move_repeats(client, cfg, partition, count, repeats, failures, examples)
    quarantined, by_file = _merge_quarantine(client, cfg, partition, count, moved)
    parts = [shard_uri(cfg, partition, "valid-without-repeats" if i in moved else "valid", i, count) for i in range(count)]
    rows_valid = sum(s["rows_valid"] for s in shards) - sum(len(m) for m in moved.values())
    summaries = _shard_summaries(client, shards, parts, moved, summarize)
    put_json(client, valid_manifest_uri(cfg, partition), {"partition": partition.to_dict(), "parts": parts, "rows": rows_valid,
                                                          "summaries": manifest_summaries(summaries)})
    rows_in = extracted["rows_read"]
    if rows_in != rows_valid + quarantined:
        raise AssertionError(f"{partition.label}: rows read {rows_in} != valid {rows_valid} + quarantined {quarantined}")
    result: ValidateRecord = {
        "partition": partition.to_dict(),
        "rows_read": rows_in,
        "rows_valid": rows_valid,
        "rows_quarantined": quarantined,
        "invalid_share": quarantined / rows_in if rows_in else 0.0,
        "failures": failures,
        "examples": examples,
        "quarantine_uri": quarantine_uri(cfg, partition),
        "valid_uri": valid_manifest_uri(cfg, partition),
    }
    enforce_invalid_share(rows_in, quarantined, failures, examples, cfg.max_invalid_share(model.id), f"partition {partition.path(cfg.defaults.logs_uri)}",
                          rejects_by_file=by_file, files=extracted["files"])
    return result


def _cross_shard_repeats(client, uris: list[str]) -> dict[int, dict[int, str]]:
    """``ingest.shards.cross_shard_repeats`` over the shards' id tables, reading a shard's files and lines only if its ids repeat later."""
    from modelwatch.ingest.shards import cross_shard_repeats

    return cross_shard_repeats([get_table(client, uri, ["hash", "row_id"]) for uri in uris],
                               lambda shard: get_table(client, uris[shard], ["source", "line"]))


def _move_repeats(client, cfg: MonitoringConfig, partition: Partition, count: int, repeats: dict[int, dict[int, str]],
                  failures: dict[str, int], examples: dict[str, list[str]]):
    """Rows whose request id an earlier shard already had: their reject records by shard.

    The shard's part without them is written beside the shard's own output, never over it,
    so a retried or re-run reduce step starts from the same inputs and writes the same outputs.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from modelwatch.core.contract import LINE, ROW_ID, SOURCE
    from modelwatch.ingest.schema import REJECT_SCHEMA
    from modelwatch.ingest.validation import EXAMPLES, example, raw_json

    rule = "request_id unique per model and day"
    moved: dict[int, pa.Table] = {}
    for shard, found in repeats.items():
        uri = shard_uri(cfg, partition, "valid", shard, count)
        part = get_table(client, uri)
        is_repeat = pc.is_in(part[ROW_ID], value_set=pa.array(sorted(found), pa.int64()))
        rows = part.filter(is_repeat).to_pylist()
        if not rows:
            continue  # the repeats were quarantined for other reasons already
        records = []
        for row in rows:
            reason = f"duplicate request_id {row['request_id']!r} (first seen at {found[row[ROW_ID]]})"
            records.append({ROW_ID: row[ROW_ID], SOURCE: row[SOURCE], LINE: row[LINE], "stage": "validate", "reasons": reason, "raw": raw_json(row)})
            failures[rule] = failures.get(rule, 0) + 1
            if len(examples.setdefault(rule, [])) < EXAMPLES:
                examples[rule].append(example(row[SOURCE], row[LINE], repr(row["request_id"])[:80]))
        put_table(client, shard_uri(cfg, partition, "valid-without-repeats", shard, count), part.filter(pc.invert(is_repeat)))
        moved[shard] = pa.Table.from_pylist(records, schema=REJECT_SCHEMA)
    return moved


def _shard_summaries(client, shards, parts: list[str], moved, summarize) -> list[dict[str, str]]:
    """Each shard's summaries; a shard that lost repeated request ids gets them rebuilt from its part without them.

    The part is read a row group at a time, so the rebuild's memory is bounded like the shard task's.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from modelwatch.storage.s3 import get_bytes

    written = [dict(s.get("summaries", {})) for s in sorted(shards, key=lambda s: s["shard"])]
    if summarize is None:
        return written
    for index in moved:
        rebuilt = summarize(index, len(shards))
        part = pq.ParquetFile(pa.BufferReader(get_bytes(client, parts[index])))
        rebuilt.update_all(part.read_row_group(i) for i in range(part.num_row_groups))
        written[index] = rebuilt.write("without-repeats")
    return written


def _merge_quarantine(client, cfg: MonitoringConfig, partition: Partition, count: int, moved) -> tuple[int, dict[str, int]]:
    """Every shard's quarantine, and the repeats moved out of valid parts, as one object ordered by row id: (rows, rows by file)."""
    from collections import Counter

    import pyarrow as pa

    from modelwatch.ingest.schema import REJECT_SCHEMA
    from modelwatch.ingest.validation import rejects_by_file
    from modelwatch.storage.s3 import ParquetSink

    by_file: Counter[str] = Counter()
    with ParquetSink(client, quarantine_uri(cfg, partition), REJECT_SCHEMA) as sink:
        for shard in range(count):
            part = get_table(client, shard_uri(cfg, partition, "quarantine", shard, count))
            if shard in moved:
                part = pa.concat_tables([part, moved[shard]]).sort_by("_row_id")
            sink.write(part)
            by_file.update(rejects_by_file(part))
    return sink.rows, dict(by_file)
