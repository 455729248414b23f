"""A baseline read through the shard stream is the baseline of the whole days, and every row read is counted once.

The reference build below is the path baselines took before they streamed: each day's files read
whole (``readers.read_file``, ``assemble``), validated in one call (``validate_partition``) and
profiled as one frame. The streamed build reads the same window in several shards per day and
batches of 300 rows, with rows that break the contract, request ids repeated across shards and a
feature that is absent from the first batches, numbers in a later one and text in the last.
"""

from __future__ import annotations

import io
import json
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from modelwatch.baseline.build import ValidSpill, build_baseline, spill_valid_day
from modelwatch.baseline.columns import PartitionColumns, drift_frame
from modelwatch.baseline.profiles import ProfileBuilder
from modelwatch.baseline.sample import SAMPLE_KEY, bottom_k, sample_keys
from modelwatch.baseline.store import coerce_kinds, incumbent_variants
from modelwatch.core.partition import Partition
from modelwatch.estimation.reference import ReferenceBuilder
from modelwatch.ingest.readers import assemble, read_file
from modelwatch.ingest.validation import validate_partition
from modelwatch.runtime.generate import ExperimentPlan, Scenario, classifier_day, generate_traffic, jsonl_bytes, llm_day
from modelwatch.storage.s3 import get_bytes, get_json, list_objects, put_bytes

START = date(2026, 11, 1)
DAYS = 3
LLM, CLASSIFIER = "support-bot-v3", "churn-classifier-v2"
BROKEN = 16  # contract-breaking lines on the first day (runtime.generate.broken_rows)
REPEATED = 25  # request ids of the first hour written again in the day's last file (another shard)
PRIORITY_ROWS = 150  # LLM rows with a metadata.priority, in each of the first day's last two hours


def _late_rows(client, cfg, day: date) -> None:
    """Files at the end of the first day: the classifier's first rows again (their ids repeat across shards), and LLM rows
    with a ``metadata.priority``: absent from the day's first batches, numbers in hour 22, text in hour 23."""
    classic = cfg.model(CLASSIFIER).experiments[0]
    rows, _ = classifier_day(CLASSIFIER, day, 1500, 7, Scenario(), ExperimentPlan(classic.id, classic.weights()))
    put_bytes(client, f"{Partition(CLASSIFIER, day, 23).path(cfg.defaults.logs_uri)}/part-repeats.jsonl", jsonl_bytes(rows[:REPEATED], gz=False))
    llm = llm_day(LLM, day, 2 * PRIORITY_ROWS, 11, Scenario(), ExperimentPlan("exp-042", cfg.model(LLM).experiments[0].weights()))
    for hour, rows, priority in ((22, llm[:PRIORITY_ROWS], lambda i: i % 4), (23, llm[PRIORITY_ROWS:], lambda i: "high")):
        late = [{**r, "request_id": f"{r['request_id']}-priority", "metadata": {**r["metadata"], "priority": priority(i)}} for i, r in enumerate(rows)]
        put_bytes(client, f"{Partition(LLM, day, hour).path(cfg.defaults.logs_uri)}/part-priority.jsonl", jsonl_bytes(late, gz=False))


@pytest.fixture(scope="module")
def world(s3_server):
    from conftest import bundled_config_data, scoped_config
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    data = bundled_config_data("basestream")
    data["defaults"].update(shard_bytes=40_000, batch_rows=300)
    for model in data["models"]:
        model.setdefault("drift", {})["reference_sample"] = 2000  # smaller than the window: bottom-k has to choose
        if model["id"] == LLM:
            model["drift"]["features"] = [*model["drift"]["features"], "metadata.priority"]
    cfg = scoped_config(client, "basestream", data)
    aa = cfg.model(CLASSIFIER).experiments[0]
    generate_traffic(client, cfg.defaults.logs_uri, cfg.defaults.labels_uri, START, DAYS, llm_rows=1500, classic_rows=1500,
                     scenario=Scenario(broken_rows_on={START: BROKEN}), plan=ExperimentPlan("exp-042", cfg.model(LLM).experiments[0].weights()),
                     classic_plan=ExperimentPlan(aa.id, aa.weights()))
    _late_rows(client, cfg, START)
    return client, cfg


def _whole_days(client, cfg, model_id: str) -> dict:
    """The window built the way baselines were built before they streamed: each day read and validated whole."""
    model = cfg.model(model_id)
    settings, incumbents = model.drift, incumbent_variants(model)
    sample = profiles = columns = None
    estimation = ReferenceBuilder(client, cfg, model, incumbents) if model.kind != "llm" and model.estimation.enabled else None
    profiled: list[pd.DataFrame] = []
    for offset in range(DAYS):
        day = START + timedelta(offset)
        partition = Partition(model.id, day)
        reads = [read_file(get_bytes(client, uri), uri) for uri, size in list_objects(client, partition.path(cfg.defaults.logs_uri)) if size]
        rows, _rejects = assemble(reads)
        valid = validate_partition(rows, model, partition).valid
        frame, day_columns = drift_frame(valid, model.kind, settings.features, model.segments, settings.text)
        frame = frame[frame["variant"].isin(incumbents)].reset_index(drop=True)
        if estimation is not None:
            estimation.update(day, valid)
        if columns is None:
            columns, profiles = day_columns, ProfileBuilder(day_columns.kinds)
        frame = coerce_kinds(frame, columns.kinds)
        profiles.update(frame)
        profiled.append(frame)
        frame[SAMPLE_KEY] = sample_keys(frame["request_id"])
        sample = bottom_k(sample, frame, settings.reference_sample)
    sample = sample.sort_values(SAMPLE_KEY, kind="stable").reset_index(drop=True).drop(columns=[SAMPLE_KEY])
    return {"sample": sample, "profiles": profiles.to_json(), "columns": columns, "estimation": estimation, "profiled": pd.concat(profiled)}


def _stored(client, manifest: dict) -> tuple[pd.DataFrame, dict]:
    reference = pd.read_parquet(io.BytesIO(get_bytes(client, f"{manifest['uri']}/reference.parquet")))
    return reference, get_json(client, f"{manifest['uri']}/profiles.json")


KLL_RANK_ERROR = 0.04  # KLL (k=200) is randomised: two builds of the same rows agree on ranks within its ~1.3% error, not bit for bit


def _assert_same_profiles(streamed: dict, whole: dict, profiled: pd.DataFrame) -> None:
    assert sorted(streamed) == sorted(whole)
    for column, expected in whole.items():
        got = streamed[column]
        exact = {k: v for k, v in expected.items() if k not in ("quantiles", "kll", "frequent_items")}
        assert {k: v for k, v in got.items() if k in exact} == exact, column
        if expected["kind"] == "numerical" and "quantiles" in expected:
            values = np.sort(profiled[column].dropna().to_numpy(dtype=float))
            for name, value in got["quantiles"].items():  # the rank interval of a value (ties: integer counts) holds the nominal rank
                below, up_to = np.searchsorted(values, value, side="left") / values.size, np.searchsorted(values, value, side="right") / values.size
                assert below - KLL_RANK_ERROR <= int(name[1:]) / 100 <= up_to + KLL_RANK_ERROR, (column, name, below, up_to)


@pytest.mark.parametrize("model_id", [LLM, CLASSIFIER])
def test_streamed_baseline_equals_the_whole_day_build(world, model_id):
    client, cfg = world
    manifest = build_baseline(client, cfg, model_id, START, START + timedelta(DAYS - 1), f"streamed-{model_id}", progress=lambda _: None)
    whole = _whole_days(client, cfg, model_id)
    reference, profiles = _stored(client, manifest)

    assert manifest["reference_rows"] == len(whole["sample"]) == 2000
    pd.testing.assert_frame_equal(reference, whole["sample"].pipe(lambda f: pd.read_parquet(io.BytesIO(_parquet(f)))))
    _assert_same_profiles(profiles, whole["profiles"], whole["profiled"])
    columns = whole["columns"]
    assert manifest["kinds"] == columns.kinds
    assert manifest["columns"] == {"features": columns.features, "prediction": columns.prediction, "input_length": columns.input_length,
                                   "segments": columns.segments, "text": columns.text}
    if model_id == LLM:
        assert manifest["kinds"]["metadata.priority"] == "categorical"  # the text came in the first day's last batch
        assert {"high", "1"} <= set(reference["metadata.priority"].dropna())  # hour 22's numbers read as the whole day's text
    if model_id == CLASSIFIER:
        entry = whole["estimation"].store(f"{manifest['uri']}-whole", progress=lambda _: None)
        assert manifest["estimation"]["outcome"] == entry["outcome"] == "ok"
        assert {k: v for k, v in manifest["estimation"].items() if not k.endswith("uri")} == {k: v for k, v in entry.items() if not k.endswith("uri")}
        assert get_json(client, manifest["estimation"]["uri"]) == get_json(client, entry["uri"])
        pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(get_bytes(client, manifest["estimation"]["reference_uri"]))),
                                      pd.read_parquet(io.BytesIO(get_bytes(client, entry["reference_uri"]))))


def _parquet(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    return buffer.getvalue()


def _lines(client, cfg, model_id: str, day: date) -> int:
    """Non-blank lines in the day's log files, counted from the bytes (gzip or not)."""
    import gzip

    total = 0
    for uri, _ in list_objects(client, Partition(model_id, day).path(cfg.defaults.logs_uri)):
        data = get_bytes(client, uri)
        data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        total += sum(1 for line in data.split(b"\n") if line.strip())
    return total


@pytest.mark.parametrize(("model_id", "quarantined"), [(LLM, BROKEN), (CLASSIFIER, REPEATED)])
def test_every_row_read_is_valid_or_quarantined_once(world, tmp_path, model_id, quarantined):
    from modelwatch.ingest.stage import plan_shards

    client, cfg = world
    model = cfg.model(model_id)
    assert len(plan_shards(client, cfg, Partition(model_id, START))) > 1  # the day really is read in several shards
    spill = ValidSpill(tmp_path / "valid.parquet")
    tally = spill_valid_day(client, cfg, model, START, spill, PartitionColumns(model.kind, model.drift.features, model.segments, model.drift.text))
    respilled = sum(batch.num_rows for batch in spill.batches(cfg.defaults.batch_rows))

    assert tally.rows_read == _lines(client, cfg, model_id, START) == sum(f["rows_read"] for f in tally.files)
    assert tally.rows_valid + tally.rows_quarantined == tally.rows_read
    assert tally.rows_quarantined == quarantined  # the broken lines; the repeats of ids first seen in another shard
    assert respilled == spill.rows == tally.rows_valid
    manifest_day = json.loads(json.dumps(build_baseline(client, cfg, model_id, START, START, f"counted-{model_id}", progress=lambda _: None)["days"][0]))
    assert manifest_day == {"dt": START.isoformat(), "rows_read": tally.rows_read, "rows_quarantined": quarantined, "rows_used": manifest_day["rows_used"]}
