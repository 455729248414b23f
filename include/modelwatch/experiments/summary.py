"""The experiments stage's per-shard part (``modelwatch.summaries``): every running experiment's day, and the shadow comparison's.

Each shard task feeds its valid rows to one ``ExperimentsSummary``; the stage merges the shards'
and stores each experiment's day from it (``experiments.data.store_day``). What each part
guarantees is in ``experiments.day``: counts, moments, assignment checks and per-unit requests
exact; latencies a uniform sample of ``defaults.summary_sample_rows`` rows per arm (exact on a day
with at most that many rows per arm).

An experiment's rows are those tagged with its ``experiment_id``, or, on a day none is tagged, the
rows whose variant is one of its arms: the summary keeps both until a shard sees a tagged row (then
the day is tagged, whichever shard saw it), and the merge keeps the tagged part when any shard has one.

Size: per experiment and arm, ``k`` latencies with their 8-byte keys (16 bytes a row: 3.2 MB at the
default k of 200,000), the per-unit requests (one row per unit and arm: none for request-id units),
and a few hundred moments; the shadow comparison the same for its two variants. It does not grow
with the day's rows beyond the units.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pyarrow as pa

from modelwatch.config import Experiment, Model
from modelwatch.experiments.day import ExperimentDay
from modelwatch.stages import StageContext
from modelwatch.summaries import dump_tables, load_tables

SHADOW, PRODUCTION = "shadow", "production"
READ = ("request_id", "experiment_id", "variant", "status", "feedback", "latency_ms", "prompt_tokens", "completion_tokens", "cost_usd",
        "quality_score")


def running(model: Model, day: date) -> list[Experiment]:
    """The model's experiments that have started by ``day`` (the others are ``not_started`` and need no rows)."""
    return [e for e in model.experiments if not e.start or date.fromisoformat(e.start) <= day]


@dataclass
class ExperimentRows:
    """One experiment's summary twice: its tagged rows, and (until a tagged row is seen) the rows of its arms by variant."""

    tagged: ExperimentDay
    by_variant: ExperimentDay | None

    def update(self, frame) -> None:
        tagged = frame["experiment_id"] == self.tagged.experiment_id
        if bool(tagged.any()):
            self.tagged.update(frame[tagged])
            self.by_variant = None
        elif self.by_variant is not None:
            self.by_variant.update(frame[frame["variant"].isin(self.tagged.arms)])

    def merge(self, other: ExperimentRows) -> ExperimentRows:
        tagged = self.tagged.merge(other.tagged)
        both = self.by_variant is not None and other.by_variant is not None
        return ExperimentRows(tagged, self.by_variant.merge(other.by_variant) if both and not tagged.rows else None)

    @property
    def day(self) -> ExperimentDay:
        """The day's rows of the experiment: the tagged ones if any shard had one, else those of its arms."""
        return self.tagged if self.tagged.rows or self.by_variant is None else self.by_variant


class ExperimentsSummary:
    """The experiments of one partition (those started by its day) and the shadow comparison, merged shard by shard."""

    def __init__(self, experiments: dict[str, ExperimentRows], shadow: ExperimentDay, k: int):
        self.experiments, self.shadow, self.k = experiments, shadow, k

    @classmethod
    def empty(cls, experiments: list[Experiment], k: int) -> ExperimentsSummary:
        return cls({e.id: ExperimentRows(ExperimentDay.of(e, k), ExperimentDay.of(e, k)) for e in experiments},
                   ExperimentDay.variants((PRODUCTION, SHADOW), k), k)

    def update(self, rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        frame = rows.to_pandas()
        for part in self.experiments.values():
            part.update(frame)
        self.shadow.update(frame[frame["variant"].isin((PRODUCTION, SHADOW))])

    def merge(self, other: ExperimentsSummary) -> ExperimentsSummary:
        if set(self.experiments) != set(other.experiments):
            raise ValueError(f"experiments summaries of different experiments: {sorted(self.experiments)} and {sorted(other.experiments)}")
        return ExperimentsSummary({e: part.merge(other.experiments[e]) for e, part in self.experiments.items()},
                                  self.shadow.merge(other.shadow), max(self.k, other.k))

    def day(self, exp: Experiment) -> ExperimentDay:
        """The experiment's day; KeyError naming the fix when the shards were checked before it was configured."""
        if exp.id not in self.experiments:
            raise KeyError(f"the day's experiments summaries have no experiment {exp.id!r} (it was added or moved its start after the "
                           "shards were checked): re-run the day from check_shard (clear its tasks)")
        return self.experiments[exp.id].day

    def dump(self) -> bytes:
        meta: dict = {"k": self.k, "experiments": {}, "settings": {}}
        tables: dict[str, pa.Table] = {}
        for i, (exp_id, part) in enumerate(self.experiments.items()):
            entry = {}
            for scope, day in (("tagged", part.tagged), ("by_variant", part.by_variant)):
                if day is not None:
                    entry[scope], scope_tables = day.to_parts(f"e{i}/{scope}")
                    tables |= scope_tables
            meta["experiments"][exp_id] = entry
            meta["settings"][exp_id] = _settings(part.tagged)
        meta["shadow"], shadow_tables = self.shadow.to_parts("shadow")
        return dump_tables(meta, tables | shadow_tables)


def _settings(day: ExperimentDay) -> dict:
    scheme = day.scheme
    return {"arms": list(day.arms), "unit": day.unit, "weights": day.weights,
            "scheme": None if scheme is None else [scheme.algorithm, scheme.salt, scheme.bits, scheme.buckets, scheme.seed]}


def _day_of(exp_id: str, settings: dict, k: int) -> ExperimentDay:
    from modelwatch.core.assignment import HashScheme

    scheme = settings["scheme"]
    return ExperimentDay(exp_id, tuple(settings["arms"]), settings["unit"], HashScheme(*scheme) if scheme else None, settings["weights"], k)


def columns(ctx: StageContext) -> list[str]:
    from modelwatch.experiments.data import unit_column
    from modelwatch.ingest.schema import CANONICAL_COLUMNS

    units = {unit_column(e.assignment.unit, CANONICAL_COLUMNS) for e in running(ctx.model, ctx.partition.dt)}
    return [*READ, *sorted(units - set(READ))]


def start(ctx: StageContext) -> ExperimentsSummary:
    return ExperimentsSummary.empty(running(ctx.model, ctx.partition.dt), ctx.cfg.defaults.summary_sample_rows)


def load(data: bytes) -> ExperimentsSummary:
    meta, tables = load_tables(data)
    k, experiments = meta["k"], {}
    for i, (exp_id, entry) in enumerate(meta["experiments"].items()):
        empty = _day_of(exp_id, meta["settings"][exp_id], k)
        parts = {scope: empty.from_parts(f"e{i}/{scope}", entry[scope], tables) for scope in ("tagged", "by_variant") if scope in entry}
        experiments[exp_id] = ExperimentRows(parts["tagged"], parts.get("by_variant"))
    shadow = ExperimentDay.variants((PRODUCTION, SHADOW), k).from_parts("shadow", meta["shadow"], tables)
    return ExperimentsSummary(experiments, shadow, k)
