"""Planning and checking an experiment: power analysis, days remaining, multiplicity correction, SRM, CUPED."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from scipy import special

from modelwatch.core.jsonable import Serialisable
from modelwatch.experiments.stats import (
    DEFAULT_ALPHA,
    SRM_MIN_EXPECTED,
    SRM_THRESHOLD,
    CovariateStats,
    SampleStats,
    central_moment,
    check_alpha,
    cross_moment,
)

# -- CUPED ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CupedResult(Serialisable):
    """CUPED-adjusted statistics of both arms, to pass to any mean test, with the theta used.

    ``variance_reduction`` is 1 − Var(adjusted difference) / Var(unadjusted difference).
    """

    control: SampleStats
    treatment: SampleStats
    theta: float
    variance_reduction: float
    abstained: bool = False
    reason: str = ""


def _adjusted(stats_: CovariateStats, theta: float, pooled_mean_x: float) -> SampleStats:
    """The SampleStats of ``y - theta (x - pooled_mean_x)`` over the arm's rows, from its sums."""
    n = stats_.n
    mean = (stats_.sum_y - theta * (stats_.sum_x - n * pooled_mean_x)) / n
    m2 = central_moment(n, stats_.sum_y, stats_.sum_y2) - 2 * theta * cross_moment(n, stats_.sum_x, stats_.sum_y, stats_.sum_xy) \
        + theta * theta * central_moment(n, stats_.sum_x, stats_.sum_x2)
    m2 = max(m2, 0.0)
    return SampleStats(n, n * mean, m2 + n * mean * mean)


def cuped_adjust(control: CovariateStats, treatment: CovariateStats) -> CupedResult:
    """CUPED variance reduction (Deng, Xu, Kohavi & Walker 2013, "Improving the Sensitivity of Online
    Controlled Experiments by Utilizing Pre-Experiment Data", WSDM).

    ``y_adj = y - theta (x - mean_x)`` with ``theta = cov(x, y) / var(x)`` estimated on both arms
    pooled (merged statistics), and ``mean_x`` the pooled covariate mean, so the adjusted
    means stay unbiased estimates of each arm's mean (the covariate is unaffected by the
    treatment). Returned as each arm's :class:`SampleStats` of ``y_adj`` — exactly those of
    the adjusted values — to feed :func:`mean_test` or :func:`sequential_difference`.
    Merge the :class:`CovariateStats` across days first, then adjust (theta changes with the
    data). Abstains (unadjusted statistics) below two rows per arm; a constant covariate
    gives theta 0.
    """
    if control.n < 2 or treatment.n < 2:
        return CupedResult(control.metric, treatment.metric, 0.0, 0.0, abstained=True, reason="need at least 2 rows per arm for CUPED")
    pooled = control + treatment
    var_x = central_moment(pooled.n, pooled.sum_x, pooled.sum_x2)
    reason = ""
    if var_x == 0:
        theta, reason = 0.0, "covariate is constant: no adjustment"
    else:
        theta = cross_moment(pooled.n, pooled.sum_x, pooled.sum_y, pooled.sum_xy) / var_x
    mean_x = pooled.sum_x / pooled.n
    adj_c, adj_t = _adjusted(control, theta, mean_x), _adjusted(treatment, theta, mean_x)
    before = control.metric.variance / control.n + treatment.metric.variance / treatment.n
    after = adj_c.variance / adj_c.n + adj_t.variance / adj_t.n
    reduction = 1 - after / before if before > 0 else 0.0
    return CupedResult(adj_c, adj_t, theta, reduction, reason=reason)


# -- planning ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerResult(Serialisable):
    """Rows needed to detect ``mde`` with the given power.

    ``required_n_control`` and ``required_n_treatment`` follow the split;
    ``required_n_per_arm`` is the larger of the two (both, under a 50/50 split).
    """

    kind: str
    test: str
    alpha: float
    power: float
    split: float
    effect_size: float | None = None
    effect_size_kind: str = ""
    mde_absolute: float | None = None
    required_n_control: int | None = None
    required_n_treatment: int | None = None
    required_n_per_arm: int | None = None
    required_total: int | None = None
    abstained: bool = False
    reason: str = ""


def _solve_n_control(effect_size: float, ratio: float, alpha: float, power: float, test: str) -> float:
    """Control rows of a two-sided two-sample test with ``n_treatment = ratio * n_control``: statsmodels' ``solve_power``.

    ``NormalIndPower`` (z) or ``TTestIndPower`` (t: noncentral t with the pooled-test df
    ``n1 + n2 - 2``), both tails counted (statsmodels.stats.power; Cohen 1988, ch. 2).
    """
    from statsmodels.stats.power import NormalIndPower, TTestIndPower

    solver = NormalIndPower() if test == "z" else TTestIndPower()
    return float(solver.solve_power(effect_size=effect_size, alpha=alpha, power=power, ratio=ratio, alternative="two-sided"))


def power_analysis(baseline_mean: float, baseline_sd: float | None, mde: float, *, relative: bool = True, alpha: float = DEFAULT_ALPHA,
                   power: float = 0.8, split: float = 0.5, kind: Literal["mean", "proportion"] = "mean",
                   test: Literal["z", "t"] = "z") -> PowerResult:
    """Sample size of a fixed-horizon two-sided two-sample test that detects ``mde`` with probability ``power``.

    Means: Cohen's d = absolute MDE / ``baseline_sd`` (equal sds in both arms), solved with
    the normal (``test="z"``, statsmodels ``NormalIndPower``) or noncentral t power function
    (``test="t"``, statsmodels ``TTestIndPower``), by :func:`_solve_n_control`. Proportions: ``baseline_mean`` is the
    rate (``baseline_sd`` is ignored) and the effect size is Cohen's h (arcsine transform,
    statsmodels ``proportion_effectsize``) with the normal power function, for a rate that
    rises by the MDE (Cohen's h is not symmetric: a fall of the same size needs slightly
    different n). ``mde`` is relative to the baseline unless ``relative=False``; ``split`` is
    the treatment's share of traffic. Counts are rounded up. Abstains when the effect size is not defined (a zero
    baseline with a relative MDE, no variance, a rate pushed outside (0, 1)).
    """
    check_alpha(alpha)
    if not 0 < power < 1 or not 0 < split < 1 or mde <= 0:
        raise ValueError(f"need 0 < power < 1, 0 < split < 1 and mde > 0; got power={power}, split={split}, mde={mde}")
    base = dict(kind=kind, test=test if kind == "mean" else "z", alpha=alpha, power=power, split=split)
    if relative and baseline_mean == 0:
        return PowerResult(**base, abstained=True, reason="a relative MDE needs a non-zero baseline")
    delta = abs(mde * baseline_mean) if relative else mde
    if kind == "proportion":
        p1, p2 = baseline_mean, baseline_mean + delta
        if not (0 < p1 < 1 and 0 < p2 < 1):
            return PowerResult(**base, mde_absolute=delta, abstained=True,
                               reason=f"rates must lie in (0, 1), got {p1:.6g} -> {p2:.6g}")
        from statsmodels.stats.proportion import proportion_effectsize

        effect, effect_kind = float(proportion_effectsize(p2, p1)), "cohens_h"
    else:
        if baseline_sd is None or baseline_sd <= 0:
            return PowerResult(**base, mde_absolute=delta, abstained=True, reason="a mean needs a positive baseline_sd")
        effect, effect_kind = delta / baseline_sd, "cohens_d"
    ratio = split / (1 - split)
    n_control = _solve_n_control(effect, ratio, alpha, power, base["test"])
    n_c, n_t = math.ceil(n_control - 1e-9), math.ceil(n_control * ratio - 1e-9)
    return PowerResult(**base, effect_size=effect, effect_size_kind=effect_kind, mde_absolute=delta, required_n_control=n_c,
                       required_n_treatment=n_t, required_n_per_arm=max(n_c, n_t), required_total=n_c + n_t)


def days_remaining(required_total: int, current_total: int, daily_traffic: float) -> int | None:
    """Whole days of traffic still needed to reach ``required_total`` rows; 0 when reached, None without traffic."""
    missing = required_total - current_total
    if missing <= 0:
        return 0
    if daily_traffic <= 0:
        return None
    return math.ceil(missing / daily_traffic)


# -- multiple metrics ----------------------------------------------------------------------------------------


_MULTITEST_METHODS = {"holm": "holm", "bh": "fdr_bh"}  # config name -> statsmodels multipletests method


def adjust_pvalues(pvalues: Sequence[float | None], method: Literal["holm", "bh"] = "holm") -> list[float | None]:
    """Multiplicity-adjusted p-values from ``statsmodels.stats.multitest.multipletests``.

    ``holm``: Holm's (1979) step-down, family-wise error control, for decisions on several
    primary metrics. ``bh``: Benjamini & Hochberg's (1995) step-up, false-discovery-rate
    control, for exploratory metrics. ``None`` (an abstained test) stays ``None`` and is not
    counted in the family.
    """
    present = [(i, float(p)) for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if not present:
        return out
    if any(not 0 <= p <= 1 for _, p in present):
        raise ValueError(f"p-values must lie in [0, 1]: {pvalues}")
    if method not in _MULTITEST_METHODS:
        raise ValueError(f"method must be 'holm' or 'bh', got {method!r}")
    from statsmodels.stats.multitest import multipletests

    adjusted = multipletests([p for _, p in present], method=_MULTITEST_METHODS[method])[1]
    for (position, _), value in zip(present, adjusted):
        out[position] = float(value)
    return out


# -- sample-ratio mismatch -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SrmResult(Serialisable):
    """Sample-ratio-mismatch check of an experiment's traffic.

    ``flagged`` when the chi-squared p-value over the planned arms is below ``threshold`` or
    traffic reached arms that are not planned (``unexpected``). ``zero_traffic`` lists
    planned arms without a single row.
    """

    observed: dict[str, int]
    expected: dict[str, float]
    threshold: float
    flagged: bool
    chi2: float | None = None
    df: int | None = None
    p_value: float | None = None
    zero_traffic: list[str] | None = None
    unexpected: list[str] | None = None
    abstained: bool = False
    reason: str = ""


def srm_test(observed: Mapping[str, int], expected_weights: Mapping[str, float], threshold: float = SRM_THRESHOLD) -> SrmResult:
    """Sample-ratio mismatch: Pearson's chi-squared goodness-of-fit test of arm counts against the planned split.

    The statistic and p-value equal ``scipy.stats.chisquare(f_obs, f_exp)`` over the planned
    arms, with expected counts ``total * weight / sum(weights)``. The conventional threshold
    is p < 0.001 (Fabijan et al. 2019, "Diagnosing Sample Ratio Mismatch in Online Controlled
    Experiments", KDD): checked daily, a 0.001 threshold keeps false alarms rare. Rows in
    arms that are not planned are excluded from the test and flag the experiment on their
    own (``unexpected``). Abstains without traffic in the planned arms or when an expected
    count is below 5 (the chi-squared approximation does not hold), but still flags
    unexpected arms.
    """
    check_alpha(threshold)
    weights = {arm: float(w) for arm, w in expected_weights.items()}
    if len(weights) < 2 or any(w <= 0 or not math.isfinite(w) for w in weights.values()):
        raise ValueError(f"expected_weights needs at least two arms with positive weights, got {dict(expected_weights)}")
    if any(int(c) < 0 for c in observed.values()):
        raise ValueError(f"counts must be >= 0: {dict(observed)}")
    counts = {arm: int(observed.get(arm, 0)) for arm in weights}
    unexpected = sorted(arm for arm, c in observed.items() if arm not in weights and int(c) > 0)
    zero = sorted(arm for arm, c in counts.items() if c == 0)
    total = sum(counts.values())
    scale = sum(weights.values())
    expected = {arm: total * w / scale for arm, w in weights.items()}
    base = dict(observed=counts, expected=expected, threshold=threshold, zero_traffic=zero, unexpected=unexpected)
    note = f"traffic in unplanned arm(s) {unexpected}" if unexpected else ""
    if total == 0:
        return SrmResult(**base, flagged=bool(unexpected), abstained=True, reason="; ".join(filter(None, ["no traffic in the planned arms", note])))
    small = sorted(arm for arm, e in expected.items() if e < SRM_MIN_EXPECTED)
    if small:
        reason = f"expected count below {SRM_MIN_EXPECTED:g} in {small}: too little traffic for the chi-squared test"
        return SrmResult(**base, flagged=bool(unexpected), abstained=True, reason="; ".join(filter(None, [reason, note])))
    chi2 = float(sum((counts[a] - expected[a]) ** 2 / expected[a] for a in weights))
    df = len(weights) - 1
    p_value = float(special.chdtrc(df, chi2))
    flagged = p_value < threshold or bool(unexpected)
    reasons = [f"p = {p_value:.3g} < {threshold:g}" if p_value < threshold else "", note, f"zero traffic in {zero}" if zero else ""]
    return SrmResult(**base, flagged=flagged, chi2=chi2, df=df, p_value=p_value, reason="; ".join(filter(None, reasons)))
