"""Sharding a partition and merging what its shards found: split_files, the hashed duplicate tracker, repeats across shards."""

import numpy as np
import pyarrow as pa
import pytest
from modelwatch.ingest.shards import IDS_SCHEMA, ROW_ID_BITS, cross_shard_repeats, first_row_id, merge_failures, split_files
from modelwatch.ingest.validation import DuplicateTracker, request_hashes


def test_split_files_keeps_whole_files_in_key_order_under_the_limit():
    files = [("a", 40), ("b", 40), ("c", 40), ("d", 200), ("e", 10)]
    assert split_files(files, 100) == [[("a", 40), ("b", 40)], [("c", 40)], [("d", 200)], [("e", 10)]]
    assert split_files(files, 10_000) == [files]  # a small day is one shard
    assert split_files([], 100) == [[]]  # an empty partition still gets its (empty) shard and reduce step
    assert [u for shard in split_files(files, 1) for u, _ in shard] == ["a", "b", "c", "d", "e"]


def test_row_ids_of_shards_do_not_overlap():
    assert first_row_id(0) == 0 and first_row_id(3) == 3 << ROW_ID_BITS
    assert first_row_id(1) > 2**32  # far more rows than any file or shard holds


def test_merge_failures_adds_counts_and_keeps_three_examples_earliest_first():
    shards = [{"failures": {"r": 2, "s": 1}, "examples": {"r": ["1", "2"], "s": ["x"]}},
              {"failures": {"r": 5}, "examples": {"r": ["3", "4", "5"]}}]
    failures, examples = merge_failures(shards)
    assert failures == {"r": 7, "s": 1} and examples == {"r": ["1", "2", "3"], "s": ["x"]}


def ids_table(ids: list[str], source: str, first_row: int) -> pa.Table:
    tracker = DuplicateTracker()
    tracker.repeats(request_hashes(pa.array(ids)), [source] * len(ids), np.arange(1, len(ids) + 1), np.arange(first_row, first_row + len(ids)))
    return tracker.first_occurrences()


def test_duplicate_tracker_matches_a_set_of_strings_across_batches():
    rng = np.random.default_rng(3)
    ids = [f"req-{i}" for i in rng.integers(0, 5_000, 20_000)]
    tracker, seen, found, expected = DuplicateTracker(), {}, {}, {}
    for start in range(0, len(ids), 3_000):  # batches, as a shard validates them
        batch = ids[start : start + 3_000]
        lines = np.arange(start + 1, start + len(batch) + 1)
        repeats = tracker.repeats(request_hashes(pa.array(batch)), ["s3://b/f.jsonl"] * len(batch), lines, lines)
        found.update({start + i: where for i, where in repeats.items()})
    for i, request_id in enumerate(ids):
        if request_id in seen:
            expected[i] = f"s3://b/f.jsonl:{seen[request_id] + 1}"
        else:
            seen[request_id] = i
    assert found == expected, "every repeat found, with the line of the first occurrence"
    table = tracker.first_occurrences()
    assert table.schema == IDS_SCHEMA and table.num_rows == len(seen)
    assert sorted(table["row_id"].to_pylist()) == sorted(i + 1 for i in seen.values())


def test_cross_shard_repeats_name_the_earliest_shard_and_skip_ids_seen_once():
    shards = [ids_table(["a", "b", "c"], "s3://b/0.jsonl", 0), ids_table(["d", "b"], "s3://b/1.jsonl", 1 << 40),
              ids_table(["b", "e", "d", "a"], "s3://b/2.jsonl", 2 << 40)]
    repeats = cross_shard_repeats(shards)
    assert repeats == {1: {(1 << 40) + 1: "s3://b/0.jsonl:2"},
                       2: {2 << 40: "s3://b/0.jsonl:2", (2 << 40) + 2: "s3://b/1.jsonl:1", (2 << 40) + 3: "s3://b/0.jsonl:1"}}
    assert cross_shard_repeats([shards[0]]) == {} and cross_shard_repeats([]) == {}


@pytest.mark.parametrize("empty_at", [0, 1, 2])
def test_cross_shard_repeats_with_an_empty_shard(empty_at):
    shards = [ids_table(["x"], "s3://b/0.jsonl", 0), ids_table(["x"], "s3://b/1.jsonl", 7)]
    shards.insert(empty_at, pa.Table.from_pylist([], schema=IDS_SCHEMA))
    later = 1 if empty_at == 2 else 2  # the shard index of the second "x"
    assert cross_shard_repeats(shards) == {later: {7: "s3://b/0.jsonl:1"}}
