"""observe.lineage: S3 objects to the OpenLineage datasets a data-platform team recognises, and no intermediate data."""

from modelwatch.observe.lineage import TaskLineage, dataset


def test_objects_map_to_their_datasets(isolated_config):
    cfg = isolated_config
    logs, reports = cfg.defaults.logs_uri, cfg.defaults.reports_uri
    day = "model_id=support-bot-v3/dt=2026-11-04"
    assert dataset(cfg, f"{logs}/{day}/hour=07/part-0.jsonl.gz") == f"{logs}/{day}"
    assert dataset(cfg, f"{reports}/{day}/summary.json") == f"{reports}/{day}/summary.json"
    assert dataset(cfg, f"{reports}/_baselines/model_id=support-bot-v3/version=v3/profiles.json") == \
        f"{reports}/_baselines/model_id=support-bot-v3/version=v3"
    assert dataset(cfg, f"{reports}/_quarantine/{day}/quarantine.parquet") == f"{reports}/_quarantine/{day}/quarantine.parquet"
    assert dataset(cfg, "s3://ml-serving/routing/support-bot.json") == "s3://ml-serving/routing/support-bot.json"
    for internal in (f"{reports}/_work/{day}/valid.json", f"{reports}/_tmp/x", f"{reports}/_cache/embeddings/model=m/ab.parquet",
                     f"{reports}/_experiments/model_id=m/experiment=e/dt=2026-11-04/stats.json"):
        assert dataset(cfg, internal) is None


def test_task_lineage_keeps_each_dataset_once_on_its_side(isolated_config):
    cfg = isolated_config
    bucket, prefix = cfg.defaults.logs_uri[5:].split("/", 1)
    lineage = TaskLineage(cfg)
    day = f"{prefix}/model_id=m/dt=2026-11-04"
    assert lineage.observe("GetObject", bucket, f"{day}/hour=00/a.jsonl") == ("input", f"s3://{bucket}/{day}")
    assert lineage.observe("GetObject", bucket, f"{day}/hour=01/b.jsonl") is None  # the same day
    assert lineage.observe("HeadObject", bucket, f"{day}/hour=02/c.jsonl") is None  # a check, not a read
    assert lineage.observe("PutObject", "serving", "routing/m.json") == ("output", "s3://serving/routing/m.json")
    assert lineage.inputs == [f"s3://{bucket}/{day}"] and lineage.outputs == ["s3://serving/routing/m.json"]
