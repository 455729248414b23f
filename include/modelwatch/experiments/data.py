"""What an experiment analysis needs from each day, stored once and merged across days.

For every experiment, arm and day: sufficient statistics per metric (count, sum, sum of
squares; for ratio metrics also the denominator moments and the cross moment) and the raw
latencies (quantile metrics need order statistics, which no fixed-size summary gives
exactly). They are written under
``{reports_uri}/_experiments/model_id=M/experiment=E/dt=D/`` (``stats.json``,
``latency.parquet``), so a re-run of a day overwrites that day and the cumulative
analysis from the experiment's start reads each day once.

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

from modelwatch.config import Experiment
from modelwatch.core.metric_names import feedback_signal
from modelwatch.storage.s3 import exists, get_json, get_table, put_json, put_table

# metric -> (kind, what it is computed from)
RATES = {"error_rate": "status == error", "timeout_rate": "status == timeout", "filter_refusal_rate": "status == refused_by_filter",
         "feedback_negative_rate": "feedback == -1 among rated requests"}
MEANS = {"latency_mean_ms": "latency_ms", "prompt_tokens_mean": "prompt_tokens", "completion_tokens_mean": "completion_tokens",
         "cost_per_request_usd": "cost_usd", "quality_score_mean": "quality_score"}
RATIOS = {"cost_per_1k_tokens_usd": ("cost_usd", "tokens", 1000.0)}
QUANTILES = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}


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


def assignment_check(rows: pd.DataFrame, units: pd.Series, exp: Experiment) -> dict[str, Any]:
    """Requests served an arm other than the declared assignment gives, and units the logs do not name.

    External assignment has no per-request check (the logged variant is the truth): both counts are None.
    """
    scheme = exp.assignment.scheme()
    missing = int(units.isna().sum())
    if scheme is None:
        return {"assignment_mismatches": None, "units_missing": missing, "mismatch_examples": []}
    weights = exp.assignment_weights()
    known = units.notna()
    planned = [scheme.assign(u, exp.id, weights) for u in units[known]]
    served = rows.loc[known, "variant"].tolist()
    wrong = [(u, s, p) for u, s, p in zip(units[known], served, planned) if s != p]
    examples = [{"unit": u, "served": s, "declared": p} for u, s, p in wrong[:3]]
    return {"assignment_mismatches": len(wrong), "units_missing": missing, "mismatch_examples": examples}


def day_record(valid: pd.DataFrame, exp: Experiment) -> tuple[dict[str, Any], pd.DataFrame]:
    """(stats.json content, per-request table: arm, latency, unit) of one day of one experiment.

    Rows belong to the experiment when their ``experiment_id`` is the experiment's, or
    (if the router logs no experiment id) when their variant is one of its arms. The
    record also checks the assignment the experiment declares (``exp.assignment``): each
    unit's logged arm against the declared hash (:func:`assignment_check`), and units seen in
    more than one arm.
    """
    arms = [exp.control, exp.treatment]
    tagged = valid["experiment_id"] == exp.id
    rows = valid[tagged] if bool(tagged.any()) else valid[valid["variant"].isin(arms)]
    counts = {arm: int((rows["variant"] == arm).sum()) for arm in arms}
    unplanned = {str(k): int(v) for k, v in rows[~rows["variant"].isin(arms)]["variant"].value_counts().items()}
    units = unit_ids(rows, exp.assignment.unit)
    arms_per_unit = rows.assign(_unit=units).dropna(subset=["_unit"]).groupby("_unit")["variant"].nunique()
    in_arms = rows["variant"].isin(arms)
    record = {
        "counts": counts,
        "unplanned_variants": unplanned,
        "units_in_several_arms": int((arms_per_unit > 1).sum()),
        **assignment_check(rows[in_arms], units[in_arms], exp),
        "assignment": exp.assignment.describe(),
        "stats": {arm: arm_day_stats(rows[rows["variant"] == arm]) for arm in arms},
    }
    latency = pd.DataFrame({"arm": rows["variant"].astype(str), "latency_ms": rows["latency_ms"].astype(float), "unit": units})
    return record, latency[latency["arm"].isin(arms)]


def store_day(client, prefix: str, day: date, record: dict[str, Any], latency: pd.DataFrame) -> None:
    put_json(client, f"{prefix}/dt={day.isoformat()}/stats.json", record)
    put_table(client, f"{prefix}/dt={day.isoformat()}/latency.parquet", pa.Table.from_pandas(latency, preserve_index=False))


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
    """Every stored day from ``start`` to ``end``, merged: counts, health, per-arm stats, latencies."""
    days, missing = [], []
    counts: dict[str, int] = {}
    unplanned: dict[str, int] = {}
    stats: dict[str, dict[str, dict[str, float]]] = {}
    several, mismatches, units_missing = 0, 0, 0
    examples: list[dict[str, str]] = []
    latencies: list[pd.DataFrame] = []
    day = start
    while day <= end:
        uri = f"{prefix}/dt={day.isoformat()}/stats.json"
        if not exists(client, uri):
            missing.append(day.isoformat())
            day += timedelta(days=1)
            continue
        record = get_json(client, uri)
        days.append(day.isoformat())
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
        latencies.append(get_table(client, f"{prefix}/dt={day.isoformat()}/latency.parquet").to_pandas())
        day += timedelta(days=1)
    latency = pd.concat(latencies, ignore_index=True) if latencies else pd.DataFrame({"arm": [], "latency_ms": [], "unit": []})
    return {"days": days, "missing_days": missing, "counts": counts, "unplanned_variants": unplanned, "units_in_several_arms": several,
            "assignment_mismatches": mismatches, "units_missing": units_missing, "mismatch_examples": examples[:3], "stats": stats,
            "latency": {arm: np.sort(group["latency_ms"].to_numpy(dtype=float)) for arm, group in latency.groupby("arm")},
            **_unit_exposure(latency if all("unit" in day_table for day_table in latencies) else latency.drop(columns="unit", errors="ignore"))}


def _unit_exposure(requests: pd.DataFrame) -> dict[str, Any]:
    """Distinct units per arm over every stored day, and units seen in more than one arm on any days (None: days without units).

    A router that assigns units (accounts, users) splits units, not requests: the sample-ratio
    check counts units, since one unit's requests are not independent draws. Days stored before
    units were kept leave the unit counts unknown (the check then counts requests).
    """
    if "unit" not in requests or requests["unit"].isna().all():
        return {"unit_counts": None, "units_across_arms": None}
    known = requests.dropna(subset=["unit"]).drop_duplicates(["arm", "unit"])
    arms_per_unit = known.groupby("unit")["arm"].nunique()
    return {"unit_counts": {str(arm): int(n) for arm, n in known.groupby("arm")["unit"].nunique().items()},
            "units_across_arms": int((arms_per_unit > 1).sum())}


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
