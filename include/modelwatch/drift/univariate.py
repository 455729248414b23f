"""Univariate drift between a reference sample and the current partition.

Every column gets two numbers and a verdict:

- a **hypothesis test** for "same distribution": the two-sample Kolmogorov–Smirnov test
  for numerical columns (scipy.stats.ks_2samp conventions), the chi-squared test of
  homogeneity on the 2 × k table of category counts for categorical ones
  (scipy.stats.chi2_contingency). p-values are corrected across the columns of one
  family with Benjamini–Hochberg (scipy.stats.false_discovery_control).
- an **effect size**: the Wasserstein-1 distance divided by the reference standard
  deviation for numerical columns and the Jensen–Shannon distance (natural log) for
  categorical ones, the same statistics and 0.1 thresholds as Evidently's defaults
  above 1,000 reference rows; or the Population Stability Index (Siddiqi 2006, *Credit
  Risk Scorecards*; reference deciles as bins, 1e-4 floor on empty bins) when a column
  asks for it.

The verdict depends on sample size, as Evidently's method choice does: with at most
``small_sample`` rows on either side the test alone decides (effect sizes are too
noisy to threshold there); above it a column drifts only when the corrected p-value is
below alpha **and** the effect reaches its floor, so that a million-row day does not
flag every column on a shift nobody would act on.

Severity (documented in docs/architecture.md) grades the effect size of a drifting
column: ``low`` from the floor, ``medium`` and ``high`` above the thresholds in
``SEVERITY_THRESHOLDS``. A column that cannot be tested (too few rows, no variance on
either side, all values missing) abstains with a reason instead of returning NaN.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np
from scipy import stats
from scipy.spatial import distance

ColumnKind = Literal["numerical", "categorical"]
Method = Literal["ks", "wasserstein", "psi", "chi2", "jensenshannon"]
Severity = Literal["none", "low", "medium", "high"]

SEVERITY_ORDER: tuple[Severity, ...] = ("none", "low", "medium", "high")
# effect size at which a drifting column is low / medium / high severity
SEVERITY_THRESHOLDS: dict[str, tuple[float, float, float]] = {
    "wasserstein": (0.1, 0.2, 0.4),
    "jensenshannon": (0.1, 0.2, 0.3),
    "psi": (0.1, 0.25, 0.5),
}
PSI_EPSILON = 1e-4
MIN_ROWS = 20  # per side; below this a column abstains
SCIPY_EXACT_MAX_N = 10_000  # up to this size scipy's ks_2samp is fast and gives exact p-values


@dataclass(frozen=True)
class DriftPolicy:
    """How columns are tested and when they count as drifting."""

    alpha: float = 0.05
    small_sample: int = 1_000
    floors: Mapping[str, float] = field(default_factory=lambda: {k: v[0] for k, v in SEVERITY_THRESHOLDS.items()})
    methods: Mapping[str, Method] = field(default_factory=dict)  # per-column override of the effect statistic (or "ks"/"chi2": test only)


@dataclass(frozen=True)
class ColumnDrift:
    """The drift test of one column; ``p_adjusted``, ``drift`` and ``severity`` are set by :func:`decide`."""

    column: str
    kind: ColumnKind
    n_reference: int
    n_current: int
    test: str | None = None
    statistic: float | None = None
    p_value: float | None = None
    effect_method: str | None = None
    effect: float | None = None
    psi: float | None = None
    floor: float | None = None
    p_adjusted: float | None = None
    drift: bool = False
    severity: Severity = "none"
    decided_by: str | None = None
    reason: str | None = None  # set when the column abstains
    details: dict = field(default_factory=dict)

    @property
    def abstained(self) -> bool:
        return self.reason is not None

    def to_dict(self) -> dict:
        return {k: (_round(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _round(value: float) -> float | None:
    return None if math.isnan(value) else float(f"{value:.6g}")


# -- numerical -------------------------------------------------------------------------------------------


def ks_wasserstein_sorted(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """KS statistic and Wasserstein-1 distance of two **sorted** samples from one merged grid.

    Written here because scipy's ks_2samp and wasserstein_distance each sort both samples
    again; sharing one merge makes the pair ~3x faster on a million rows (bench/suite_drift.py).
    """
    grid = np.concatenate([reference, current])
    grid.sort(kind="stable")  # two sorted runs: timsort merges them in linear time
    cdf_r = np.searchsorted(reference, grid, side="right") / reference.size
    cdf_c = np.searchsorted(current, grid, side="right") / current.size
    gap = np.abs(cdf_r - cdf_c)
    ks = float(gap.max())
    wasserstein = float(np.sum(gap[:-1] * np.diff(grid)))
    return ks, wasserstein


def ks_p_value(statistic: float, n_reference: int, n_current: int) -> float:
    """Two-sided asymptotic KS p-value, as scipy.stats.ks_2samp(method="asymp") computes it."""
    en = n_reference * n_current / (n_reference + n_current)
    return float(np.clip(stats.kstwo.sf(statistic, np.round(en)), 0.0, 1.0))


def quantile_edges(reference: np.ndarray, bins: int = 10) -> np.ndarray:
    """Interior PSI bin edges: the reference's deciles (duplicates removed for discrete columns)."""
    return np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))


def binned_counts(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of **sorted** values in the bins (-inf, e1], (e1, e2], ..., (ek, inf)."""
    cuts = np.searchsorted(sorted_values, edges, side="right")
    return np.diff(np.concatenate([[0], cuts, [sorted_values.size]]))


def psi(reference_counts: np.ndarray, current_counts: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """Population Stability Index: sum over bins of (c - r) * ln(c / r) on shares floored at ``epsilon``."""
    r = np.maximum(reference_counts / max(reference_counts.sum(), 1), epsilon)
    c = np.maximum(current_counts / max(current_counts.sum(), 1), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def numerical_drift(column: str, reference: np.ndarray, current: np.ndarray, *, edges: np.ndarray | None = None,
                    reference_bin_counts: np.ndarray | None = None, presorted_reference: bool = False) -> ColumnDrift:
    """KS test, normed Wasserstein distance and PSI of one numerical column (missing values dropped).

    ``edges`` and ``reference_bin_counts`` let the PSI use a baseline's whole window
    (bin edges and counts from its KLL sketch) rather than the reference sample alone.
    """
    ref = reference[~np.isnan(reference)] if reference.dtype.kind == "f" else reference
    cur = current[~np.isnan(current)] if current.dtype.kind == "f" else current
    base = ColumnDrift(column, "numerical", int(ref.size), int(cur.size))
    if min(ref.size, cur.size) < MIN_ROWS:
        return replace(base, reason=f"too few values: {ref.size} reference, {cur.size} current (need {MIN_ROWS} each)")
    ref = ref.astype(float) if presorted_reference else np.sort(ref.astype(float))
    cur = np.sort(cur.astype(float))
    if ref[0] == ref[-1] and cur[0] == cur[-1] and ref[0] == cur[0]:
        return replace(base, reason=f"constant column: every value is {ref[0]:g} on both sides")
    if max(ref.size, cur.size) <= SCIPY_EXACT_MAX_N:
        result = stats.ks_2samp(ref, cur)
        ks, p = float(result.statistic), float(result.pvalue)
        wasserstein = float(stats.wasserstein_distance(ref, cur))
    else:
        ks, wasserstein = ks_wasserstein_sorted(ref, cur)
        p = ks_p_value(ks, ref.size, cur.size)
    scale = max(float(np.std(ref)), 1e-3)  # Evidently's floor on the norm, so constant references stay finite
    if edges is None:
        edges = quantile_edges(ref)
    if reference_bin_counts is None:
        reference_bin_counts = binned_counts(ref, edges)
    details = {"reference_mean": float(np.mean(ref)), "current_mean": float(np.mean(cur)),
               "reference_quantiles": _quantiles(ref), "current_quantiles": _quantiles(cur)}
    effect = min(wasserstein / scale, sys.float_info.max)  # values near the float limit over a tiny spread: huge, not inf
    return replace(base, test="ks", statistic=ks, p_value=p, effect_method="wasserstein", effect=effect,
                   psi=psi(reference_bin_counts, binned_counts(cur, edges)), details=details)


def _quantiles(sorted_values: np.ndarray) -> dict[str, float]:
    qs = np.quantile(sorted_values, [0.05, 0.5, 0.95], method="linear")
    return {"p05": float(qs[0]), "p50": float(qs[1]), "p95": float(qs[2])}


# -- categorical -----------------------------------------------------------------------------------------


def category_counts(values: Sequence) -> dict[str, int]:
    """Counts of non-missing values, keyed by their string form (``1`` and ``"1"`` are one category)."""
    import pandas as pd

    out: dict[str, int] = {}
    for key, count in pd.Series(values, dtype="object").value_counts(dropna=True).items():
        out[str(key)] = out.get(str(key), 0) + int(count)
    return out


def categorical_drift(column: str, reference_counts: Mapping[str, int], current_counts: Mapping[str, int], *, top: int = 5) -> ColumnDrift:
    """Chi-squared test of homogeneity, Jensen–Shannon distance and PSI over category counts.

    Works on counts (sufficient statistics), so a baseline's frequent-items sketch can
    stand in for the raw reference. Categories whose expected count is under 5 (Cochran's
    rule) are pooled into one cell so that the chi-squared approximation holds: without it
    a column of hundreds of sparse levels rejects in half of all A/A trials.
    """
    n_ref, n_cur = int(sum(reference_counts.values())), int(sum(current_counts.values()))
    base = ColumnDrift(column, "categorical", n_ref, n_cur)
    if min(n_ref, n_cur) < MIN_ROWS:
        return replace(base, reason=f"too few values: {n_ref} reference, {n_cur} current (need {MIN_ROWS} each)")
    keys = sorted(set(reference_counts) | set(current_counts))
    r = np.array([reference_counts.get(k, 0) for k in keys], dtype=float)
    c = np.array([current_counts.get(k, 0) for k in keys], dtype=float)
    r_share, c_share = r / n_ref, c / n_cur
    changes = sorted(zip(keys, r_share, c_share), key=lambda t: -abs(t[2] - t[1]))[:top]
    details = {"categories": len(keys), "top_changes": [{"value": k, "reference_share": float(a), "current_share": float(b)} for k, a, b in changes]}
    js = float(distance.jensenshannon(r_share, c_share))
    stability = psi(r, c)
    rare = (r + c) * min(n_ref, n_cur) / (n_ref + n_cur) < 5  # expected count under 5 on the smaller side
    table = np.vstack([r[~rare], c[~rare]])
    if rare.any():
        table = np.hstack([table, [[r[rare].sum()], [c[rare].sum()]]])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return replace(base, test="chi2", statistic=0.0, p_value=1.0, effect_method="jensenshannon", effect=js, psi=stability, details=details)
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    return replace(base, test="chi2", statistic=float(chi2), p_value=float(p), effect_method="jensenshannon", effect=js, psi=stability, details=details)


# -- decision --------------------------------------------------------------------------------------------


def severity(effect_method: str, effect: float) -> Severity:
    """Grade an effect size with ``SEVERITY_THRESHOLDS``; below the low threshold it is still ``low`` for a drifting column."""
    low, medium, high = SEVERITY_THRESHOLDS[effect_method]
    if effect >= high:
        return "high"
    if effect >= medium:
        return "medium"
    return "low"


def use_method(result: ColumnDrift, method: Method | None) -> ColumnDrift:
    """Apply a per-column override: ``psi`` swaps the effect statistic; ``ks``/``chi2`` make the test decide alone."""
    if method is None or result.abstained:
        return result
    if method == "psi":
        return replace(result, effect_method="psi", effect=result.psi)
    if method in ("wasserstein", "jensenshannon"):
        expected = "wasserstein" if result.kind == "numerical" else "jensenshannon"
        if method != expected:
            raise ValueError(f"column {result.column!r} is {result.kind}; method {method!r} does not apply (use {expected!r}, 'psi' or the test)")
        return result
    expected_test = "ks" if result.kind == "numerical" else "chi2"
    if method != expected_test:
        raise ValueError(f"column {result.column!r} is {result.kind}; method {method!r} does not apply (use {expected_test!r})")
    return replace(result, effect_method=None)


def decide(results: Sequence[ColumnDrift], policy: DriftPolicy = DriftPolicy()) -> list[ColumnDrift]:
    """Benjamini–Hochberg over the family's p-values, then each column's verdict and severity."""
    results = [use_method(r, policy.methods.get(r.column)) for r in results]
    tested = [i for i, r in enumerate(results) if r.p_value is not None]
    adjusted = stats.false_discovery_control([results[i].p_value for i in tested], method="bh") if tested else []
    out = list(results)
    for i, p_adj in zip(tested, adjusted):
        r = results[i]
        significant = bool(p_adj < policy.alpha)
        small = min(r.n_reference, r.n_current) <= policy.small_sample
        floor = None if (small or r.effect_method is None) else float(policy.floors[r.effect_method])
        drift = significant and (floor is None or r.effect >= floor)
        if floor is None:
            decided_by = f"{r.test} p_adj < {policy.alpha}" if r.effect_method is None else f"{r.test} p_adj < {policy.alpha} (small sample: no effect floor)"
        else:
            decided_by = f"{r.test} p_adj < {policy.alpha} and {r.effect_method} >= {floor}"
        grade: Severity = "none"
        if drift:
            grade = severity(r.effect_method, r.effect) if r.effect_method else "low"
        out[i] = replace(r, p_adjusted=float(p_adj), floor=floor, drift=drift, severity=grade, decided_by=decided_by)
    return out


def worst(severities: Sequence[Severity]) -> Severity:
    """The highest severity of a list (``none`` when empty)."""
    return max(severities, key=SEVERITY_ORDER.index, default="none")
