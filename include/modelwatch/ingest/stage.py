"""The ingest stage: plan the shards of a partition, check each shard (the mapped task), then ``extract`` merges their figures."""

from __future__ import annotations

from typing import Any

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.results import ExtractRecord, ShardCheck
from modelwatch.stages import StageContext, StageResult, Upstream
from modelwatch.storage.keys import shard_uri
from modelwatch.storage.s3 import list_objects, put_table

NAME = "extract"
NEEDS: tuple[str, ...] = ()


def run(ctx: StageContext, upstream: Upstream) -> StageResult[ExtractRecord]:
    """The partition's read figures, merged from the map step's shard results (or from checking its shards here)."""
    return StageResult(NAME, _extract(ctx.client, ctx.cfg, ctx.partition, ctx.checked, ctx.summarize))


def plan_shards(client, cfg: MonitoringConfig, partition: Partition) -> list[dict[str, Any]]:
    """The partition's log files (or the Collector exports of the model's OpenTelemetry source, ``otel.list_exports``) in shards of
    at most ``defaults.shard_bytes`` (one shard, maybe empty, for a small day)."""
    from modelwatch.ingest.otel import list_exports, otel_source
    from modelwatch.ingest.shards import split_files

    source = otel_source(cfg, partition.model_id)
    files = list(list_objects(client, partition.path(cfg.defaults.logs_uri))) if source is None else list_exports(client, source, partition)
    groups = split_files(files, cfg.defaults.shard_bytes)
    return [{"partition": partition.to_dict(), "shard": i, "shards": len(groups), "files": [[uri, size] for uri, size in group]}
            for i, group in enumerate(groups)]


def check_shard(client, cfg: MonitoringConfig, shard: dict[str, Any], summaries=None) -> ShardCheck:
    """Read, coerce and validate one shard's files batch by batch (``defaults.batch_rows``); memory is bounded by a batch.

    Writes the shard's valid rows, its quarantine (read and validation rejects, by row id)
    and the first occurrence of each request id (for the reduce step's duplicate check).
    ``summaries`` (a ``modelwatch.summaries.ShardSummaries``, from ``runner.check_shard``) takes in
    every valid batch as it passes, and its summaries are written beside the shard's part.
    """
    from modelwatch.ingest.read import StreamTally, validated_batches
    from modelwatch.ingest.schema import CANONICAL_SCHEMA, REJECT_SCHEMA
    from modelwatch.ingest.shards import first_row_id
    from modelwatch.ingest.validation import StreamValidator
    from modelwatch.storage.s3 import ParquetSink

    partition = Partition.from_dict(shard["partition"])
    index, count = shard["shard"], shard["shards"]
    validator = StreamValidator(cfg.model(partition.model_id), partition)
    tally = StreamTally()
    valid_schema = CANONICAL_SCHEMA.remove(CANONICAL_SCHEMA.get_field_index("_type_errors"))
    with ParquetSink(client, shard_uri(cfg, partition, "valid", index, count), valid_schema) as valid, \
            ParquetSink(client, shard_uri(cfg, partition, "quarantine", index, count), REJECT_SCHEMA) as quarantine:
        files = [(uri, size) for uri, size in shard["files"]]
        for ok, rejected in validated_batches(client, cfg, files, validator, first_row_id(index), tally, f"{partition.label} shard {index}"):
            valid.write(ok)
            quarantine.write(rejected)
            if summaries is not None:
                summaries.update(ok)
    written = summaries.write() if summaries is not None else {}
    put_table(client, shard_uri(cfg, partition, "ids", index, count), validator.duplicates.first_occurrences())
    rows_read = tally.rows_read
    if rows_read != valid.rows + quarantine.rows:
        raise AssertionError(f"{partition.label} shard {index}: rows read {rows_read} != valid {valid.rows} + quarantined {quarantine.rows}")
    return {"partition": partition.to_dict(), "shard": index, "shards": count, "files": tally.files, "rows_read": rows_read,
            "read_rejects": tally.read_rejects, "rows_valid": valid.rows, "rows_quarantined": quarantine.rows, "failures": dict(validator.failures),
            "examples": dict(validator.examples), "summaries": written}


def _extract(client, cfg: MonitoringConfig, partition: Partition, checked: list[ShardCheck] | None = None, summarize=None) -> ExtractRecord:
    """The partition's read figures, merged from its checked shards (``check_shard``; run here, one after another, when not given)."""
    if checked is None:
        checked = [check_shard(client, cfg, shard, summarize(shard["shard"], shard["shards"]) if summarize else None)
                   for shard in plan_shards(client, cfg, partition)]
    mine = sorted((c for c in checked if c["partition"] == partition.to_dict()), key=lambda c: c["shard"])
    if not mine or len(mine) != mine[0]["shards"]:
        raise RuntimeError(f"{partition.label}: {len(mine)} checked shards, expected {mine[0]['shards'] if mine else 'at least 1'}; re-run the partition")
    rows_read = sum(c["rows_read"] for c in mine)
    files = [f for c in mine for f in c["files"]]
    return {
        "partition": partition.to_dict(),
        "source_prefix": _source_prefix(cfg, partition),
        "files": files,
        "files_damaged": sum(f["damaged"] for f in files),
        "rows_read": rows_read,
        "read_rejects": sum(c["read_rejects"] for c in mine),
        "outcome": "no_traffic" if rows_read == 0 else "ok",
        "shards": [{k: v for k, v in c.items() if k != "files"} for c in mine],
    }


def _source_prefix(cfg: MonitoringConfig, partition: Partition) -> str:
    """Where the partition's traffic is read from: its log prefix, or the model's OpenTelemetry export prefix."""
    from modelwatch.ingest.otel import otel_source

    source = otel_source(cfg, partition.model_id)
    return partition.path(cfg.defaults.logs_uri) if source is None else source.uri
