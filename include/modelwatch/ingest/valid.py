"""The valid rows of a partition, as the reduce step's manifest lists them; every later stage reads them here."""

from __future__ import annotations

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.storage.keys import valid_manifest_uri
from modelwatch.storage.s3 import get_json, get_table


def read_valid(client, cfg: MonitoringConfig, partition: Partition, columns: list[str] | None = None):
    """The partition's valid rows (every shard's part, as the manifest lists them), optionally only ``columns``."""
    import pyarrow as pa

    parts = get_json(client, valid_manifest_uri(cfg, partition))["parts"]
    return pa.concat_tables([get_table(client, uri, columns) for uri in parts])


def valid_columns(exclude: tuple[str, ...]) -> list[str]:
    """The valid rows' columns but ``exclude``: what a stage reads when it needs everything except the texts."""
    from modelwatch.ingest.schema import CANONICAL_COLUMNS

    return [c for c in CANONICAL_COLUMNS if c not in exclude and c != "_type_errors"]


def iter_valid(client, cfg: MonitoringConfig, partition: Partition, columns: list[str]):
    """The partition's valid rows one Parquet row group at a time (only ``columns``): memory is bounded by a row group.

    Each part's footer and the asked columns' chunks are fetched by range reads as Arrow reads
    them (``storage.ranged``, nothing prefetched), so a stage can stream a day it does not hold.
    """
    import pyarrow.parquet as pq

    from modelwatch.storage.ranged import RangedObject

    for uri in get_json(client, valid_manifest_uri(cfg, partition))["parts"]:
        parquet = pq.ParquetFile(RangedObject(client, uri))
        for group in range(parquet.num_row_groups):
            yield parquet.read_row_group(group, columns=columns).select(columns)
