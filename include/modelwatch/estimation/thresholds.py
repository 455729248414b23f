"""Alert thresholds sized for the day being judged: the sampling spread at the day's row count and the reference's own drift, kept apart.

A day's estimated metric is compared with the reference's realised metric. On a day like the
reference, the two differ by three independent parts, each a variance:

1. **day sampling**: the realised metric of ``n`` rows varies as ``u / n``, where ``u`` is the
   metric's asymptotic (per-row) variance, measured on the labelled reference:

   * accuracy, precision, recall, F1 (binary or macro): the delta method on the multinomial
     confusion matrix, ``u = sum_c g_c**2 p_c - (sum_c g_c p_c)**2`` with ``p`` the cell shares and
     ``g`` the metric's gradient in them. For accuracy this is exactly the binomial ``a (1 - a)``;
     for precision (recall) the binomial of the predicted (actual) positives; for F1 it is the
     delta-method variance of Takahashi, Yamamoto, Kuchiba & Koyama (2022), "Confidence interval
     for micro-averaged F1 and macro-averaged F1 scores", Applied Intelligence 52:4961–4972;
   * ROC AUC: DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more
     correlated receiver operating characteristic curves", Biometrics 44:837–845 — the variances
     ``S10`` and ``S01`` of the positives' and negatives' placement values, computed from mid-ranks
     (Sun & Xu 2014, "Fast implementation of DeLong's algorithm", IEEE SPL 21:1389–1393), so
     ``u = S10 / pi + S01 / (1 - pi)`` with ``pi`` the positive share. Macro (one-vs-rest) AUC takes
     the mean of the classes' standard deviations: the bound for perfectly correlated classes;
   * MAE: the variance of the absolute error; RMSE: the delta method on the mean squared error,
     ``Var(e**2) / (4 MSE)``.

2. **reference sampling**: the centre (the realised metric of the whole reference, ``N`` rows) is
   itself an estimate, with variance ``u / N``. It bounds how tight any threshold can be: a day
   larger than the reference cannot be judged more finely than the reference was measured.

3. **reference drift**: real performance moves from day to day beyond sampling (weekdays,
   campaigns). Its variance ``tau**2`` is the between-period variance of the realised metric over
   the reference's UTC days, by the DerSimonian & Laird (1986) method of moments ("Meta-analysis
   in clinical trials", Controlled Clinical Trials 7:177–188) with within-day variances
   ``u / n_d``. The estimate is truncated at zero, so on a stable reference it is positive half the
   time by chance; it counts only when Cochran's Q test (Cochran 1954, "The combination of
   estimates from different experiments", Biometrics 10:101–129) rejects at ``DRIFT_ALPHA`` that the
   days differ by sampling alone, else the drift part is 0 (the measured value stays in the
   record). It needs ``MIN_PERIODS`` days with the metric defined; with fewer it is not measured
   and the thresholds are sampling-only, saying that a longer baseline window fixes it.

The band is ``centre ± 3 sqrt(u / n + u / N + tau**2)``: the three parts add as independent
variances (in quadrature); the record names the largest as the one that dominates. This
replaces NannyML's rule (mean ± 3 sd of the realised metric over reference chunks of a fixed
size), which sizes the band for the chunk rather than for the day.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SIGMAS = 3.0
MIN_PERIODS = 3  # reference days needed before their between-day variance is worth estimating
DRIFT_ALPHA = 0.05  # Cochran's Q test level below which the reference days count as drifting
DAY, REFERENCE, DRIFT = "day_sampling", "reference_sampling", "reference_drift"
PART_NAMES = {DAY: "sampling at the day's row count", REFERENCE: "the reference's own size", DRIFT: "drift between reference days"}
VARIANCE_METHODS = {
    "accuracy": "binomial (delta method on the confusion matrix)",
    "precision": "binomial of the predicted positives (delta method on the confusion matrix)",
    "recall": "binomial of the actual positives (delta method on the confusion matrix)",
    "f1": "delta method on the confusion matrix (Takahashi et al. 2022)",
    "roc_auc": "DeLong et al. 1988 placement variances",
    "mae": "variance of the absolute error",
    "rmse": "delta method on the mean squared error",
}
_GRADIENT_STEP = 1e-7


# --------------------------------------------------------------------------- per-row (asymptotic) variances


def confusion_metric(shares: np.ndarray, metric: str, positive: int | None) -> float:
    """A confusion-matrix metric from cell shares (rows true class, columns predicted), as ``cbpe._headline`` reports it.

    ``positive``: the binary positive class's index (its precision, recall, F1); None: macro
    average over classes with a 0/0 class counted as 0 (scikit-learn's ``zero_division=0``).
    """
    p = np.asarray(shares, dtype=float)
    diagonal = np.diag(p)
    if metric == "accuracy":
        return float(diagonal.sum() / p.sum())
    if metric == "precision":
        denominator = p.sum(axis=0)
        numerator = diagonal
    elif metric == "recall":
        denominator = p.sum(axis=1)
        numerator = diagonal
    elif metric == "f1":
        denominator = p.sum(axis=0) + p.sum(axis=1)
        numerator = 2 * diagonal
    else:
        raise ValueError(f"{metric!r} is not a confusion-matrix metric")
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = np.where(denominator > 0, numerator / denominator, np.nan)
    if positive is not None:
        return float(per_class[positive])
    return float(np.mean(np.nan_to_num(per_class, nan=0.0)))


def confusion_unit_variance(counts: np.ndarray, metric: str, positive: int | None) -> float | None:
    """Per-row variance ``u`` of a confusion-matrix metric by the delta method on the multinomial cell shares (None: undefined).

    ``Var(metric of n rows) ~ u / n`` with ``u = sum g_c**2 p_c - (sum g_c p_c)**2``; the gradient
    ``g`` is taken by central differences, exact to ~1e-9 for these rational functions.
    """
    cells = np.asarray(counts, dtype=float)
    total = cells.sum()
    if total <= 0:
        return None
    shares = cells / total
    if not np.isfinite(confusion_metric(shares, metric, positive)):
        return None
    flat = shares.ravel()
    gradient = np.zeros_like(flat)
    for c in np.flatnonzero(flat > 0):
        step = np.zeros_like(flat)
        step[c] = _GRADIENT_STEP
        up = confusion_metric((flat + step).reshape(shares.shape), metric, positive)
        down = confusion_metric((flat - step).reshape(shares.shape), metric, positive)
        gradient[c] = (up - down) / (2 * _GRADIENT_STEP)
    variance = float(np.sum(gradient**2 * flat) - np.sum(gradient * flat) ** 2)
    return max(variance, 0.0)


def _midranks(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(values, method="average")


def delong_unit_variance(truth: np.ndarray, scores: np.ndarray) -> float | None:
    """Per-row variance ``u`` of the ROC AUC (DeLong et al. 1988, mid-rank form of Sun & Xu 2014); None without both classes.

    Placement values: ``V10_i = (R_i - R+_i) / n0`` for each positive (its rank among all rows minus
    among the positives, over the negatives' count) and ``V01_j = 1 - (R_j - R-_j) / n1`` for each
    negative; ``Var(AUC) = S10 / n1 + S01 / n0``, which at ``n`` rows with positive share ``pi`` is
    ``(S10 / pi + S01 / (1 - pi)) / n``.
    """
    y = np.asarray(truth, dtype=bool)
    s = np.asarray(scores, dtype=float)
    keep = ~np.isnan(s)
    y, s = y[keep], s[keep]
    positives, negatives = s[y], s[~y]
    n1, n0 = len(positives), len(negatives)
    if n1 < 2 or n0 < 2:
        return None
    overall = _midranks(s)
    v10 = (overall[y] - _midranks(positives)) / n0
    v01 = 1.0 - (overall[~y] - _midranks(negatives)) / n1
    share = n1 / (n1 + n0)
    return float(np.var(v10, ddof=1) / share + np.var(v01, ddof=1) / (1 - share))


def classifier_unit_variances(labels: np.ndarray, predicted: np.ndarray, raw_scores: np.ndarray, classes: Sequence[str],
                              positive_class: str | None) -> dict[str, float | None]:
    """``u`` of accuracy, precision, recall, F1 and ROC AUC of labelled rows (class indices), averaged as ``cbpe._headline`` does."""
    k = len(classes)
    y, pred = np.asarray(labels, dtype=int), np.asarray(predicted, dtype=int)
    counts = np.zeros((k, k))
    np.add.at(counts, (y, pred), 1.0)
    positive = classes.index(positive_class) if positive_class in classes and k == 2 else None
    out: dict[str, float | None] = {m: confusion_unit_variance(counts, m, positive) for m in ("accuracy", "precision", "recall", "f1")}
    auc_classes = [positive] if positive is not None else list(range(k))
    sds = [delong_unit_variance(y == j, raw_scores[:, j]) for j in auc_classes]
    out["roc_auc"] = None if any(v is None for v in sds) else float(np.mean(np.sqrt(sds)) ** 2)
    return out


def regressor_unit_variances(target: np.ndarray, prediction: np.ndarray) -> dict[str, float | None]:
    """``u`` of MAE (variance of the absolute error) and RMSE (delta method: ``Var(e**2) / (4 MSE)``)."""
    error = np.asarray(prediction, dtype=float) - np.asarray(target, dtype=float)
    error = error[~np.isnan(error)]
    if len(error) < 2:
        return {"mae": None, "rmse": None}
    squared = error**2
    mse = float(squared.mean())
    return {"mae": float(np.var(np.abs(error), ddof=1)), "rmse": float(np.var(squared, ddof=1) / (4 * mse)) if mse > 0 else None}


# --------------------------------------------------------------------------- drift between reference periods


def _cochran_q(values: Sequence[float], variances: Sequence[float]) -> tuple[float, np.ndarray]:
    """Cochran's Q (the inverse-variance weighted squared deviations from the weighted mean) and the weights."""
    m, v = np.asarray(values, dtype=float), np.asarray(variances, dtype=float)
    if len(m) < 2:
        raise ValueError("the between-period variance needs at least two periods")
    w = 1.0 / np.maximum(v, 1e-300)
    centre = float(np.sum(w * m) / np.sum(w))
    return float(np.sum(w * (m - centre) ** 2)), w


def between_period_variance(values: Sequence[float], variances: Sequence[float]) -> float:
    """DerSimonian–Laird method-of-moments between-period variance ``tau**2`` of per-period values with known within-period variances."""
    q, w = _cochran_q(values, variances)
    scale = float(np.sum(w) - np.sum(w**2) / np.sum(w))
    return max(0.0, (q - (len(w) - 1)) / scale) if scale > 0 else 0.0


def heterogeneity_p(values: Sequence[float], variances: Sequence[float]) -> float:
    """p-value of Cochran's Q test that the periods differ only by sampling (Q ~ chi-squared with k - 1 degrees of freedom)."""
    from scipy.stats import chi2

    q, w = _cochran_q(values, variances)
    return float(chi2.sf(q, len(w) - 1))


def period_statistics(periods: Sequence[tuple[str, np.ndarray]], metric_of: Callable[[np.ndarray], dict[str, float | None]],
                      unit_variances: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    """Per metric: the realised value of each reference period (``metric_of(rows)``) and the drift sd between periods (None: too few).

    ``periods`` are ``(name, row indices)`` in time order; ``unit_variances`` the per-row variances.
    """
    realised = [(name, len(rows), metric_of(rows)) for name, rows in periods]
    out: dict[str, dict[str, Any]] = {}
    for metric, unit in unit_variances.items():
        rows = [{"period": name, "rows": n, "value": values.get(metric)} for name, n, values in realised]
        defined = [r for r in rows if r["value"] is not None and r["rows"] > 0]
        entry: dict[str, Any] = {"periods": rows, "drift_sd": None}
        if unit is None:
            entry["drift_reason"] = f"{metric} has no sampling variance on the reference"
        elif len(defined) < MIN_PERIODS:
            entry["drift_reason"] = (f"the reference spans {len(defined)} day(s) with a defined {metric} (< {MIN_PERIODS}): drift between "
                                     "reference days is not measured; a longer baseline window would measure it")
        else:
            values, variances = [r["value"] for r in defined], [unit / r["rows"] for r in defined]
            p = heterogeneity_p(values, variances)
            measured = math.sqrt(between_period_variance(values, variances))
            # a stable reference's estimate is positive half the time by chance: count it only when the days really differ
            entry.update(drift_sd=measured if p < DRIFT_ALPHA else 0.0, drift_measured_sd=measured, drift_p=p)
        out[metric] = entry
    return out


# --------------------------------------------------------------------------- the day's thresholds


@dataclass(frozen=True)
class DayThresholds:
    """Alert thresholds of one metric for a day of ``rows`` rows: centre ± 3 combined sd, with the parts kept apart."""

    centre: float
    rows: int
    reference_rows: int
    parts: dict[str, float | None]  # DAY, REFERENCE, DRIFT -> sd (DRIFT None: not measured)
    lower: float
    upper: float
    note: str

    @property
    def sd(self) -> float:
        return math.sqrt(sum(v**2 for v in self.parts.values() if v is not None))

    @property
    def dominant(self) -> str:
        return max((k for k, v in self.parts.items() if v is not None), key=lambda k: self.parts[k] or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"threshold_lower": self.lower, "threshold_upper": self.upper, "threshold_centre": self.centre, "threshold_sd": self.sd,
                "threshold_parts": dict(self.parts), "threshold_dominant": self.dominant, "threshold_note": self.note}


def _note(parts: dict[str, float | None], dominant: str, rows: int, reference_rows: int, drift_reason: str | None) -> str:
    share = {k: (v or 0.0) ** 2 for k, v in parts.items()}
    total = sum(share.values()) or 1.0
    text = f"{PART_NAMES[dominant]} dominates ({share[dominant] / total:.0%} of the variance)"
    if dominant == REFERENCE:
        text += (f": the reference's {reference_rows:,} labelled rows limit thresholds for a {rows:,}-row day; a longer baseline window "
                 f"or a larger estimation.reference_rows (about {rows:,}) would tighten them")
    elif dominant == DRIFT:
        text += ": performance moved that much between the reference's own days"
    if drift_reason:
        text += f"; sampling-only band: {drift_reason}"
    return text


def day_thresholds(centre: float | None, unit_variance: float | None, rows: int, reference_rows: int, drift_sd: float | None,
                   bounds: tuple[float, float], drift_reason: str | None = None) -> DayThresholds | None:
    """The thresholds of a metric for a ``rows``-row day, or None when the reference gives no centre or sampling variance."""
    if centre is None or unit_variance is None or rows <= 0 or reference_rows <= 0:
        return None
    parts = {DAY: math.sqrt(unit_variance / rows), REFERENCE: math.sqrt(unit_variance / reference_rows), DRIFT: drift_sd}
    provisional = DayThresholds(centre, rows, reference_rows, parts, 0.0, 0.0, "")
    half = SIGMAS * provisional.sd
    low, high = bounds
    return DayThresholds(centre, rows, reference_rows, parts, max(low, centre - half), min(high, centre + half),
                         _note(parts, provisional.dominant, rows, reference_rows, drift_reason if drift_sd is None else None))
