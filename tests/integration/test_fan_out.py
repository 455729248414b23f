"""The fan-out's reduce step against the S3 server: shards of one day merge to what one shard gives, and re-running it changes nothing."""

import gzip
from datetime import date

from modelwatch.core.partition import Partition
from modelwatch.ingest.stage import plan_shards
from modelwatch.ingest.valid import read_valid
from modelwatch.runner import check_shard, extract, validate
from modelwatch.runtime.generate import Scenario, generate_traffic
from modelwatch.storage.keys import quarantine_uri, valid_manifest_uri
from modelwatch.storage.s3 import get_bytes, get_json, get_table, list_objects, put_bytes

DAY = date(2026, 11, 9)


def test_reduce_step_is_idempotent_and_equals_one_shard(s3):
    from conftest import bundled_config_data, scoped_config

    data = bundled_config_data("fan-out")
    cfg = scoped_config(s3, "fan-out", data)
    generate_traffic(s3, cfg.defaults.logs_uri, cfg.defaults.labels_uri, DAY, 1, scenario=Scenario(broken_rows_on={DAY: 12}),
                     llm_rows=700, classic_model=None)
    partition = Partition("support-bot-v3", DAY)
    prefix = partition.path(cfg.defaults.logs_uri)
    first = next(u for u, _ in list_objects(s3, prefix) if u.endswith(".gz"))
    put_bytes(s3, f"{prefix}/zz-replayed.jsonl", gzip.decompress(get_bytes(s3, first)).split(b"\n")[1] + b"\n")

    def run(shard_bytes: int):
        data["defaults"]["shard_bytes"] = shard_bytes
        split = scoped_config(s3, "fan-out", data)
        shards = plan_shards(s3, split, partition)
        extracted = extract(s3, split, partition, [check_shard(s3, split, shard) for shard in shards])
        return shards, extracted, validate(s3, split, extracted)

    _, _, whole = run(2**30)
    rows = read_valid(s3, cfg, partition).drop_columns(["_row_id"])
    quarantine = get_table(s3, quarantine_uri(cfg, partition)).drop_columns(["_row_id"])

    shards, extracted, split = run(1)
    assert len(shards) == len(list(list_objects(s3, prefix))) > 2
    assert split == whole and split["rows_quarantined"] == 13 and split["failures"]["request_id unique per model and day"] == 1
    assert read_valid(s3, cfg, partition).drop_columns(["_row_id"]).equals(rows)
    assert get_table(s3, quarantine_uri(cfg, partition)).drop_columns(["_row_id"]).equals(quarantine)
    manifest = get_json(s3, valid_manifest_uri(cfg, partition))
    assert sum("valid-without-repeats" in uri for uri in manifest["parts"]) == 1  # the replayed row's shard, rewritten beside its part

    again = validate(s3, cfg, extracted)  # a retried reduce step reads the same shard outputs
    assert again == split and get_json(s3, valid_manifest_uri(cfg, partition)) == manifest
    assert read_valid(s3, cfg, partition).drop_columns(["_row_id"]).equals(rows)

