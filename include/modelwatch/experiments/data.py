"""What an experiment analysis needs from each day, stored once and merged across days.

For every experiment, arm and day: sufficient statistics per metric (count, sum, sum of
squares; for ratio metrics also the denominator moments and the cross moment), a uniform
sample of the latencies (quantile metrics need order statistics: bottom-k by request-id hash,
every latency on a day with at most k per arm) and the requests per unit (units other than
the request id). They are written under
``{reports_uri}/_experiments/model_id=M/experiment=E/dt=D/`` (``stats.json``,
``latency.parquet``, ``units.parquet``), so a re-run of a day overwrites that day and the
cumulative analysis from the experiment's start reads each day once, in bounded memory.

Metric definitions match ``metrics`` (the operational metrics) so that experiment
results and dashboards agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch.config import Defaults, Experiment
from modelwatch.core.metric_names import feedback_signal
from modelwatch.experiments.day import ExperimentDay, sum_units
from modelwatch.storage.s3 import exists, get_json, get_table, put_json, put_table
from modelwatch.summaries import SAMPLE_KEY, BottomK, sample_keys

# metric -> (kind, what it is computed from)
RATES = {"error_rate": "status == error", "timeout_rate": "status == timeout", "filter_refusal_rate": "status == refused_by_filter",
         "feedback_negative_rate": "feedback == -1 among rated requests"}
MEANS = {"latency_mean_ms": "latency_ms", "prompt_tokens_mean": "prompt_tokens", "completion_tokens_mean": "completion_tokens",
         "cost_per_request_usd": "cost_usd", "quality_score_mean": "quality_score"}
RATIOS = {"cost_per_1k_tokens_usd": ("cost_usd", "tokens", 1000.0)}
QUANTILES = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}
SAMPLE_ROWS: int = Defaults.model_fields["summary_sample_rows"].default  # latencies kept per arm and day (defaults.summary_sample_rows)


JUDGE_DIMENSIONS = ("helpfulness", "factual_accuracy", "coherence", "instruction_following")
JUDGE_FLAGS = ("hallucination", "refusal", "toxicity")


def metric_kind(metric: str) -> str | None:
    """``proportion``, ``mean``, ``ratio`` or ``quantile``; None for metrics experiments cannot test (yet)."""
    if metric.startswith("judge."):
        name = metric.removeprefix("judge.")
        return "mean" if name in JUDGE_DIMENSIONS else "proportion" if name.removesuffix("_rate") in JUDGE_FLAGS else None
    if feedback_signal(metric) is not None:  # a feedback signal's rate, joined by the concept stage
        return "proportion"
    if metric in RATES:
        return "proportion"
    if metric in MEANS:
        return "mean"
    if metric in RATIOS:
        return "ratio"
    if metric in QUANTILES:
        return "quantile"
    return None


def experiment_prefix(reports_uri: str, model_id: str, experiment_id: str) -> str:
    return f"{reports_uri}/_experiments/model_id={model_id}/experiment={experiment_id}"


def _moments(values: pd.Series) -> dict[str, float]:
    v = values.dropna().to_numpy(dtype=float)
    return {"n": int(v.size), "sum": float(v.sum()), "sum_sq": float(np.square(v).sum())}


def _ratio_moments(x: pd.Series, y: pd.Series) -> dict[str, float]:
    keep = x.notna() & y.notna()
    a, b = x[keep].to_numpy(dtype=float), y[keep].to_numpy(dtype=float)
    return {"n": int(a.size), "sum_x": float(a.sum()), "sum_y": float(b.sum()), "sum_x2": float(np.square(a).sum()),
            "sum_y2": float(np.square(b).sum()), "sum_xy": float((a * b).sum())}


def arm_day_stats(rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Sufficient statistics of every metric for one arm's rows of one day."""
    status = rows["status"]
    out: dict[str, dict[str, float]] = {
        "error_rate": _moments((status == "error").astype(float)),
        "timeout_rate": _moments((status == "timeout").astype(float)),
        "filter_refusal_rate": _moments((status == "refused_by_filter").astype(float)),
    }
    rated = rows["feedback"].dropna()
    rated = rated[rated != 0]
    out["feedback_negative_rate"] = _moments((rated == -1).astype(float))
    for metric, column in MEANS.items():
        out[metric] = _moments(rows[column])
    tokens = rows["prompt_tokens"].fillna(0) + rows["completion_tokens"].fillna(0)
    tokens = tokens.where(rows["prompt_tokens"].notna() | rows["completion_tokens"].notna())
    out["cost_per_1k_tokens_usd"] = _ratio_moments(rows["cost_usd"] * 1000.0, tokens)
    return out


JSON_COLUMNS = ("metadata", "features")  # log-row objects kept as JSON text; any other unknown field is under "extra"


def unit_column(unit: str, known_columns: Iterable[str]) -> str:
    """The valid-rows column that holds ``unit`` (``request_id``, ``metadata.user_id``, ``account.id`` in ``extra``)."""
    head = unit.split(".", 1)[0]
    return head if head in known_columns else "extra"


def _walk(obj: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _unit_text(value: Any) -> str | None:
    """A unit id as the router saw it: strings as they are, whole numbers without a decimal point, nothing for objects."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def unit_ids(rows: pd.DataFrame, unit: str) -> pd.Series:
    """Each row's unit id from ``unit``: a column, or a dotted path into a JSON column (``metadata.account.id``); None where absent."""
    head, *path = unit.split(".")
    column = unit_column(unit, rows.columns)
    if column == head and not path:
        return rows[column].map(_unit_text).astype("object")
    if column == "extra":
        path = [head, *path]

    def pick(text: Any) -> str | None:
        return _unit_text(_walk(json.loads(text), path)) if isinstance(text, str) and text else None

    return rows[column].map(pick).astype("object")


def day_record(valid: pd.DataFrame, exp: Experiment, k: int = SAMPLE_ROWS) -> tuple[dict[str, Any], ExperimentDay]:
    """(stats.json content, the day's summary) of one day of one experiment from its rows in one frame.

    The stage builds the same summary shard by shard (``experiments.summary``) and merges it;
    this is that summary of a single frame. Rows belong to the experiment when their
    ``experiment_id`` is the experiment's, or (if the router logs no experiment id) when their
    variant is one of its arms. The record also checks the assignment the experiment declares
    (``exp.assignment``): each unit's logged arm against the declared hash, and units seen in
    more than one arm (``experiments.day``).
    """
    from modelwatch.experiments.summary import ExperimentRows

    rows = ExperimentRows(ExperimentDay.of(exp, k), ExperimentDay.of(exp, k))
    rows.update(valid)
    return rows.day.record(exp), rows.day


def store_day(client, prefix: str, day: date, record: dict[str, Any], summary: ExperimentDay) -> None:
    """A day of an experiment: ``stats.json``, ``latency.parquet`` (each arm's latency sample with its key), ``units.parquet``.

    Each is bounded: the sample by k rows per arm, the units by the units (no rows for request-id units).
    """
    where = f"{prefix}/dt={day.isoformat()}"
    put_json(client, f"{where}/stats.json", record)
    put_table(client, f"{where}/latency.parquet", summary.latency_table())
    put_table(client, f"{where}/units.parquet", summary.unit_table())  # empty for request-id units (a re-run overwrites)


def merge_moments(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in set(a) | set(b)}


def cumulative_counts(client, prefix: str, start: date, end: date) -> dict[str, int]:
    """Requests per arm from ``start`` to ``end`` (the stored days' counts alone, without their statistics or latencies)."""
    counts: dict[str, int] = {}
    day = start
    while day <= end:
        uri = f"{prefix}/dt={day.isoformat()}/stats.json"
        if exists(client, uri):
            for arm, n in get_json(client, uri)["counts"].items():
                counts[arm] = counts.get(arm, 0) + n
        day += timedelta(days=1)
    return counts


def load_cumulative(client, prefix: str, start: date, end: date) -> dict[str, Any]:
    """Every stored day from ``start`` to ``end``, merged: counts, health, per-arm stats, latencies, units.

    Counts and moments are summed (exact). Each arm's latencies are the bottom-k of the days'
    samples by their request-id keys (``summaries.BottomK``, k the smallest any day kept): a
    uniform sample of the arm's requests since the start, exact while they number at most k
    (``latency_rows`` counts them all; ``latency_exact`` says whether every one is in). Units are
    summed per (arm, unit) day by day: memory bounded by the units, not the requests.
    """
    days, missing = [], []
    counts: dict[str, int] = {}
    unplanned: dict[str, int] = {}
    stats: dict[str, dict[str, dict[str, float]]] = {}
    several, mismatches, units_missing = 0, 0, 0
    examples: list[dict[str, str]] = []
    day = start
    while day <= end:
        uri = f"{prefix}/dt={day.isoformat()}/stats.json"
        if not exists(client, uri):
            missing.append(day.isoformat())
            day += timedelta(days=1)
            continue
        record = get_json(client, uri)
        days.append((day, record))
        for arm, n in record["counts"].items():
            counts[arm] = counts.get(arm, 0) + n
        for variant, n in record["unplanned_variants"].items():
            unplanned[variant] = unplanned.get(variant, 0) + n
        several += record["units_in_several_arms"]
        mismatches += record["assignment_mismatches"] or 0
        units_missing += record.get("units_missing") or 0
        examples += record.get("mismatch_examples") or []
        for arm, metrics in record["stats"].items():
            merged = stats.setdefault(arm, {})
            for metric, moments in metrics.items():
                merged[metric] = merge_moments(merged.get(metric, {}), moments)
        _merge_feedback(client, f"{prefix}/dt={day.isoformat()}/feedback.json", stats)
        day += timedelta(days=1)
    samples, units = _cumulative_latency(client, prefix, days)
    return {"days": [d.isoformat() for d, _ in days], "missing_days": missing, "counts": counts, "unplanned_variants": unplanned,
            "units_in_several_arms": several, "assignment_mismatches": mismatches, "units_missing": units_missing,
            "mismatch_examples": examples[:3], "stats": stats,
            "latency": {arm: np.sort(s.rows["latency_ms"].to_numpy(zero_copy_only=False).astype(float)) if s.table is not None else np.array([])
                        for arm, s in samples.items()},
            "latency_rows": {arm: s.seen for arm, s in samples.items()}, "latency_exact": all(s.exact for s in samples.values()),
            **_unit_exposure(units)}


def _cumulative_latency(client, prefix: str, days: list[tuple[date, dict[str, Any]]]) -> tuple[dict[str, BottomK], pa.Table | None]:
    """Each arm's merged latency sample over ``days``, and requests per (arm, unit) (None when a day kept no units)."""
    k = min((s["k"] for _, r in days for s in (r.get("latency_sample") or {}).values()), default=SAMPLE_ROWS)
    samples: dict[str, BottomK] = {}
    units: pa.Table | None = None
    every_day_has_units = bool(days)
    for day, record in days:
        where = f"{prefix}/dt={day.isoformat()}"
        table = get_table(client, f"{where}/latency.parquet")
        sizes = record.get("latency_sample") or {}
        for arm in record["counts"]:
            rows = table.filter(pc.equal(table["arm"], arm))
            if SAMPLE_KEY not in rows.column_names:  # a day stored with every latency, before samples were kept
                rows = rows.append_column(SAMPLE_KEY, pa.array(sample_keys([f"{day}/{arm}/{i}" for i in range(rows.num_rows)]), pa.uint64()))
            seen = sizes.get(arm, {}).get("seen", rows.num_rows)
            part = BottomK(k, rows.select(["latency_ms", SAMPLE_KEY]), seen)
            samples[arm] = BottomK(k).merge(part) if arm not in samples else samples[arm].merge(part)
        day_units = _day_units(client, where, table)
        every_day_has_units &= day_units is not None
        if every_day_has_units:
            units = sum_units(pa.concat_tables([t for t in (units, day_units) if t is not None]))
    return samples, units if every_day_has_units else None


def _day_units(client, where: str, latency: pa.Table) -> pa.Table | None:
    """A day's requests per (arm, unit): units.parquet, or the unit column of a day stored with every request; None: no units kept."""
    if exists(client, f"{where}/units.parquet"):
        return get_table(client, f"{where}/units.parquet")
    if "unit" not in latency.column_names:
        return None
    known = latency.filter(pc.is_valid(latency["unit"]))
    return sum_units(pa.table({"arm": known["arm"], "unit": known["unit"].cast(pa.string()),
                               "requests": pa.array(np.ones(known.num_rows, dtype=np.int64))}))


def _unit_exposure(units: pa.Table | None) -> dict[str, Any]:
    """Distinct units per arm over every stored day, and units seen in more than one arm on any days (None: days without units).

    A router that assigns units (accounts, users) splits units, not requests: the sample-ratio
    check counts units, since one unit's requests are not independent draws. Days stored before
    units were kept, and request-id units, leave the unit counts unknown (the check then counts requests).
    """
    if units is None or not units.num_rows:
        return {"unit_counts": None, "units_across_arms": None}
    per_arm = units.group_by("arm").aggregate([("unit", "count_distinct")])
    per_unit = units.group_by("unit").aggregate([("arm", "count_distinct")])
    return {"unit_counts": {str(a): int(n) for a, n in zip(per_arm["arm"].to_pylist(), per_arm["unit_count_distinct"].to_pylist(), strict=True)},
            "units_across_arms": int(pc.sum(pc.greater(per_unit["arm_count_distinct"], 1)).as_py() or 0)}


def _merge_feedback(client, uri: str, stats: dict[str, dict[str, dict[str, float]]]) -> None:
    """Add a day's ``feedback.<signal>_rate`` moments per arm (written by the concept stage as feedback arrives) to ``stats``."""
    if not exists(client, uri):
        return
    for arm, metrics in get_json(client, uri)["stats"].items():
        merged = stats.setdefault(arm, {})
        for metric, moments in metrics.items():
            merged[metric] = merge_moments(merged.get(metric, {}), moments)


def judge_arm_stats(judged: pd.DataFrame, arms: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Per arm, moments of each judge score (``judge.<dimension>``) and flag (``judge.<flag>_rate``) over the judged rows.

    The judge sample is stratified (``judge.stratify_by`` should include ``variant``), so each
    arm's judged rows are a random sample of that arm within its strata; experiments compare
    the arms' unweighted judged means.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for arm in arms:
        rows = judged[judged["variant"] == arm]
        stats = {f"judge.{d}": _moments(rows[d]) for d in JUDGE_DIMENSIONS if d in rows}
        stats |= {f"judge.{f}_rate": _moments(rows[f].astype("Float64").astype(float)) for f in JUDGE_FLAGS if f in rows}
        out[arm] = stats
    return out
