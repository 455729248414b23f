"""Weighted judge estimates: the stratified formulas by hand, domains, abstention, Korn–Graubard intervals, seeded
simulations of unbiasedness and interval coverage, and prediction-powered inference (PPI, PPI++) against a biased judge."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from modelwatch.judge.estimates import (
    estimate_judgments,
    estimates_frame,
    judgments_frame,
    korn_graubard_interval,
    ppi_from_frame,
    ppi_mean,
    stratified_estimate,
)
from modelwatch.judge.sampling import stratified_sample
from scipy import stats

REPS = 300
TOPIC_MEANS = {"billing": 4.2, "shipping": 3.8, "returns": 3.5, "account": 4.5, "technical": 3.0}


def judged_population(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A day whose every row already has its judgment: helpfulness depends on topic and is low on refusals; refusals are rare."""
    rng = np.random.default_rng(seed)
    topic = rng.choice(list(TOPIC_MEANS), n, p=[0.3, 0.25, 0.2, 0.15, 0.1])
    refused = rng.random(n) < 0.03
    mean = np.array([TOPIC_MEANS[t] for t in topic]) - 2.5 * refused
    return pd.DataFrame({
        "request_id": [f"req-{i:05d}" for i in range(n)],
        "topic": topic,
        "variant": rng.choice(["control", "treatment"], n, p=[0.9, 0.1]),
        "status": np.where(refused, "refused_by_filter", "ok"),
        "helpfulness": np.clip(np.rint(mean + rng.normal(0, 0.8, n)), 1, 5).astype(int),
        "hallucination": rng.random(n) < np.where(refused, 0.0, 0.06),
    })


def test_whole_day_estimate_is_the_textbook_stratified_mean_and_variance():
    population = judged_population()
    sample = stratified_sample(population, ["topic"], 150, oversample={"returns": 3}, seed=1).rows
    est = stratified_estimate(sample, "helpfulness")
    big_n = sample.groupby("stratum")["weight"].sum()
    groups = sample.groupby("stratum")["helpfulness"]
    n_h, mean_h, var_h = groups.size(), groups.mean(), groups.var(ddof=1)
    expected = (big_n * mean_h).sum() / big_n.sum()
    variance = (big_n**2 * (1 - n_h / big_n) * var_h / n_h).sum() / big_n.sum() ** 2  # Cochran eq. 5.6 over N^2
    assert est.estimate == pytest.approx(expected, rel=1e-12)
    assert est.se == pytest.approx(np.sqrt(variance), rel=1e-9)
    assert est.estimate == pytest.approx(np.average(sample["helpfulness"], weights=sample["weight"]), rel=1e-12)  # = Hájek ratio
    assert est.df == 150 - 5 and est.n == 150 and est.population == pytest.approx(len(population))
    half = stats.t.ppf(0.975, est.df) * est.se
    assert (est.ci_low, est.ci_high) == pytest.approx((expected - half, expected + half))


def test_domain_that_is_a_stratum_gets_that_strata_mean_and_variance():
    sample = stratified_sample(judged_population(), ["variant"], 200, seed=2).rows
    est = stratified_estimate(sample, "helpfulness", domain=sample["variant"] == "treatment", domain_label="variant=treatment")
    rows = sample[sample["variant"] == "treatment"]["helpfulness"]
    big_n = sample[sample["variant"] == "treatment"]["weight"].sum()
    assert est.domain == "variant=treatment" and est.n == len(rows)
    assert est.estimate == pytest.approx(rows.mean())
    assert est.se == pytest.approx(np.sqrt((1 - len(rows) / big_n) * rows.var(ddof=1) / len(rows)))


def test_domain_with_fewer_than_two_judged_rows_abstains_with_a_reason():
    sample = stratified_sample(judged_population(), ["topic"], 100, seed=3).rows
    one = sample["request_id"] == sample["request_id"].iloc[0]
    est = stratified_estimate(sample, "helpfulness", domain=one, domain_label="one-row")
    assert est.abstained and est.estimate is None and "1 judged rows" in est.reason
    json.dumps(est.to_dict(), allow_nan=False)


def test_unjudged_rows_count_as_missing_within_their_stratum():
    sample = stratified_sample(judged_population(), ["topic"], 100, seed=4).rows.copy()
    sample["helpfulness"] = sample["helpfulness"].astype(float)
    sample.iloc[:7, sample.columns.get_loc("helpfulness")] = np.nan  # the judge failed on 7 rows
    est = stratified_estimate(sample, "helpfulness")
    judged = sample.dropna(subset=["helpfulness"])
    big_n = sample.groupby("stratum")["weight"].sum()
    expected = (big_n * judged.groupby("stratum")["helpfulness"].mean()).sum() / big_n.sum()
    assert est.n == 93 and est.estimate == pytest.approx(expected)


def test_stratum_without_judged_rows_is_reported_as_not_covered():
    sample = stratified_sample(judged_population(), ["topic"], 100, seed=5).rows.copy()
    sample["helpfulness"] = sample["helpfulness"].astype(float)
    sample.loc[sample["topic"] == "technical", "helpfulness"] = np.nan
    est = stratified_estimate(sample, "helpfulness")
    assert not est.abstained and est.covered_share < 0.95 and "have no judged helpfulness" in est.reason


def test_single_judged_row_in_a_stratum_borrows_pooled_variance():
    sample = stratified_sample(judged_population(), ["topic"], 100, seed=6).rows.copy()
    sample["helpfulness"] = sample["helpfulness"].astype(float)
    technical = sample.index[sample["topic"] == "technical"]
    sample.loc[technical[1:], "helpfulness"] = np.nan
    est = stratified_estimate(sample, "helpfulness")
    assert est.se > 0 and "single judged row" in est.reason


def test_korn_graubard_is_clopper_pearson_under_simple_random_sampling():
    for k, n in [(0, 50), (3, 50), (25, 50), (50, 50)]:
        p = k / n
        low, high, n_eff = korn_graubard_interval(p, p * (1 - p) / n, n, 0.05)
        exact = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
        assert (low, high) == pytest.approx((exact.low, exact.high), abs=1e-9) and n_eff == n


def test_a_flag_never_seen_in_the_sample_gets_a_non_degenerate_upper_bound():
    sample = stratified_sample(judged_population(), ["topic"], 120, seed=7).rows.copy()
    sample["toxicity"] = False
    est = stratified_estimate(sample, "toxicity", kind="rate")
    assert est.metric == "judge.toxicity_rate" and est.estimate == 0 and est.ci_low == 0
    assert est.ci_high == pytest.approx(1 - 0.025 ** (1 / 120))  # Clopper–Pearson upper bound for 0 of 120
    with pytest.raises(ValueError):
        stratified_estimate(sample.assign(toxicity=2), "toxicity", kind="rate")


def test_estimate_judgments_covers_every_column_and_domain_and_serialises():
    sample = stratified_sample(judged_population(), ["topic", "variant"], 200, seed=8).rows
    estimates = estimate_judgments(sample, by=["variant", "topic"])
    assert len(estimates) == 2 * (1 + 2 + 5)  # 2 columns x (all + 2 variants + 5 topics)
    table = estimates_frame(estimates)
    assert set(table["metric"]) == {"judge.helpfulness", "judge.hallucination_rate"}
    assert set(table.loc[table["metric"] == "judge.hallucination_rate", "kind"]) == {"rate"}
    assert not table["abstained"].any()
    json.dumps([e.to_dict() for e in estimates], allow_nan=False)


def test_weighted_estimates_are_unbiased_and_intervals_cover_at_nominal_over_seeded_samples():
    population = judged_population()
    true_mean, true_rate = population["helpfulness"].mean(), population["hallucination"].mean()
    estimates, naive, covered, rate_covered = [], [], 0, 0
    for seed in range(REPS):
        sample = stratified_sample(population, ["topic", "variant"], 200, oversample={"status=refused_by_filter": 5}, seed=seed).rows
        est = stratified_estimate(sample, "helpfulness")
        rate = stratified_estimate(sample, "hallucination", kind="rate")
        estimates.append(est.estimate)
        naive.append(sample["helpfulness"].mean())
        covered += est.ci_low <= true_mean <= est.ci_high
        rate_covered += rate.ci_low <= true_rate <= rate.ci_high
    tolerance = 4 * np.std(estimates) / np.sqrt(REPS)
    assert abs(np.mean(estimates) - true_mean) < tolerance
    assert abs(np.mean(naive) - true_mean) > 10 * tolerance  # the unweighted mean of the oversampled sample is biased
    assert 0.91 <= covered / REPS <= 0.99
    assert rate_covered / REPS >= 0.91


def test_judgments_frame_leaves_not_assessed_values_out_of_the_estimates():
    sample = stratified_sample(judged_population(), ["topic"], 60, seed=9).rows.drop(columns=["helpfulness", "hallucination"])
    rng = np.random.default_rng(9)
    judgments = {}
    for i, request_id in enumerate(sample["request_id"]):
        scores = {"helpfulness": int(rng.integers(1, 6)), "factual_accuracy": 3, "coherence": 4, "instruction_following": 5}
        flags = {"hallucination": bool(i % 4 == 0), "refusal": False, "toxicity": False}
        skipped = [] if i % 3 else ["factual_accuracy", "hallucination"]  # the heuristic judge without a reference
        judgments[request_id] = {"scores": scores, "flags": flags, "reasoning": "", "not_assessed": skipped}
    frame = judgments_frame(judgments)
    assert frame["factual_accuracy"].isna().sum() == 20 and frame["hallucination"].isna().sum() == 20
    assert str(frame["hallucination"].dtype) == "boolean"
    joined = sample.join(frame, on="request_id")
    accuracy = stratified_estimate(joined, "factual_accuracy")
    rate = stratified_estimate(joined, "hallucination", kind="rate")
    assert accuracy.n == 40 and accuracy.estimate == pytest.approx(3.0)
    judged = joined.dropna(subset=["hallucination"]).astype({"hallucination": float})
    big_n = joined.groupby("stratum")["weight"].sum()
    expected = (big_n * judged.groupby("stratum")["hallucination"].mean()).sum() / big_n.sum()
    assert rate.n == 40 and rate.estimate == pytest.approx(expected)


# -- prediction-powered inference ----------------------------------------------------------------------------

HUMAN_P = np.array([0.05, 0.10, 0.20, 0.35, 0.30])  # P(score = 1..5)
TRUE_MEAN = float(np.dot(np.arange(1, 6), HUMAN_P))


def biased_judge_draw(rng: np.random.Generator, n_labelled: int, n_unlabelled: int, bias: float = 0.4, noise: float = 0.6):
    """Human scores from HUMAN_P and a judge that reads ``human + bias + noise``; returns (f_unlabelled, f_labelled, y)."""
    y = rng.choice(np.arange(1, 6), n_labelled + n_unlabelled, p=HUMAN_P).astype(float)
    f = y + bias + rng.normal(0, noise, y.size)
    return f[n_labelled:], f[:n_labelled], y[:n_labelled]


def test_ppi_formula_by_hand():
    rng = np.random.default_rng(0)
    f_u, f_l, y = biased_judge_draw(rng, 80, 1000)
    est = ppi_mean(f_u, f_l, y)
    assert est.estimate == pytest.approx(f_u.mean() - (f_l - y).mean())
    se = np.sqrt(f_u.var(ddof=1) / f_u.size + (f_l - y).var(ddof=1) / y.size)
    assert est.se == pytest.approx(se)
    assert (est.ci_low, est.ci_high) == pytest.approx((est.estimate - stats.norm.ppf(0.975) * se, est.estimate + stats.norm.ppf(0.975) * se))
    assert est.rectifier == pytest.approx((f_l - y).mean()) and est.lam == 1.0
    assert est.classical_estimate == pytest.approx(y.mean()) and est.classical_se == pytest.approx(y.std(ddof=1) / np.sqrt(y.size))
    json.dumps(est.to_dict(), allow_nan=False)


def test_ppi_covers_the_true_mean_while_the_judge_alone_does_not():
    ppi_cover = ppi_pp_cover = judge_cover = 0
    widths = []
    for seed in range(REPS):
        f_u, f_l, y = biased_judge_draw(np.random.default_rng(seed), 100, 2000)
        est = ppi_mean(f_u, f_l, y)
        tuned = ppi_mean(f_u, f_l, y, power_tuning=True)
        ppi_cover += est.ci_low <= TRUE_MEAN <= est.ci_high
        ppi_pp_cover += tuned.ci_low <= TRUE_MEAN <= tuned.ci_high
        judge_cover += est.judge_ci_low <= TRUE_MEAN <= est.judge_ci_high
        widths.append((est.se, est.classical_se))
    assert ppi_cover / REPS >= 0.9 and ppi_pp_cover / REPS >= 0.9
    assert judge_cover / REPS < 0.5
    ppi_se, classical_se = np.mean(widths, axis=0)
    assert ppi_se < 0.85 * classical_se  # a judge correlated with people narrows the interval over humans alone


def test_ppi_plus_plus_lambda_and_its_protection_against_a_useless_judge():
    rng = np.random.default_rng(1)
    f_u, f_l, y = biased_judge_draw(rng, 150, 1500)
    tuned = ppi_mean(f_u, f_l, y, power_tuning=True, clip_lambda=False)
    n, big_n = y.size, f_u.size
    expected = (np.cov(y, f_l)[0, 1] / n) / (f_l.var(ddof=1) / n + f_u.var(ddof=1) / big_n)
    assert tuned.lam == pytest.approx(expected)
    assert tuned.estimate == pytest.approx(y.mean() + expected * (f_u.mean() - f_l.mean()))

    useless_u, useless_l = rng.normal(3, 1.5, big_n), rng.normal(3, 1.5, n)  # judge scores unrelated to the labels
    plain = ppi_mean(useless_u, useless_l, y)
    guarded = ppi_mean(useless_u, useless_l, y, power_tuning=True)
    assert plain.se > 1.3 * plain.classical_se  # plain PPI pays for the noise
    assert guarded.lam < 0.2 and guarded.se <= 1.05 * guarded.classical_se
    assert ppi_mean(f_u, f_l, y, lam=0.0).estimate == pytest.approx(y.mean())


def test_ppi_weights_all_equal_change_nothing_and_abstention():
    f_u, f_l, y = biased_judge_draw(np.random.default_rng(2), 60, 600)
    plain = ppi_mean(f_u, f_l, y)
    weighted = ppi_mean(f_u, f_l, y, weights_unlabelled=np.full(f_u.size, 7.0), weights_labelled=np.full(y.size, 3.0))
    assert (weighted.estimate, weighted.se) == pytest.approx((plain.estimate, plain.se))
    assert "Hájek" in weighted.method
    few = ppi_mean(f_u, f_l[:1], y[:1])
    assert few.abstained and few.estimate is None and "at least 2" in few.reason
    with pytest.raises(ValueError):
        ppi_mean(f_u, f_l, y[:-1])
    with pytest.raises(ValueError):
        ppi_mean(np.append(f_u, np.nan), f_l, y)


def test_ppi_from_frame_splits_labelled_and_unlabelled_rows():
    f_u, f_l, y = biased_judge_draw(np.random.default_rng(3), 40, 300)
    frame = pd.DataFrame({"helpfulness": np.concatenate([f_l, f_u, [np.nan]]),
                          "human_helpfulness": np.concatenate([y, np.full(f_u.size, np.nan), [4.0]])})
    from_frame = ppi_from_frame(frame, "helpfulness", "human_helpfulness")
    direct = ppi_mean(f_u, f_l, y)
    assert (from_frame.estimate, from_frame.se) == pytest.approx((direct.estimate, direct.se))
    assert from_frame.n_labelled == 40 and from_frame.n_unlabelled == 300 and from_frame.metric == "judge.helpfulness"
