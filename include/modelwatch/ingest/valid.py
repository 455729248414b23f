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
