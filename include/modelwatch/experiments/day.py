"""One experiment's rows of a shard or a day, kept as a mergeable summary: what ``experiments.data`` stores per day.

Every field merges across shards (and across days) without the rows:

- per-arm counts, unplanned variants' counts, and every metric's sufficient statistics
  (count, sum, sum of squares; ratio moments): **exact** (sums of the shards' sums);
- the declared assignment checked per request as the rows stream past (mismatches and requests
  without a unit): **exact** counts; the first three mismatches (in shard order) as examples;
- per-unit partial aggregates (requests per arm and unit), merged by unit id: **exact**, and
  bounded by the number of units (users, sessions), not of rows. A ``request_id`` unit keeps
  none: after the reduce step removes repeated request ids, a request is one row of one arm;
- each arm's latencies as a uniform sample (``summaries.BottomK``, ``k`` rows per arm, bottom-k
  by request-id hash): **exact** while an arm has at most ``k`` rows, otherwise a uniform
  sample without replacement of the arm's rows, whose order-statistic intervals keep their
  coverage of the latency distribution's quantiles (``bench/suite_experiments.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch.config import Experiment
from modelwatch.core.assignment import HashScheme, arm_of_bucket
from modelwatch.summaries import SAMPLE_KEY, BottomK

UNIT_SCHEMA = pa.schema([("arm", pa.string()), ("unit", pa.string()), ("requests", pa.int64())])
LATENCY_COLUMNS = ("request_id", "latency_ms")
EXAMPLES = 3


@dataclass
class ExperimentDay:
    """The mergeable summary of one experiment's rows (``update`` takes them as a pandas frame, a batch at a time).

    ``arms`` are the arms compared (control, treatment); ``unit`` the field the assignment is
    by; ``scheme`` the declared hash (None: external assignment, or no check at all).
    """

    experiment_id: str
    arms: tuple[str, str]
    unit: str
    scheme: HashScheme | None
    weights: dict[str, float]
    k: int
    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    unplanned: dict[str, int] = field(default_factory=dict)
    stats: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    mismatches: int = 0
    units_missing: int = 0
    examples: list[dict[str, str]] = field(default_factory=list)
    latency: dict[str, BottomK] = field(default_factory=dict)
    units: pa.Table | None = None
    _pending: list[pa.Table] = field(default_factory=list, repr=False)

    @classmethod
    def of(cls, exp: Experiment, k: int) -> ExperimentDay:
        return cls(exp.id, (exp.control, exp.treatment), exp.assignment.unit, exp.assignment.scheme(), exp.assignment_weights(), k)

    @classmethod
    def variants(cls, arms: tuple[str, str], k: int) -> ExperimentDay:
        """Two variants compared without an assignment to check (the shadow comparison)."""
        return cls("", arms, "request_id", None, {}, k)

    @property
    def checks_assignment(self) -> bool:
        return self.scheme is not None

    @property
    def keeps_units(self) -> bool:
        return self.unit != "request_id"

    # -- taking rows in ------------------------------------------------------------------------------------

    def update(self, rows: pd.DataFrame) -> None:
        """Take in a batch of the experiment's rows (every column of ``summary.columns``)."""
        from modelwatch.experiments.data import arm_day_stats, merge_moments, unit_ids

        if rows.empty:
            return
        self.rows += len(rows)
        variant = rows["variant"]
        in_arms = variant.isin(self.arms)
        for name, n in variant[~in_arms].value_counts().items():
            self.unplanned[str(name)] = self.unplanned.get(str(name), 0) + int(n)
        units = unit_ids(rows, self.unit) if self.keeps_units or self.checks_assignment else None
        if units is not None:
            self._check_assignment(variant[in_arms], units[in_arms])
        if self.keeps_units:
            self._add_units(variant, units)
        for arm in self.arms:
            mine = rows[variant == arm]
            self.counts[arm] = self.counts.get(arm, 0) + len(mine)
            day = arm_day_stats(mine)
            merged = self.stats.setdefault(arm, {})
            for metric, moments in day.items():
                merged[metric] = merge_moments(merged.get(metric, {}), moments)
            self._sample(arm, mine)

    def _check_assignment(self, served: pd.Series, units: pd.Series) -> None:
        """Requests served another arm than the declared hash gives their unit (each distinct unit hashed once)."""
        known = units.notna()
        self.units_missing += int((~known).sum())
        if self.scheme is None or not known.any():
            return
        ids = units[known]
        arm_of: dict[int, str] = {}  # the weights' cut once per bucket, not per unit: the same arm as HashScheme.assign
        planned_of = {}
        for u in pd.unique(ids):
            point = self.scheme.bucket(u, self.experiment_id)
            if point not in arm_of:
                arm_of[point] = arm_of_bucket(point, self.scheme.buckets, self.weights)
            planned_of[u] = arm_of[point]
        planned = ids.map(planned_of)
        wrong = served[known].to_numpy() != planned.to_numpy()
        self.mismatches += int(wrong.sum())
        if len(self.examples) < EXAMPLES and wrong.any():
            for u, s, p in zip(ids[wrong][:EXAMPLES], served[known][wrong][:EXAMPLES], planned[wrong][:EXAMPLES], strict=True):
                self.examples.append({"unit": u, "served": s, "declared": p})
            del self.examples[EXAMPLES:]

    def _add_units(self, variant: pd.Series, units: pd.Series) -> None:
        known = units.notna()
        counts = pd.DataFrame({"arm": variant[known].astype(str), "unit": units[known].astype(str)}).value_counts()
        if counts.empty:
            return
        index = counts.index
        self._pending.append(pa.table({"arm": index.get_level_values(0).to_numpy(object), "unit": index.get_level_values(1).to_numpy(object),
                                       "requests": counts.to_numpy("int64")}, schema=UNIT_SCHEMA))
        if sum(t.num_rows for t in self._pending) > max(self.units.num_rows if self.units is not None else 0, 100_000):
            self._compact()

    def _compact(self) -> None:
        """Sum the pending per-unit tables into ``units`` (amortised: at most twice the distinct (arm, unit) pairs wait)."""
        parts = ([self.units] if self.units is not None else []) + self._pending
        self._pending = []
        if parts:
            self.units = sum_units(pa.concat_tables(parts))

    def _sample(self, arm: str, rows: pd.DataFrame) -> None:
        sample = self.latency.setdefault(arm, BottomK(self.k))
        if rows.empty:
            return
        sample.update(pa.table({"request_id": rows["request_id"].astype(str).to_numpy(object),
                                "latency_ms": rows["latency_ms"].astype(float).to_numpy()}))
        sample.table = sample.table.select(["latency_ms", SAMPLE_KEY])  # the key orders the sample; the id is not kept

    # -- merging -------------------------------------------------------------------------------------------

    def merge(self, other: ExperimentDay) -> ExperimentDay:
        from modelwatch.experiments.data import merge_moments

        self._compact()
        other._compact()
        stats = {arm: {m: merge_moments(self.stats.get(arm, {}).get(m, {}), other.stats.get(arm, {}).get(m, {}))
                       for m in set(self.stats.get(arm, {})) | set(other.stats.get(arm, {}))} for arm in self.arms}
        units = [t for t in (self.units, other.units) if t is not None]
        return ExperimentDay(
            self.experiment_id, self.arms, self.unit, self.scheme, self.weights, max(self.k, other.k), self.rows + other.rows,
            _add(self.counts, other.counts), _add(self.unplanned, other.unplanned), stats, self.mismatches + other.mismatches,
            self.units_missing + other.units_missing, (self.examples + other.examples)[:EXAMPLES],
            {arm: self.latency.get(arm, BottomK(self.k)).merge(other.latency.get(arm, BottomK(other.k))) for arm in self.arms},
            sum_units(pa.concat_tables(units)) if units else None)

    # -- what a day stores -----------------------------------------------------------------------------------

    def record(self, exp: Experiment) -> dict[str, Any]:
        """The day's ``stats.json`` (the counts, health checks and per-arm statistics; latencies are in ``latency_table``)."""
        self._compact()
        return {
            "counts": {arm: self.counts.get(arm, 0) for arm in self.arms},
            "unplanned_variants": dict(self.unplanned),
            "units_in_several_arms": self.units_in_several_arms(),
            "assignment_mismatches": self.mismatches if self.checks_assignment else None,
            "units_missing": self.units_missing,
            "mismatch_examples": list(self.examples),
            "assignment": exp.assignment.describe(),
            "stats": {arm: self.stats.get(arm) or _empty_stats() for arm in self.arms},
            "latency_sample": {arm: {"k": s.k, "seen": s.seen, "exact": s.exact} for arm, s in self.samples().items()},
        }

    def units_in_several_arms(self) -> int:
        """Units served more than one variant (any variant of the experiment's rows); 0 for request ids (one row each)."""
        self._compact()
        if self.units is None or not self.units.num_rows:
            return 0
        per_unit = self.units.group_by("unit").aggregate([("arm", "count_distinct")])
        return int(pc.sum(pc.greater(per_unit["arm_count_distinct"], 1)).as_py() or 0)

    def samples(self) -> dict[str, BottomK]:
        return {arm: self.latency.get(arm, BottomK(self.k)) for arm in self.arms}

    def latency_values(self, arm: str) -> Any:
        """The arm's sampled latencies, sorted (every latency on an exact day)."""
        import numpy as np

        table = self.samples()[arm].table
        return np.sort(table["latency_ms"].to_numpy(zero_copy_only=False).astype(float)) if table is not None else np.array([])

    def latency_table(self) -> pa.Table:
        """The arms' latency samples as one table: arm, latency_ms, and the sample key that merges them across days."""
        parts = [pa.table({"arm": pa.array([arm] * s.table.num_rows, pa.string()), "latency_ms": s.table["latency_ms"],
                           SAMPLE_KEY: s.table[SAMPLE_KEY]}) for arm, s in self.samples().items() if s.table is not None]
        return pa.concat_tables(parts) if parts else pa.table({"arm": pa.array([], pa.string()), "latency_ms": pa.array([], pa.float64()),
                                                               SAMPLE_KEY: pa.array([], pa.uint64())})

    def unit_table(self) -> pa.Table:
        """Requests per (arm, unit) of the arms (no rows when the unit is the request id)."""
        self._compact()
        units = self.units if self.units is not None else UNIT_SCHEMA.empty_table()
        return units.filter(pc.is_in(units["arm"], pa.array(list(self.arms))))

    # -- bytes -----------------------------------------------------------------------------------------------

    def to_parts(self, name: str) -> tuple[dict[str, Any], dict[str, pa.Table]]:
        self._compact()
        meta: dict[str, Any] = {"rows": self.rows, "counts": self.counts, "unplanned": self.unplanned, "stats": self.stats,
                                "mismatches": self.mismatches, "units_missing": self.units_missing, "examples": self.examples, "samples": {}}
        tables: dict[str, pa.Table] = {}
        for i, sample in enumerate(self.samples().values()):
            sample_meta, sample_tables = sample.to_parts(f"{name}/latency/{i}")
            meta["samples"] |= sample_meta
            tables |= sample_tables
        if self.units is not None:
            tables[f"{name}/units"] = self.units
        return meta, tables

    def from_parts(self, name: str, meta: dict[str, Any], tables: dict[str, pa.Table]) -> ExperimentDay:
        """This (empty) summary's settings with what ``to_parts`` wrote under ``name``."""
        samples = {arm: BottomK.from_parts(f"{name}/latency/{i}", meta["samples"], tables) for i, arm in enumerate(self.arms)}
        return ExperimentDay(self.experiment_id, self.arms, self.unit, self.scheme, self.weights, self.k, meta["rows"], meta["counts"],
                             meta["unplanned"], meta["stats"], meta["mismatches"], meta["units_missing"], meta["examples"], samples,
                             tables.get(f"{name}/units"))


def sum_units(table: pa.Table) -> pa.Table:
    """Requests per (arm, unit), summed over the rows of ``table``."""
    summed = table.group_by(["arm", "unit"]).aggregate([("requests", "sum")])
    return pa.table({"arm": summed["arm"], "unit": summed["unit"], "requests": summed["requests_sum"]}, schema=UNIT_SCHEMA)


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {key: a.get(key, 0) + b.get(key, 0) for key in a | b}


def _empty_stats() -> dict[str, dict[str, float]]:
    from modelwatch.experiments.data import arm_day_stats

    return arm_day_stats(pd.DataFrame({c: pd.Series(dtype=float) for c in
                                       ("status", "feedback", "latency_ms", "prompt_tokens", "completion_tokens", "cost_usd", "quality_score")}))
