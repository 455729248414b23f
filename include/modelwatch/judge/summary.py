"""The judge's per-shard part (``modelwatch.summaries``): what the day's stratified, budgeted sample is drawn from.

Each shard task feeds its valid rows with a response to one ``JudgeSummary``; the judge stage merges
the shards' and draws its samples from the merge (``judge.day_rows``). Two states:

- **exact** while the rows seen (those with a non-blank response) number at most
  ``defaults.summary_sample_rows``: the rows themselves, in the manifest's order (shard by shard,
  each in its rows' order), so a small day is sampled exactly as from the whole day;
- **bounded** past that, and from then on (any merge whose rows exceed it, whatever the order):
  per stratum of the judge's design (``judge.stratify_by`` and the oversample predicates,
  ``judge.sampling.stratum_keys``) its exact size and its bottom-k rows by request-id hash
  (``summaries.BottomK``) with ``k = judge.max_samples``: ``plan_sample_size`` never plans more
  rows than ``max_samples``, so no stratum's allocation can exceed what it kept; the bottom-k of the
  merge is the day's own, so the first ``n_h`` rows of a stratum are a simple random sample of it
  (inclusion probability ``n_h / N_h``, the weights ``N_h / n_h`` of the exact sizes). Beside them:
  the bottom ``REFERENCE_ROWS`` rows that have a reference (ROUGE/BLEU/semantic similarity), and for
  the shadow comparison the bottom ``judge.pairwise_samples`` shadow rows keyed by the hash of the
  served request they mirror (``metadata.shadow_of``) and the bottom ``SERVED_PER_PAIR *
  pairwise_samples`` served answers keyed by their own request id's hash: the same key on both
  sides, so a sampled shadow row finds its served answer whenever that answer's key is within
  the served sample (always while shadow traffic is at least 1/``SERVED_PER_PAIR`` of the served);
  the pairs found are a uniform sample of the day's pairs.

Size (bounded): strata x ``max_samples`` rows of the judge's columns (the bundled support-bot: 5
topics x 4 variants x 400 = 8,000 rows, about 6 MB of text), 1,000 reference rows and 100 + 10,000
pairwise rows (about 6 MB); the same at 1M and at 10M rows. Exact: at most ``summary_sample_rows``
rows (what reading a day that small took before).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from modelwatch.judge.stage import MAX_REFERENCE_ROWS
from modelwatch.stages import StageContext
from modelwatch.summaries import BottomK, dump_tables, load_tables

JUDGE_COLUMNS = ["request_id", "variant", "experiment_id", "status", "prompt", "response", "reference", "completion_tokens", "metadata"]
REFERENCE_COLUMNS = ["request_id", "variant", "response", "reference"]
SHADOW, SHADOW_OF = "shadow", "shadow_of"
REFERENCE_ROWS = MAX_REFERENCE_ROWS  # the reference rows a day keeps: what the stage scores
SERVED_PER_PAIR = 100  # served answers kept per shadow pair wanted: every sampled pair is found while shadow is >= 1 % of served


@dataclass(frozen=True)
class JudgeSpec:
    """The settings a judge summary is built for; two summaries merge only when theirs are equal."""

    strata: list[str]
    oversample: dict[str, float]
    per_stratum: int  # judge.max_samples
    exact_rows: int  # defaults.summary_sample_rows
    references: int = REFERENCE_ROWS
    pairs: int = 100  # judge.pairwise_samples
    served: int = field(default=0)

    @classmethod
    def of(cls, ctx: StageContext) -> JudgeSpec:
        settings = ctx.model.judge
        return cls(list(settings.stratify_by), dict(settings.oversample), settings.max_samples, ctx.cfg.defaults.summary_sample_rows,
                   REFERENCE_ROWS, settings.pairwise_samples, SERVED_PER_PAIR * settings.pairwise_samples)


def judgeable(rows: pa.Table) -> pa.Table:
    """The rows with a non-blank response: the judge's population."""
    response = rows["response"]
    keep = pc.and_(pc.is_valid(response), pc.not_equal(pc.utf8_trim_whitespace(response), ""))
    return rows.filter(pc.fill_null(keep, False))


class JudgeSummary:
    """A day's (or a shard's) rows for the judge: exact while small, else per-stratum bottom-k samples with exact stratum sizes."""

    def __init__(self, spec: JudgeSpec, seen: int = 0, day: list[pa.Table] | None = None, strata: dict[tuple[str, ...], BottomK] | None = None,
                 references: BottomK | None = None, shadow: BottomK | None = None, served: BottomK | None = None, shadow_rows: int = 0):
        self.spec, self.seen, self.day = spec, seen, day
        self.strata = strata if strata is not None else {}
        self.references = references if references is not None else BottomK(spec.references)
        self.shadow = shadow if shadow is not None else BottomK(spec.pairs)
        self.served = served if served is not None else BottomK(spec.served)
        self.shadow_rows = shadow_rows  # shadow rows offered while bounded (exact count)

    @classmethod
    def empty(cls, spec: JudgeSpec) -> JudgeSummary:
        return cls(spec, day=[])

    @property
    def exact(self) -> bool:
        return self.day is not None

    def update(self, rows: pa.Table) -> None:
        rows = judgeable(rows.select(JUDGE_COLUMNS))
        if not rows.num_rows:
            return
        self.seen += rows.num_rows
        if self.day is not None:
            self.day.append(rows)
            if self.seen > self.spec.exact_rows:
                self._bound()
        else:
            self._offer(rows)

    def rows(self) -> pa.Table:
        """The exact state's rows in arrival order (ValueError when bounded)."""
        if self.day is None:
            raise ValueError("a bounded judge summary keeps samples, not the day's rows")
        return pa.concat_tables(self.day, promote_options="permissive") if self.day else judgeable_schema_table()

    def _bound(self) -> None:
        """Leave the exact state: the rows kept so far become the samples' first offer."""
        day, self.day = self.rows(), None
        self._offer(day)

    def _offer(self, rows: pa.Table) -> None:
        from modelwatch.judge.sampling import stratum_columns, stratum_keys

        keys = stratum_keys(self.spec.strata, self.spec.oversample)
        if keys:
            sources = sorted({k.split("=", 1)[0].split(".", 1)[0] for k in keys} | {"completion_tokens"})
            table = stratum_columns(rows.select([c for c in sources if c in rows.column_names]).to_pandas(), self.spec.strata, self.spec.oversample)
            groups = table.groupby(keys, sort=False, dropna=False).indices
        else:
            groups = {(): list(range(rows.num_rows))}
        for group, idx in groups.items():
            values = tuple(group) if isinstance(group, tuple) else (group,)
            self.strata.setdefault(values, BottomK(self.spec.per_stratum)).update(rows.take(pa.array(idx, pa.int64())))
        self.references.update(rows.filter(pc.is_valid(rows["reference"])).select(REFERENCE_COLUMNS))
        if self.spec.pairs:
            self._offer_pairs(rows)

    def _offer_pairs(self, rows: pa.Table) -> None:
        is_shadow = pc.fill_null(pc.equal(rows["variant"], SHADOW), False)
        shadow = rows.filter(is_shadow)
        self.shadow_rows += shadow.num_rows
        self.served.update(rows.filter(pc.invert(is_shadow)).select(["request_id", "response"]))
        if shadow.num_rows:
            self.shadow.update(linked_shadow_rows(shadow))

    def merge(self, other: JudgeSummary) -> JudgeSummary:
        if self.spec != other.spec:
            raise ValueError(f"judge summaries built for different settings ({self.spec} and {other.spec}): the judge settings changed while "
                             "the day's shards were checked; re-run the day from check_shard (clear its tasks)")
        if self.day is not None and other.day is not None and self.seen + other.seen <= self.spec.exact_rows:
            return JudgeSummary(self.spec, self.seen + other.seen, self.day + other.day)
        a, b = self._bounded(), other._bounded()
        strata = dict(a.strata)
        for values, sample in b.strata.items():
            strata[values] = strata[values].merge(sample) if values in strata else sample
        return JudgeSummary(self.spec, a.seen + b.seen, None, strata, a.references.merge(b.references), a.shadow.merge(b.shadow),
                            a.served.merge(b.served), a.shadow_rows + b.shadow_rows)

    def _bounded(self) -> JudgeSummary:
        if self.day is None:
            return self
        out = JudgeSummary(self.spec, self.seen, None)
        if self.day:
            out._offer(self.rows())
        return out

    def dump(self) -> bytes:
        meta: dict[str, Any] = {"kind": "judge", "spec": asdict(self.spec), "seen": self.seen, "exact": self.exact, "shadow_rows": self.shadow_rows,
                                "strata": []}
        tables: dict[str, pa.Table] = {}
        if self.day is not None:
            tables["day"] = self.rows()
            return dump_tables(meta, tables)
        for i, (values, sample) in enumerate(sorted(self.strata.items())):
            part_meta, part_tables = sample.to_parts(f"s{i}")
            meta["strata"].append({"values": list(values), **part_meta[f"s{i}"]})
            tables |= part_tables
        for name in ("references", "shadow", "served"):
            part_meta, part_tables = getattr(self, name).to_parts(name)
            meta[name] = part_meta[name]
            tables |= part_tables
        return dump_tables(meta, tables)


def judgeable_schema_table() -> pa.Table:
    """An empty table of the judge's columns (the valid rows' types)."""
    from modelwatch.ingest.schema import CANONICAL_SCHEMA

    return pa.Table.from_batches([], pa.schema([CANONICAL_SCHEMA.field(c) for c in JUDGE_COLUMNS]))


def linked_shadow_rows(shadow: pa.Table) -> pa.Table:
    """Shadow rows that name the served request they mirror, keyed by it: ``request_id`` is ``metadata.shadow_of``, ``shadow_id`` their own."""
    from modelwatch.judge.sampling import MISSING, stratum_values

    original = stratum_values(shadow.select(["metadata"]).to_pandas(), f"metadata.{SHADOW_OF}")
    linked = pa.array(original.where(original != MISSING, None).tolist(), pa.string())
    table = pa.table({"request_id": linked, "shadow_id": shadow["request_id"], "prompt": shadow["prompt"], "response": shadow["response"],
                      "reference": shadow["reference"]})
    return table.filter(pc.is_valid(table["request_id"]))


def columns(ctx: StageContext) -> list[str]:
    return list(JUDGE_COLUMNS)


def start(ctx: StageContext) -> JudgeSummary | None:
    """An empty judge summary; None for a model without a judge (the stage does not apply to it)."""
    model = ctx.model
    if model.judge is None or model.kind != "llm":
        return None
    return JudgeSummary.empty(JudgeSpec.of(ctx))


def load(data: bytes) -> JudgeSummary:
    meta, tables = load_tables(data)
    if meta.get("kind") != "judge":
        raise ValueError(f"not a judge summary (kind {meta.get('kind')!r})")
    spec = JudgeSpec(**meta["spec"])
    if meta["exact"]:
        day = tables.get("day")
        return JudgeSummary(spec, meta["seen"], [day] if day is not None and day.num_rows else [])
    strata = {tuple(entry["values"]): BottomK.from_parts("s", {"s": entry}, {"s": tables[f"s{i}"]} if f"s{i}" in tables else {})
              for i, entry in enumerate(meta["strata"])}
    parts: Mapping[str, BottomK] = {name: BottomK.from_parts(name, meta, tables) for name in ("references", "shadow", "served")}
    return JudgeSummary(spec, meta["seen"], None, strata, parts["references"], parts["shadow"], parts["served"], meta["shadow_rows"])
