"""Performance metrics per window (scikit-learn) and calibration (expected and maximum calibration error)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metric:
    """One metric on ``n`` rows: a value, or None and the reason it abstained."""

    name: str
    value: float | None
    n: int
    reason: str | None = None

    @property
    def abstained(self) -> bool:
        return self.value is None


def abstained_metric(name: str, n: int, reason: str) -> Metric:
    return Metric(name, None, n, reason)


def classifier_metrics(y_true: Sequence[Any], y_pred: Sequence[Any], p_pos: Sequence[float | None] | None = None, positive_class: str | None = None) -> dict[str, Metric]:
    """Accuracy, F1 and ROC AUC with ``sklearn.metrics``.

    F1 is binary (one-vs-rest for ``positive_class``) when a positive class is given, else
    macro-averaged over the classes seen (``zero_division=0``, sklearn's convention). ROC AUC
    needs the positive class and its probability ``p_pos``; rows without one are left out.
    """
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    yt = np.asarray(y_true, dtype=object)
    yp = np.asarray(y_pred, dtype=object)
    n = len(yt)
    out: dict[str, Metric] = {}
    if n == 0:
        for name in ("accuracy", "f1", "roc_auc"):
            out[name] = abstained_metric(name, 0, "no labelled predictions")
        return out
    out["accuracy"] = Metric("accuracy", float(accuracy_score(yt, yp)), n)
    if positive_class is not None:
        t, p = yt == positive_class, yp == positive_class
        if not t.any() and not p.any():
            out["f1"] = abstained_metric("f1", n, f"positive class {positive_class!r} neither observed nor predicted: F1 is 0/0")
        else:
            out["f1"] = Metric("f1", float(f1_score(t, p)), n)
    else:
        out["f1"] = Metric("f1", float(f1_score(yt.astype(str), yp.astype(str), average="macro", zero_division=0.0)), n)
    if positive_class is None:
        out["roc_auc"] = abstained_metric("roc_auc", n, "ROC AUC needs positive_class")
    else:
        scores = pd.to_numeric(pd.Series(list(p_pos) if p_pos is not None else [None] * n, dtype="object"), errors="coerce").to_numpy(dtype=float)
        has = ~np.isnan(scores)
        m = int(has.sum())
        truth = yt[has] == positive_class
        if m == 0:
            out["roc_auc"] = abstained_metric("roc_auc", 0, f"no probability for class {positive_class!r}")
        elif truth.all() or not truth.any():
            only = positive_class if truth.all() else f"not {positive_class}"
            out["roc_auc"] = abstained_metric("roc_auc", m, f"only one class ({only!r}) among {m} labelled rows with probabilities: ROC AUC is undefined")
        else:
            out["roc_auc"] = Metric("roc_auc", float(roc_auc_score(truth, scores[has])), m)
    return out


def regressor_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> tuple[dict[str, Metric], int]:
    """MAE, RMSE and MAPE with ``sklearn.metrics``; returns (metrics, zero targets skipped by MAPE).

    sklearn's MAPE divides by ``max(|y|, eps)`` and explodes on zero targets, so rows whose
    target is exactly zero are left out of MAPE (only) and counted. MAPE is a fraction, not %.
    """
    from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, root_mean_squared_error

    yt = np.asarray(y_true, dtype=float)
    yp = np.asarray(y_pred, dtype=float)
    n = len(yt)
    if n == 0:
        return {name: abstained_metric(name, 0, "no labelled predictions") for name in ("mae", "rmse", "mape")}, 0
    out = {"mae": Metric("mae", float(mean_absolute_error(yt, yp)), n), "rmse": Metric("rmse", float(root_mean_squared_error(yt, yp)), n)}
    nonzero = yt != 0
    skipped = int(n - nonzero.sum())
    if not nonzero.any():
        out["mape"] = abstained_metric("mape", 0, f"all {n} targets are zero: MAPE is undefined")
    else:
        out["mape"] = Metric("mape", float(mean_absolute_percentage_error(yt[nonzero], yp[nonzero])), int(nonzero.sum()))
    return out, skipped


def feedback_metrics(feedback: Sequence[float | None]) -> dict[str, Metric]:
    """Thumbs-down rate = share of ``feedback == -1`` among rows with feedback ±1; coverage = that row share."""
    fb = pd.to_numeric(pd.Series(list(feedback), dtype="object"), errors="coerce")
    rows = len(fb)
    given = fb.notna() & (fb != 0)
    k = int(given.sum())
    out: dict[str, Metric] = {}
    if rows == 0:
        out["feedback_coverage"] = abstained_metric("feedback_coverage", 0, "no rows")
    else:
        out["feedback_coverage"] = Metric("feedback_coverage", k / rows, rows)
    if k == 0:
        out["thumbs_down_rate"] = abstained_metric("thumbs_down_rate", 0, f"no thumbs up/down feedback among {rows} rows")
    else:
        out["thumbs_down_rate"] = Metric("thumbs_down_rate", float((fb[given] == -1).sum()) / k, k)
    return out


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-width confidence bin: (lower, upper] (the first bin also holds ``lower``)."""

    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    observed_frequency: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"lower": self.lower, "upper": self.upper, "count": self.count, "mean_confidence": self.mean_confidence, "observed_frequency": self.observed_frequency}


@dataclass
class Calibration:
    """Expected / maximum calibration error and the reliability table, or an abstention reason."""

    method: str
    n_bins: int
    n: int
    ece: float | None
    mce: float | None
    bins: list[ReliabilityBin] = field(default_factory=list)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "n_bins": self.n_bins, "n": self.n, "ece": self.ece, "mce": self.mce,
                "bins": [b.to_dict() for b in self.bins], "reason": self.reason}


def calibration(outcome: Sequence[float], confidence: Sequence[float], n_bins: int = 10, method: str = "positive class") -> Calibration:
    """ECE and MCE over ``n_bins`` equal-width bins of [0, 1] (Guo et al. 2017, eq. 3 and 5).

    ``ECE = sum_b |B_b|/n * |freq(B_b) - conf(B_b)|`` and ``MCE = max_b |freq(B_b) - conf(B_b)|``
    over non-empty bins, where ``outcome`` is 1 when the event happened (the positive class, or
    the prediction being right for top-label confidence). Bin assignment follows
    ``sklearn.calibration.calibration_curve(strategy="uniform")``: ``searchsorted`` on the
    inner edges, so a value on an edge falls in the lower bin. Empty bins are listed with
    count 0 and null means.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    y = np.asarray(outcome, dtype=float)
    p = np.asarray(confidence, dtype=float)
    if len(y) != len(p):
        raise ValueError(f"outcome and confidence differ in length ({len(y)} vs {len(p)})")
    keep = ~(np.isnan(y) | np.isnan(p))
    y, p = y[keep], p[keep]
    if len(p) == 0:
        return Calibration(method, n_bins, 0, None, None, reason="no rows with both a probability and an outcome")
    if p.min() < 0 or p.max() > 1:
        return Calibration(method, n_bins, len(p), None, None, reason=f"probabilities outside [0, 1] (min {p.min():.4g}, max {p.max():.4g})")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    total = np.bincount(ids, minlength=n_bins)
    conf_sum = np.bincount(ids, weights=p, minlength=n_bins)
    true_sum = np.bincount(ids, weights=y, minlength=n_bins)
    bins: list[ReliabilityBin] = []
    gaps: list[tuple[int, float]] = []
    for b in range(n_bins):
        count = int(total[b])
        if count:
            conf, freq = float(conf_sum[b] / count), float(true_sum[b] / count)
            gaps.append((count, abs(freq - conf)))
            bins.append(ReliabilityBin(round(float(edges[b]), 12), round(float(edges[b + 1]), 12), count, conf, freq))
        else:
            bins.append(ReliabilityBin(round(float(edges[b]), 12), round(float(edges[b + 1]), 12), 0, None, None))
    n = len(p)
    ece = float(sum(c / n * g for c, g in gaps))
    mce = float(max(g for _, g in gaps))
    return Calibration(method, n_bins, n, ece, mce, bins)
