"""summaries.BottomK: shards merged in any order give the day's own bottom-k, the pandas baseline sample's rows."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from modelwatch.baseline.sample import bottom_k, sample_keys
from modelwatch.summaries import BottomK, dump_tables, load_tables


def _day(n: int, seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"request_id": [f"req-{i:07d}" for i in range(n)], "latency_ms": rng.lognormal(5, 0.4, n)})


@pytest.mark.parametrize("k", [1, 250, 5_000, 20_000])
def test_merged_shards_equal_the_whole_day_sample_and_the_baseline_one(k):
    day = _day(12_000)
    whole = BottomK(k)
    whole.update(day)
    shards = [BottomK(k) for _ in range(5)]
    for i, shard in enumerate(shards):  # uneven shards, batches of uneven size
        for batch in day.slice(i * 2_400, 2_400).to_batches(max_chunksize=700):
            shard.update(pa.Table.from_batches([batch]))
    merged = shards[3].merge(shards[0]).merge(shards[4].merge(shards[1])).merge(shards[2])
    assert merged.seen == whole.seen == 12_000 and merged.exact == (k >= 12_000)
    assert merged.rows.equals(whole.rows) and merged.rows.num_rows == min(k, 12_000)
    frame = day.to_pandas().assign(_sample_key=lambda f: sample_keys(f["request_id"]))
    expected = bottom_k(None, frame, k).sort_values("_sample_key")
    assert merged.rows["request_id"].to_pylist() == expected["request_id"].tolist()


def test_the_sample_is_uniform_over_the_rows():
    day = _day(40_000)
    sample = BottomK(4_000)
    sample.update(day)
    picked = pd.Series([int(r[4:]) for r in sample.rows["request_id"].to_pylist()])
    counts = np.histogram(picked, bins=10, range=(0, 40_000))[0]
    from scipy.stats import chisquare

    assert chisquare(counts).pvalue > 0.001  # each tenth of the day holds ~400 of the 4,000


def test_dump_and_load_keep_the_sample():
    sample = BottomK(100)
    sample.update(_day(1_000))
    meta, tables = sample.to_parts("latency")
    back_meta, back_tables = load_tables(dump_tables(meta, tables))
    back = BottomK.from_parts("latency", back_meta, back_tables)
    assert back.rows.equals(sample.rows) and back.seen == 1_000 and back.k == 100
    empty = BottomK(10)
    meta, tables = empty.to_parts("x")
    assert BottomK.from_parts("x", *load_tables(dump_tables(meta, tables))).rows is None
