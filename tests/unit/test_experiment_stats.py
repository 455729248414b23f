"""Experiment statistics: equality with scipy/statsmodels references, merging of daily sufficient statistics,
abstentions, and small seeded simulations of error rates under daily looks, power and interval coverage."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modelwatch.experiments.design import adjust_pvalues, cuped_adjust, days_remaining, power_analysis, srm_test
from modelwatch.experiments.inference import (
    always_valid_p_value,
    difference_test,
    mean_test,
    non_inferiority,
    proportion_test,
    ratio_test,
    sequential_difference,
    sequential_halfwidth,
    sequential_rho,
)
from modelwatch.experiments.quantiles import order_statistic_ranks, quantile_ci, quantile_difference
from modelwatch.experiments.stats import CovariateStats, RatioStats, SampleStats, alpha_spent, look_alpha
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, tt_ind_solve_power
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_effectsize, proportions_ztest

DAYS = 14


def as_json(result) -> dict:
    """The result's dict after a strict JSON round trip (fails on NaN or inf)."""
    return json.loads(json.dumps(result.to_dict(), allow_nan=False))


def cumulative_looks(values: np.ndarray) -> list[tuple[SampleStats, SampleStats]]:
    """values (days, 2 arms, rows per day) -> per look, the (control, treatment) stats to date, merged with +."""
    out, control, treatment = [], SampleStats(0, 0, 0), SampleStats(0, 0, 0)
    for day in values:
        control, treatment = control + SampleStats.from_values(day[0]), treatment + SampleStats.from_values(day[1])
        out.append((control, treatment))
    return out


# -- sufficient statistics -------------------------------------------------------------------------------------


def test_merging_daily_stats_equals_stats_of_the_concatenated_data():
    rng = np.random.default_rng(0)
    days = [rng.lognormal(0, 1, size) for size in (10, 500, 1, 2_000)]
    merged = sum((SampleStats.from_values(d) for d in days), SampleStats(0, 0, 0))
    whole = np.concatenate(days)
    direct = SampleStats.from_values(whole)
    assert merged.n == direct.n == whole.size
    assert merged.sum == pytest.approx(direct.sum, rel=1e-12) and merged.sum_sq == pytest.approx(direct.sum_sq, rel=1e-12)
    assert merged.mean == pytest.approx(whole.mean(), rel=1e-12)
    assert merged.variance == pytest.approx(whole.var(ddof=1), rel=1e-9)

    xs = [rng.gamma(2, 1, s) for s in (30, 300)]
    ys = [rng.gamma(5, 1, s) for s in (30, 300)]
    ratio = RatioStats.from_pairs(xs[0], ys[0]) + RatioStats.from_pairs(xs[1], ys[1])
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert ratio.n == x.size and ratio.ratio == pytest.approx(x.sum() / y.sum(), rel=1e-12)
    assert ratio.var_x == pytest.approx(x.var(ddof=1), rel=1e-9) and ratio.var_y == pytest.approx(y.var(ddof=1), rel=1e-9)
    assert ratio.cov_xy == pytest.approx(np.cov(x, y)[0, 1], rel=1e-9)

    cov = CovariateStats.from_values(ys[0], xs[0]) + CovariateStats.from_values(ys[1], xs[1])
    whole_cov = CovariateStats.from_values(y, x)
    for name in ("sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy"):
        assert getattr(cov, name) == pytest.approx(getattr(whole_cov, name), rel=1e-12)
    assert cov.metric.variance == pytest.approx(y.var(ddof=1), rel=1e-9)


def test_stats_constructors_skip_missing_values_reject_bad_input_and_report_no_variance_below_two_rows():
    stats_ = SampleStats.from_values([1.0, np.nan, 3.0])
    assert (stats_.n, stats_.sum, stats_.sum_sq) == (2, 4.0, 10.0)
    assert SampleStats.from_values([5.0]).variance is None and SampleStats(0, 0, 0).mean is None
    assert SampleStats.from_values(np.full(1_000, 0.1)).variance == 0.0  # rounding noise is not variance
    assert SampleStats.from_counts(3, 10).is_binary and not SampleStats.from_values([0.5, 1.0]).is_binary
    with pytest.raises(ValueError):
        SampleStats.from_values([1.0, np.inf])
    with pytest.raises(ValueError):
        SampleStats(-1, 0, 0)
    with pytest.raises(ValueError):
        RatioStats.from_pairs([1, 2], [1])
    assert RatioStats.from_pairs([1, np.nan, 3], [2, 2, np.nan]).n == 1


# -- fixed-horizon tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_c", "n_t", "shift", "sd_t"), [(500, 700, 0.1, 1.0), (40, 25, 0.5, 3.0), (3, 2, 1.0, 0.2)])
def test_welch_equals_scipy_ttest_ind(n_c, n_t, shift, sd_t):
    rng = np.random.default_rng(n_c)
    control, treatment = rng.normal(1.0, 1.0, n_c), rng.normal(1.0 + shift, sd_t, n_t)
    result = mean_test(SampleStats.from_values(control), SampleStats.from_values(treatment), alpha=0.1)
    reference = stats.ttest_ind(treatment, control, equal_var=False)
    ci = reference.confidence_interval(0.9)
    assert result.statistic == pytest.approx(reference.statistic, rel=1e-9)
    assert result.df == pytest.approx(reference.df, rel=1e-9)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-8)
    assert (result.ci_low, result.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert result.effect == pytest.approx(treatment.mean() - control.mean())
    pooled = math.sqrt(((n_c - 1) * control.var(ddof=1) + (n_t - 1) * treatment.var(ddof=1)) / (n_c + n_t - 2))
    assert result.cohens_d == pytest.approx((treatment.mean() - control.mean()) / pooled, rel=1e-9)
    assert result.relative_lift == pytest.approx(treatment.mean() / control.mean() - 1)
    as_json(result)
    # the fixed-horizon non-inferiority bounds on the difference are scipy's one-sided Welch intervals
    guardrail = non_inferiority(SampleStats.from_values(control), SampleStats.from_values(treatment), direction="increase", margin=0.1,
                                absolute=True, alpha=0.1, sequential=False)
    lower = stats.ttest_ind(treatment, control, equal_var=False, alternative="greater").confidence_interval(0.9).low
    upper = stats.ttest_ind(treatment, control, equal_var=False, alternative="less").confidence_interval(0.9).high
    assert (guardrail.lower, guardrail.upper) == pytest.approx((lower, upper), rel=1e-9)


def test_delta_method_lift_interval_covers_the_true_lift():
    """400 seeded experiments, control mean 2 and treatment mean 2.1 (lift 5%), skewed data: coverage near 95%."""
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(400):
        control = SampleStats.from_values(rng.gamma(2.0, 1.0, 800))
        treatment = SampleStats.from_values(rng.gamma(2.1, 1.0, 800))
        result = mean_test(control, treatment)
        covered += result.lift_ci_low <= 0.05 <= result.lift_ci_high
    assert 0.92 <= covered / 400 <= 0.98


def test_proportion_test_equals_statsmodels():
    control, treatment = SampleStats.from_counts(120, 1_000), SampleStats.from_counts(150, 1_100)
    result = proportion_test(control, treatment)
    z, p = proportions_ztest([150, 120], [1_100, 1_000])  # pooled variance under H0
    low, high = confint_proportions_2indep(150, 1_100, 120, 1_000, method="wald", compare="diff")
    assert result.statistic == pytest.approx(z, rel=1e-12) and result.p_value == pytest.approx(p, rel=1e-10)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), rel=1e-10)
    assert result.effect == pytest.approx(150 / 1_100 - 0.12)
    with pytest.raises(ValueError, match="0/1"):
        proportion_test(SampleStats.from_values([0.5, 1.0]), treatment)
    # the proportion mode of the sequential test uses the same (Bernoulli) variance
    seq = sequential_difference(control, treatment, kind="proportion")
    se = math.sqrt(0.12 * 0.88 / 1_000 + (150 / 1_100) * (1 - 150 / 1_100) / 1_100)
    assert seq.ci_high - seq.effect == pytest.approx(sequential_halfwidth(se, 2_100, 0.05, 5_000))


def test_ratio_metric_delta_method_variance_matches_the_sampling_variance():
    """Var(sum x / sum y) from one sample's delta method vs the spread of the ratio over 2,000 samples."""
    rng = np.random.default_rng(2)

    def draw() -> tuple[np.ndarray, np.ndarray]:
        tokens = rng.gamma(3.0, 200.0, 400) / 1_000  # thousands of tokens per request
        cost = 0.5 * tokens + rng.gamma(2.0, 0.05, 400)  # cost correlated with tokens
        return cost, tokens

    ratios = [c.sum() / t.sum() for c, t in (draw() for _ in range(2_000))]
    estimates = [RatioStats.from_pairs(*draw()).ratio_variance for _ in range(50)]
    assert np.mean(estimates) == pytest.approx(np.var(ratios, ddof=1), rel=0.1)

    control, treatment = RatioStats.from_pairs(*draw()), RatioStats.from_pairs(*draw())
    result = ratio_test(control, treatment)
    se = math.sqrt(control.ratio_variance + treatment.ratio_variance)
    assert result.effect == pytest.approx(treatment.ratio - control.ratio)
    assert result.statistic == pytest.approx(result.effect / se)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(result.effect / se)))
    assert difference_test(control, treatment, sequential=False) == result
    assert ratio_test(RatioStats.from_pairs([1, 2], [0, 0]), treatment).abstained


# -- abstentions -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("control", "treatment", "reason"),
    [
        (SampleStats(0, 0, 0), SampleStats.from_values([1.0, 2.0]), "control arm is empty"),
        (SampleStats.from_values([1.0]), SampleStats.from_values([1.0, 2.0]), "control arm has one row"),
        (SampleStats.from_values([2.0, 2.0, 2.0]), SampleStats.from_values([2.0, 2.0]), "zero variance in both arms"),
    ],
)
def test_tests_abstain_with_a_reason_instead_of_nan(control, treatment, reason):
    results = [mean_test(control, treatment), sequential_difference(control, treatment),
               non_inferiority(control, treatment, direction="increase", margin=0.01)]
    for result in results:
        assert result.abstained and reason in result.reason
        assert None not in (result.n_control, result.n_treatment)
        as_json(result)
    assert results[2].verdict == "inconclusive"
    assert not results[0].significant and results[0].p_value is None and results[0].ci_low is None


def test_proportions_abstain_without_variance_and_lift_is_undefined_at_a_zero_control_mean():
    assert proportion_test(SampleStats.from_counts(0, 100), SampleStats.from_counts(0, 90)).reason == "zero variance: every row in both arms is 0"
    assert proportion_test(SampleStats.from_counts(0, 0), SampleStats.from_counts(3, 90)).abstained
    result = mean_test(SampleStats.from_values([-1.0, 1.0, 0.0]), SampleStats.from_values([1.0, 2.0, 3.0]))
    assert not result.abstained and result.p_value is not None
    assert result.relative_lift is None and "control estimate is 0" in result.reason
    as_json(result)


# -- quantiles -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "q", "confidence"), [(1_000, 0.99, 0.95), (5_000, 0.99, 0.9), (300, 0.5, 0.95), (2_000, 0.05, 0.99)])
def test_quantile_interval_equals_scipy_quantile_test(n, q, confidence):
    x = np.sort(np.random.default_rng(n).lognormal(0, 1, n))
    ours = quantile_ci(x, q, confidence)
    theirs = stats.quantile_test(x, p=q).confidence_interval(confidence)
    assert (ours.low, ours.high) == (theirs.low, theirs.high)
    assert ours.estimate == pytest.approx(np.quantile(x, q))
    interpolated = quantile_ci(x, q, confidence, interpolate=True)
    assert ours.low <= interpolated.low <= interpolated.high <= ours.high  # interpolation only narrows
    as_json(ours)


def test_quantile_interval_abstains_below_the_minimum_tail_count():
    x = np.arange(1_000.0)
    assert not quantile_ci(x, 0.99).abstained
    short = quantile_ci(x[:999], 0.99)
    assert short.abstained and "need at least 1000 rows" in short.reason and short.low is None
    assert not quantile_ci(x[:500], 0.99, min_tail=5).abstained
    assert quantile_ci([], 0.5).reason == "no rows"
    assert quantile_ci([1.0, np.nan], 0.5).abstained
    with pytest.raises(ValueError, match="sorted"):
        quantile_ci(x[::-1], 0.5)
    diff = quantile_difference(x[:999], x, 0.99)
    assert diff.abstained and diff.reason.startswith("control:")


@pytest.mark.parametrize(("n", "q"), [(1_000, 0.99), (200, 0.5), (500, 0.9)])
def test_each_bound_misses_on_its_side_with_probability_alpha_over_2(n, q):
    """Uniform data, where a bound's miss probability can be simulated directly from the order statistics
    (U_(r) ~ Beta(r, n - r + 1), U_(r+1) = U_(r) + (1 - U_(r)) Beta(1, n - r)): the exact bounds miss at most
    2.5% each, the Nyblom-interpolated ones about 2.5% each. Values 0..n-1 expose the interpolation weight."""
    ranks = np.arange(float(n))
    exact, interpolated = quantile_ci(ranks, q), quantile_ci(ranks, q, interpolate=True)
    r, s = exact.low_rank, exact.high_rank
    rng = np.random.default_rng(n)

    def miss(rank: int, weight: float, below: bool) -> float:
        """P(bound on the side of `below` misses q) for the bound (1 - weight) U_(rank) + weight U_(rank+1)."""
        u = rng.beta(rank, n - rank + 1, 500_000)
        bound = (1 - weight) * u + weight * (u + (1 - u) * rng.beta(1, n - rank, 500_000))
        return float(np.mean(bound > q if below else bound < q))

    assert miss(r, 0.0, True) <= 0.0265 and miss(s - 1, 1.0, False) <= 0.0265
    assert miss(r, interpolated.low - (r - 1), True) == pytest.approx(0.025, abs=0.002)
    assert miss(s - 1, interpolated.high - (s - 2), False) == pytest.approx(0.025, abs=0.002)


def test_p99_interval_coverage_at_1000_rows():
    """500 seeded lognormal samples of 1,000 rows: the exact interval covers at least ~95% (its exact coverage
    from the binomial ranks is 97.6%), the interpolated one close to 95%."""
    rng = np.random.default_rng(3)
    truth = stats.lognorm(1.0).ppf(0.99)
    samples = np.sort(rng.lognormal(0, 1, (500, 1_000)), axis=1)

    def coverage(interpolate: bool) -> float:
        intervals = [quantile_ci(sample, 0.99, interpolate=interpolate) for sample in samples]
        return float(np.mean([ci.low <= truth <= ci.high for ci in intervals]))

    exact, interpolated = coverage(False), coverage(True)
    r, s = order_statistic_ranks(1_000, 0.99, 0.95)
    analytic = stats.binom.cdf(s - 1, 1_000, 0.99) - stats.binom.cdf(r - 1, 1_000, 0.99)
    assert analytic >= 0.95 and abs(exact - analytic) < 0.025
    assert 0.925 <= interpolated <= 0.97


def test_quantile_difference_covers_the_true_difference():
    """300 experiments, treatment latency 10% slower (lognormal scale x1.1): the Bonferroni interval covers the
    true p99 difference in >= 95% (it is conservative); a 50% slower p99 is detected."""
    rng = np.random.default_rng(4)
    truth = 0.1 * stats.lognorm(1.0).ppf(0.99)
    hits, detected = 0, 0
    for _ in range(300):
        result = quantile_difference(rng.lognormal(0, 1, 2_000), 1.1 * rng.lognormal(0, 1, 2_000), 0.99)
        hits += result.ci_low <= truth <= result.ci_high
        detected += result.significant
    assert hits / 300 >= 0.94
    assert result.kind == "quantile" and result.p_value is None and result.lift_ci_low < 0.1 < result.lift_ci_high
    # conservative, so only a large regression is detected: p99 50% slower at 5,000 rows per arm
    slower = [quantile_difference(rng.lognormal(0, 1, 5_000), 1.5 * rng.lognormal(0, 1, 5_000), 0.99) for _ in range(50)]
    assert np.mean([r.decision("decrease") == "worse" for r in slower]) >= 0.8


@settings(max_examples=100, deadline=None, derandomize=True)
@given(alpha=st.floats(1e-4, 0.49), flat=st.integers(1, 400), looks=st.integers(1, 1_000))
def test_alpha_spent_over_any_number_of_daily_looks_stays_within_alpha(alpha, flat, looks):
    """The quantile guardrails' spending sequence: its partial sums are the spending function and never reach alpha."""
    spent = [look_alpha(alpha, k, flat) for k in range(1, looks + 1)]
    assert math.fsum(spent) == pytest.approx(alpha_spent(alpha, looks, flat), rel=1e-9)
    assert math.fsum(spent) < alpha and alpha_spent(alpha, 10**12, flat) < alpha
    assert all(a >= b > 0 for a, b in zip(spent, spent[1:]))  # no look spends more than the one before


def test_alpha_spending_sequence_values():
    assert [look_alpha(0.05, k) for k in (1, 14, 15, 60)] == pytest.approx([0.05 / 28, 0.05 / 28, 0.05 / 30, 0.05 * 14 / (2 * 60 * 59)])
    assert alpha_spent(0.05, 14) == pytest.approx(0.025) and alpha_spent(0.05, 60) == pytest.approx(0.05 * (1 - 14 / 120))
    assert [look_alpha(0.05, k, flat_looks=1) for k in (1, 2, 60)] == pytest.approx([0.05 / 2, 0.05 / 4, 0.05 / 7_080])
    for bad in ({"look": 0}, {"look": 1, "flat_looks": 0}):
        with pytest.raises(ValueError):
            look_alpha(**{"alpha": 0.05, **bad})
    with pytest.raises(ValueError):
        look_alpha(1.5, 1)


# -- CUPED -----------------------------------------------------------------------------------------------------


def test_cuped_equals_explicit_adjustment_and_reduces_variance():
    rng = np.random.default_rng(5)
    pre_c, pre_t = rng.normal(10, 2, 3_000), rng.normal(10, 2, 3_000)
    y_c = 0.8 * pre_c + rng.normal(0, 1.2, 3_000)
    y_t = 0.8 * pre_t + rng.normal(0.1, 1.2, 3_000)
    days = np.array_split(np.arange(3_000), 7)  # merge daily covariate statistics, then adjust
    control = sum((CovariateStats.from_values(y_c[i], pre_c[i]) for i in days), CovariateStats(0, 0, 0, 0, 0, 0))
    treatment = sum((CovariateStats.from_values(y_t[i], pre_t[i]) for i in days), CovariateStats(0, 0, 0, 0, 0, 0))
    result = cuped_adjust(control, treatment)

    x, y = np.concatenate([pre_c, pre_t]), np.concatenate([y_c, y_t])
    theta = np.cov(x, y)[0, 1] / x.var(ddof=1)
    explicit_c = SampleStats.from_values(y_c - theta * (pre_c - x.mean()))
    assert result.theta == pytest.approx(theta, rel=1e-9)
    assert result.control.mean == pytest.approx(explicit_c.mean, rel=1e-9)
    assert result.control.variance == pytest.approx(explicit_c.variance, rel=1e-7)
    corr = np.corrcoef(x, y)[0, 1]
    assert result.variance_reduction == pytest.approx(corr**2, abs=0.02)  # ~1 - rho^2 of the variance remains
    plain, adjusted = mean_test(control.metric, treatment.metric), mean_test(result.control, result.treatment)
    assert (adjusted.ci_high - adjusted.ci_low) < 0.7 * (plain.ci_high - plain.ci_low)
    assert cuped_adjust(CovariateStats.from_values([1.0], [1.0]), treatment).abstained
    as_json(result)


# -- sequential testing ----------------------------------------------------------------------------------------


def test_sequential_interval_follows_the_normal_mixture_formula_and_its_p_value_is_dual():
    rho = sequential_rho(0.05, 10_000)
    assert rho**2 == pytest.approx((-2 * math.log(0.05) + math.log(-2 * math.log(0.05) + 1)) / 10_000)
    se, n = 0.02, 4_000
    s2 = se**2 * n
    expected = math.sqrt(s2) * math.sqrt(2 * (n * rho**2 + 1) / (n**2 * rho**2) * math.log(math.sqrt(n * rho**2 + 1) / 0.05))
    assert sequential_halfwidth(se, n, 0.05, 10_000) == pytest.approx(expected, rel=1e-12)
    rho1 = sequential_rho(0.1, 10_000)  # one-sided: rho tuned at 2 alpha, Howard et al.'s one-sided mixture
    one_sided = math.sqrt(s2 * 2 * (n * rho1**2 + 1) / (n**2 * rho1**2) * math.log(1 + math.sqrt(n * rho1**2 + 1) / (2 * 0.05)))
    assert sequential_halfwidth(se, n, 0.05, 10_000, two_sided=False) == pytest.approx(one_sided, rel=1e-12)
    # the sequence is wider than the fixed interval, and relatively narrowest near the tuning size
    widths = {m: sequential_halfwidth(1 / math.sqrt(m), m, 0.05, 10_000) * math.sqrt(m) for m in (1_000, 10_000, 100_000)}
    assert min(widths.values()) == widths[10_000] > 1.96
    # p < alpha exactly when the 1 - alpha sequence excludes 0
    for effect in np.linspace(0, 0.2, 41):
        half = sequential_halfwidth(se, n, 0.05, 10_000)
        p = always_valid_p_value(effect, se, n, 0.05, 10_000)
        assert (p < 0.05) == (abs(effect) > half) or math.isclose(abs(effect), half, rel_tol=1e-9)


def test_aa_with_daily_looks_sequential_keeps_its_error_rate_while_peeking_the_fixed_test_inflates_it():
    """300 seeded A/A experiments, 14 daily looks of 300 rows per arm: share with a rejection at any look."""
    rng = np.random.default_rng(6)
    sequential = naive = 0
    for _ in range(300):
        looks = cumulative_looks(rng.gamma(2.0, 1.0, (DAYS, 2, 300)))
        sequential += any(sequential_difference(c, t, tuning_n=2 * 300 * DAYS).significant for c, t in looks)
        naive += any(mean_test(c, t).significant for c, t in looks)
        assert difference_test(*looks[-1]) == sequential_difference(*looks[-1])  # sequential is the default
    assert sequential / 300 <= 0.07
    assert naive / 300 > 0.10


def test_non_inferiority_false_harm_verdicts_under_daily_looks():
    """300 seeded experiments with 14 daily looks at the boundary of the null (true harm = margin): the share
    ever declared 'inferior' stays near alpha when sequential and inflates when a fixed bound is peeked."""
    rng = np.random.default_rng(7)
    counts = {"aa_margin_0": [0, 0], "aa_margin_0_increase": [0, 0], "harm_equals_margin": [0, 0]}
    for _ in range(300):
        control = rng.lognormal(0.0, 0.8, (DAYS, 300))
        aa = cumulative_looks(np.stack([control, rng.lognormal(0.0, 0.8, (DAYS, 300))], axis=1))
        worse = cumulative_looks(np.stack([control, 1.03 * rng.lognormal(0.0, 0.8, (DAYS, 300))], axis=1))  # cost +3%
        cases = (("aa_margin_0", aa, 0.0, "decrease"), ("aa_margin_0_increase", aa, 0.0, "increase"), ("harm_equals_margin", worse, 0.03, "decrease"))
        for name, looks, margin, direction in cases:
            for index, sequential in enumerate((True, False)):
                counts[name][index] += any(
                    non_inferiority(c, t, direction=direction, margin=margin, sequential=sequential, tuning_n=2 * 300 * DAYS).verdict == "inferior"
                    for c, t in looks
                )
    for sequential_hits, peeked_hits in counts.values():
        assert sequential_hits / 300 <= 0.07
        assert peeked_hits / 300 > 0.10


def test_real_effects_are_detected():
    """200 seeded experiments with a +0.1 sd effect (80% power at ~1,600 rows per arm for a single test),
    2 x 300 rows a day for 14 days: the sequential test detects it at some look in most runs."""
    rng = np.random.default_rng(8)
    detected = harmed = 0
    for _ in range(200):
        days = rng.normal(0.0, 1.0, (DAYS, 2, 300))
        days[:, 1] += 0.1
        better = cumulative_looks(days)
        days[:, 1] -= 0.2  # now 0.1 sd worse than control
        worse = cumulative_looks(days)
        detected += any(sequential_difference(c, t, tuning_n=2 * 300 * DAYS).decision("increase") == "better" for c, t in better)
        harmed += any(
            non_inferiority(c, t, direction="increase", margin=0.0, absolute=True, tuning_n=2 * 300 * DAYS).verdict == "inferior" for c, t in worse
        )
    assert detected / 200 >= 0.8
    assert harmed / 200 >= 0.8


def test_non_inferiority_verdicts_are_mirrored_by_direction_and_exclusive():
    control = SampleStats.from_values(np.random.default_rng(9).normal(10, 1, 20_000))
    same = SampleStats(control.n, control.sum * 1.0001, control.sum_sq * 1.0002)
    much_higher = SampleStats(control.n, control.sum * 1.2, control.sum_sq * 1.44)
    assert non_inferiority(control, same, direction="increase", margin=0.01).verdict == "non_inferior"
    assert non_inferiority(control, same, direction="decrease", margin=0.01).verdict == "non_inferior"
    assert non_inferiority(control, much_higher, direction="decrease", margin=0.05).verdict == "inferior"
    assert non_inferiority(control, much_higher, direction="increase", margin=0.05).verdict == "non_inferior"
    absolute = non_inferiority(much_higher, control, direction="increase", margin=1.0, absolute=True, sequential=False)
    assert absolute.verdict == "inferior" and absolute.scale == "difference" and absolute.threshold == -1.0
    assert absolute.lower < absolute.estimate < absolute.upper < -1.0
    noisy = SampleStats.from_values(np.random.default_rng(10).normal(10, 1, 50))
    for direction in ("increase", "decrease"):
        assert non_inferiority(control, noisy, direction=direction, margin=0.001).verdict == "inconclusive"
    zero_control = non_inferiority(SampleStats.from_values([-1.0, 1.0]), same, direction="increase", margin=0.1)
    assert zero_control.abstained and "positive control estimate" in zero_control.reason
    as_json(absolute)


# -- planning --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [0.5, 0.2])
def test_power_analysis_equals_statsmodels(split):
    ratio = split / (1 - split)
    z = power_analysis(0.7, 0.2, 0.02, split=split)  # relative MDE 2% of 0.7
    n1 = NormalIndPower().solve_power(effect_size=0.014 / 0.2, alpha=0.05, power=0.8, ratio=ratio)
    assert (z.required_n_control, z.required_n_treatment) == (math.ceil(n1), math.ceil(n1 * ratio))
    assert z.required_total == z.required_n_control + z.required_n_treatment
    t = power_analysis(10.0, 2.0, 0.5, relative=False, split=split, test="t", power=0.9, alpha=0.01)
    n1 = tt_ind_solve_power(effect_size=0.25, alpha=0.01, power=0.9, ratio=ratio)
    assert t.required_n_control == math.ceil(n1) and t.effect_size == pytest.approx(0.25)
    rate = power_analysis(0.05, None, 0.1, kind="proportion", split=split)
    n1 = NormalIndPower().solve_power(effect_size=proportion_effectsize(0.055, 0.05), alpha=0.05, power=0.8, ratio=ratio)
    assert rate.required_n_control == math.ceil(n1) and rate.effect_size_kind == "cohens_h"
    assert power_analysis(0.0, 1.0, 0.1).abstained and power_analysis(0.95, None, 0.1, kind="proportion").abstained
    as_json(z)


def test_a_design_sized_by_power_analysis_has_its_power():
    """400 seeded fixed-horizon experiments at the required n with the MDE as true effect: power ~0.8."""
    design = power_analysis(0.7, 0.2, 0.03)
    n = design.required_n_per_arm
    rng = np.random.default_rng(10)
    hits = 0
    for _ in range(400):
        control, treatment = rng.normal(0.7, 0.2, n), rng.normal(0.7 * 1.03, 0.2, n)
        hits += mean_test(SampleStats.from_values(control), SampleStats.from_values(treatment)).decision("increase") == "better"
    assert 0.73 <= hits / 400 <= 0.87


def test_days_remaining():
    assert days_remaining(10_000, 4_000, 1_000) == 6
    assert days_remaining(10_000, 4_001, 1_000) == 6 and days_remaining(10_000, 3_999, 1_000) == 7
    assert days_remaining(10_000, 12_000, 1_000) == 0
    assert days_remaining(10_000, 0, 0) is None


@pytest.mark.parametrize(("method", "reference"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_adjust_pvalues_equals_multipletests(method, reference):
    pvalues = [0.01, 0.04, 0.03, 0.2, 0.001, 0.04, 0.9]
    expected = multipletests(pvalues, method=reference)[1]
    assert adjust_pvalues(pvalues, method) == pytest.approx(list(expected), rel=1e-12)
    with_gap = adjust_pvalues([0.01, None, 0.04], method)
    assert with_gap[1] is None and with_gap[0] == pytest.approx(multipletests([0.01, 0.04], method=reference)[1][0])


# -- sample-ratio mismatch -------------------------------------------------------------------------------------


def test_srm_equals_scipy_chisquare_and_flags_what_it_should():
    result = srm_test({"control": 30_350, "treatment": 20_000, "shadow": 0}, {"control": 0.6, "treatment": 0.4})
    reference = stats.chisquare([30_350, 20_000], [50_350 * 0.6, 50_350 * 0.4])
    assert result.chi2 == pytest.approx(reference.statistic, rel=1e-12) and result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.df == 1 and result.unexpected == [] and not result.flagged  # an unplanned arm without traffic is fine
    three = srm_test({"a": 1_000, "b": 1_000, "c": 0}, {"a": 1, "b": 1, "c": 1})
    assert three.flagged and three.zero_traffic == ["c"] and "zero traffic" in three.reason
    unplanned = srm_test({"control": 500, "treatment": 500, "rogue": 3}, {"control": 0.5, "treatment": 0.5})
    assert unplanned.flagged and unplanned.unexpected == ["rogue"] and unplanned.p_value == 1.0
    empty = srm_test({}, {"control": 0.5, "treatment": 0.5})
    assert empty.abstained and not empty.flagged and empty.reason == "no traffic in the planned arms"
    assert srm_test({"control": 4, "treatment": 3}, {"control": 0.5, "treatment": 0.5}).abstained
    as_json(result)


def test_srm_flag_rates_on_multinomial_traffic():
    """A 51/49 split of 100k requests is flagged in >= 99% of 300 runs; a true 50/50 split in about 0.1% of 5,000."""
    rng = np.random.default_rng(11)
    weights = {"control": 0.5, "treatment": 0.5}
    skewed = rng.multinomial(100_000, [0.51, 0.49], 300)
    assert np.mean([srm_test({"control": a, "treatment": b}, weights).flagged for a, b in skewed]) >= 0.99
    fair = rng.multinomial(100_000, [0.5, 0.5], 5_000)
    assert sum(srm_test({"control": a, "treatment": b}, weights).flagged for a, b in fair) <= 15  # expected 5
