"""The rows a large look-back leaves out (``concept.lookback``: counted, not kept) added back to the figures that count every request.

Each function takes the figure computed on the kept rows and the exact counts of the rows left out
(``Lookback.unlabelled``: day, variant, experiment id, rows, first and last timestamp) and returns the
figure over all rows: a left-out row has no label and no feedback, so it adds to a denominator only
(coverage, a window's rows, the base of a signal without negative values, an arm's requests).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from modelwatch.concept.feedback import CONFIDENCE


def join_counts(counts: dict[str, int], unlabelled: pd.DataFrame) -> dict[str, int]:
    """The label join's accounting with the left-out predictions (all without a label)."""
    extra = int(unlabelled["rows"].sum())
    return {**counts, "predictions_in": counts["predictions_in"] + extra, "predictions_without_label": counts["predictions_without_label"] + extra}


def _iso(ts: Any) -> str | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).isoformat()


def _coverages(row: dict[str, Any], rows: int) -> None:
    """Recompute a metrics row's coverages for ``rows`` rows (their numerators are unchanged)."""
    support = row.setdefault("support", {})
    if "label_coverage" in row:
        evaluated = row.get("evaluated", support.get("label_coverage_evaluated"))
        if evaluated is not None:
            row["label_coverage"] = evaluated / rows if rows else None
            support["label_coverage"] = rows
            row.get("abstentions", {}).pop("label_coverage", None)
    if "feedback_coverage" in row:
        rated = support.get("thumbs_down_rate", 0) if row.get("thumbs_down_rate") is not None else 0
        row["feedback_coverage"] = rated / rows if rows else None
        support["feedback_coverage"] = rows
        row.get("abstentions", {}).pop("feedback_coverage", None)


def concept_report(report: dict[str, Any], unlabelled: pd.DataFrame) -> dict[str, Any]:
    """The concept report (``ConceptReport.to_dict``, day windows) with the left-out rows in its counts, coverage and windows."""
    dated = unlabelled[unlabelled["day"].notna()]
    counts = report["counts"]
    timed = counts["rows"] - counts["rows_without_timestamp"] + int(dated["rows"].sum())
    counts["rows"] += int(unlabelled["rows"].sum())
    counts["rows_without_timestamp"] += int(unlabelled["rows"].sum() - dated["rows"].sum())
    counts["coverage"] = counts["evaluated"] / timed if timed else None
    overall = report["overall"]
    overall["evaluated"] = counts["evaluated"]
    _coverages(overall, timed)
    overall.pop("evaluated")
    per_day = dated.groupby("day").agg(rows=("rows", "sum"), first=("first", "min"), last=("last", "max"))
    windows = {w["window"]: w for w in report["windows"]}
    for day, extra in per_day.iterrows():
        window = windows.get(day)
        if window is None:
            window = windows[day] = {"window": day, "first_timestamp": None, "last_timestamp": None, "rows": 0, "evaluated": 0,
                                     "abstentions": {"label_coverage": "no labelled rows"}, "support": {}}
            if report["kind"] != "llm":
                window["label_coverage"] = 0.0
        window["rows"] += int(extra["rows"])
        stamps = [t for t in (window["first_timestamp"], _iso(extra["first"])) if t]
        window["first_timestamp"] = min(stamps, key=pd.Timestamp) if stamps else None
        stamps = [t for t in (window["last_timestamp"], _iso(extra["last"])) if t]
        window["last_timestamp"] = max(stamps, key=pd.Timestamp) if stamps else None
        _coverages(window, window["rows"])
    report["windows"] = [windows[k] for k in sorted(windows)]
    return report


def _rate(fired: int, base: int) -> dict[str, Any]:
    from statsmodels.stats.proportion import proportion_confint

    if base == 0:
        return {"fired": 0, "base": 0, "rate": None, "ci_low": None, "ci_high": None, "reason": "no request rated for this signal"}
    low, high = proportion_confint(fired, base, alpha=1 - CONFIDENCE, method="wilson")
    return {"fired": fired, "base": base, "rate": fired / base, "ci_low": float(low), "ci_high": float(high), "reason": None}


def _with_base(rates: dict[str, dict[str, Any]], signals, extra: int) -> dict[str, dict[str, Any]]:
    """Rates whose signals count every request (no negative values) with ``extra`` unrated requests in the base."""
    out = {}
    for name, r in rates.items():
        out[name] = r if signals[name].negative or not extra else {**r, **_rate(r["fired"], r["base"] + extra)}
    return out


def feedback_summary(summary: dict[str, Any], unlabelled: pd.DataFrame, signals) -> dict[str, Any]:
    """``concept.feedback.feedback_summary`` with the left-out requests in the base of the signals that count every request."""
    day = summary["day"]
    today = unlabelled[unlabelled["day"] == day]
    summary["rates"] = _with_base(summary["rates"], signals, int(today["rows"].sum()))
    variants = today.assign(variant=today["variant"].where(today["variant"].notna(), "(none)")).groupby("variant")["rows"].sum()
    for variant, rows in variants.items():
        base = summary["by_variant"].get(str(variant)) or {name: _rate(0, 0) | {"metric": f"feedback.{name}_rate"} for name in signals}
        summary["by_variant"][str(variant)] = _with_base(base, signals, int(rows))
    by_day = unlabelled.groupby("day")["rows"].sum()
    summary["daily"] = [{"day": d["day"], "rates": _with_base(d["rates"], signals, int(by_day.get(d["day"], 0)))} for d in summary["daily"]]
    summary["lookback_rates"] = _with_base(summary["lookback_rates"], signals, int(unlabelled["rows"].sum()))
    return summary


def arm_requests(unlabelled: pd.DataFrame | None, experiment_id: str, arms: list[str], day: str, tagged: bool) -> dict[str, int]:
    """Left-out requests of an experiment's arms on ``day`` (tagged with its id, or, when no row is tagged, served an arm)."""
    if unlabelled is None:
        return {}
    rows = unlabelled[unlabelled["day"] == day]
    rows = rows[rows["experiment_id"] == experiment_id] if tagged else rows
    return {arm: int(rows.loc[rows["variant"] == arm, "rows"].sum()) for arm in arms}
