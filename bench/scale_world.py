"""The "scale" benchmark's world: the buckets on the local S3 server, and each run's config (its own prefixes, its shard size).

One run's config is the bundled config reduced to the LLM model support-bot-v3, its baseline window
the baseline day, on the benchmark's buckets, with ``shard_bytes`` set for the day's size and, on
the exact path, ``summary_sample_rows`` at the day's rows (every summary exact).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

MODEL = "support-bot-v3"
BASELINE_DAY = date(2026, 11, 3)
DAY = date(2026, 11, 4)
FORMATS = {"jsonl.gz": "jsonl", "parquet": "parquet"}  # format -> prefix name
SLOTS = 2  # worker slots: the check_shard tasks at once, and the branches after validate at once (a worker with concurrency 2)
SHARDS_PER_SLOT = 4  # shard_bytes = the day's bytes / (SLOTS x this): several shards per slot, so both cores stay busy to the end
MIN_SHARD_BYTES = 24 * 2**20  # ... but no smaller: a 1M-request day (46 MiB of JSONL.gz, 33 MiB of Parquet) is 2 shards


@dataclass
class World:
    """One run's config (its own logs and reports prefixes) on the shared S3 server."""

    name: str  # the format, or "<format> exact"
    fmt: str
    config: Path
    logs_uri: str
    reports_uri: str
    shard_bytes: int


def config_data(logs_uri: str, reports_uri: str, serving_bucket: str, shard_bytes: int, sample_rows: int | None = None) -> dict[str, Any]:
    """The bundled config reduced to the LLM model, its baseline window the baseline day, on the benchmark's buckets."""
    import yaml
    from modelwatch.config import DEFAULT_CONFIG_PATH

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["defaults"].update(logs_uri=logs_uri, reports_uri=reports_uri, labels_uri=logs_uri.replace("/inference", "/labels"))
    data["defaults"].pop("pushgateway_url", None)
    data["defaults"]["shard_bytes"] = shard_bytes
    if sample_rows is not None:
        data["defaults"]["summary_sample_rows"] = sample_rows
    if data["defaults"].get("evidently_workspace_uri"):
        data["defaults"]["evidently_workspace_uri"] = f"{reports_uri}/evidently"
    model = next(m for m in data["models"] if m["id"] == MODEL)
    model["baseline"] = {"window": {"start": BASELINE_DAY.isoformat(), "end": BASELINE_DAY.isoformat()}}
    if model.get("rollback"):
        model["rollback"]["uri"] = f"s3://{serving_bucket}/routing/{MODEL}.json"
    data["models"] = [model]
    return data


def buckets(client, tag: str) -> dict[str, str]:
    from modelwatch.storage.s3 import ensure_bucket

    names = {kind: f"scale-{tag}-{kind}" for kind in ("logs", "reports", "serving")}
    for bucket in names.values():
        ensure_bucket(client, bucket)
    return names


def logs_uris(names: dict[str, str]) -> dict[str, str]:
    return {fmt: f"s3://{names['logs']}/{prefix}/inference" for fmt, prefix in FORMATS.items()}


def shard_bytes_for(day_bytes: int) -> int:
    """``shard_bytes`` for a day of ``day_bytes``: ``SHARDS_PER_SLOT`` shards per worker slot, at least ``MIN_SHARD_BYTES``."""
    return max(MIN_SHARD_BYTES, -(-day_bytes // (SLOTS * SHARDS_PER_SLOT)))


def make_world(names: dict[str, str], fmt: str, workdir: Path, shard_bytes: int, exact_rows: int | None = None) -> World:
    """A world reading ``fmt``'s logs; ``exact_rows``: the exact path's (every summary exact), with its own reports prefix."""
    import yaml
    from modelwatch.config import load_config

    name = fmt if exact_rows is None else f"{fmt} exact"
    prefix = FORMATS[fmt] if exact_rows is None else f"{FORMATS[fmt]}-exact"
    logs_uri, reports_uri = logs_uris(names)[fmt], f"s3://{names['reports']}/{prefix}/reports"
    path = workdir / f"modelwatch-{prefix}.yaml"
    path.write_text(yaml.safe_dump(config_data(logs_uri, reports_uri, names["serving"], shard_bytes, exact_rows)))
    load_config(path)  # fail here, not in a task, if the derived config is invalid
    return World(name, fmt, path, logs_uri, reports_uri, shard_bytes)


def sample_rows_of(world: World) -> int:
    from modelwatch.config import load_config

    return load_config(world.config).defaults.summary_sample_rows


def copy_prefix(client, source_uri: str, target_uri: str) -> int:
    """Server-side copy of every object under ``source_uri`` to the same relative key under ``target_uri``."""
    from modelwatch.storage.s3 import list_objects, split_uri

    copied = 0
    for uri, _ in list_objects(client, source_uri):
        bucket, key = split_uri(uri)
        target_bucket, target_key = split_uri(target_uri.rstrip("/") + uri[len(source_uri.rstrip("/")):])
        client.copy_object(CopySource={"Bucket": bucket, "Key": key}, Bucket=target_bucket, Key=target_key)
        copied += 1
    return copied
