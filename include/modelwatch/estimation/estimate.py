"""Today's performance estimate with its band and alerts, and the closed loop against labels that have arrived."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd

from modelwatch.estimation import cbpe, dle
from modelwatch.estimation.reference import (
    LABEL,
    PRIMARY,
    SIGMAS,
    EstimationReference,
    EstimationReferenceMissing,
    Scored,
    estimate_band,
    has_label,
    labels_of,
    load_reference,
    metric_rows,
)
from modelwatch.estimation.rows import estimation_frame

# per metric of the reference, in estimation.json: the chunks' spread and estimation error, the pooled value, its variance and drift
REFERENCE_KEYS = ("mean", "sd", "chunks", "gap_mean", "gap_sd", "reason", "value", "rows", "unit_variance", "variance_method", "drift_sd",
                  "drift_measured_sd", "drift_p", "drift_reason", "periods")

# --------------------------------------------------------------------------- the day's estimate and the closed loop


def segment_estimates(reference: EstimationReference, frame: pd.DataFrame, scored: Scored, segments: list[str], min_count: int) -> list[dict[str, Any]]:
    """Estimates per segment value with at least ``min_count`` scored rows (band at the segment's size; no thresholds)."""
    out = []
    for key in segments:
        if key not in frame:
            continue
        values = frame[key].astype("object").fillna("(missing)")
        counts = values.value_counts()
        skipped = {str(v): int(c) for v, c in counts.items() if c < min_count}
        for value, count in counts.items():
            if count < min_count:
                continue
            mask = (values == value).to_numpy()
            est = reference.estimate(scored.subset(mask))
            ref = reference.segment_reference.get(key, {}).get(str(value))
            rows = metric_rows(reference, est, int(count), with_alerts=False)
            for row in rows:
                row["reference"] = None if ref is None else ref.get(row["metric"])
            out.append({"segment": key, "value": str(value), "rows": int(count), "metrics": rows})
        if skipped:
            out.append({"segment": key, "value": None, "skipped": skipped, "reason": f"values under {min_count} rows are not estimated"})
    return out


def day_history(reference: EstimationReference, day: str, frame: pd.DataFrame, min_labelled: int) -> dict[str, Any]:
    """One day of the look-back: its estimate and band, and — once enough labels arrived — the realised metric beside it."""
    scored, usable = reference.score(frame)
    rows = frame[usable].reset_index(drop=True)
    n = len(scored)
    estimate = reference.estimate(scored)
    entry: dict[str, Any] = {"day": day, "rows": n, "metrics": metric_rows(reference, estimate, n, with_alerts=False), "labelled": 0}
    if LABEL not in rows or n == 0:
        return entry
    labelled = has_label(reference, rows)
    k = int(labelled.sum())
    entry.update(labelled=k, coverage=k / n)
    if k < min_labelled:
        entry["reason"] = f"{k} labelled rows (< estimation.min_labelled {min_labelled}): realised metric pending"
        return entry
    subset = scored.subset(labelled)
    realised = reference.realised(subset, labels_of(reference, rows)[labelled])["metrics"]
    on_labelled = reference.estimate(subset)["metrics"]
    for row in entry["metrics"]:
        metric = row["metric"]
        value, est = realised.get(metric), on_labelled.get(metric)
        band = estimate_band(reference, metric, est, k)
        gap = None if value is None or est is None else value - est
        limit = None if band["sampling_error"] is None else SIGMAS * band["sampling_error"]
        row.update(realised=value, estimated_labelled=est, labelled_lower=band["lower"], labelled_upper=band["upper"], gap=gap, gap_limit=limit,
                   gap_alert=bool(gap is not None and limit is not None and abs(gap) > limit))
    return entry


def _latest_realised(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    done = [h for h in history if any(m.get("realised") is not None for m in h["metrics"])]
    if not done:
        return None
    last = done[-1]
    keys = ("metric", "realised", "estimated_labelled", "labelled_lower", "labelled_upper", "gap", "gap_limit", "gap_alert")
    return {"day": last["day"], "labelled": last["labelled"], "coverage": last.get("coverage"),
            "metrics": [{k: m.get(k) for k in keys} for m in last["metrics"] if m.get("realised") is not None]}


def _reason(kind: str, today: list[dict[str, Any]] | None, latest: dict[str, Any] | None, day: str) -> str:
    parts = []
    if today is not None:
        alerts = [m for m in today if m.get("alert")]
        primary = next(m for m in today if m["metric"] == PRIMARY[kind])
        if primary["estimate"] is not None:
            parts.append(f"estimated {PRIMARY[kind]} {primary['estimate']:.4g} on {day}")
        parts.append("outside the reference thresholds: " + ", ".join(f"{m['metric']} {m['estimate']:.4g} ({m['direction']})" for m in alerts)
                     if alerts else "within the reference thresholds")
    if latest is None:
        parts.append("no past day has its labels yet")
    else:
        gaps = [m for m in latest["metrics"] if m["gap_alert"]]
        if gaps:
            parts.append(f"labels of {latest['day']} arrived and the realised value left the estimate's band: "
                         + ", ".join(f"{m['metric']} realised {m['realised']:.4g} vs estimated {m['estimated_labelled']:.4g}" for m in gaps)
                         + " (calibration no longer holds: concept drift)")
        else:
            parts.append(f"labels of {latest['day']} arrived: realised within the estimate's band")
    return "; ".join(parts)


def estimate_partition(reference: EstimationReference, frames: dict[str, pd.DataFrame], today: str, model, baseline_version: str) -> dict[str, Any]:
    """The partition's ``estimation.json``: today's estimate (overall, per class, per segment) and the look-back history.

    ``frames`` maps each look-back day (ISO) to its incumbent rows (``estimation_frame``) with
    the labels that had arrived as of the partition in ``_label`` (missing: not yet).
    """
    settings = model.estimation
    kind = reference.kind
    history = [day_history(reference, day, frames[day], settings.min_labelled) for day in sorted(frames)]
    latest = _latest_realised(history)
    result: dict[str, Any] = {
        "outcome": "ok", "method": reference.method, "calibration": reference.info.get("calibration"), "kind": kind,
        "source": cbpe.SOURCE if kind == "classifier" else dle.SOURCE,
        "assumptions": list(cbpe.ASSUMPTIONS if kind == "classifier" else dle.ASSUMPTIONS),
        "band": f"estimate ± {SIGMAS:g} sampling errors; sampling error = sqrt(u / n), u the realised metric's per-row variance on the reference "
                "(binomial / delta method on the confusion matrix, DeLong for ROC AUC)",
        "thresholds": f"reference value ± {SIGMAS:g} sd sized for the day: sampling at the day's rows, the reference's own size and the drift "
                      "between reference days, combined in quadrature",
        "baseline_version": baseline_version, "chunk_size": reference.chunk_size, "primary_metric": PRIMARY[kind], "day": today,
        "reference": {m: {k: s.get(k) for k in REFERENCE_KEYS} for m, s in reference.statistics.items()},
        "history": history, "latest_realised": latest,
    }
    frame = frames.get(today)
    today_rows = None
    if frame is None or frame.empty:
        result.update(rows=0, metrics=[], alerts=[], segments=[], per_class={})
    else:
        scored, usable = reference.score(frame)
        estimate = reference.estimate(scored)
        today_rows = metric_rows(reference, estimate, len(scored))
        result.update(rows=len(scored), rows_excluded=int((~usable).sum()), metrics=today_rows, alerts=[m["metric"] for m in today_rows if m["alert"]],
                      per_class=estimate.get("per_class", {}), average=estimate.get("average"),
                      segments=segment_estimates(reference, frame[usable].reset_index(drop=True), scored, list(model.segments), settings.min_segment_count))
    result["gap_alert"] = bool(latest and any(m["gap_alert"] for m in latest["metrics"]))
    result["reason"] = _reason(kind, today_rows, latest, today)
    return result


def summary_block(result: dict[str, Any], uri: str | None) -> dict[str, Any]:
    """The compact block of the run summary (``summary["concept"]["estimation"]``): what the page and the metrics read."""
    if result.get("outcome") != "ok":
        return {k: result.get(k) for k in ("outcome", "reason", "method")} | {"estimation_uri": uri}
    primary = result["primary_metric"]
    history = []
    for h in result["history"]:
        m = next((r for r in h["metrics"] if r["metric"] == primary), {})
        history.append({"day": h["day"], "rows": h["rows"], "labelled": h["labelled"], "estimate": m.get("estimate"), "lower": m.get("lower"),
                        "upper": m.get("upper"), "realised": m.get("realised"), "estimated_labelled": m.get("estimated_labelled"),
                        "gap": m.get("gap"), "gap_limit": m.get("gap_limit"), "gap_alert": m.get("gap_alert")})
    keys = ("outcome", "method", "calibration", "source", "assumptions", "band", "thresholds", "baseline_version", "chunk_size", "primary_metric",
            "day", "rows", "metrics", "alerts", "latest_realised", "gap_alert", "reason", "average", "sampled_days")
    return {**{k: result.get(k) for k in keys}, "history": history, "estimation_uri": uri}


# --------------------------------------------------------------------------- the concept stage's entry point


def _with_labels(frame: pd.DataFrame, labels: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The frame with the arrived labels of its rows in ``_label`` (class text, or target value); missing where none arrived."""
    from modelwatch.ingest.labels import join_labels

    joined = join_labels(frame, labels).frame
    value = joined["label"] if kind == "classifier" else joined["label_value"].where(joined["label_value"].notna(),
                                                                                   pd.to_numeric(joined["label"], errors="coerce"))
    out = frame.copy()
    out[LABEL] = value.where(joined["_labelled"]).to_numpy()
    return out


def estimate_stage(client, cfg, model, day: date, tables: dict[str, Any], labels: pd.DataFrame, uri: str,
                   sampled: dict[str, dict[str, int]] | None = None) -> dict[str, Any] | None:
    """Performance estimation of one partition: write ``estimation.json`` at ``uri`` and return the summary block.

    ``tables`` maps each look-back day (ISO) to its valid rows (Arrow), or for a day in ``sampled``
    (``{"rows": day's rows, "sampled": rows kept}``) a uniform bottom-k sample of them, on which that
    day's estimate and its band are computed (``concept.lookback``); ``labels`` holds the
    labels that had arrived as of the partition (the concept stage's as-of filter). None for
    LLMs; an ``outcome`` other than ``ok`` (``disabled``, ``no_baseline``, ``no_reference``) says why
    nothing was estimated.
    """
    from modelwatch.baseline.store import BaselineMissing, incumbent_variants, load_baseline
    from modelwatch.storage.s3 import put_json

    if model.kind == "llm":
        return None
    method = "cbpe" if model.kind == "classifier" else "dle"
    if not model.estimation.enabled:
        result: dict[str, Any] = {"outcome": "disabled", "method": method, "reason": f"estimation.enabled is false for {model.id}"}
    else:
        try:
            baseline = load_baseline(client, cfg, model)
            reference = load_reference(client, baseline.manifest)
        except (BaselineMissing, EstimationReferenceMissing) as exc:
            result = {"outcome": "no_baseline" if isinstance(exc, BaselineMissing) else "no_reference", "method": method, "reason": str(exc)}
        else:
            variants = incumbent_variants(model)
            frames = {d: _with_labels(estimation_frame(t, model, variants), labels, model.kind) for d, t in tables.items()}
            result = estimate_partition(reference, frames, day.isoformat(), model, baseline.manifest["version"])
            result["sampled_days"] = dict(sampled or {})  # days estimated on a uniform sample of their rows, not every row
    put_json(client, uri, result)
    return summary_block(result, uri)
