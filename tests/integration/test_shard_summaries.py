"""The per-shard part of a stage (modelwatch.summaries) against the S3 server: built in each shard task, rebuilt where the
reduce step drops repeated request ids, listed in the manifest, and merged to the summary of exactly the day's valid rows."""

from __future__ import annotations

import gzip
from collections import Counter
from dataclasses import replace
from datetime import date

import pyarrow as pa
import pytest
from modelwatch import stages
from modelwatch.core.partition import Partition
from modelwatch.ingest.stage import plan_shards
from modelwatch.ingest.valid import read_valid
from modelwatch.runner import check_shard, extract, validate
from modelwatch.runtime.generate import generate_traffic
from modelwatch.storage.keys import valid_manifest_uri
from modelwatch.storage.s3 import get_bytes, get_json, list_objects, put_bytes
from modelwatch.summaries import ShardSummaries, SummaryMissing, dump_tables, load_tables, merged

DAY = date(2026, 11, 9)


class RequestCount:
    """A test summary: every request id it saw, with its count (so a row seen twice shows)."""

    def __init__(self, counts: Counter | None = None):
        self.counts = counts or Counter()

    def update(self, rows: pa.Table) -> None:
        self.counts.update(rows["request_id"].to_pylist())

    def merge(self, other: RequestCount) -> RequestCount:
        return RequestCount(self.counts + other.counts)

    def dump(self) -> bytes:
        ids = sorted(self.counts)
        return dump_tables({"kind": "request-count"}, {"ids": pa.table({"id": ids, "n": [self.counts[i] for i in ids]})})


def columns(ctx) -> list[str]:
    return ["request_id"]


def start(ctx) -> RequestCount | None:
    return RequestCount() if ctx.partition.model_id == "support-bot-v3" else None


def load(data: bytes) -> RequestCount:
    meta, tables = load_tables(data)
    assert meta == {"kind": "request-count"}
    ids = tables["ids"]
    return RequestCount(Counter(dict(zip(ids["id"].to_pylist(), ids["n"].to_pylist(), strict=True))))


@pytest.fixture()
def counting_profile(monkeypatch):
    """The registry with this module as the profile stage's per-shard part."""
    patched = tuple(replace(s, summary=__name__) if s.name == "profile" else s for s in stages.STAGES)
    monkeypatch.setattr(stages, "STAGES", patched)


def test_summaries_cover_exactly_the_manifest_rows_across_shards_and_repeats(s3, counting_profile):
    from conftest import bundled_config_data, scoped_config

    data = bundled_config_data("summaries")
    data["defaults"]["shard_bytes"] = 1  # one shard per file
    cfg = scoped_config(s3, "summaries", data)
    generate_traffic(s3, cfg.defaults.logs_uri, cfg.defaults.labels_uri, DAY, 1, llm_rows=600, classic_model=None)
    partition = Partition("support-bot-v3", DAY)
    prefix = partition.path(cfg.defaults.logs_uri)
    first = next(u for u, _ in list_objects(s3, prefix) if u.endswith(".gz"))
    put_bytes(s3, f"{prefix}/zz-replayed.jsonl", gzip.decompress(get_bytes(s3, first)).split(b"\n")[1] + b"\n")  # a repeat in the last shard

    shards = plan_shards(s3, cfg, partition)
    checked = [check_shard(s3, cfg, shard) for shard in shards]
    assert len(shards) > 2 and all("profile" in c["summaries"] for c in checked)
    assert sum(sum(load(get_bytes(s3, c["summaries"]["profile"])).counts.values()) for c in checked) == sum(c["rows_valid"] for c in checked)

    validated = validate(s3, cfg, extract(s3, cfg, partition, checked))
    manifest = get_json(s3, valid_manifest_uri(cfg, partition))
    uris = manifest["summaries"]["profile"]
    assert len(uris) == len(shards) and sum(u.endswith("-without-repeats.bin") for u in uris) == 1  # rebuilt beside the first, never over it

    day = merged(s3, validated["valid_uri"], "profile", load)
    valid_ids = read_valid(s3, cfg, partition, ["request_id"])["request_id"].to_pylist()
    assert day.counts == Counter(valid_ids) and set(day.counts.values()) == {1}  # the repeat is counted once, as in the manifest
    assert sum(day.counts.values()) == validated["rows_valid"] == manifest["rows"]


def test_a_day_checked_without_summaries_names_the_fix(s3):
    from conftest import bundled_config_data, scoped_config

    cfg = scoped_config(s3, "summaries-missing", bundled_config_data("summaries-missing"))
    generate_traffic(s3, cfg.defaults.logs_uri, cfg.defaults.labels_uri, DAY, 1, llm_rows=50, classic_model=None)
    partition = Partition("support-bot-v3", DAY)
    validated = validate(s3, cfg, extract(s3, cfg, partition, [check_shard(s3, cfg, s) for s in plan_shards(s3, cfg, partition)]))
    with pytest.raises(SummaryMissing, match="lists no nosuchstage summaries.*Re-run the day from check_shard"):
        merged(s3, validated["valid_uri"], "nosuchstage", load)


def test_a_summary_that_cannot_be_built_is_not_written(s3, counting_profile):
    from conftest import bundled_config_data, scoped_config
    from modelwatch.stages import StageContext
    from modelwatch.summaries import summary_modules

    cfg = scoped_config(s3, "summaries-none", bundled_config_data("summaries-none"))
    ctx = StageContext(s3, cfg, Partition("churn-classifier-v2", DAY))  # start() builds none for it
    summaries = ShardSummaries(ctx, 0, 1, summary_modules([s for s in stages.STAGES if s.name == "profile"]))
    summaries.update(pa.table({"request_id": ["a"]}))
    assert summaries.stages == [] and summaries.write() == {}
