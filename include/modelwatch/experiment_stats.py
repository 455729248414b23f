"""A/B experiment statistics over sufficient statistics, in the spirit of GrowthBook's gbstats.

Every test here works on a few sums per arm, so a day's statistics are computed once,
stored, and merged with ``+`` across days (the experiment DAG looks once a day at the
experiment to date):

- :class:`SampleStats` ``(n, sum, sum_sq)`` for means (tokens, cost, quality scores) and
  0/1 rates (where ``sum_sq == sum``);
- :class:`RatioStats` ``(n, sum_x, sum_y, sum_x2, sum_y2, sum_xy)`` for ratio metrics
  ``sum(x) / sum(y)`` (cost per 1k tokens, tokens per second);
- :class:`CovariateStats` for CUPED: the metric, a pre-period covariate and their cross moment.

Tests (each names its method and source in its docstring):

=====================================  =====================================================================
function                               method
=====================================  =====================================================================
:func:`mean_test`                      Welch's t-test (= ``scipy.stats.ttest_ind(equal_var=False)``); lift CI
                                       by the delta method (Deng, Knoblich & Lu 2018)
:func:`proportion_test`                two-sample z-test, pooled SE for the test, unpooled (Wald) for the CI
:func:`ratio_test`                     delta-method variance of ``sum_x / sum_y`` per arm (Deng et al. 2018)
:func:`sequential_difference`          anytime-valid normal-mixture confidence sequence (Howard et al. 2021;
                                       asymptotic form of Waudby-Smith et al. 2024), as gbstats'
                                       ``SequentialTwoSidedTTest``
:func:`difference_test`                the default entry point: sequential unless asked for a fixed horizon
:func:`non_inferiority`                one-sided guardrail test against a margin, sequential by default
:func:`quantile_ci`                    distribution-free order-statistic interval (Conover 1999 §3.2,
                                       Hahn & Meeker 1991; = ``scipy.stats.quantile_test``), optional
                                       interpolation (Nyblom 1992)
:func:`quantile_difference`            difference of quantiles, Bonferroni-combined order-statistic intervals
:func:`look_alpha`                     alpha spent at daily look k of an experiment of any length (Bonferroni
                                       over looks; a spending function that tends to alpha, Lan & DeMets 1983)
:func:`cuped_adjust`                   CUPED (Deng, Xu, Kohavi & Walker 2013), theta pooled across arms
:func:`power_analysis`                 sample size for a two-sample z- or t-test (= statsmodels.stats.power)
:func:`adjust_pvalues`                 Holm (1979) and Benjamini–Hochberg (1995) (= statsmodels multipletests)
:func:`srm_test`                       sample-ratio mismatch: chi-squared goodness of fit (= scipy chisquare)
=====================================  =====================================================================

Conventions: ``effect`` is always treatment − control and ``relative_lift`` is
treatment / control − 1. A test that cannot be computed (an empty arm, one row, zero
variance, a zero denominator) returns a result with ``abstained=True`` and a ``reason``
and ``None`` in the numbers it could not compute; nothing returns NaN, and every
``to_dict()`` is JSON-able with ``allow_nan=False``. Programming errors (a negative
count, alpha outside (0, 1), non-binary data passed as a proportion) raise ``ValueError``.

Why sequential by default: the experiment DAG looks every day, and a fixed-horizon test
read at every look rejects a true null far more often than alpha (about 0.2 instead of
0.05 over 14 daily looks). The confidence sequences below hold at all looks at once, at
the price of wider intervals; the fixed-horizon tests remain for a pre-registered single
analysis at the planned sample size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import optimize, special, stats

Kind = Literal["mean", "proportion", "ratio", "quantile"]
Direction = Literal["increase", "decrease"]
Verdict = Literal["non_inferior", "inferior", "inconclusive"]
Decision = Literal["better", "worse", "inconclusive"]

DEFAULT_ALPHA = 0.05
DEFAULT_TUNING_N = 5_000  # gbstats' default sequential tuning parameter; pass the planned total sample size instead
DEFAULT_MIN_TAIL = 10  # quantile intervals need n * min(q, 1 - q) >= this (1,000 rows for a p99)
SPENDING_FLAT_LOOKS = 14  # daily looks at alpha / 28 each before the quantile guardrails' spending tapers
SRM_THRESHOLD = 0.001
SRM_MIN_EXPECTED = 5.0  # below this expected count in a planned arm the chi-squared approximation is not trusted
_ZERO_VARIANCE = 1e-12  # a second central moment below this share of sum_sq is rounding error: zero variance


# -- serialisation -------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars -> Python, tuples -> lists, non-finite floats -> None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class _Serialisable:
    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict (no NaN or inf)."""
        return _plain(asdict(self))


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


# -- sufficient statistics -----------------------------------------------------------------------------------


def _finite_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if np.isinf(array).any():
        raise ValueError(f"{name} contains infinite values")
    return array


def _central(n: int, s: float, s2: float) -> float:
    """Second central moment sum((v - mean)^2) from the sums, clamped at 0 and with rounding noise set to 0."""
    if n == 0:
        return 0.0
    m2 = s2 - s * s / n
    return 0.0 if m2 <= _ZERO_VARIANCE * abs(s2) else m2


def _cross(n: int, sx: float, sy: float, sxy: float) -> float:
    """Co-moment sum((x - mean_x)(y - mean_y)) from the sums."""
    return sxy - sx * sy / n if n else 0.0


@dataclass(frozen=True)
class SampleStats(_Serialisable):
    """Sufficient statistics of one arm's metric: count, sum and sum of squares; merge days with ``+``.

    For a 0/1 rate (error rate, thumbs-up rate) ``sum_sq == sum`` and the mean is the rate.
    Sums (rather than running means) are what a SQL ``GROUP BY`` produces and what adds up
    across days; the variance is ``(sum_sq - sum^2 / n) / (n - 1)``, clamped at zero, and a
    second central moment below 1e-12 of ``sum_sq`` counts as zero (rounding noise of the
    subtraction; real metrics do not have a coefficient of variation below 1e-6).
    """

    n: int
    sum: float
    sum_sq: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "sum", float(self.sum))
        object.__setattr__(self, "sum_sq", float(self.sum_sq))
        if self.n < 0 or not math.isfinite(self.sum) or not math.isfinite(self.sum_sq) or self.sum_sq < 0:
            raise ValueError(f"invalid SampleStats: n={self.n}, sum={self.sum}, sum_sq={self.sum_sq}")
        if self.n == 0 and (self.sum or self.sum_sq):
            raise ValueError("SampleStats with n=0 must have zero sums")

    @classmethod
    def from_values(cls, values: Any) -> SampleStats:
        """Statistics of an array of values; missing values (NaN) are skipped, infinite ones rejected."""
        array = _finite_array(values, "values")
        array = array[~np.isnan(array)]
        return cls(array.size, float(array.sum()), float(np.dot(array, array)))

    @classmethod
    def from_counts(cls, successes: int, n: int) -> SampleStats:
        """Statistics of a 0/1 metric with ``successes`` ones among ``n`` rows."""
        if not 0 <= successes <= n:
            raise ValueError(f"successes must lie in [0, n], got {successes} of {n}")
        return cls(n, successes, successes)

    def __add__(self, other: SampleStats) -> SampleStats:
        if not isinstance(other, SampleStats):
            return NotImplemented
        return SampleStats(self.n + other.n, self.sum + other.sum, self.sum_sq + other.sum_sq)

    @property
    def mean(self) -> float | None:
        return self.sum / self.n if self.n else None

    @property
    def variance(self) -> float | None:
        """Sample variance (ddof=1); None below two rows."""
        return _central(self.n, self.sum, self.sum_sq) / (self.n - 1) if self.n >= 2 else None

    @property
    def sd(self) -> float | None:
        variance = self.variance
        return math.sqrt(variance) if variance is not None else None

    @property
    def is_binary(self) -> bool:
        """Whether the statistics can come from 0/1 values (``sum_sq == sum`` and ``0 <= sum <= n``)."""
        return 0 <= self.sum <= self.n and math.isclose(self.sum, self.sum_sq, rel_tol=1e-12, abs_tol=1e-9) and float(self.sum).is_integer()


@dataclass(frozen=True)
class RatioStats(_Serialisable):
    """Sufficient statistics of a ratio metric ``sum(x) / sum(y)`` over units (rows): merge days with ``+``.

    ``x`` is the numerator (cost, tokens) and ``y`` the denominator (tokens / 1000, seconds),
    one pair per row. The ratio of sums is not a mean of per-row ratios: its variance comes
    from the delta method (:attr:`ratio_variance`).
    """

    n: int
    sum_x: float
    sum_y: float
    sum_x2: float
    sum_y2: float
    sum_xy: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", int(self.n))
        for name in ("sum_x", "sum_y", "sum_x2", "sum_y2", "sum_xy"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"RatioStats.{name} is not finite: {value}")
            object.__setattr__(self, name, value)
        if self.n < 0 or self.sum_x2 < 0 or self.sum_y2 < 0:
            raise ValueError(f"invalid RatioStats: n={self.n}, sum_x2={self.sum_x2}, sum_y2={self.sum_y2}")

    @classmethod
    def from_pairs(cls, x: Any, y: Any) -> RatioStats:
        """Statistics of paired arrays; rows where either value is missing (NaN) are skipped."""
        xa, ya = _finite_array(x, "x"), _finite_array(y, "y")
        if xa.shape != ya.shape:
            raise ValueError(f"x and y must have the same length, got {xa.size} and {ya.size}")
        keep = ~(np.isnan(xa) | np.isnan(ya))
        xa, ya = xa[keep], ya[keep]
        return cls(xa.size, float(xa.sum()), float(ya.sum()), float(np.dot(xa, xa)), float(np.dot(ya, ya)), float(np.dot(xa, ya)))

    def __add__(self, other: RatioStats) -> RatioStats:
        if not isinstance(other, RatioStats):
            return NotImplemented
        return RatioStats(self.n + other.n, self.sum_x + other.sum_x, self.sum_y + other.sum_y, self.sum_x2 + other.sum_x2,
                          self.sum_y2 + other.sum_y2, self.sum_xy + other.sum_xy)

    @property
    def mean_x(self) -> float | None:
        return self.sum_x / self.n if self.n else None

    @property
    def mean_y(self) -> float | None:
        return self.sum_y / self.n if self.n else None

    @property
    def ratio(self) -> float | None:
        """``sum_x / sum_y``; None when the denominator sums to zero."""
        return self.sum_x / self.sum_y if self.sum_y != 0 else None

    @property
    def var_x(self) -> float | None:
        return _central(self.n, self.sum_x, self.sum_x2) / (self.n - 1) if self.n >= 2 else None

    @property
    def var_y(self) -> float | None:
        return _central(self.n, self.sum_y, self.sum_y2) / (self.n - 1) if self.n >= 2 else None

    @property
    def cov_xy(self) -> float | None:
        return _cross(self.n, self.sum_x, self.sum_y, self.sum_xy) / (self.n - 1) if self.n >= 2 else None

    @property
    def ratio_variance(self) -> float | None:
        """Delta-method variance of ``sum_x / sum_y`` (Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics", KDD).

        ``Var(R) ~ (var_x - 2 R cov_xy + R^2 var_y) / (n mean_y^2)`` with ``R = mean_x / mean_y``.
        None below two rows or with a zero denominator.
        """
        if self.n < 2 or self.sum_y == 0:
            return None
        r, mean_y = self.sum_x / self.sum_y, self.sum_y / self.n
        value = (self.var_x - 2 * r * self.cov_xy + r * r * self.var_y) / (self.n * mean_y * mean_y)
        return max(value, 0.0)


@dataclass(frozen=True)
class CovariateStats(_Serialisable):
    """Sufficient statistics of a metric ``y`` and a pre-period covariate ``x`` per unit, for CUPED; merge with ``+``.

    ``x`` is the same metric measured on the same unit before the experiment (or any
    covariate the treatment cannot affect).
    """

    n: int
    sum_y: float
    sum_y2: float
    sum_x: float
    sum_x2: float
    sum_xy: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", int(self.n))
        for name in ("sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"CovariateStats.{name} is not finite: {value}")
            object.__setattr__(self, name, value)
        if self.n < 0 or self.sum_x2 < 0 or self.sum_y2 < 0:
            raise ValueError(f"invalid CovariateStats: n={self.n}")

    @classmethod
    def from_values(cls, y: Any, x: Any) -> CovariateStats:
        """Statistics of the metric ``y`` and covariate ``x``; rows where either is missing (NaN) are skipped."""
        ya, xa = _finite_array(y, "y"), _finite_array(x, "x")
        if xa.shape != ya.shape:
            raise ValueError(f"y and x must have the same length, got {ya.size} and {xa.size}")
        keep = ~(np.isnan(xa) | np.isnan(ya))
        ya, xa = ya[keep], xa[keep]
        return cls(ya.size, float(ya.sum()), float(np.dot(ya, ya)), float(xa.sum()), float(np.dot(xa, xa)), float(np.dot(xa, ya)))

    def __add__(self, other: CovariateStats) -> CovariateStats:
        if not isinstance(other, CovariateStats):
            return NotImplemented
        return CovariateStats(self.n + other.n, self.sum_y + other.sum_y, self.sum_y2 + other.sum_y2, self.sum_x + other.sum_x,
                              self.sum_x2 + other.sum_x2, self.sum_xy + other.sum_xy)

    @property
    def metric(self) -> SampleStats:
        """The metric's own statistics (what the test uses without CUPED)."""
        return SampleStats(self.n, self.sum_y, self.sum_y2)


# -- results -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestResult(_Serialisable):
    """The comparison of one metric between control and treatment.

    ``ci_low``/``ci_high`` bound the absolute difference ``effect`` (treatment − control);
    ``lift_ci_low``/``lift_ci_high`` bound ``relative_lift`` (treatment / control − 1), by
    the delta method. Both are two-sided at ``1 - alpha``; for a sequential result they
    are confidence sequences (valid at every look) and ``p_value`` is the always-valid
    p-value. ``abstained`` results carry ``reason`` and ``None`` where a number could not
    be computed; a non-abstained result may still carry a note in ``reason`` (e.g. a lift
    undefined because the control mean is 0).
    """

    __test__ = False  # not a pytest test class

    metric: str
    kind: Kind
    method: str
    alpha: float
    sequential: bool
    n_control: int
    n_treatment: int
    control_estimate: float | None = None
    treatment_estimate: float | None = None
    effect: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    relative_lift: float | None = None
    lift_ci_low: float | None = None
    lift_ci_high: float | None = None
    p_value: float | None = None
    statistic: float | None = None
    df: float | None = None
    cohens_d: float | None = None
    abstained: bool = False
    reason: str = ""

    @property
    def significant(self) -> bool:
        """The interval on the difference excludes 0 (for a sequential result: at this look, validly under peeking)."""
        if self.abstained or self.ci_low is None or self.ci_high is None:
            return False
        return self.ci_low > 0 or self.ci_high < 0

    def decision(self, direction: Direction) -> Decision:
        """``better`` / ``worse`` when significant in / against the good ``direction``, else ``inconclusive``."""
        if not self.significant:
            return "inconclusive"
        up = self.ci_low is not None and self.ci_low > 0
        return "better" if up == (direction == "increase") else "worse"


@dataclass(frozen=True)
class _Arm:
    """One arm's point estimate, the variance of that estimate, its size and per-row variance (None for ratios)."""

    value: float
    var: float
    n: int
    unit_var: float | None


def _arm(stats: SampleStats | RatioStats, kind: Kind, label: str) -> _Arm | str:
    """The arm's estimate, or the reason it cannot be tested."""
    if stats.n == 0:
        return f"{label} arm is empty"
    if isinstance(stats, RatioStats):
        if stats.n < 2:
            return f"{label} arm has one row"
        if stats.sum_y == 0:
            return f"{label} arm's denominator sums to 0"
        return _Arm(stats.ratio, stats.ratio_variance, stats.n, None)
    if kind == "proportion":
        if not stats.is_binary:
            raise ValueError(f"{label} statistics are not of a 0/1 metric (need sum_sq == sum, 0 <= sum <= n): {stats}")
        p = stats.sum / stats.n
        return _Arm(p, p * (1 - p) / stats.n, stats.n, p * (1 - p))
    if stats.n < 2:
        return f"{label} arm has one row"
    return _Arm(stats.mean, stats.variance / stats.n, stats.n, stats.variance)


def _arms(control: SampleStats | RatioStats, treatment: SampleStats | RatioStats, kind: Kind) -> tuple[_Arm, _Arm] | str:
    if isinstance(control, RatioStats) != isinstance(treatment, RatioStats):
        raise TypeError("control and treatment must both be SampleStats or both RatioStats")
    c, t = _arm(control, kind, "control"), _arm(treatment, kind, "treatment")
    reasons = [r for r in (c, t) if isinstance(r, str)]
    if reasons:
        return "; ".join(reasons)
    if c.var + t.var <= 0:
        return "zero variance in both arms"
    return c, t


def _lift(c: _Arm, t: _Arm) -> tuple[float, float] | None:
    """Relative lift ``t / c - 1`` and its delta-method standard error (Deng et al. 2018, ratio of independent means).

    ``Var(t/c) ~ var_t / c^2 + t^2 var_c / c^4``; the standard error is computed as
    ``hypot(sd_t / c, r sd_c / c)`` with ``r = t / c`` so that tiny control means neither underflow nor overflow. None when the control estimate is 0
    or the lift is not a finite number (a control mean too close to 0 for the ratio to exist).
    """
    if c.value == 0:
        return None
    ratio = t.value / c.value
    se = math.hypot(math.sqrt(t.var) / c.value, ratio * math.sqrt(c.var) / c.value)
    if not (math.isfinite(ratio) and math.isfinite(se)):
        return None
    return ratio - 1, se


def _kind_of(stats: SampleStats | RatioStats, kind: Kind) -> Kind:
    return "ratio" if isinstance(stats, RatioStats) else kind


def _abstain(metric: str, kind: Kind, method: str, alpha: float, sequential: bool, control: Any, treatment: Any, reason: str) -> TestResult:
    def estimate(stats: Any) -> float | None:
        return stats.ratio if isinstance(stats, RatioStats) else stats.mean

    return TestResult(metric, kind, method, alpha, sequential, control.n, treatment.n, estimate(control), estimate(treatment),
                      abstained=True, reason=reason)


def _z(p: float) -> float:
    """Standard normal quantile (scipy.special.ndtri: the same function as scipy.stats.norm.ppf, faster)."""
    return float(special.ndtri(p))


def _z_two_sided_p(z: float) -> float:
    return float(2 * special.ndtr(-abs(z)))


def _t(p: float, df: float) -> float:
    """Student t quantile (scipy.special.stdtrit, as scipy.stats.t.ppf)."""
    return float(special.stdtrit(df, p))


def _t_two_sided_p(t: float, df: float) -> float:
    return float(2 * special.stdtr(df, -abs(t)))


# -- fixed-horizon tests -------------------------------------------------------------------------------------


def _welch_df(c: _Arm, t: _Arm) -> float:
    """Welch–Satterthwaite degrees of freedom from the two arms' estimate variances (Welch 1947)."""
    a, b = c.var, t.var
    return (a + b) ** 2 / (a * a / (c.n - 1) + b * b / (t.n - 1))


def cohens_d(control: SampleStats, treatment: SampleStats) -> float | None:
    """Cohen's d: difference of means over the pooled standard deviation (Cohen 1988); None without variance."""
    if control.n < 2 or treatment.n < 2:
        return None
    pooled = (_central(control.n, control.sum, control.sum_sq) + _central(treatment.n, treatment.sum, treatment.sum_sq)) / (control.n + treatment.n - 2)
    return (treatment.mean - control.mean) / math.sqrt(pooled) if pooled > 0 else None


def _with_lift(c: _Arm, t: _Arm, z: float) -> dict[str, Any]:
    lift = _lift(c, t)
    if lift is None:
        return {"reason": "relative lift undefined: the control estimate is 0"}
    value, se = lift
    return {"relative_lift": value, "lift_ci_low": value - z * se, "lift_ci_high": value + z * se}


def mean_test(control: SampleStats, treatment: SampleStats, alpha: float = DEFAULT_ALPHA, metric: str = "") -> TestResult:
    """Fixed-horizon Welch's t-test for a difference of means (Welch 1947), from sufficient statistics.

    ``statistic``, ``df`` and ``p_value`` equal ``scipy.stats.ttest_ind(..., equal_var=False)`` on the
    raw data, and ``ci_low``/``ci_high`` its ``confidence_interval(1 - alpha)``. The relative
    lift's interval uses the delta method with a normal quantile (Deng, Knoblich & Lu 2018).
    ``cohens_d`` uses the pooled standard deviation. Valid for one pre-planned look only:
    read daily, use :func:`sequential_difference`.
    """
    _check_alpha(alpha)
    method = "Welch t-test (fixed horizon)"
    arms = _arms(control, treatment, "mean")
    if isinstance(arms, str):
        return _abstain(metric, "mean", method, alpha, False, control, treatment, arms)
    c, t = arms
    effect, se = t.value - c.value, math.sqrt(c.var + t.var)
    df = _welch_df(c, t)
    stat = effect / se
    half = _t(1 - alpha / 2, df) * se
    extra = _with_lift(c, t, _z(1 - alpha / 2))
    return TestResult(metric, "mean", method, alpha, False, c.n, t.n, c.value, t.value, effect, effect - half, effect + half,
                      p_value=_t_two_sided_p(stat, df), statistic=stat, df=df, cohens_d=cohens_d(control, treatment), **extra)


def proportion_test(control: SampleStats, treatment: SampleStats, alpha: float = DEFAULT_ALPHA, metric: str = "") -> TestResult:
    """Fixed-horizon two-sample z-test for a difference of proportions.

    The test statistic uses the pooled standard error under H0 (``statsmodels.stats.proportion.proportions_ztest``);
    the interval on the difference uses the unpooled (Wald) standard error
    (``confint_proportions_2indep(method="wald")``); the lift interval is the delta method.
    Abstains when an arm is empty or every row in both arms has the same value.
    """
    _check_alpha(alpha)
    method = "two-proportion z-test (pooled SE test, Wald CI; fixed horizon)"
    for stats_, label in ((control, "control"), (treatment, "treatment")):
        if stats_.n and not stats_.is_binary:
            raise ValueError(f"{label} statistics are not of a 0/1 metric: {stats_}")
    if control.n == 0 or treatment.n == 0:
        reason = "; ".join(f"{label} arm is empty" for s, label in ((control, "control"), (treatment, "treatment")) if s.n == 0)
        return _abstain(metric, "proportion", method, alpha, False, control, treatment, reason)
    pooled = (control.sum + treatment.sum) / (control.n + treatment.n)
    if pooled in (0.0, 1.0):
        return _abstain(metric, "proportion", method, alpha, False, control, treatment,
                        f"zero variance: every row in both arms is {int(pooled)}")
    c, t = _arm(control, "proportion", "control"), _arm(treatment, "proportion", "treatment")
    effect = t.value - c.value
    z = effect / math.sqrt(pooled * (1 - pooled) * (1 / c.n + 1 / t.n))
    half = _z(1 - alpha / 2) * math.sqrt(c.var + t.var)
    extra = _with_lift(c, t, _z(1 - alpha / 2))
    return TestResult(metric, "proportion", method, alpha, False, c.n, t.n, c.value, t.value, effect, effect - half, effect + half,
                      p_value=_z_two_sided_p(z), statistic=z, **extra)


def ratio_test(control: RatioStats, treatment: RatioStats, alpha: float = DEFAULT_ALPHA, metric: str = "") -> TestResult:
    """Fixed-horizon z-test for the difference of two ratio metrics ``sum_x / sum_y``.

    Each arm's variance is the delta-method variance of a ratio of means (Deng, Knoblich &
    Lu 2018, "Applying the Delta Method in Metric Analytics", §3); the difference of the
    independent arms has the sum of the variances, the relative lift the delta-method
    variance of their ratio.
    """
    _check_alpha(alpha)
    method = "delta-method z-test for a ratio metric (fixed horizon)"
    arms = _arms(control, treatment, "ratio")
    if isinstance(arms, str):
        return _abstain(metric, "ratio", method, alpha, False, control, treatment, arms)
    c, t = arms
    effect, se = t.value - c.value, math.sqrt(c.var + t.var)
    z = _z(1 - alpha / 2)
    return TestResult(metric, "ratio", method, alpha, False, c.n, t.n, c.value, t.value, effect, effect - z * se, effect + z * se,
                      p_value=_z_two_sided_p(effect / se), statistic=effect / se, **_with_lift(c, t, z))


# -- anytime-valid confidence sequences ----------------------------------------------------------------------


def sequential_rho(alpha: float, tuning_n: float, two_sided: bool = True) -> float:
    """Mixture scale rho that makes the normal-mixture boundary tightest at ``tuning_n`` total rows.

    ``rho = sqrt((-2 log a + log(-2 log a + 1)) / tuning_n)`` with ``a = alpha`` (two-sided) or
    ``2 alpha`` (one-sided): the optimisation of Howard et al. (2021) as used by gbstats
    (``sequential_rho``) and Waudby-Smith et al. (2024).
    """
    _check_alpha(alpha)
    if tuning_n <= 0:
        raise ValueError(f"tuning_n must be positive, got {tuning_n}")
    a = alpha if two_sided else 2 * alpha
    return math.sqrt((-2 * math.log(a) + math.log(-2 * math.log(a) + 1)) / tuning_n)


def sequential_halfwidth(se: float, n_total: int, alpha: float, tuning_n: float, two_sided: bool = True) -> float:
    """Half-width of the asymptotic normal-mixture confidence sequence around an estimate with standard error ``se``.

    Two-sided (Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric,
    nonasymptotic confidence sequences", Ann. Statist., normal-mixture boundary; in its
    asymptotic, estimated-variance form: Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas 2024,
    "Time-uniform central limit theory and asymptotic confidence sequences", Ann. Statist.,
    arXiv:2103.06476 eq. 9), exactly as gbstats' ``SequentialTwoSidedTTest``::

        s2 = se^2 N                       (per-row variance, N = n_control + n_treatment)
        half = sqrt(s2) sqrt( 2 (N rho^2 + 1) / (N^2 rho^2) * log( sqrt(N rho^2 + 1) / alpha ) )

    One-sided (a bound holding at every look with probability >= 1 - alpha, Howard et al.'s
    one-sided normal mixture, gbstats ``sequential_interval_halfwidth_one_sided``)::

        half = sqrt(s2) sqrt( 2 (N rho^2 + 1) / (N^2 rho^2) * log( 1 + sqrt(N rho^2 + 1) / (2 alpha) ) )
    """
    rho = sequential_rho(alpha, tuning_n, two_sided)
    n = float(n_total)
    scale = 2 * (n * rho * rho + 1) / (n * n * rho * rho)
    if two_sided:
        log_term = math.log(math.sqrt(n * rho * rho + 1) / alpha)
    else:
        log_term = math.log(1 + math.sqrt(n * rho * rho + 1) / (2 * alpha))
    return se * math.sqrt(n) * math.sqrt(scale * log_term)


def always_valid_p_value(estimate: float, se: float, n_total: int, alpha: float, tuning_n: float) -> float:
    """Always-valid p-value of H0: difference 0, dual to the two-sided sequence at ``alpha``.

    The reciprocal of the normal-mixture e-value ``exp(rho^2 S^2 / (2 (N rho^2 + 1))) / sqrt(N rho^2 + 1)``,
    where ``S = sqrt(N) estimate / se`` is the standardised sum of the N rows (Waudby-Smith et al.
    2024, arXiv:2103.06476 eq. 155, as in gbstats), capped at 1. By Ville's inequality the chance it ever drops below ``a`` under H0
    is at most ``a``; ``p < alpha`` exactly when the sequence at ``alpha`` excludes 0.
    """
    if se <= 0:
        raise ValueError(f"se must be positive, got {se}")
    rho = sequential_rho(alpha, tuning_n)
    n = float(n_total)
    s_squared = estimate * estimate * n / (se * se)
    tr2p1 = n * rho * rho + 1
    log_e = rho * rho * s_squared / (2 * tr2p1) - 0.5 * math.log(tr2p1)
    return 1.0 if log_e <= 0 else math.exp(-log_e)


def sequential_difference(control: SampleStats | RatioStats, treatment: SampleStats | RatioStats, alpha: float = DEFAULT_ALPHA,
                          tuning_n: float = DEFAULT_TUNING_N, *, kind: Kind = "mean", metric: str = "") -> TestResult:
    """Anytime-valid two-sided test of the difference (and relative lift) between two arms.

    The method of gbstats' ``SequentialTwoSidedTTest``: the asymptotic normal-mixture
    confidence sequence (:func:`sequential_halfwidth`; Howard et al. 2021, Waudby-Smith et
    al. 2024) around the difference of means (``kind="mean"``, Welch variance), proportions
    (``kind="proportion"``, Bernoulli variance) or ratio metrics (``RatioStats``, delta-method
    variance), computed on the estimated variance of the difference, with its dual
    always-valid p-value. The sequence for the relative lift uses the delta-method standard
    error with the same N and rho. Looking every day and acting the first time the sequence
    excludes 0 keeps the false-positive rate at most ``alpha`` (asymptotically).

    ``tuning_n``: total rows (both arms) at which the sequence is narrowest; pass the planned
    sample size, e.g. ``power_analysis(...).required_total``.
    """
    _check_alpha(alpha)
    kind = _kind_of(control, kind)
    method = f"anytime-valid normal-mixture confidence sequence (Howard et al. 2021; gbstats SequentialTwoSidedTTest), tuning_n={tuning_n:g}"
    arms = _arms(control, treatment, kind)
    if isinstance(arms, str):
        return _abstain(metric, kind, method, alpha, True, control, treatment, arms)
    c, t = arms
    n_total = c.n + t.n
    effect, se = t.value - c.value, math.sqrt(c.var + t.var)
    half = sequential_halfwidth(se, n_total, alpha, tuning_n)
    extra: dict[str, Any]
    lift = _lift(c, t)
    if lift is None:
        extra = {"reason": "relative lift undefined: the control estimate is 0"}
    else:
        lift_half = sequential_halfwidth(lift[1], n_total, alpha, tuning_n)
        extra = {"relative_lift": lift[0], "lift_ci_low": lift[0] - lift_half, "lift_ci_high": lift[0] + lift_half}
    d = cohens_d(control, treatment) if kind == "mean" else None
    return TestResult(metric, kind, method, alpha, True, c.n, t.n, c.value, t.value, effect, effect - half, effect + half,
                      p_value=always_valid_p_value(effect, se, n_total, alpha, tuning_n), statistic=effect / se, cohens_d=d, **extra)


def difference_test(control: SampleStats | RatioStats, treatment: SampleStats | RatioStats, *, kind: Kind = "mean",
                    alpha: float = DEFAULT_ALPHA, sequential: bool = True, tuning_n: float = DEFAULT_TUNING_N, metric: str = "") -> TestResult:
    """The default comparison: :func:`sequential_difference` (valid under daily looks) unless ``sequential=False``.

    ``sequential=False`` is the fixed-horizon mode: :func:`mean_test`, :func:`proportion_test`
    or :func:`ratio_test`, for one analysis at the planned sample size.
    """
    if sequential:
        return sequential_difference(control, treatment, alpha, tuning_n, kind=kind, metric=metric)
    if isinstance(control, RatioStats):
        return ratio_test(control, treatment, alpha, metric)
    if kind == "proportion":
        return proportion_test(control, treatment, alpha, metric)
    if kind != "mean":
        raise ValueError(f"kind must be 'mean' or 'proportion' for SampleStats, got {kind!r}")
    return mean_test(control, treatment, alpha, metric)


# -- guardrails ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardrailResult(_Serialisable):
    """A non-inferiority verdict on one guardrail metric.

    ``scale`` is ``"difference"`` (absolute margin) or ``"relative_lift"``; ``estimate``,
    ``lower``, ``upper`` and ``threshold`` are on that scale. ``lower`` and ``upper`` are
    one-sided bounds, each holding with probability >= 1 - alpha on its own (at every look
    when ``sequential``); ``threshold`` is the harm boundary: ``-margin`` when ``increase``
    is good, ``+margin`` when ``decrease`` is good.
    """

    metric: str
    kind: Kind
    direction: Direction
    margin: float
    absolute: bool
    scale: str
    alpha: float
    sequential: bool
    method: str
    n_control: int
    n_treatment: int
    verdict: Verdict
    threshold: float
    control_estimate: float | None = None
    treatment_estimate: float | None = None
    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None
    abstained: bool = False
    reason: str = ""


def non_inferiority(control: SampleStats | RatioStats, treatment: SampleStats | RatioStats, *, direction: Direction, margin: float,
                    absolute: bool = False, alpha: float = DEFAULT_ALPHA, sequential: bool = True, tuning_n: float = DEFAULT_TUNING_N,
                    kind: Kind = "mean", metric: str = "") -> GuardrailResult:
    """One-sided non-inferiority test of a guardrail against a margin; ``inferior`` is the rollback signal.

    Let ``delta`` be the true effect on the chosen scale (treatment − control, or the
    relative lift when ``absolute=False``) and ``h`` the harm threshold (``-margin`` when
    ``direction="increase"`` is good, ``+margin`` when ``"decrease"`` is). With one-sided
    bounds ``lower`` (P(delta < lower) <= alpha) and ``upper`` (P(delta > upper) <= alpha):

    - ``non_inferior``: the bound on the bad side clears the threshold (``lower > h`` when
      increase is good, ``upper < h`` when decrease is good) — the treatment is not worse
      than control by more than the margin (classical non-inferiority at level alpha);
    - ``inferior``: the whole one-sided interval lies beyond the threshold on the bad side
      (``upper < h`` when increase is good, ``lower > h`` when decrease is good) — evidence
      that the treatment is worse by more than the margin. This is a level-alpha test of
      "harm within the margin": while the true harm is at most the margin, the chance of
      ever declaring ``inferior`` is at most alpha — at every daily look at once when
      ``sequential`` (one-sided normal-mixture sequence, :func:`sequential_halfwidth`), at a
      single look otherwise. So false rollbacks stay at most alpha under daily looks.
    - ``inconclusive`` otherwise, and whenever the test abstains.

    The two verdicts exclude each other (``lower < upper``). Fixed-horizon bounds use the
    Welch t quantile for an absolute difference of means and the normal quantile otherwise;
    the relative scale uses the delta method (Deng et al. 2018) and needs a positive control
    estimate.
    """
    _check_alpha(alpha)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if direction not in ("increase", "decrease"):
        raise ValueError(f"direction must be 'increase' or 'decrease', got {direction!r}")
    kind = _kind_of(control, kind)
    scale = "difference" if absolute else "relative_lift"
    threshold = (-margin if direction == "increase" else margin) + 0.0  # + 0.0: no -0.0
    bound = "anytime-valid one-sided normal-mixture sequence" if sequential else "fixed-horizon one-sided bound"
    method = f"non-inferiority, {bound}, {'absolute' if absolute else 'relative'} margin {margin:g}"
    base = dict(metric=metric, kind=kind, direction=direction, margin=margin, absolute=absolute, scale=scale, alpha=alpha,
                sequential=sequential, method=method, n_control=control.n, n_treatment=treatment.n, threshold=threshold)
    arms = _arms(control, treatment, kind)
    if isinstance(arms, str):
        return GuardrailResult(**base, verdict="inconclusive", abstained=True, reason=arms)
    c, t = arms
    estimates = dict(control_estimate=c.value, treatment_estimate=t.value)
    if absolute:
        estimate, se = t.value - c.value, math.sqrt(c.var + t.var)
    elif c.value <= 0:
        return GuardrailResult(**base, **estimates, verdict="inconclusive", abstained=True,
                               reason=f"relative margin needs a positive control estimate, got {c.value:.6g}")
    else:
        estimate, se = _lift(c, t)
    if sequential:
        half = sequential_halfwidth(se, c.n + t.n, alpha, tuning_n, two_sided=False)
    elif absolute and kind == "mean":
        half = _t(1 - alpha, _welch_df(c, t)) * se
    else:
        half = _z(1 - alpha) * se
    lower, upper = estimate - half, estimate + half
    good, bad = (lower > threshold, upper < threshold) if direction == "increase" else (upper < threshold, lower > threshold)
    verdict: Verdict = "non_inferior" if good else "inferior" if bad else "inconclusive"
    return GuardrailResult(**base, **estimates, verdict=verdict, estimate=estimate, lower=lower, upper=upper)


# -- quantiles -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantileInterval(_Serialisable):
    """A distribution-free confidence interval for the ``q`` quantile of one sample.

    ``low_rank``/``high_rank`` are the 1-based order statistics used (the interpolated
    bound lies between that rank and the next).
    """

    q: float
    confidence: float
    n: int
    method: str
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    low_rank: int | None = None
    high_rank: int | None = None
    abstained: bool = False
    reason: str = ""


def order_statistic_ranks(n: int, q: float, confidence: float) -> tuple[int, int]:
    """1-based ranks ``(r, s)`` of the exact two-sided order-statistic interval ``[X_(r), X_(s)]``.

    ``r = F^-1(a)`` and ``s = F^-1(1 - a) + 1`` with ``F`` the Binomial(n, q) CDF and
    ``a = (1 - confidence) / 2`` (Conover 1999, *Practical Nonparametric Statistics* §3.2;
    Hahn & Meeker 1991, *Statistical Intervals* ch. 5): each side misses with probability
    at most ``a`` for any continuous distribution. The same ranks as
    ``scipy.stats.quantile_test(...).confidence_interval`` (``binom.ppf(a) - 1`` and
    ``binom.isf(a)`` as 0-based indices). Ranks outside ``1..n`` mean no such interval exists.
    """
    a = (1 - confidence) / 2
    return int(stats.binom.ppf(a, n, q)), int(stats.binom.isf(a, n, q)) + 1


def _nyblom_bound(x: np.ndarray, r: int, beta: float, q: float) -> float:
    """Interpolate between X_(r) and X_(r+1) (1-based) so that P(bound > quantile) ~ beta (Nyblom 1992).

    ``lambda = 1 / (1 + r (1 - q) (F(r) - beta) / ((n - r) q (beta - F(r - 1))))`` with ``F`` the
    Binomial(n, q) CDF (J. Nyblom, "Note on interpolated order statistics", Statist. Probab.
    Lett. 14 (1992) 129–131; the median case is Hettmansperger & Sheather 1986).
    """
    n = x.size
    f_r, f_rm1 = stats.binom.cdf(r, n, q), stats.binom.cdf(r - 1, n, q)
    if beta <= f_rm1:
        return float(x[r - 1])
    if beta >= f_r:
        return float(x[r])
    lam = 1.0 / (1.0 + r * (1 - q) * (f_r - beta) / ((n - r) * q * (beta - f_rm1)))
    return float((1 - lam) * x[r - 1] + lam * x[r])


def quantile_ci(sorted_values: Any, q: float, confidence: float = 0.95, *, min_tail: float = DEFAULT_MIN_TAIL,
                interpolate: bool = False) -> QuantileInterval:
    """Distribution-free two-sided confidence interval for the ``q`` quantile from sorted values.

    Default (``interpolate=False``): the exact order-statistic interval of
    :func:`order_statistic_ranks` (Conover 1999 §3.2; Hahn & Meeker 1991), equal to
    ``scipy.stats.quantile_test(x, p=q).confidence_interval(confidence)``. Its coverage is at
    least ``confidence`` for any continuous distribution, and above it by the discreteness of
    the binomial: about 97.6% for a nominal 95% p99 at n = 1,000, 95.4% at n = 5,000.
    ``interpolate=True`` moves each bound towards the next order statistic by Nyblom's
    (1992) interpolation, for coverage close to nominal (approximate, not guaranteed).

    Abstains below ``n * min(q, 1 - q) >= min_tail`` (default 10: 1,000 rows for a p99),
    when the ranks fall outside the sample, or on missing values. ``estimate`` is numpy's
    default (linear) sample quantile.
    """
    if not 0 < q < 1:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    x = np.asarray(sorted_values, dtype=float).ravel()
    n = x.size
    method = f"order-statistic interval ({'Nyblom 1992 interpolated' if interpolate else 'exact binomial ranks'})"
    base = dict(q=q, confidence=confidence, n=n, method=method)
    if np.isnan(x).any():
        return QuantileInterval(**base, abstained=True, reason="values contain NaN")
    if n and np.any(np.diff(x) < 0):
        raise ValueError("sorted_values must be sorted ascending")
    if n == 0:
        return QuantileInterval(**base, abstained=True, reason="no rows")
    estimate = float(np.quantile(x, q))
    tail = n * min(q, 1 - q)
    if tail < min_tail:
        return QuantileInterval(**base, estimate=estimate, abstained=True,
                                reason=f"n * min(q, 1 - q) = {tail:.4g} < {min_tail:g}: need at least {math.ceil(min_tail / min(q, 1 - q))} rows")
    r, s = order_statistic_ranks(n, q, confidence)
    if r < 1 or s > n:
        return QuantileInterval(**base, estimate=estimate, abstained=True,
                                reason=f"no order statistics bound the q={q:g} quantile at {confidence:g} with {n} rows")
    if interpolate:
        a = (1 - confidence) / 2
        low, high = _nyblom_bound(x, r, a, q), _nyblom_bound(x, s - 1, 1 - a, q)
    else:
        low, high = float(x[r - 1]), float(x[s - 1])
    return QuantileInterval(**base, estimate=estimate, low=low, high=high, low_rank=r, high_rank=s)


def quantile_difference(control_values: Any, treatment_values: Any, q: float, confidence: float = 0.95, *,
                        min_tail: float = DEFAULT_MIN_TAIL, interpolate: bool = False, metric: str = "") -> TestResult:
    """Difference (and ratio) of the ``q`` quantiles of two arms with a conservative interval.

    Each arm gets an order-statistic interval at ``1 - (1 - confidence) / 2`` (:func:`quantile_ci`);
    by Bonferroni both hold at once with probability >= ``confidence``, so
    ``[low_t - high_c, high_t - low_c]`` covers the true difference with at least that
    probability (and ``[low_t / high_c, high_t / low_c] - 1`` the relative lift, given
    positive values). Conservative: coverage is typically above 99% at a nominal 95%, so
    only large differences are detected. Gives no
    p-value (``None``); ``significant`` reads the interval. Values need not be sorted.
    """
    alpha = 1 - confidence
    per_arm = 1 - alpha / 2
    method = f"difference of quantiles q={q:g}, Bonferroni-combined order-statistic intervals at {per_arm:g} each"
    xc = np.sort(np.asarray(control_values, dtype=float).ravel())
    xt = np.sort(np.asarray(treatment_values, dtype=float).ravel())
    ci_c = quantile_ci(xc, q, per_arm, min_tail=min_tail, interpolate=interpolate)
    ci_t = quantile_ci(xt, q, per_arm, min_tail=min_tail, interpolate=interpolate)
    base = dict(metric=metric, kind="quantile", method=method, alpha=alpha, sequential=False, n_control=xc.size, n_treatment=xt.size,
                control_estimate=ci_c.estimate, treatment_estimate=ci_t.estimate)
    reasons = [f"{label}: {ci.reason}" for ci, label in ((ci_c, "control"), (ci_t, "treatment")) if ci.abstained]
    if reasons:
        return TestResult(**base, abstained=True, reason="; ".join(reasons))
    effect = ci_t.estimate - ci_c.estimate
    lift: dict[str, Any] = {}
    if ci_c.low > 0 and ci_t.low >= 0:
        lift = {"relative_lift": ci_t.estimate / ci_c.estimate - 1, "lift_ci_low": ci_t.low / ci_c.high - 1,
                "lift_ci_high": ci_t.high / ci_c.low - 1}
    return TestResult(**base, effect=effect, ci_low=ci_t.low - ci_c.high, ci_high=ci_t.high - ci_c.low, **lift)


# -- alpha spending over daily looks -------------------------------------------------------------------------


def _check_spending(alpha: float, looks: int, flat_looks: int) -> None:
    _check_alpha(alpha)
    if looks < 1 or flat_looks < 1:
        raise ValueError(f"looks and flat_looks must be at least 1, got {looks} and {flat_looks}")


def alpha_spent(alpha: float, looks: int, flat_looks: int = SPENDING_FLAT_LOOKS) -> float:
    """Alpha spent by the first ``looks`` daily looks of :func:`look_alpha`: its spending function.

    ``alpha k / (2F)`` up to look ``F = flat_looks`` (half of alpha by then), ``alpha (1 - F / (2k))``
    after: an alpha-spending function in the sense of Lan & DeMets (1983, "Discrete sequential
    boundaries for clinical trials", *Biometrika* 70:659–663), on the scale of looks instead
    of information and with no last look; it reaches alpha only as the looks go to infinity.
    """
    _check_spending(alpha, looks, flat_looks)
    return alpha * looks / (2 * flat_looks) if looks <= flat_looks else alpha * (1 - flat_looks / (2 * looks))


def look_alpha(alpha: float, look: int, flat_looks: int = SPENDING_FLAT_LOOKS) -> float:
    """Alpha to spend at daily look ``look`` (1-based) so that all looks together spend less than alpha.

    ``alpha / (2F)`` at each of the first ``F = flat_looks`` looks, then ``alpha F / (2k (k - 1))``
    at look k: the increments of :func:`alpha_spent` (the tail telescopes, ``F / (2k (k - 1)) =
    F/2 (1 / (k - 1) - 1 / k)``, as does ``alpha / (k (k + 1))``). Testing look k at level
    ``alpha_k`` bounds the chance of any false rejection over all looks, however many and
    however correlated, by the sum, below alpha (Bonferroni's inequality, used sequentially as
    alpha spending, Lan & DeMets 1983). The default ``F = 14`` spends alpha / 28 at each look of
    the first two weeks, as the former fixed plan of 28 looks did, so early looks keep its
    power; it spends alpha / 30 at look 15 and about alpha / 506 at look 60 (0.044 of 0.05 to date).
    """
    _check_spending(alpha, look, flat_looks)
    return alpha / (2 * flat_looks) if look <= flat_looks else alpha * flat_looks / (2 * look * (look - 1))


# -- CUPED ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CupedResult(_Serialisable):
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
    m2 = _central(n, stats_.sum_y, stats_.sum_y2) - 2 * theta * _cross(n, stats_.sum_x, stats_.sum_y, stats_.sum_xy) \
        + theta * theta * _central(n, stats_.sum_x, stats_.sum_x2)
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
    var_x = _central(pooled.n, pooled.sum_x, pooled.sum_x2)
    reason = ""
    if var_x == 0:
        theta, reason = 0.0, "covariate is constant: no adjustment"
    else:
        theta = _cross(pooled.n, pooled.sum_x, pooled.sum_y, pooled.sum_xy) / var_x
    mean_x = pooled.sum_x / pooled.n
    adj_c, adj_t = _adjusted(control, theta, mean_x), _adjusted(treatment, theta, mean_x)
    before = control.metric.variance / control.n + treatment.metric.variance / treatment.n
    after = adj_c.variance / adj_c.n + adj_t.variance / adj_t.n
    reduction = 1 - after / before if before > 0 else 0.0
    return CupedResult(adj_c, adj_t, theta, reduction, reason=reason)


# -- planning ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerResult(_Serialisable):
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


def _power(effect_size: float, n_control: float, ratio: float, alpha: float, test: str) -> float:
    """Power of the two-sided two-sample test at ``n_control`` and ``n_treatment = ratio n_control``.

    The formulas of statsmodels' NormalIndPower (z) and TTestIndPower (t: noncentral t with
    the pooled-test df ``n1 + n2 - 2``), both tails counted.
    """
    n_eff = n_control * ratio / (1 + ratio)
    shift = effect_size * math.sqrt(n_eff)
    if test == "z":
        crit = _z(1 - alpha / 2)
        return float(special.ndtr(shift - crit) + special.ndtr(-crit - shift))
    df = n_control * (1 + ratio) - 2
    crit = _t(1 - alpha / 2, df)
    return float(special.nctdtr(df, shift, -crit) + 1 - special.nctdtr(df, shift, crit))


def power_analysis(baseline_mean: float, baseline_sd: float | None, mde: float, *, relative: bool = True, alpha: float = DEFAULT_ALPHA,
                   power: float = 0.8, split: float = 0.5, kind: Literal["mean", "proportion"] = "mean",
                   test: Literal["z", "t"] = "z") -> PowerResult:
    """Sample size of a fixed-horizon two-sided two-sample test that detects ``mde`` with probability ``power``.

    Means: Cohen's d = absolute MDE / ``baseline_sd`` (equal sds in both arms), solved with
    the normal (``test="z"``, statsmodels ``NormalIndPower``) or noncentral t power function
    (``test="t"``, statsmodels ``tt_ind_solve_power``). Proportions: ``baseline_mean`` is the
    rate (``baseline_sd`` is ignored) and the effect size is Cohen's h (arcsine transform,
    statsmodels ``proportion_effectsize``) with the normal power function, for a rate that
    rises by the MDE (Cohen's h is not symmetric: a fall of the same size needs slightly
    different n). ``mde`` is relative to the baseline unless ``relative=False``; ``split`` is
    the treatment's share of traffic. Counts are rounded up. Abstains when the effect size is not defined (a zero
    baseline with a relative MDE, no variance, a rate pushed outside (0, 1)).
    """
    _check_alpha(alpha)
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
        effect, effect_kind = 2 * math.asin(math.sqrt(p2)) - 2 * math.asin(math.sqrt(p1)), "cohens_h"
    else:
        if baseline_sd is None or baseline_sd <= 0:
            return PowerResult(**base, mde_absolute=delta, abstained=True, reason="a mean needs a positive baseline_sd")
        effect, effect_kind = delta / baseline_sd, "cohens_d"
    ratio = split / (1 - split)
    target = lambda n: _power(effect, n, ratio, alpha, base["test"]) - power  # noqa: E731
    guess = (_z(1 - alpha / 2) + _z(power)) ** 2 * (1 + ratio) / (ratio * effect * effect)
    high = max(2 * guess, 10.0)
    while target(high) < 0:
        high *= 2
    low = 2.0 + 1e-9 if base["test"] == "t" else 1e-9
    n_control = optimize.brentq(target, low, high, xtol=1e-10, rtol=1e-12) if target(low) < 0 else low
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


def adjust_pvalues(pvalues: Sequence[float | None], method: Literal["holm", "bh"] = "holm") -> list[float | None]:
    """Multiplicity-adjusted p-values, equal to ``statsmodels.stats.multitest.multipletests``.

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
    index = np.array([i for i, _ in present])
    p = np.array([v for _, v in present])
    m = p.size
    order = np.argsort(p, kind="mergesort")
    ranked = p[order]
    if method == "holm":
        adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * ranked))
    elif method == "bh":
        adjusted = np.minimum(1.0, np.minimum.accumulate((m * ranked / np.arange(1, m + 1))[::-1])[::-1])
    else:
        raise ValueError(f"method must be 'holm' or 'bh', got {method!r}")
    for position, value in zip(index[order], adjusted):
        out[int(position)] = float(value)
    return out


# -- sample-ratio mismatch -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SrmResult(_Serialisable):
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
    _check_alpha(threshold)
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
