"""A/B experiment statistics over sufficient statistics, in the spirit of GrowthBook's gbstats.

Every test here works on a few sums per arm, so a day's statistics are computed once,
stored, and merged with ``+`` across days (the experiment DAG looks once a day at the
experiment to date):

- :class:`SampleStats` ``(n, sum, sum_sq)`` for means (tokens, cost, quality scores) and
  0/1 rates (where ``sum_sq == sum``);
- :class:`RatioStats` ``(n, sum_x, sum_y, sum_x2, sum_y2, sum_xy)`` for ratio metrics
  ``sum(x) / sum(y)`` (cost per 1k tokens, tokens per second);
- :class:`CovariateStats` for CUPED: the metric, a pre-period covariate and their cross moment;
- :class:`PPIStats` for a judge metric corrected by human review labels (prediction-powered inference).

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
:func:`power_analysis`                 sample size for a two-sample z- or t-test (statsmodels.stats.power solve_power)
:func:`adjust_pvalues`                 Holm (1979) and Benjamini–Hochberg (1995) (statsmodels multipletests)
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
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from modelwatch.core.jsonable import Serialisable

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


def check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


# -- sufficient statistics -----------------------------------------------------------------------------------


def _finite_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    if np.isinf(array).any():
        raise ValueError(f"{name} contains infinite values")
    return array


def central_moment(n: int, s: float, s2: float) -> float:
    """Second central moment sum((v - mean)^2) from the sums, clamped at 0 and with rounding noise set to 0."""
    if n == 0:
        return 0.0
    m2 = s2 - s * s / n
    return 0.0 if m2 <= _ZERO_VARIANCE * abs(s2) else m2


def cross_moment(n: int, sx: float, sy: float, sxy: float) -> float:
    """Co-moment sum((x - mean_x)(y - mean_y)) from the sums."""
    return sxy - sx * sy / n if n else 0.0


@dataclass(frozen=True)
class SampleStats(Serialisable):
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
        return central_moment(self.n, self.sum, self.sum_sq) / (self.n - 1) if self.n >= 2 else None

    @property
    def sd(self) -> float | None:
        variance = self.variance
        return math.sqrt(variance) if variance is not None else None

    @property
    def is_binary(self) -> bool:
        """Whether the statistics can come from 0/1 values (``sum_sq == sum`` and ``0 <= sum <= n``)."""
        return 0 <= self.sum <= self.n and math.isclose(self.sum, self.sum_sq, rel_tol=1e-12, abs_tol=1e-9) and float(self.sum).is_integer()


@dataclass(frozen=True)
class RatioStats(Serialisable):
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
        return central_moment(self.n, self.sum_x, self.sum_x2) / (self.n - 1) if self.n >= 2 else None

    @property
    def var_y(self) -> float | None:
        return central_moment(self.n, self.sum_y, self.sum_y2) / (self.n - 1) if self.n >= 2 else None

    @property
    def cov_xy(self) -> float | None:
        return cross_moment(self.n, self.sum_x, self.sum_y, self.sum_xy) / (self.n - 1) if self.n >= 2 else None

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
class CovariateStats(Serialisable):
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


@dataclass(frozen=True)
class PPIStats(Serialisable):
    """Sufficient statistics of one arm's prediction-powered mean of a judge metric; merge days with ``+``.

    Prediction-powered inference (Angelopoulos, Bates, Fannjiang, Jordan & Zrnic 2023,
    "Prediction-powered inference", *Science* 382:669–674, mean estimation): the judge's
    values ``f`` on the arm's ``n_unlabelled`` judged rows without a human label, and the
    residuals ``Y - f`` (human label minus judge) on its ``n_labelled`` rows with both::

        theta = mean_U(f) + mean_L(Y - f)          (the rectifier mean_L(Y - f) removes the judge's bias)
        Var   = var_U(f) / N + var_L(Y - f) / n    (the two sets are disjoint, so independent)

    This is plain PPI (lambda = 1), unweighted like the experiments' judge moments: it is
    unbiased for the arm's mean human label whenever the labelled rows are a random subset
    of the arm's judged rows, however differently the judge errs in each arm.
    """

    n_unlabelled: int
    judge_sum: float
    judge_sum_sq: float
    n_labelled: int
    residual_sum: float
    residual_sum_sq: float

    def __post_init__(self) -> None:
        for name in ("n_unlabelled", "n_labelled"):
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in ("judge_sum", "judge_sum_sq", "residual_sum", "residual_sum_sq"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"PPIStats.{name} is not finite: {value}")
            object.__setattr__(self, name, value)
        if self.n_unlabelled < 0 or self.n_labelled < 0 or self.judge_sum_sq < 0 or self.residual_sum_sq < 0:
            raise ValueError(f"invalid PPIStats: {self}")

    @classmethod
    def from_moments(cls, moments: dict[str, float] | None) -> PPIStats:
        """From the stored day moments (the judge stage's ``ppi_by_arm`` entry); missing keys count as 0."""
        m = moments or {}
        return cls(*(m.get(name, 0) for name in ("n_unlabelled", "judge_sum", "judge_sum_sq", "n_labelled", "residual_sum", "residual_sum_sq")))

    def __add__(self, other: PPIStats) -> PPIStats:
        if not isinstance(other, PPIStats):
            return NotImplemented
        return PPIStats(self.n_unlabelled + other.n_unlabelled, self.judge_sum + other.judge_sum, self.judge_sum_sq + other.judge_sum_sq,
                        self.n_labelled + other.n_labelled, self.residual_sum + other.residual_sum, self.residual_sum_sq + other.residual_sum_sq)

    @property
    def n(self) -> int:
        """Judged rows of the arm, labelled or not."""
        return self.n_unlabelled + self.n_labelled

    @property
    def mean(self) -> float | None:
        """The prediction-powered mean; None without two rows in each set."""
        if self.n_unlabelled < 2 or self.n_labelled < 2:
            return None
        return self.judge_sum / self.n_unlabelled + self.residual_sum / self.n_labelled

    @property
    def judge_mean(self) -> float | None:
        """The judge's own mean on the unlabelled rows (what the test would use without human review)."""
        return self.judge_sum / self.n_unlabelled if self.n_unlabelled else None

    @property
    def rectifier(self) -> float | None:
        """``mean_L(Y - f)``: how far people score above the judge on the labelled rows."""
        return self.residual_sum / self.n_labelled if self.n_labelled else None

    @property
    def mean_variance(self) -> float | None:
        """``var_U(f) / N + var_L(Y - f) / n`` (sample variances, ddof=1); None without two rows in each set."""
        if self.n_unlabelled < 2 or self.n_labelled < 2:
            return None
        judge = central_moment(self.n_unlabelled, self.judge_sum, self.judge_sum_sq) / (self.n_unlabelled - 1)
        residual = central_moment(self.n_labelled, self.residual_sum, self.residual_sum_sq) / (self.n_labelled - 1)
        return judge / self.n_unlabelled + residual / self.n_labelled


# -- results -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestResult(Serialisable):
    """The comparison of one metric between control and treatment.

    ``ci_low``/``ci_high`` bound the absolute difference ``effect`` (treatment − control);
    ``lift_ci_low``/``lift_ci_high`` bound ``relative_lift`` (treatment / control − 1), by
    the delta method. Both are two-sided at ``1 - alpha``; for a sequential result they
    are confidence sequences (valid at every look) and ``p_value`` is the always-valid
    p-value. ``p_value`` tests the difference; ``lift_p_value`` tests the relative lift with
    the lift interval's own standard error and method, so ``lift_p_value < alpha`` exactly
    when the lift interval excludes 0. :meth:`difference_p_value` is the p-value dual to
    ``ci_low``/``ci_high`` in the same way. ``abstained`` results carry ``reason`` and ``None`` where a number could not
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
    wald_p_value: float | None = None  # two-proportion test: the p-value dual to its Wald interval (p_value pools under H0)
    lift_p_value: float | None = None
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

    def difference_p_value(self) -> float | None:
        """The p-value below alpha exactly when ``ci_low``/``ci_high`` exclude 0 (the Wald one for two proportions)."""
        return self.wald_p_value if self.wald_p_value is not None else self.p_value

    def lift_decision(self, direction: Direction) -> Decision:
        """As :meth:`decision`, read on the relative lift's interval; ``inconclusive`` when the lift is undefined."""
        if self.abstained or self.lift_ci_low is None or self.lift_ci_high is None or not (self.lift_ci_low > 0 or self.lift_ci_high < 0):
            return "inconclusive"
        return "better" if (self.lift_ci_low > 0) == (direction == "increase") else "worse"


# -- alpha spending over daily looks -------------------------------------------------------------------------


def _check_spending(alpha: float, looks: int, flat_looks: int) -> None:
    check_alpha(alpha)
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
