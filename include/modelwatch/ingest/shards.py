"""Splitting a partition into shards of whole log files, and merging what the shards found.

A large day is read and validated by several tasks at once (Airflow dynamic task mapping,
one task per model × shard), then a reduce step merges their mergeable summaries: counts
and rule failures add up, examples concatenate, file records append in key order, and
request ids seen by more than one shard are found from each shard's id hashes.
``defaults.shard_bytes`` decides when to split: a partition whose files total no more than
that is one shard, so small days run exactly as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa

ROW_ID_BITS = 40  # row ids of shard k start at k << 40: unique across shards without knowing their sizes
IDS_SCHEMA = pa.schema([("hash", pa.uint64()), ("source", pa.string()), ("line", pa.int64()), ("row_id", pa.int64())])


def split_files(files: list[tuple[str, int]], max_bytes: int) -> list[list[tuple[str, int]]]:
    """Whole files, in key order, grouped into consecutive shards of at most ``max_bytes`` (a larger file is a shard alone).

    Always at least one shard, possibly empty: an empty partition still gets its reduce step
    (and its ``no_traffic`` summary), since a mapped task over nothing would skip everything after it.
    """
    shards: list[list[tuple[str, int]]] = [[]]
    size = 0
    for uri, nbytes in files:
        if shards[-1] and size + nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append((uri, nbytes))
        size += nbytes
    return shards


def first_row_id(shard: int) -> int:
    return shard << ROW_ID_BITS


def merge_failures(results: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Rule -> failing rows summed over shards, and rule -> up to three example values (earliest shards first)."""
    failures: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for result in results:
        failures.update(result["failures"])
        for rule, values in result["examples"].items():
            kept = examples.setdefault(rule, [])
            kept += values[: max(0, 3 - len(kept))]
    return dict(failures), examples


def cross_shard_repeats(ids: list[pa.Table], places: Callable[[int], pa.Table] | None = None) -> dict[int, dict[int, str]]:
    """Shard -> {row id: reason} for request ids that an earlier shard already had (first occurrence kept).

    ``ids[k]`` holds shard k's first occurrences (``IDS_SCHEMA``: the request id's 64-bit hash,
    where it was, its row id). Within a shard, repeats were found while validating it. With
    ``places(k)`` (shard k's ``source`` and ``line`` columns, fetched when asked) the tables need only
    ``hash`` and ``row_id``: where a first occurrence was is read only for shards whose ids repeat
    later, which keeps the reduce step's memory to 16 bytes an id (10M ids: 425 MiB more instead of
    1,333 MiB with every table's file names and lines held, measured on 12 shards of 833,333 ids).
    """
    seen_hashes = np.empty(0, np.uint64)
    seen_at = np.empty(0, np.int64)  # shard << 32 | position in that shard's table
    out: dict[int, dict[int, str]] = {}
    located: dict[int, pa.Table] = {}

    def where(code: int) -> str:
        shard, i = code >> 32, code & 0xFFFFFFFF
        if shard not in located:
            located[shard] = ids[shard] if places is None else places(shard)
        table = located[shard]
        return f"{table['source'][i].as_py()}:{table['line'][i].as_py()}"

    for shard, table in enumerate(ids):
        hashes = table["hash"].to_numpy()
        if seen_hashes.size and hashes.size:
            at = np.searchsorted(seen_hashes, hashes)
            hit = (at < seen_hashes.size) & (seen_hashes[np.minimum(at, seen_hashes.size - 1)] == hashes)
            if hit.any():
                row_ids = table["row_id"].to_numpy()
                out[shard] = {int(row_ids[i]): where(int(seen_at[at[i]])) for i in np.flatnonzero(hit)}
        merged = np.concatenate([seen_hashes, hashes])
        order = np.argsort(merged, kind="stable")  # equal hashes keep the earlier shard first: searchsorted finds it
        codes = np.concatenate([seen_at, (np.int64(shard) << 32) | np.arange(hashes.size, dtype=np.int64)])
        seen_hashes, seen_at = merged[order], codes[order]
    return out
