"""Performance estimation before labels arrive, for classic models: CBPE (classifiers) and DLE (regressors).

Labels arrive days or weeks late. Drift says the inputs moved, not whether the model got
worse; this module estimates the day's performance from the model's own outputs, puts a
band around the estimate, alerts when it leaves what the reference allowed, and, once the
labels of a past day arrive, compares the estimate with the realised metric.

* **Methods**: ``cbpe`` (confidence-based performance estimation, see :mod:`modelwatch.estimation.cbpe`)
  for classifiers and ``dle`` (direct loss estimation, see :mod:`modelwatch.estimation.dle`) for
  regressors, both as NannyML describes them. Both assume the relation the reference shows
  (score → outcome, inputs → loss) still holds: covariate shift is allowed, concept shift is not.
* **Reference** (``ReferenceBuilder``, called by ``baseline.build.build_baseline``): the labelled
  incumbent rows of the baseline window, a bottom-k sample by ``request_id`` hash of at most
  ``estimation.reference_rows`` rows. It fits the calibrator (or the nanny models' training
  table) and cuts the rows, in time order, into chunks of ``estimation.chunk_size`` (a last
  partial chunk is dropped). For every chunk it computes the realised metric and the estimate
  from calibrators / nanny models cross-fitted without that row (5-fold), so the reference
  shows the honest estimation error. Stored beside the baseline as ``estimation.json`` (and
  ``estimation_reference.parquet``: the labelled rows, from which a regressor's nanny models
  are refitted deterministically — no pickled model is ever loaded from storage).
* **Sampling error**: the realised metric of ``n`` rows varies as ``u / n``; the per-row variance
  ``u`` is measured on the whole labelled reference by each metric's analytic method (binomial /
  delta method on the confusion matrix, DeLong for ROC AUC; see :mod:`modelwatch.estimation.thresholds`).
  The band of an estimate is ``estimate ± 3 sqrt(u / n)``.
* **Thresholds** (alerts), sized for the day: the reference's realised value ± 3 sd, the sd
  combining in quadrature the day's sampling (``u / n``: a million-row day gets tight
  thresholds, a small day wide ones), the reference's own sampling (``u / N`` for its ``N`` rows)
  and the drift of the realised metric between the reference's days (DerSimonian–Laird), kept
  apart in the record with the part that dominates. When the reference has too few days to
  measure its drift the thresholds are sampling-only and say that a longer window fixes it.
  The reference chunks (``estimation.chunk_size``) now only give the cross-fitted estimation
  error shown beside the reference; a baseline built before the analytic variances falls back
  to ``sd(chunks)**2 * chunk_size`` for ``u``.
* **Closing the loop**: for each past day of the concept look-back whose labels have arrived
  (as of the run's partition, at least ``estimation.min_labelled``), the realised metric of the
  labelled rows is set beside the estimate on the same rows, with the band at that row count;
  a realised value outside the band is a gap alert — the calibration stopped holding, which is
  concept drift. The latest such day drives the summary's ``gap_alert``.

The outputs are JSON-able dicts (``estimation.json`` per partition, a compact block in the
run summary); ``publish.estimation_section`` renders them and ``observe.prom_metrics`` exports them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from modelwatch.estimation.cbpe import CLASSIFIER_METRICS, ScoreCalibrator, estimate_classifier, fit_calibrator, realised_classifier
from modelwatch.estimation.dle import REGRESSOR_METRICS, FeatureSpace, NannyModels, expected_metrics, fit_nanny, out_of_fold_losses, realised_metrics
from modelwatch.estimation.rows import LABEL, class_map_scores, class_scores, estimation_frame, label_index
from modelwatch.estimation.thresholds import (
    SIGMAS,
    VARIANCE_METHODS,
    DayThresholds,
    classifier_unit_variances,
    day_thresholds,
    period_statistics,
    regressor_unit_variances,
)

ARTEFACT = "estimation.json"
REFERENCE_TABLE = "estimation_reference.parquet"
MIN_CHUNKS = 6  # reference chunks needed for the chunk-to-chunk estimation error (its relative error is ~1/sqrt(2(k-1)))
FOLDS = 5  # cross-fitting of the reference chunks' estimates
SEED = 0
PRIMARY = {"classifier": "accuracy", "regressor": "mae"}
METRICS = {"classifier": CLASSIFIER_METRICS, "regressor": REGRESSOR_METRICS}
BOUNDS = {"accuracy": (0.0, 1.0), "precision": (0.0, 1.0), "recall": (0.0, 1.0), "f1": (0.0, 1.0), "roc_auc": (0.0, 1.0),
          "mae": (0.0, math.inf), "rmse": (0.0, math.inf)}
HIGHER_IS_BETTER = {"accuracy": True, "precision": True, "recall": True, "f1": True, "roc_auc": True, "mae": False, "rmse": False}


class EstimationReferenceMissing(LookupError):
    """The baseline has no usable estimation reference (built before this feature, or without labels)."""


# --------------------------------------------------------------------------- scored rows and estimates


@dataclass
class Scored:
    """Rows ready for estimation: a classifier's raw and calibrated scores and predictions, or a regressor's predicted losses."""

    kind: str
    raw: np.ndarray | None = None
    calibrated: np.ndarray | None = None
    predicted: np.ndarray | None = None
    prediction: np.ndarray | None = None
    abs_loss: np.ndarray | None = None
    sq_loss: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.predicted if self.kind == "classifier" else self.prediction)

    def subset(self, mask: np.ndarray) -> Scored:
        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[mask]

        return Scored(self.kind, pick(self.raw), pick(self.calibrated), pick(self.predicted), pick(self.prediction), pick(self.abs_loss), pick(self.sq_loss))


def _classifier_dict(est) -> dict[str, Any]:
    return {"metrics": est.metrics, "per_class": est.per_class, "average": est.average, "reasons": est.reasons}


@dataclass
class EstimationReference:
    """A model's estimation reference: the fitted calibrator or nanny models and the reference chunks' statistics."""

    kind: str
    chunk_size: int
    statistics: dict[str, dict[str, Any]]
    info: dict[str, Any]
    calibrator: ScoreCalibrator | None = None
    positive_class: str | None = None
    nanny: NannyModels | None = None
    segment_reference: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return "cbpe" if self.kind == "classifier" else "dle"

    @property
    def classes(self) -> tuple[str, ...]:
        return self.calibrator.classes if self.calibrator else ()

    def score(self, frame: pd.DataFrame) -> tuple[Scored, np.ndarray]:
        """Score the rows; returns (scored usable rows, usable mask over ``frame``)."""
        if self.kind == "classifier":
            raw, predicted, usable = class_scores(frame, self.classes, self.positive_class)
            raw, predicted = raw[usable], predicted[usable]
            calibrated = self.calibrator.calibrate(raw) if len(raw) else np.zeros((0, len(self.classes)))
            return Scored("classifier", raw=raw, calibrated=calibrated, predicted=predicted), usable
        prediction = pd.to_numeric(frame["prediction"], errors="coerce").to_numpy(dtype=float)
        usable = ~np.isnan(prediction)
        rows = frame[usable]
        abs_loss, sq_loss = self.nanny.row_losses(rows, prediction[usable]) if len(rows) else (np.zeros(0), np.zeros(0))
        return Scored("regressor", prediction=prediction[usable], abs_loss=abs_loss, sq_loss=sq_loss), usable

    def estimate(self, scored: Scored) -> dict[str, Any]:
        """Estimated metrics of scored rows: ``{"metrics": {...}, ...}`` (classifiers add per class values)."""
        if self.kind == "classifier":
            return _classifier_dict(estimate_classifier(scored.calibrated, scored.raw, scored.predicted, self.classes, self.positive_class))
        return {"metrics": expected_metrics(scored.abs_loss, scored.sq_loss)}

    def realised(self, scored: Scored, labels: np.ndarray) -> dict[str, Any]:
        """Realised metrics of scored rows from their labels (class indices, or targets)."""
        if self.kind == "classifier":
            return _classifier_dict(realised_classifier(labels, scored.raw, scored.predicted, self.classes, self.positive_class))
        return {"metrics": realised_metrics(labels, scored.prediction)}

    def unit_variance(self, metric: str) -> float | None:
        """Per-row sampling variance ``u`` of the realised metric (``thresholds`` module); a baseline built before it
        existed gives NannyML's chunk estimate ``sd**2 * chunk_size``."""
        stats = self.statistics.get(metric) or {}
        if stats.get("unit_variance") is not None:
            return float(stats["unit_variance"])
        return None if stats.get("sd") is None else float(stats["sd"] ** 2 * self.chunk_size)

    def sampling_error(self, metric: str, n: int) -> float | None:
        """Sampling error of the realised metric at ``n`` rows: ``sqrt(u / n)`` (``thresholds`` names each metric's method)."""
        unit = self.unit_variance(metric)
        return None if unit is None or n <= 0 else math.sqrt(unit / n)

    def thresholds(self, metric: str, n: int) -> DayThresholds | None:
        """Alert thresholds for a day of ``n`` rows: the reference's realised value ± 3 sd of day sampling, reference
        sampling and reference drift combined (``thresholds.day_thresholds``); None when the reference gives no variance."""
        stats = self.statistics.get(metric) or {}
        centre = stats.get("value", stats.get("mean"))
        reference_rows = int(stats.get("rows") or self.info.get("reference_rows") or 0)
        drift_reason = stats.get("drift_reason") or ("the baseline predates the drift measure: rebuild it to measure drift between reference days"
                                                     if "drift_sd" not in stats else None)
        return day_thresholds(centre, self.unit_variance(metric), n, reference_rows, stats.get("drift_sd"), BOUNDS[metric], drift_reason)


def estimate_band(reference: EstimationReference, metric: str, value: float | None, n: int) -> dict[str, float | None]:
    se = reference.sampling_error(metric, n)
    if value is None or se is None:
        return {"sampling_error": se, "lower": None, "upper": None}
    low, high = BOUNDS[metric]
    return {"sampling_error": se, "lower": max(low, value - SIGMAS * se), "upper": min(high, value + SIGMAS * se)}


def metric_rows(reference: EstimationReference, estimate: dict[str, Any], n: int, with_alerts: bool = True) -> list[dict[str, Any]]:
    """One row per metric: estimate, sampling error, band, thresholds and alert (estimate outside the thresholds)."""
    out = []
    for metric in METRICS[reference.kind]:
        value = estimate["metrics"].get(metric)
        stats = reference.statistics.get(metric) or {}
        row: dict[str, Any] = {"metric": metric, "estimate": value, **estimate_band(reference, metric, value, n),
                               "reference_mean": stats.get("value", stats.get("mean"))}
        if with_alerts:
            band = reference.thresholds(metric, n)
            row.update(band.to_dict() if band else {"threshold_lower": None, "threshold_upper": None})
            low, high = (band.lower, band.upper) if band else (None, None)
            outside = value is not None and low is not None and high is not None and not low <= value <= high
            worse = outside and ((value < low) == HIGHER_IS_BETTER[metric])
            row.update(alert=bool(outside), direction=("worse" if worse else "better") if outside else None)
        # a baseline built before the analytic variances abstains for its chunks' reason
        legacy = stats.get("reason") if "unit_variance" not in stats and reference.unit_variance(metric) is None else None
        reason = estimate.get("reasons", {}).get(metric) or stats.get("threshold_reason") or legacy
        if reason:
            row["reason"] = reason
        out.append(row)
    return out


# --------------------------------------------------------------------------- building the reference


def _chunks(n: int, size: int) -> list[np.ndarray]:
    """Consecutive chunks of ``size`` rows; a last partial chunk is dropped."""
    return [np.arange(i * size, (i + 1) * size) for i in range(n // size)]


def _chunk_statistics(realised: list[dict[str, float | None]], estimated: list[dict[str, float | None]], metrics: Iterable[str],
                      chunk_size: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        pairs = [(r.get(metric), e.get(metric)) for r, e in zip(realised, estimated, strict=True)]
        values = [r for r, _ in pairs if r is not None]
        gaps = [r - e for r, e in pairs if r is not None and e is not None]
        entry: dict[str, Any] = {"chunks": len(realised), "chunk_size": chunk_size, "realised": [r for r, _ in pairs],
                                 "estimated": [e for _, e in pairs]}
        if len(values) < MIN_CHUNKS:
            entry.update(mean=None, sd=None, gap_mean=None, gap_sd=None,
                         reason=f"{len(values)} reference chunks of {chunk_size} labelled rows with a defined {metric} (< {MIN_CHUNKS}): "
                                "no chunk-to-chunk estimation error; lower estimation.chunk_size or widen the baseline window")
        else:
            entry.update(mean=float(np.mean(values)), sd=float(np.std(values, ddof=1)),
                         gap_mean=float(np.mean(gaps)) if gaps else None, gap_sd=float(np.std(gaps, ddof=1)) if len(gaps) > 1 else None)
        out[metric] = entry
    return out


def reference_periods(timestamps: pd.Series) -> list[tuple[str, np.ndarray]]:
    """The reference rows' UTC days, in order, as ``(day, row indices)``: the periods whose spread is the reference drift."""
    days = pd.to_datetime(timestamps, utc=True, errors="coerce").dt.strftime("%Y-%m-%d").fillna("(no timestamp)").to_numpy()
    return [(str(day), np.flatnonzero(days == day)) for day in sorted(set(days))]


def _pooled_statistics(realised: dict[str, float | None], unit_variances: dict[str, float | None], rows: int,
                       periods: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per metric: the whole reference's realised value (the thresholds' centre), its per-row variance and method, and the drift between days."""
    out: dict[str, dict[str, Any]] = {}
    for metric, unit in unit_variances.items():
        entry: dict[str, Any] = {"value": realised.get(metric), "unit_variance": unit, "rows": rows, "variance_method": VARIANCE_METHODS[metric],
                                 **periods[metric]}
        if realised.get(metric) is None or unit is None:
            entry["threshold_reason"] = f"{metric} is undefined or has no sampling variance on the {rows:,} reference rows: no thresholds"
        out[metric] = entry
    return out


def _merge(chunked: dict[str, dict[str, Any]], pooled: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {metric: {**chunked[metric], **pooled[metric]} for metric in chunked}


def _classifier_reference(sample: pd.DataFrame, settings, positive_class: str | None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Fit the calibrator and the reference chunk statistics of a labelled classifier sample."""
    from sklearn.model_selection import KFold

    classes = {*sample[LABEL].dropna().astype(str), *sample["prediction"].dropna().astype(str)}
    if "class_probabilities" in sample:
        classes |= set(class_map_scores(sample["class_probabilities"], None)[2])
    ordered = tuple(sorted(classes))
    if len(ordered) < 2:
        raise ValueError(f"the labelled reference has one class only ({list(ordered)}): nothing to estimate")
    raw, predicted, usable = class_scores(sample, ordered, positive_class)
    labels = label_index(sample[LABEL], ordered)
    usable &= labels >= 0
    rows = sample[usable].reset_index(drop=True)
    raw, predicted, labels = raw[usable], predicted[usable], labels[usable]
    if len(rows) < 2 * FOLDS:
        raise ValueError(f"{len(rows)} labelled reference rows with scores: too few to calibrate")
    label_names = np.asarray(ordered, dtype=object)[labels]
    calibrator = fit_calibrator(raw, label_names, ordered, settings.method, positive_class)
    oof = np.empty_like(raw)
    for train, test in KFold(n_splits=FOLDS, shuffle=True, random_state=SEED).split(raw):
        oof[test] = fit_calibrator(raw[train], label_names[train], ordered, settings.method, positive_class).calibrate(raw[test])
    realised, estimated = [], []
    for chunk in _chunks(len(rows), settings.chunk_size):
        realised.append(realised_classifier(labels[chunk], raw[chunk], predicted[chunk], ordered, positive_class).metrics)
        estimated.append(estimate_classifier(oof[chunk], raw[chunk], predicted[chunk], ordered, positive_class).metrics)
    def realised_of(index: np.ndarray) -> dict[str, float | None]:
        return realised_classifier(labels[index], raw[index], predicted[index], ordered, positive_class).metrics

    units = classifier_unit_variances(labels, predicted, raw, ordered, positive_class)
    pooled = _pooled_statistics(realised_of(np.arange(len(rows))), units, len(rows), period_statistics(reference_periods(rows["timestamp"]), realised_of, units))
    artefact = {"calibrator": calibrator.to_dict(), "positive_class": positive_class,
                "statistics": _merge(_chunk_statistics(realised, estimated, CLASSIFIER_METRICS, settings.chunk_size), pooled)}
    return artefact, rows


def _regressor_reference(sample: pd.DataFrame, settings, features: list[str]) -> tuple[dict[str, Any], pd.DataFrame]:
    """The nanny models' feature space and the reference chunk statistics of a labelled regressor sample."""
    from modelwatch.baseline.columns import infer_kind

    prediction = pd.to_numeric(sample["prediction"], errors="coerce")
    target = pd.to_numeric(sample[LABEL], errors="coerce")
    rows = sample[prediction.notna() & target.notna()].reset_index(drop=True)
    y_hat, y = pd.to_numeric(rows["prediction"]).to_numpy(float), pd.to_numeric(rows[LABEL]).to_numpy(float)
    space = FeatureSpace.from_reference(rows, {c: infer_kind(rows[c]) for c in features if c in rows})
    fit_nanny(rows, y_hat, y, space, SEED)  # fails early, with its reason, when the reference is too small
    abs_loss, sq_loss = out_of_fold_losses(rows, y_hat, y, space, FOLDS, SEED)
    realised, estimated = [], []
    for chunk in _chunks(len(rows), settings.chunk_size):
        realised.append(realised_metrics(y[chunk], y_hat[chunk]))
        estimated.append(expected_metrics(abs_loss[chunk], sq_loss[chunk]))
    def realised_of(index: np.ndarray) -> dict[str, float | None]:
        return realised_metrics(y[index], y_hat[index])

    units = regressor_unit_variances(y, y_hat)
    pooled = _pooled_statistics(realised_of(np.arange(len(rows))), units, len(rows), period_statistics(reference_periods(rows["timestamp"]), realised_of, units))
    artefact = {"features": space.to_dict(), "statistics": _merge(_chunk_statistics(realised, estimated, REGRESSOR_METRICS, settings.chunk_size), pooled)}
    return artefact, rows


def _segment_reference(reference: EstimationReference, rows: pd.DataFrame, segments: list[str], min_count: int) -> dict[str, Any]:
    """Realised metrics of each segment value of the reference with at least ``min_count`` rows (for comparison on the page)."""
    scored, usable = reference.score(rows)
    kept = rows[usable].reset_index(drop=True)
    labels = labels_of(reference, kept)
    out: dict[str, dict[str, Any]] = {}
    for key in segments:
        if key not in kept:
            continue
        values = kept[key].astype("object")
        for value, count in values.value_counts().items():
            if count >= min_count:
                mask = (values == value).to_numpy()
                out.setdefault(key, {})[str(value)] = reference.realised(scored.subset(mask), labels[mask])["metrics"]
    return out


def labels_of(reference: EstimationReference, frame: pd.DataFrame) -> np.ndarray:
    if reference.kind == "classifier":
        return label_index(frame[LABEL], reference.classes)
    return pd.to_numeric(frame[LABEL], errors="coerce").to_numpy(dtype=float)


def has_label(reference: EstimationReference, frame: pd.DataFrame) -> np.ndarray:
    labels = labels_of(reference, frame)
    return labels >= 0 if reference.kind == "classifier" else ~np.isnan(labels)


def fit_reference(sample: pd.DataFrame, model) -> tuple[dict[str, Any], pd.DataFrame]:
    """The JSON-able estimation artefact of a labelled reference sample in time order, and the rows it was fitted on.

    ``sample`` has the ``estimation_frame`` columns and the label in ``_label``; ``model`` is the
    configured model (its kind, ``estimation`` settings, positive class, features and segments).
    Raises ValueError when the sample cannot support an estimate (one class, too few rows).
    """
    import sklearn

    settings = model.estimation
    if model.kind == "classifier":
        artefact, rows = _classifier_reference(sample, settings, model.drift.positive_class)
    elif model.kind == "regressor":
        artefact, rows = _regressor_reference(sample, settings, list(model.drift.features))
    else:
        raise ValueError(f"performance estimation is for classifiers and regressors, not {model.kind}")
    method = "cbpe" if model.kind == "classifier" else "dle"
    artefact.update(kind=model.kind, method=method, calibration=settings.method if method == "cbpe" else None, chunk_size=settings.chunk_size,
                    reference_rows=len(rows), sklearn=sklearn.__version__, seed=SEED, folds=FOLDS)
    reference = reference_from_artefact(artefact, rows)
    artefact["segments"] = _segment_reference(reference, rows, list(model.segments), settings.min_segment_count)
    return artefact, rows


class ReferenceBuilder:
    """Collects the labelled incumbent rows of a baseline window, day by day, then fits and stores the estimation reference.

    ``update`` takes a day's valid rows, whole or one batch at a time (the baseline build streams
    them), reads the day's labels once (``{labels_uri}/model_id=M/dt=D/``), keeps the labelled
    rows in a bottom-k sample (the baseline's hash of ``request_id``, at most
    ``estimation.reference_rows`` rows: memory stays bounded however long the window is).
    ``store`` writes ``estimation.json`` and ``estimation_reference.parquet`` under the
    baseline prefix and returns the manifest's ``estimation`` entry.
    """

    def __init__(self, client, cfg, model, variants: Iterable[str]):
        self.client, self.cfg, self.model, self.variants = client, cfg, model, set(variants)
        self.settings = model.estimation
        self.sample: pd.DataFrame | None = None
        self.rows_seen = 0
        self.labelled_seen = 0
        self._labels: tuple[date, pd.DataFrame] | None = None  # the last day's labels: its batches share one read

    def _labels_of(self, day: date) -> pd.DataFrame:
        from modelwatch.ingest.labels import read_labels

        if self._labels is None or self._labels[0] != day:
            self._labels = day, read_labels(self.client, self.cfg.defaults.labels_uri, self.model.id, [day]).table.to_pandas()
        return self._labels[1]

    def update(self, day: date, valid) -> None:
        from modelwatch.baseline.sample import SAMPLE_KEY, bottom_k, sample_keys
        from modelwatch.ingest.labels import join_labels

        frame = estimation_frame(valid, self.model, self.variants)
        joined = join_labels(frame, self._labels_of(day)).frame
        labelled = joined[joined["_labelled"] & joined["label"].notna()].rename(columns={"label": LABEL})
        labelled = labelled.drop(columns=[c for c in ("label_value", "labelled_at", "_labelled", "feedback") if c in labelled])
        self.rows_seen += len(frame)
        self.labelled_seen += len(labelled)
        if len(labelled):
            labelled = labelled.assign(**{SAMPLE_KEY: sample_keys(labelled["request_id"])})
            self.sample = bottom_k(self.sample, labelled.reset_index(drop=True), self.settings.reference_rows)

    def store(self, prefix: str, progress: Callable[[str], None] = print) -> dict[str, Any]:
        """Fit and write the reference; the manifest entry says ``ok`` (with the artefact's URI) or why there is none."""

        from modelwatch.baseline.sample import SAMPLE_KEY
        from modelwatch.storage.s3 import put_json, put_table

        method = "cbpe" if self.model.kind == "classifier" else "dle"
        base = {"method": method, "rows_seen": self.rows_seen, "labelled_rows": self.labelled_seen}
        if self.sample is None or self.sample.empty:
            reason = f"no labels under {self.cfg.defaults.labels_uri}/model_id={self.model.id}/ for the window's {self.rows_seen} rows"
            progress(f"estimation reference of {self.model.id}: not built ({reason})")
            return {**base, "outcome": "no_labels", "reason": reason}
        sample = self.sample.sort_values(["timestamp", SAMPLE_KEY], kind="stable").drop(columns=[SAMPLE_KEY]).reset_index(drop=True)
        try:
            artefact, rows = fit_reference(sample, self.model)
        except ValueError as exc:
            progress(f"estimation reference of {self.model.id}: not built ({exc})")
            return {**base, "outcome": "unusable", "reason": str(exc)}
        artefact.update(window_rows=self.rows_seen, window_labelled=self.labelled_seen)
        keep = [c for c in rows.columns if c in ("request_id", "timestamp", "variant", "prediction", "probability", "class_probabilities", LABEL)
                or c in self.model.drift.features or c in self.model.segments]
        table_uri = put_table(self.client, f"{prefix}/{REFERENCE_TABLE}", pa.Table.from_pandas(rows[keep], preserve_index=False))
        uri = put_json(self.client, f"{prefix}/{ARTEFACT}", artefact)
        chunks = next(iter(artefact["statistics"].values()))["chunks"]
        progress(f"estimation reference of {self.model.id}: {method} on {len(rows):,} labelled rows, {chunks} chunks of {self.settings.chunk_size}")
        return {**base, "outcome": "ok", "uri": uri, "reference_uri": table_uri, "reference_rows": len(rows), "chunks": chunks,
                "calibration": artefact["calibration"]}


def reference_from_artefact(artefact: dict[str, Any], rows: pd.DataFrame | None = None) -> EstimationReference:
    """The ``EstimationReference`` of a stored artefact; a regressor's nanny models are refitted on ``rows`` (its reference table)."""
    kind = artefact["kind"]
    info = {k: artefact.get(k) for k in ("method", "calibration", "chunk_size", "reference_rows", "sklearn", "window_rows", "window_labelled")}
    if kind == "classifier":
        return EstimationReference(kind, int(artefact["chunk_size"]), artefact["statistics"], info,
                                   calibrator=ScoreCalibrator.from_dict(artefact["calibrator"]), positive_class=artefact.get("positive_class"),
                                   segment_reference=artefact.get("segments") or {})
    if rows is None:
        raise ValueError("a DLE reference needs its reference table to refit the nanny models")
    space = FeatureSpace.from_dict(artefact["features"])
    y_hat, y = pd.to_numeric(rows["prediction"]).to_numpy(float), pd.to_numeric(rows[LABEL]).to_numpy(float)
    nanny = fit_nanny(rows, y_hat, y, space, int(artefact.get("seed", SEED)))
    return EstimationReference(kind, int(artefact["chunk_size"]), artefact["statistics"], info, nanny=nanny,
                               segment_reference=artefact.get("segments") or {})


def load_reference(client, manifest: dict[str, Any]) -> EstimationReference:
    """The estimation reference recorded in a baseline manifest; ``EstimationReferenceMissing`` with the reason when there is none."""
    from modelwatch.storage.s3 import get_json, get_table

    entry = manifest.get("estimation")
    if not entry:
        raise EstimationReferenceMissing(f"baseline {manifest.get('version')!r} of {manifest.get('model_id')} has no estimation reference "
                                         "(built before performance estimation existed): rebuild the baseline")
    if entry.get("outcome") != "ok":
        raise EstimationReferenceMissing(f"baseline {manifest.get('version')!r} has no estimation reference: {entry.get('reason')}")
    artefact = get_json(client, entry["uri"])
    rows = get_table(client, entry["reference_uri"]).to_pandas() if artefact["kind"] == "regressor" else None
    return reference_from_artefact(artefact, rows)
