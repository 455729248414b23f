"""Confidence-based performance estimation (CBPE): a classifier's performance from its own scores, before labels arrive.

The method follows NannyML's published description of CBPE (NannyML documentation,
"How it works: Confidence-based Performance Estimation"):

1. **Calibrate** the model's scores on a labelled reference (here: the baseline window), so
   that a calibrated probability ``p`` of class ``k`` means "among rows scored like this, a
   share ``p`` truly is ``k``". Isotonic regression (Zadrozny & Elkan 2002, "Transforming
   classifier scores into accurate multiclass probability estimates", KDD) is the default,
   Platt scaling (Platt 1999, "Probabilistic outputs for support vector machines") — a
   logistic regression on the score's logit — the option; both from scikit-learn. A binary
   model calibrates the positive class's score and sets the other class to ``1 - p``; a
   multiclass model calibrates each class one-vs-rest and renormalises the rows to sum to 1
   (Zadrozny & Elkan's one-vs-rest reduction, the scheme scikit-learn's
   ``CalibratedClassifierCV`` uses).
2. **Expected confusion matrix**: with calibrated probabilities ``p_i(j)`` and the model's
   own predictions ``k_i``, the expected count of rows with true class ``j`` predicted as ``k``
   is ``E[C_jk] = sum_{i: k_i = k} p_i(j)``. From it, by the usual formulas: accuracy
   ``= sum_i p_i(k_i) / n``; per class precision ``TP/(TP+FP)``, recall ``TP/(TP+FN)`` and
   F1 ``2TP/(2TP+FP+FN)`` with expected counts (ratios of expectations, as NannyML computes
   them; they converge to the expected metric as the day grows); macro averages over classes.
3. **ROC AUC**: rank rows by the raw score of the class, count expected true and false
   positives above each threshold as the cumulative sums of ``p`` and ``1 - p``, and integrate
   the expected ROC curve with the trapezoidal rule. This equals scikit-learn's
   ``roc_auc_score`` on every row duplicated as a positive with weight ``p`` and a negative with
   weight ``1 - p`` (tested). Multiclass: one-vs-rest, macro average.

**Assumptions**: (a) the calibration learnt on the reference still holds — the probability of
each class given the model's score has not changed (only the inputs may shift: covariate
shift); (b) hence no concept shift. When the concept shifts the estimate is wrong, which is why
the monitoring compares it with the realised metric once labels arrive: a gap beyond what the
reference allows is itself the concept-drift alert.

Everything here is pure numpy / scikit-learn on arrays; the monitoring wiring lives in
``estimation.reference``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CALIBRATION_METHODS: tuple[str, ...] = ("isotonic", "platt")
SCORE_EPS = 1e-6  # scores are clipped to [eps, 1 - eps] before a logit (Platt)
CLASSIFIER_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "roc_auc")
SOURCE = "NannyML, Confidence-based Performance Estimation (CBPE), https://nannyml.readthedocs.io (How it works)"
ASSUMPTIONS: tuple[str, ...] = (
    "the score calibration learnt on the reference still holds (P(class | score) unchanged: covariate shift only)",
    "no concept shift: when the relation between inputs and labels changes the estimate is wrong, "
    "which the estimate-vs-realised gap reveals once labels arrive",
)


# --------------------------------------------------------------------------- calibration


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, SCORE_EPS, 1.0 - SCORE_EPS)
    return np.log(q / (1.0 - q))


@dataclass(frozen=True)
class OneVsRestCalibrator:
    """Calibration map of one class's score: isotonic (step points) or Platt (``a * logit(s) + b``)."""

    method: str
    x: tuple[float, ...] = ()  # isotonic: sklearn's X_thresholds_
    y: tuple[float, ...] = ()  # isotonic: sklearn's y_thresholds_
    a: float = 1.0  # platt
    b: float = 0.0

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of the class for raw ``scores`` (NaN stays NaN)."""
        s = np.asarray(scores, dtype=float)
        if self.method == "isotonic":
            # IsotonicRegression(out_of_bounds="clip").predict is linear interpolation between
            # its thresholds, constant beyond them: exactly np.interp (tested against it)
            out = np.interp(s, np.asarray(self.x), np.asarray(self.y)) if self.x else np.full_like(s, np.nan)
        else:
            out = 1.0 / (1.0 + np.exp(-(self.a * _logit(s) + self.b)))
        out = np.where(np.isnan(s), np.nan, out)
        return np.clip(out, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        if self.method == "isotonic":
            return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}
        return {"method": "platt", "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OneVsRestCalibrator:
        if data.get("method") == "isotonic":
            return cls("isotonic", tuple(float(v) for v in data["x"]), tuple(float(v) for v in data["y"]))
        if data.get("method") == "platt":
            return cls("platt", a=float(data["a"]), b=float(data["b"]))
        raise ValueError(f"calibrator: unknown method {data.get('method')!r}; expected one of {CALIBRATION_METHODS}")


def fit_one_vs_rest(scores: np.ndarray, outcome: np.ndarray, method: str) -> OneVsRestCalibrator:
    """Fit one class's calibration map on reference scores and 0/1 outcomes (rows with a NaN score are left out)."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(outcome, dtype=float)
    keep = ~np.isnan(s)
    s, y = s[keep], y[keep]
    if len(s) == 0:
        raise ValueError("cannot calibrate: no reference rows with a score")
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True).fit(s, y)
        return OneVsRestCalibrator("isotonic", tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)))
    if method == "platt":
        if y.min() == y.max():  # one outcome only: the logistic fit is degenerate; the constant is the MLE
            rate = float(np.clip(y.mean(), SCORE_EPS, 1 - SCORE_EPS))
            return OneVsRestCalibrator("platt", a=0.0, b=float(np.log(rate / (1 - rate))))
        from sklearn.linear_model import LogisticRegression

        fit = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=1000).fit(_logit(s).reshape(-1, 1), y.astype(int))
        return OneVsRestCalibrator("platt", a=float(fit.coef_[0, 0]), b=float(fit.intercept_[0]))
    raise ValueError(f"unknown calibration method {method!r}; use one of {CALIBRATION_METHODS}")


@dataclass(frozen=True)
class ScoreCalibrator:
    """Calibration of a classifier's class scores: binary (positive class, ``1 - p`` for the other) or one-vs-rest, renormalised."""

    classes: tuple[str, ...]
    method: str
    maps: dict[str, OneVsRestCalibrator] = field(default_factory=dict)  # binary: only the positive class

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2 and len(self.maps) == 1

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities (n x K, rows sum to 1) from raw class scores (n x K, columns in ``classes`` order)."""
        raw = np.asarray(scores, dtype=float)
        if raw.ndim != 2 or raw.shape[1] != len(self.classes):
            raise ValueError(f"scores must be an n x {len(self.classes)} matrix (classes {list(self.classes)}), got shape {raw.shape}")
        if self.binary:
            (positive,) = self.maps
            k = self.classes.index(positive)
            p = self.maps[positive].apply(raw[:, k])
            out = np.empty_like(raw)
            out[:, k], out[:, 1 - k] = p, 1.0 - p
            return out
        out = np.column_stack([self.maps[c].apply(raw[:, j]) for j, c in enumerate(self.classes)])
        total = out.sum(axis=1, keepdims=True)
        # a row whose one-vs-rest maps all give 0 keeps its raw scores, renormalised
        fallback = raw / np.where(raw.sum(axis=1, keepdims=True) > 0, raw.sum(axis=1, keepdims=True), 1.0)
        return np.where(total > 0, out / np.where(total > 0, total, 1.0), fallback)

    def to_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "method": self.method, "maps": {c: m.to_dict() for c, m in self.maps.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoreCalibrator:
        try:
            classes = tuple(str(c) for c in data["classes"])
            maps = {str(c): OneVsRestCalibrator.from_dict(m) for c, m in data["maps"].items()}
            method = str(data["method"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"calibrator: malformed artefact ({exc!r}); rebuild the baseline") from None
        if not set(maps) <= set(classes) or not maps:
            raise ValueError(f"calibrator: maps {sorted(maps)} do not match classes {list(classes)}; rebuild the baseline")
        return cls(classes, method, maps)


def fit_calibrator(scores: np.ndarray, labels: Sequence[str], classes: Sequence[str], method: str = "isotonic",
                   positive_class: str | None = None) -> ScoreCalibrator:
    """Fit a ``ScoreCalibrator`` on reference scores (n x K) and true labels.

    Binary (two classes): the positive class's score is calibrated (``positive_class``, else the
    second class in ``classes`` order, like scikit-learn's ``pos_label`` for sorted labels).
    More classes: one map per class, one-vs-rest.
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; use one of {CALIBRATION_METHODS}")
    cls = tuple(str(c) for c in classes)
    if len(cls) < 2:
        raise ValueError(f"a classifier needs at least two classes to calibrate, got {list(cls)}")
    raw = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=object)
    if raw.shape != (len(y), len(cls)):
        raise ValueError(f"scores shape {raw.shape} does not match {len(y)} labels x {len(cls)} classes")
    if len(cls) == 2:
        positive = positive_class if positive_class in cls else cls[1]
        k = cls.index(positive)
        return ScoreCalibrator(cls, method, {positive: fit_one_vs_rest(raw[:, k], (y == positive).astype(float), method)})
    return ScoreCalibrator(cls, method, {c: fit_one_vs_rest(raw[:, j], (y == c).astype(float), method) for j, c in enumerate(cls)})


# --------------------------------------------------------------------------- estimation


def expected_confusion(probabilities: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """E[C] (K x K; rows true class, columns predicted class) from calibrated probabilities and predicted class indices."""
    p = np.asarray(probabilities, dtype=float)
    k = p.shape[1]
    pred = np.asarray(predicted, dtype=int)
    out = np.zeros((k, k))
    for j in range(k):
        out[:, j] = p[pred == j].sum(axis=0)
    return out


def class_scores_from_counts(tp: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F1 from (expected or realised) TP, predicted-positive and actual-positive counts (NaN when 0/0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(actual > 0, tp / actual, np.nan)
        f1 = np.where(predicted + actual > 0, 2 * tp / (predicted + actual), np.nan)
    return {"precision": precision, "recall": recall, "f1": f1}


def expected_roc_auc(raw_scores: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Expected ROC AUC of one class: rank by raw score, expected positives ``p``, negatives ``1 - p`` (NannyML's CBPE AUROC).

    Equal scores form one threshold (ties give a diagonal step, as in ``sklearn.metrics.roc_curve``).
    None when the expected positives or negatives are zero.
    """
    s = np.asarray(raw_scores, dtype=float)
    p = np.asarray(probabilities, dtype=float)
    keep = ~(np.isnan(s) | np.isnan(p))
    s, p = s[keep], p[keep]
    pos, neg = p.sum(), (1.0 - p).sum()
    if len(s) == 0 or pos <= 0 or neg <= 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    s, p = s[order], p[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.r_[0.0, np.cumsum(p)[last_of_tie]]
    fp = np.r_[0.0, np.cumsum(1.0 - p)[last_of_tie]]
    return float(np.trapezoid(tp / pos, fp / neg))


@dataclass(frozen=True)
class ClassifierEstimate:
    """CBPE estimates of one set of rows: headline metrics and per class values."""

    n: int
    metrics: dict[str, float | None]
    per_class: dict[str, dict[str, float | None]]
    average: str  # "binary:<positive class>" or "macro"
    reasons: dict[str, str] = field(default_factory=dict)  # metric -> why it abstained

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "average": self.average, "metrics": dict(self.metrics), "per_class": self.per_class, "reasons": dict(self.reasons)}


def _finite(value: Any) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _headline(per_class: dict[str, np.ndarray], aucs: list[float | None], classes: Sequence[str], positive_class: str | None,
              accuracy: float | None, n: int) -> ClassifierEstimate:
    """Headline metrics (binary for the positive class, else macro with sklearn's zero_division=0) from per-class arrays."""
    reasons: dict[str, str] = {}
    table = {c: {m: _finite(per_class[m][j]) for m in ("precision", "recall", "f1")} | {"roc_auc": aucs[j]} for j, c in enumerate(classes)}
    metrics: dict[str, float | None] = {"accuracy": accuracy}
    if positive_class is not None and positive_class in classes and len(classes) == 2:
        average = f"binary:{positive_class}"
        metrics.update(table[positive_class])
        for m in ("precision", "recall", "f1", "roc_auc"):
            if metrics[m] is None:
                reasons[m] = f"{m} of class {positive_class!r} is 0/0 on these rows"
    else:
        average = "macro"
        for m in ("precision", "recall", "f1"):
            metrics[m] = float(np.mean(np.nan_to_num(per_class[m], nan=0.0))) if n else None
        defined = [a for a in aucs if a is not None]
        metrics["roc_auc"] = float(np.mean(defined)) if defined and len(defined) == len(aucs) else None
        if metrics["roc_auc"] is None:
            reasons["roc_auc"] = "one-vs-rest ROC AUC is undefined for a class absent from these rows"
    if n == 0:
        reasons = {m: "no rows" for m in CLASSIFIER_METRICS}
    return ClassifierEstimate(n, metrics, table, average, reasons)


def estimate_classifier(calibrated: np.ndarray, raw_scores: np.ndarray, predicted: np.ndarray, classes: Sequence[str],
                        positive_class: str | None = None) -> ClassifierEstimate:
    """CBPE: expected accuracy, precision, recall, F1 and ROC AUC of rows with calibrated probabilities and predicted class indices."""
    p = np.asarray(calibrated, dtype=float)
    n = len(p)
    if n == 0:
        return _headline({m: np.full(len(classes), np.nan) for m in ("precision", "recall", "f1")}, [None] * len(classes), classes,
                         positive_class, None, 0)
    pred = np.asarray(predicted, dtype=int)
    confusion = expected_confusion(p, pred)
    tp = np.diag(confusion)
    per_class = class_scores_from_counts(tp, confusion.sum(axis=0), confusion.sum(axis=1))
    aucs = [expected_roc_auc(raw_scores[:, j], p[:, j]) for j in range(len(classes))]
    return _headline(per_class, aucs, classes, positive_class, float(tp.sum() / n), n)


def realised_classifier(labels: np.ndarray, raw_scores: np.ndarray, predicted: np.ndarray, classes: Sequence[str],
                        positive_class: str | None = None) -> ClassifierEstimate:
    """The same metrics from true labels (class indices), with scikit-learn, for reference chunks and arrived labels."""
    from sklearn.metrics import confusion_matrix, roc_auc_score

    y = np.asarray(labels, dtype=int)
    pred = np.asarray(predicted, dtype=int)
    n = len(y)
    k = len(classes)
    if n == 0:
        return _headline({m: np.full(k, np.nan) for m in ("precision", "recall", "f1")}, [None] * k, classes, positive_class, None, 0)
    cm = confusion_matrix(y, pred, labels=list(range(k))).astype(float)
    tp = np.diag(cm)
    per_class = class_scores_from_counts(tp, cm.sum(axis=0), cm.sum(axis=1))
    aucs: list[float | None] = []
    for j in range(k):
        truth = y == j
        score = raw_scores[:, j]
        has = ~np.isnan(score)
        aucs.append(float(roc_auc_score(truth[has], score[has])) if 0 < truth[has].sum() < has.sum() else None)
    return _headline(per_class, aucs, classes, positive_class, float(tp.sum() / n), n)
