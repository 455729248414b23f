"""The per-shard part of a stage: a small, mergeable summary of one shard's valid rows, built where the rows are.

A day is read in shards (``ingest.stage.check_shard``, one mapped task per shard). A stage that reads
the day's rows does not read them again: while a shard's valid rows stream past in batches, each such
stage's summary takes them in (``update``), and the shard task writes the summary beside the shard's
valid part. The stage's own task then merges its summaries (``merge``, associative and commutative, so
shard order and worker placement do not matter) and decides. Memory is bounded by a batch plus the
summary, whatever the day's size, and the per-shard part runs on whichever worker checks the shard.

A stage with a per-shard part names its summary module in the registry (``stages.Stage.summary``). The
module has::

    columns(ctx: StageContext) -> list[str]      the valid-row columns its summary reads
    start(ctx: StageContext) -> Summary | None   an empty summary for ctx.partition; None when none can be
                                                 built (no baseline yet: the stage reports that itself)
    load(data: bytes) -> Summary                 a summary ``dump`` wrote

and its ``Summary`` (the ``Summary`` protocol below) has ``update(rows)``, ``merge(other)`` and ``dump()``.
Each summary's docstring says what it guarantees: exact (counts, sums, sums of squares, category counts),
a sketch with its stated error (KLL quantiles), or a bounded sample drawn by hash (bottom-k over request
ids: the same rows whichever shard holds them, so the merged sample is the day's bottom-k).

The reduce step (``ingest.validate_stage``) removes request ids repeated across shards from a shard's
valid part; it rebuilds that shard's summaries from the part without them, so a summary always covers
exactly the rows of the manifest. The manifest (``valid.json``) lists every stage's summaries in shard order.
"""

from __future__ import annotations

import importlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from modelwatch.storage.keys import summary_uri
from modelwatch.storage.s3 import get_bytes, get_json, put_bytes

if TYPE_CHECKING:
    import pyarrow as pa

    from modelwatch.stages import StageContext


@runtime_checkable
class Summary(Protocol):
    """What one stage keeps of a set of valid rows; two summaries merge into the summary of both sets."""

    def update(self, rows: pa.Table) -> None:
        """Take in a batch of valid rows (only the columns the summary module's ``columns`` names)."""

    def merge(self, other: Self) -> Self:
        """The summary of both summaries' rows (may reuse ``self``)."""

    def dump(self) -> bytes:
        """Bytes ``load`` turns back into an equal summary."""


@dataclass(frozen=True)
class SummaryModule:
    """A stage's summary module, imported by name from the registry (``Stage.summary``)."""

    stage: str
    module: Any

    @classmethod
    def named(cls, stage: str, module: str) -> SummaryModule:
        return cls(stage, importlib.import_module(module))

    def columns(self, ctx: StageContext) -> list[str]:
        return list(self.module.columns(ctx))

    def start(self, ctx: StageContext) -> Summary | None:
        return self.module.start(ctx)

    def load(self, data: bytes) -> Summary:
        return self.module.load(data)


class ShardSummaries:
    """Every summarising stage's summary of one shard, fed batch by batch and written beside the shard's part."""

    def __init__(self, ctx: StageContext, shard: int, shards: int, modules: Sequence[SummaryModule]):
        self.ctx, self.shard, self.shards = ctx, shard, shards
        self._open: list[tuple[SummaryModule, list[str], Summary]] = []
        for module in modules:
            summary = module.start(ctx)
            if summary is not None:
                self._open.append((module, module.columns(ctx), summary))

    @property
    def stages(self) -> list[str]:
        return [module.stage for module, _, _ in self._open]

    def update(self, rows: pa.Table) -> None:
        """Give a batch of the shard's valid rows to every summary (each sees only its own columns)."""
        if not rows.num_rows:
            return
        for _, columns, summary in self._open:
            summary.update(rows.select(columns))

    def update_all(self, batches: Iterable[pa.Table]) -> None:
        for rows in batches:
            self.update(rows)

    def write(self, variant: str = "") -> dict[str, str]:
        """Write each summary (``variant`` names a rebuilt one, beside the first); stage -> URI."""
        written = {}
        for module, _, summary in self._open:
            uri = summary_uri(self.ctx.cfg, self.ctx.partition, module.stage, self.shard, self.shards, variant)
            written[module.stage] = put_bytes(self.ctx.client, uri, summary.dump())
        return written


def manifest_summaries(shard_summaries: Sequence[Mapping[str, str]]) -> dict[str, list[str]]:
    """The manifest's ``summaries``: stage -> its summaries' URIs in shard order (a stage only if every shard has one)."""
    stages = set.intersection(*(set(s) for s in shard_summaries)) if shard_summaries else set()
    return {stage: [s[stage] for s in shard_summaries] for stage in sorted(stages)}


class SummaryMissing(RuntimeError):
    """The day's manifest lists no summaries for a stage: its shards were checked before the stage could summarise them."""


def merged(client, valid_manifest_uri: str, stage: str, load) -> Summary:
    """The merge of stage ``stage``'s shard summaries that the manifest at ``valid_manifest_uri`` lists.

    Raises SummaryMissing, naming the fix, when the shards were checked without this stage's summary
    (its baseline did not exist yet when they ran, or the day was checked by an older modelwatch).
    """
    uris = get_json(client, valid_manifest_uri).get("summaries", {}).get(stage)
    if not uris:
        raise SummaryMissing(f"{valid_manifest_uri} lists no {stage} summaries: the day's shards were checked without them "
                             f"(no baseline when they ran, or an older modelwatch). Re-run the day from check_shard (clear its tasks).")
    return reduce(lambda a, b: a.merge(b), (load(get_bytes(client, uri)) for uri in uris))


def summary_modules(stages: Iterable[Any]) -> list[SummaryModule]:
    """The summary modules of registry entries (``stages.Stage``) that have one, in registry order."""
    return [SummaryModule.named(s.name, s.summary) for s in stages if getattr(s, "summary", None)]


# -- encodings shared by the summaries ----------------------------------------------------------------------


def dump_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=True).encode()


def load_json(data: bytes) -> Any:
    return json.loads(data)


def dump_tables(meta: Mapping[str, Any], tables: Mapping[str, pa.Table]) -> bytes:
    """JSON ``meta`` and named Arrow tables in one object: a length-prefixed JSON header, then each table as Arrow IPC."""
    import pyarrow as pa

    out = io.BytesIO()
    blobs: dict[str, bytes] = {}
    for name, table in tables.items():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        blobs[name] = sink.getvalue().to_pybytes()
    header = dump_json({"meta": meta, "tables": {name: len(blob) for name, blob in blobs.items()}})
    out.write(len(header).to_bytes(8, "little"))
    out.write(header)
    for blob in blobs.values():
        out.write(blob)
    return out.getvalue()


def load_tables(data: bytes) -> tuple[dict[str, Any], dict[str, pa.Table]]:
    """What ``dump_tables`` wrote: (meta, tables)."""
    import pyarrow as pa

    size = int.from_bytes(data[:8], "little")
    header = load_json(data[8 : 8 + size])
    offset, tables = 8 + size, {}
    for name, length in header["tables"].items():
        tables[name] = pa.ipc.open_stream(data[offset : offset + length]).read_all()
        offset += length
    return header["meta"], tables


# -- a uniform sample that merges ----------------------------------------------------------------------------

SAMPLE_KEY = "_sample_key"


def sample_keys(request_ids) -> Any:
    """64-bit hash keys of request ids (pandas' SipHash with its fixed default key: stable across runs and processes).

    The one key function of every bottom-k sample (baselines, and the stages' shard summaries), so a
    request is in or out of a sample of the same size whichever task draws it.
    """
    import numpy as np
    import pandas as pd

    ids = request_ids.to_pandas() if hasattr(request_ids, "to_pandas") else pd.Series(request_ids)
    return pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy(dtype=np.uint64)


class BottomK:
    """The ``k`` rows with the smallest request-id hashes of all rows offered: bottom-k sampling (Cohen and Kaplan, PODC 2007).

    Guarantee: a uniform random sample without replacement of the rows offered (the hash orders them
    at random), of size min(k, rows); the bottom-k of a union is the bottom-k of the parts' bottom-ks,
    so shards merge in any order to the day's own sample. ``seen`` counts every row offered (exact);
    ``exact`` is true while every row is kept (rows <= k). ``rows`` must include ``request_id``.
    """

    def __init__(self, k: int, table: pa.Table | None = None, seen: int = 0):
        self.k, self.table, self.seen = k, table, seen

    def update(self, rows: pa.Table) -> None:
        import pyarrow as pa

        if not rows.num_rows:
            return
        self.seen += rows.num_rows
        keyed = rows.append_column(SAMPLE_KEY, pa.array(sample_keys(rows["request_id"]), pa.uint64()))
        self._keep(keyed)

    def merge(self, other: BottomK) -> BottomK:
        merged = BottomK(max(self.k, other.k), self.table, self.seen + other.seen)
        if other.table is not None:
            merged._keep(other.table)
        return merged

    def _keep(self, keyed: pa.Table) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        table = keyed if self.table is None else pa.concat_tables([self.table, keyed], promote_options="permissive")
        if table.num_rows > self.k:
            table = table.take(pc.select_k_unstable(table, self.k, [(SAMPLE_KEY, "ascending")]))
        self.table = table

    @property
    def exact(self) -> bool:
        return self.seen <= self.k

    @property
    def rows(self) -> pa.Table | None:
        """The sampled rows, in sample-key order, without the key (None: no row offered)."""
        if self.table is None:
            return None
        return self.table.sort_by(SAMPLE_KEY).drop_columns([SAMPLE_KEY])

    def to_parts(self, name: str) -> tuple[dict[str, Any], dict[str, pa.Table]]:
        """Its meta and table for ``dump_tables`` under ``name`` (a summary may hold several samples)."""
        tables = {} if self.table is None else {name: self.table}
        return {name: {"k": self.k, "seen": self.seen}}, tables

    @classmethod
    def from_parts(cls, name: str, meta: Mapping[str, Any], tables: Mapping[str, pa.Table]) -> BottomK:
        return cls(meta[name]["k"], tables.get(name), meta[name]["seen"])
