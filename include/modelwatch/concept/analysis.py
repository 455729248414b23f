"""Concept drift: is the model still right, now that delayed labels or feedback have arrived?

Input drift (``features``, ``prompt``) says the traffic changed; concept drift says the
relation between inputs and outcomes changed, which only ground truth can show. This
module joins delayed labels to predictions and measures performance over time:

* ``read_labels`` reads ``{labels_uri}/model_id=M/dt=D/*.jsonl[.gz]`` (one JSON object a
  line: ``request_id``, ``label``, optional ``feedback`` and ``labelled_at``), reporting
  every bad line with its file and line number instead of dropping it.
* ``join_labels`` joins them on ``request_id`` and accounts for every row: predictions in =
  matched + without label; labels in = kept + duplicates dropped (latest ``labelled_at``
  wins); kept = matched + without prediction.
* ``window_metrics`` computes per-day (or per-N-labelled-rows) performance with
  scikit-learn: accuracy, F1 and ROC AUC for classifiers; MAE, RMSE and MAPE for
  regressors; thumbs-down rate and coverage for feedback. A metric that is undefined in a
  window abstains with a reason (one class for AUC, no labels, zero targets) rather than
  returning NaN.
* ``detect_changes`` runs a sequential change detector from ``river`` over the per-row
  loss stream in timestamp order: ADWIN (Bifet & Gavaldà 2007, "Learning from
  time-changing data with adaptive windowing", SDM) by default, Page–Hinkley (Page 1954,
  "Continuous inspection schemes", Biometrika 41) as an option.
* ``calibration`` gives the expected and maximum calibration error over equal-width bins
  (Guo et al. 2017, "On Calibration of Modern Neural Networks", ICML) and the reliability
  table, binned exactly as ``sklearn.calibration.calibration_curve(strategy="uniform")``.
* ``analyze_concept_drift`` ties these together into a JSON-able ``ConceptReport`` with a
  verdict ``drift`` | ``stable`` | ``insufficient_labels`` and its reason.

scikit-learn and river are imported inside the functions that use them, so importing
this module costs only pandas and pyarrow.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from modelwatch.concept.detectors import DETECTORS, Detection, detect_changes
from modelwatch.concept.metrics import Calibration, Metric, abstained_metric, calibration, classifier_metrics, feedback_metrics, regressor_metrics
from modelwatch.ingest.labels import is_number

Verdict = Literal["drift", "stable", "insufficient_labels"]
KINDS: tuple[str, ...] = ("llm", "classifier", "regressor")
CLASS_MAP_COLUMN = "class_probabilities"  # JSON text of class -> probability in the canonical table


# --------------------------------------------------------------------------- preparing a frame


LOSS_NAMES = {"classifier": "0/1 error", "regressor": "absolute error", "llm": "thumbs-down indicator"}


def _class_map(value: Any) -> dict[str, float] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, dict) and value and all(is_number(v) for v in value.values()):
        return {str(k): float(v) for k, v in value.items()}
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if is_number(value) or isinstance(value, np.number):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def _as_class(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value if isinstance(value, str) else repr(value.item() if isinstance(value, np.generic) else value)


def prepare(frame: pd.DataFrame, kind: str, positive_class: str | None = None) -> tuple[pd.DataFrame, int]:
    """Normalise an analysis frame; returns (rows with a timestamp in timestamp order, rows without one).

    Output columns: ``ts`` (UTC), ``day``, ``pred``/``label`` (strings), ``pred_value``/``label_value``
    (floats), ``p_pos`` (probability of ``positive_class``), ``confidence`` (probability of the
    predicted class), ``feedback``, ``variant``, ``evaluated`` (row has ground truth for ``kind``)
    and ``loss`` (0/1 error, absolute error, or thumbs-down indicator; NaN where not evaluated).

    Probabilities: a class map (``class_probabilities`` JSON, or ``probability`` as a dict or
    JSON object) gives ``p_pos = map[positive_class]`` and ``confidence = map[prediction]``. A
    bare number is the confidence in the prediction (as the canonical table stores it), so for
    a binary problem ``p_pos = p`` when the prediction is the positive class, else ``1 - p``.
    Sorting is stable: rows with equal timestamps keep their input order.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; use one of {KINDS}")
    if "timestamp" not in frame.columns:
        raise ValueError("the frame needs a timestamp column")
    n = len(frame)

    def column(name: str) -> pd.Series:
        return frame[name] if name in frame.columns else pd.Series([None] * n, index=frame.index, dtype="object")

    ts = pd.to_datetime(column("timestamp"), utc=True, errors="coerce", format="ISO8601")
    out = pd.DataFrame(index=frame.index)
    out["ts"] = ts
    out["pred"] = [_as_class(v) for v in column("prediction")]
    out["label"] = [_as_class(v) for v in column("label")]
    out["pred_value"] = pd.to_numeric(column("prediction"), errors="coerce").astype(float)
    label_value = pd.to_numeric(column("label_value"), errors="coerce").astype(float)
    out["label_value"] = label_value.where(label_value.notna(), pd.to_numeric(column("label"), errors="coerce").astype(float))
    out["feedback"] = pd.to_numeric(column("feedback"), errors="coerce").astype(float)
    out["variant"] = column("variant").astype("object").where(column("variant").notna(), "(none)")

    maps = column(CLASS_MAP_COLUMN).tolist()
    probs = column("probability").tolist()
    classes = {c for c in out["pred"].dropna()} | {c for c in out["label"].dropna()} | ({positive_class} if positive_class else set())
    binary = positive_class is not None and len(classes) == 2
    p_pos: list[float | None] = []
    confidence: list[float | None] = []
    for class_map_raw, prob_raw, pred in zip(maps, probs, out["pred"], strict=True):
        cmap = _class_map(class_map_raw) if class_map_raw is not None else None
        if cmap is None:
            cmap = _class_map(prob_raw)
        if cmap is not None:
            p_pos.append(cmap.get(positive_class) if positive_class is not None else None)
            confidence.append(cmap.get(pred, max(cmap.values())) if pred is not None else max(cmap.values()))
            continue
        p = _number(prob_raw)
        confidence.append(p)
        if p is not None and binary and pred is not None:
            p_pos.append(p if pred == positive_class else 1.0 - p)
        else:
            p_pos.append(None)
    out["p_pos"] = pd.to_numeric(pd.Series(p_pos, index=frame.index, dtype="object"), errors="coerce").astype(float)
    out["confidence"] = pd.to_numeric(pd.Series(confidence, index=frame.index, dtype="object"), errors="coerce").astype(float)

    if kind == "classifier":
        out["evaluated"] = out["pred"].notna() & out["label"].notna()
        out["loss"] = np.where(out["evaluated"], (out["pred"] != out["label"]).astype(float), np.nan)
    elif kind == "regressor":
        out["evaluated"] = out["pred_value"].notna() & out["label_value"].notna()
        out["loss"] = np.where(out["evaluated"], (out["pred_value"] - out["label_value"]).abs(), np.nan)
    else:
        out["evaluated"] = out["feedback"].isin([-1.0, 1.0])
        out["loss"] = np.where(out["evaluated"], (out["feedback"] == -1).astype(float), np.nan)

    missing_ts = int(out["ts"].isna().sum())
    out = out[out["ts"].notna()].sort_values("ts", kind="mergesort")
    out["day"] = out["ts"].dt.strftime("%Y-%m-%d")
    return out, missing_ts


# --------------------------------------------------------------------------- windows


def parse_window(window: str | int) -> tuple[str, int | None]:
    """``"day"`` -> ("day", None); ``"rows:500"`` or ``500`` -> ("rows", 500)."""
    if window == "day":
        return "day", None
    size: Any = window
    if isinstance(window, str) and window.startswith("rows:"):
        size = window.removeprefix("rows:")
    try:
        rows = int(size)
    except (TypeError, ValueError):
        rows = 0
    if rows <= 0 or isinstance(window, bool):
        raise ValueError(f"window must be 'day' or 'rows:N' with N > 0, got {window!r}")
    return "rows", rows


def _window_ids(prepared: pd.DataFrame, window: str | int) -> pd.Series:
    """Window of each row. ``rows:N`` cuts after every N evaluated rows; unevaluated rows join the
    window of the evaluated row before them (the first window for leading ones), so each window
    holds exactly N evaluated rows (the last one fewer) and its coverage stays meaningful."""
    mode, size = parse_window(window)
    if mode == "day":
        return prepared["day"]
    assert size is not None
    cum = prepared["evaluated"].astype(int).cumsum()
    ids = ((cum - 1).clip(lower=0) // size).astype(int)
    return ids.map(lambda k: f"rows {k * size + 1}-{(k + 1) * size}")


def _frame_metrics(d: pd.DataFrame, kind: str, positive_class: str | None, n_bins: int, with_feedback: bool) -> tuple[dict[str, Metric], dict[str, int]]:
    """All metrics of one group of prepared rows, and extra counts (MAPE's skipped zero targets)."""
    ev = d[d["evaluated"]]
    metrics: dict[str, Metric] = {}
    extras: dict[str, int] = {}
    rows = len(d)
    if kind == "classifier":
        metrics.update(classifier_metrics(ev["label"].tolist(), ev["pred"].tolist(), ev["p_pos"].tolist(), positive_class))
        cal = frame_calibration(ev, positive_class, n_bins)
        metrics["ece"] = Metric("ece", cal.ece, cal.n, cal.reason)
    elif kind == "regressor":
        reg, skipped = regressor_metrics(ev["label_value"].to_numpy(), ev["pred_value"].to_numpy())
        metrics.update(reg)
        extras["mape_zero_targets_skipped"] = skipped
    if kind in ("classifier", "regressor"):
        metrics["label_coverage"] = Metric("label_coverage", len(ev) / rows, rows) if rows else abstained_metric("label_coverage", 0, "no rows")
    if kind == "llm" or with_feedback:
        metrics.update(feedback_metrics(d["feedback"].tolist()))
    return metrics, extras


def frame_calibration(evaluated: pd.DataFrame, positive_class: str | None, n_bins: int = 10) -> Calibration:
    """Calibration of prepared, evaluated classifier rows.

    With ``positive_class``: outcome = label is that class, confidence = its probability (the
    binary reliability diagram of ``calibration_curve``). Without: Guo et al.'s top-label form,
    outcome = prediction is right, confidence = probability of the predicted class.
    """
    if positive_class is not None:
        outcome = (evaluated["label"] == positive_class).astype(float)
        return calibration(outcome, evaluated["p_pos"], n_bins, method=f"positive class {positive_class!r}")
    outcome = (evaluated["pred"] == evaluated["label"]).astype(float)
    return calibration(outcome, evaluated["confidence"], n_bins, method="top-label confidence")


def _metric_row(metrics: dict[str, Metric], extras: dict[str, int]) -> dict[str, Any]:
    row: dict[str, Any] = {name: m.value for name, m in metrics.items()}
    row.update(extras)
    row["abstentions"] = {name: m.reason for name, m in metrics.items() if m.abstained}
    row["support"] = {name: m.n for name, m in metrics.items()}
    return row


def _iso(ts: Any) -> str | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).isoformat()


def _windows(prepared: pd.DataFrame, kind: str, positive_class: str | None, window: str | int, n_bins: int, with_feedback: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if prepared.empty:
        return out
    ids = _window_ids(prepared, window)
    for name, group in prepared.groupby(ids, sort=False):
        metrics, extras = _frame_metrics(group, kind, positive_class, n_bins, with_feedback)
        row: dict[str, Any] = {"window": str(name), "first_timestamp": _iso(group["ts"].iloc[0]), "last_timestamp": _iso(group["ts"].iloc[-1]),
                               "rows": len(group), "evaluated": int(group["evaluated"].sum())}
        row.update(_metric_row(metrics, extras))
        out.append(row)
    return out


def window_metrics(frame: pd.DataFrame, kind: str, *, positive_class: str | None = None, window: str | int = "day", n_bins: int = 10) -> list[dict[str, Any]]:
    """Per-window performance table (one JSON-able dict per window, in time order).

    Each dict has ``window``, ``first_timestamp``, ``last_timestamp``, ``rows``, ``evaluated``,
    one key per metric (value or None), ``abstentions`` (metric -> reason) and ``support``
    (metric -> rows it was computed on). See ``prepare`` for the columns read.
    """
    prepared, _ = prepare(frame, kind, positive_class)
    with_feedback = bool((prepared["feedback"].fillna(0) != 0).any())
    return _windows(prepared, kind, positive_class, window, n_bins, with_feedback)


# --------------------------------------------------------------------------- the report


@dataclass
class ConceptReport:
    """Concept-drift analysis of one model (or one variant of it)."""

    kind: str
    positive_class: str | None
    window: str
    detector: dict[str, Any]
    loss: str
    counts: dict[str, Any]
    overall: dict[str, Any]
    windows: list[dict[str, Any]]
    detections: list[Detection]
    calibration: Calibration | None
    verdict: Verdict
    reason: str
    variants: dict[str, ConceptReport] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (``json.dumps(..., allow_nan=False)`` works): abstained metrics are null with a reason."""
        return {
            "kind": self.kind,
            "positive_class": self.positive_class,
            "window": self.window,
            "detector": dict(self.detector),
            "loss": self.loss,
            "counts": dict(self.counts),
            "overall": self.overall,
            "windows": self.windows,
            "detections": [d.to_dict() for d in self.detections],
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
            "verdict": self.verdict,
            "reason": self.reason,
            "variants": {name: r.to_dict() for name, r in self.variants.items()},
        }


def _verdict(kind: str, evaluated: int, min_labels: int, detections: list[Detection], detector: dict[str, Any], loss: str, mean_loss: float | None,
             feedback_name: str = "thumbs up/down") -> tuple[Verdict, str]:
    what = f"rows with {feedback_name} feedback" if kind == "llm" else "labelled predictions"
    if evaluated < min_labels:
        hint = "" if kind == "llm" else "; labels arrive late, so recent days may not have them yet"
        return "insufficient_labels", f"{evaluated} {what} (< min_labels {min_labels}){hint}"
    name = "ADWIN" if detector["name"] == "adwin" else "Page-Hinkley"
    params = f"delta={detector['delta']}" if detector["name"] == "adwin" else f"threshold={detector['threshold']}"
    if detections:
        parts = [f"{d.mean_before:.4g} -> {d.mean_after:.4g}" if d.mean_after is not None else f"{d.mean_before:.4g} -> (end)" for d in detections]
        changes = "; ".join(f"{p} at {d.timestamp} (day {d.day}, row {d.row})" for p, d in zip(parts, detections, strict=True))
        return "drift", f"{name} ({params}) detected {len(detections)} change(s) in the mean {loss} over {evaluated} {what}: {changes}"
    return "stable", f"{name} ({params}) found no change in the {loss} over {evaluated} {what} (mean {mean_loss:.4g})"


def analyze_concept_drift(
    frame: pd.DataFrame,
    kind: str,
    *,
    positive_class: str | None = None,
    window: str | int = "day",
    detector: str = "adwin",
    delta: float = 0.002,
    threshold: float = 50.0,
    min_labels: int = 100,
    n_bins: int = 10,
    by_variant: bool = False,
    feedback_name: str = "thumbs up/down",
) -> ConceptReport:
    """Windowed performance, change detection over the per-row loss, and calibration.

    ``frame`` holds ``timestamp`` and, as available, ``prediction``, ``probability`` /
    ``class_probabilities``, ``label`` / ``label_value``, ``feedback`` and ``variant`` (e.g.
    ``join_labels(...).frame``). The loss stream, in timestamp order, is the 0/1 error
    (classifier), absolute error (regressor) or thumbs-down indicator among rows with feedback
    ±1 (llm). ``detector`` is ``adwin`` (``delta``) or ``page_hinkley`` (``threshold``). With
    fewer than ``min_labels`` evaluated rows the verdict is ``insufficient_labels``; otherwise
    ``drift`` if the detector fired (in either direction: see each detection's ``direction``),
    else ``stable``. ``by_variant`` adds the same analysis per ``variant`` value. ``feedback_name`` names the
    LLM's loss signal in the reason (the concept stage passes ``feedback.primary``).
    """
    prepared, missing_ts = prepare(frame, kind, positive_class)
    mode, size = parse_window(window)
    window_name = "day" if mode == "day" else f"rows:{size}"
    with_feedback = bool((prepared["feedback"].fillna(0) != 0).any())
    ev = prepared[prepared["evaluated"]]
    detector_info: dict[str, Any] = {"name": detector}
    if detector == "adwin":
        detector_info.update(delta=delta, clock=32)
    elif detector == "page_hinkley":
        detector_info.update(threshold=threshold, ph_delta=0.005, mode="both")
    else:
        raise ValueError(f"unknown detector {detector!r}; use one of {DETECTORS}")
    evaluated = len(ev)
    detections: list[Detection] = []
    if evaluated >= min_labels:
        detections = detect_changes(ev["loss"].to_numpy(), ev["ts"], list(ev.index), detector=detector, delta=delta, threshold=threshold)
    metrics, extras = _frame_metrics(prepared, kind, positive_class, n_bins, with_feedback)
    labelled = int(prepared["label"].notna().sum()) if kind != "llm" else int(prepared["feedback"].notna().sum())
    counts: dict[str, Any] = {
        "rows": len(frame),
        "rows_without_timestamp": missing_ts,
        "labelled": labelled,
        "evaluated": evaluated,
        "coverage": evaluated / len(prepared) if len(prepared) else None,
        "mean_loss": float(ev["loss"].mean()) if evaluated else None,
    }
    cal = frame_calibration(ev, positive_class, n_bins) if kind == "classifier" else None
    loss = LOSS_NAMES[kind]
    verdict, reason = _verdict(kind, evaluated, min_labels, detections, detector_info, loss, counts["mean_loss"], feedback_name)
    report = ConceptReport(
        kind=kind,
        positive_class=positive_class,
        window=window_name,
        detector=detector_info,
        loss=loss,
        counts=counts,
        overall=_metric_row(metrics, extras),
        windows=_windows(prepared, kind, positive_class, window, n_bins, with_feedback),
        detections=detections,
        calibration=cal,
        verdict=verdict,
        reason=reason,
    )
    if by_variant and "variant" in frame.columns:
        variants = frame["variant"].astype("object").where(frame["variant"].notna(), "(none)")
        for name in sorted(variants.unique(), key=str):
            report.variants[str(name)] = analyze_concept_drift(
                frame[variants == name], kind, positive_class=positive_class, window=window, detector=detector,
                delta=delta, threshold=threshold, min_labels=min_labels, n_bins=n_bins, by_variant=False, feedback_name=feedback_name,
            )
    return report
