"""Fixed-horizon and sequential (always-valid) tests of a difference between arms, and non-inferiority for guardrails."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy import special

from modelwatch.core.jsonable import Serialisable
from modelwatch.experiments.stats import (
    DEFAULT_ALPHA,
    DEFAULT_TUNING_N,
    Direction,
    Kind,
    PPIStats,
    RatioStats,
    SampleStats,
    TestResult,
    Verdict,
    central_moment,
    check_alpha,
)


@dataclass(frozen=True)
class _Arm:
    """One arm's point estimate, the variance of that estimate, its size and per-row variance (None for ratios)."""

    value: float
    var: float
    n: int
    unit_var: float | None


def _arm(stats: SampleStats | RatioStats | PPIStats, kind: Kind, label: str) -> _Arm | str:
    """The arm's estimate, or the reason it cannot be tested."""
    if stats.n == 0:
        return f"{label} arm is empty"
    if isinstance(stats, PPIStats):
        if stats.mean is None:
            return f"{label} arm has {stats.n_labelled} human-labelled and {stats.n_unlabelled} other judged rows; PPI needs at least 2 of each"
        return _Arm(stats.mean, stats.mean_variance, stats.n, None)
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


def _arms(control: SampleStats | RatioStats | PPIStats, treatment: SampleStats | RatioStats | PPIStats, kind: Kind) -> tuple[_Arm, _Arm] | str:
    if type(control) is not type(treatment):
        raise TypeError(f"control and treatment must be statistics of one type, got {type(control).__name__} and {type(treatment).__name__}")
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


def z_quantile(p: float) -> float:
    """Standard normal quantile (scipy.special.ndtri: the same function as scipy.stats.norm.ppf, faster)."""
    return float(special.ndtri(p))


def _z_two_sided_p(z: float) -> float:
    return float(2 * special.ndtr(-abs(z)))


def t_quantile(p: float, df: float) -> float:
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
    pooled = (central_moment(control.n, control.sum, control.sum_sq) + central_moment(treatment.n, treatment.sum, treatment.sum_sq)) / (control.n + treatment.n - 2)
    return (treatment.mean - control.mean) / math.sqrt(pooled) if pooled > 0 else None


def _with_lift(c: _Arm, t: _Arm, z: float) -> dict[str, Any]:
    """The relative lift, its Wald interval at the normal quantile ``z`` and the dual two-sided p-value (delta method, Deng et al. 2018)."""
    lift = _lift(c, t)
    if lift is None:
        return {"reason": "relative lift undefined: the control estimate is 0"}
    value, se = lift
    p_value = _z_two_sided_p(value / se) if se > 0 else None
    return {"relative_lift": value, "lift_ci_low": value - z * se, "lift_ci_high": value + z * se, "lift_p_value": p_value}


def mean_test(control: SampleStats, treatment: SampleStats, alpha: float = DEFAULT_ALPHA, metric: str = "") -> TestResult:
    """Fixed-horizon Welch's t-test for a difference of means (Welch 1947), from sufficient statistics.

    ``statistic``, ``df`` and ``p_value`` equal ``scipy.stats.ttest_ind(..., equal_var=False)`` on the
    raw data, and ``ci_low``/``ci_high`` its ``confidence_interval(1 - alpha)``. The relative
    lift's interval uses the delta method with a normal quantile (Deng, Knoblich & Lu 2018).
    ``cohens_d`` uses the pooled standard deviation. Valid for one pre-planned look only:
    read daily, use :func:`sequential_difference`.
    """
    check_alpha(alpha)
    method = "Welch t-test (fixed horizon)"
    arms = _arms(control, treatment, "mean")
    if isinstance(arms, str):
        return _abstain(metric, "mean", method, alpha, False, control, treatment, arms)
    c, t = arms
    effect, se = t.value - c.value, math.sqrt(c.var + t.var)
    df = _welch_df(c, t)
    stat = effect / se
    half = t_quantile(1 - alpha / 2, df) * se
    extra = _with_lift(c, t, z_quantile(1 - alpha / 2))
    return TestResult(metric, "mean", method, alpha, False, c.n, t.n, c.value, t.value, effect, effect - half, effect + half,
                      p_value=_t_two_sided_p(stat, df), statistic=stat, df=df, cohens_d=cohens_d(control, treatment), **extra)


def proportion_test(control: SampleStats, treatment: SampleStats, alpha: float = DEFAULT_ALPHA, metric: str = "") -> TestResult:
    """Fixed-horizon two-sample z-test for a difference of proportions.

    The test statistic uses the pooled standard error under H0 (``statsmodels.stats.proportion.proportions_ztest``);
    the interval on the difference uses the unpooled (Wald) standard error
    (``confint_proportions_2indep(method="wald")``); the lift interval is the delta method.
    Abstains when an arm is empty or every row in both arms has the same value.
    """
    check_alpha(alpha)
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
    wald_se = math.sqrt(c.var + t.var)
    half = z_quantile(1 - alpha / 2) * wald_se
    extra = _with_lift(c, t, z_quantile(1 - alpha / 2))
    wald_p = _z_two_sided_p(effect / wald_se) if wald_se > 0 else None
    return TestResult(metric, "proportion", method, alpha, False, c.n, t.n, c.value, t.value, effect, effect - half, effect + half,
                      p_value=_z_two_sided_p(z), wald_p_value=wald_p, statistic=z, **extra)


def ratio_test(control: RatioStats, treatment: RatioStats, alpha: float = DEFAULT_ALPHA, metric: str = "") -> TestResult:
    """Fixed-horizon z-test for the difference of two ratio metrics ``sum_x / sum_y``.

    Each arm's variance is the delta-method variance of a ratio of means (Deng, Knoblich &
    Lu 2018, "Applying the Delta Method in Metric Analytics", §3); the difference of the
    independent arms has the sum of the variances, the relative lift the delta-method
    variance of their ratio.
    """
    check_alpha(alpha)
    method = "delta-method z-test for a ratio metric (fixed horizon)"
    arms = _arms(control, treatment, "ratio")
    if isinstance(arms, str):
        return _abstain(metric, "ratio", method, alpha, False, control, treatment, arms)
    c, t = arms
    effect, se = t.value - c.value, math.sqrt(c.var + t.var)
    z = z_quantile(1 - alpha / 2)
    return TestResult(metric, "ratio", method, alpha, False, c.n, t.n, c.value, t.value, effect, effect - z * se, effect + z * se,
                      p_value=_z_two_sided_p(effect / se), statistic=effect / se, **_with_lift(c, t, z))


def ppi_difference_test(control: PPIStats, treatment: PPIStats, alpha: float = DEFAULT_ALPHA, *, kind: Kind = "mean", metric: str = "") -> TestResult:
    """Fixed-horizon z-test of the difference of two arms' prediction-powered means (Angelopoulos et al. 2023, *Science*).

    Each arm's mean is ``mean_U(f) + mean_L(Y - f)`` with variance ``var_U(f)/N + var_L(Y - f)/n``
    (:class:`PPIStats`); the arms are independent, so the difference has the sum of their
    variances and the paper's CLT (normal) interval; the relative lift uses the delta method
    (Deng et al. 2018). ``kind`` labels the result (a flag's rate is a mean of 0/1 labels).
    """
    check_alpha(alpha)
    method = "prediction-powered means (Angelopoulos et al. 2023), z-test (fixed horizon)"
    arms = _arms(control, treatment, kind)
    if isinstance(arms, str):
        return _abstain(metric, kind, method, alpha, False, control, treatment, arms)
    c, t = arms
    effect, se = t.value - c.value, math.sqrt(c.var + t.var)
    z = z_quantile(1 - alpha / 2)
    return TestResult(metric, kind, method, alpha, False, c.n, t.n, c.value, t.value, effect, effect - z * se, effect + z * se,
                      p_value=_z_two_sided_p(effect / se), statistic=effect / se, **_with_lift(c, t, z))


# -- anytime-valid confidence sequences ----------------------------------------------------------------------


def sequential_rho(alpha: float, tuning_n: float, two_sided: bool = True) -> float:
    """Mixture scale rho that makes the normal-mixture boundary tightest at ``tuning_n`` total rows.

    ``rho = sqrt((-2 log a + log(-2 log a + 1)) / tuning_n)`` with ``a = alpha`` (two-sided) or
    ``2 alpha`` (one-sided): the optimisation of Howard et al. (2021) as used by gbstats
    (``sequential_rho``) and Waudby-Smith et al. (2024).
    """
    check_alpha(alpha)
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
    check_alpha(alpha)
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
        lift_p = always_valid_p_value(lift[0], lift[1], n_total, alpha, tuning_n) if lift[1] > 0 else None
        extra = {"relative_lift": lift[0], "lift_ci_low": lift[0] - lift_half, "lift_ci_high": lift[0] + lift_half, "lift_p_value": lift_p}
    d = cohens_d(control, treatment) if kind == "mean" and isinstance(control, SampleStats) else None
    return TestResult(metric, kind, method, alpha, True, c.n, t.n, c.value, t.value, effect, effect - half, effect + half,
                      p_value=always_valid_p_value(effect, se, n_total, alpha, tuning_n), statistic=effect / se, cohens_d=d, **extra)


def difference_test(control: SampleStats | RatioStats | PPIStats, treatment: SampleStats | RatioStats | PPIStats, *, kind: Kind = "mean",
                    alpha: float = DEFAULT_ALPHA, sequential: bool = True, tuning_n: float = DEFAULT_TUNING_N, metric: str = "") -> TestResult:
    """The default comparison: :func:`sequential_difference` (valid under daily looks) unless ``sequential=False``.

    ``sequential=False`` is the fixed-horizon mode: :func:`mean_test`, :func:`proportion_test`
    or :func:`ratio_test`, for one analysis at the planned sample size; prediction-powered
    arms (:class:`PPIStats`) take :func:`ppi_difference_test`, the same comparison on their
    corrected means and variances.
    """
    if sequential:
        return sequential_difference(control, treatment, alpha, tuning_n, kind=kind, metric=metric)
    if isinstance(control, PPIStats):
        return ppi_difference_test(control, treatment, alpha, kind=kind, metric=metric)
    if isinstance(control, RatioStats):
        return ratio_test(control, treatment, alpha, metric)
    if kind == "proportion":
        return proportion_test(control, treatment, alpha, metric)
    if kind != "mean":
        raise ValueError(f"kind must be 'mean' or 'proportion' for SampleStats, got {kind!r}")
    return mean_test(control, treatment, alpha, metric)


# -- guardrails ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardrailResult(Serialisable):
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
    check_alpha(alpha)
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
        half = t_quantile(1 - alpha, _welch_df(c, t)) * se
    else:
        half = z_quantile(1 - alpha) * se
    lower, upper = estimate - half, estimate + half
    good, bad = (lower > threshold, upper < threshold) if direction == "increase" else (upper < threshold, lower > threshold)
    verdict: Verdict = "non_inferior" if good else "inferior" if bad else "inconclusive"
    return GuardrailResult(**base, **estimates, verdict=verdict, estimate=estimate, lower=lower, upper=upper)
