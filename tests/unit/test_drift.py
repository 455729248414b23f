"""Univariate drift statistics against scipy references, the decision rule, and A/A calibration by simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from modelwatch.drift.univariate import (
    DriftPolicy,
    binned_counts,
    categorical_drift,
    category_counts,
    decide,
    ks_p_value,
    ks_wasserstein_sorted,
    numerical_drift,
    psi,
    quantile_edges,
    severity,
)
from scipy import stats
from scipy.spatial import distance


@pytest.mark.parametrize("discrete", [False, True])
def test_fast_ks_and_wasserstein_equal_scipy(discrete):
    rng = np.random.default_rng(3)
    ref = rng.normal(size=30_000)
    cur = rng.normal(0.05, 1.2, size=25_000)
    if discrete:  # ties across and within samples
        ref, cur = np.round(ref * 2), np.round(cur * 2)
    ks, w = ks_wasserstein_sorted(np.sort(ref), np.sort(cur))
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert ks == pytest.approx(expected.statistic, abs=1e-12)
    assert ks_p_value(ks, ref.size, cur.size) == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert w == pytest.approx(stats.wasserstein_distance(ref, cur), rel=1e-9)


def test_numerical_drift_uses_scipy_on_small_samples_and_the_fast_path_on_large_ones():
    rng = np.random.default_rng(4)
    small = numerical_drift("x", rng.normal(size=800), rng.normal(0.3, 1, size=700))
    ref, cur = rng.normal(size=800), rng.normal(0.3, 1, size=700)
    small = numerical_drift("x", ref, cur)
    assert small.p_value == pytest.approx(stats.ks_2samp(ref, cur).pvalue)  # exact p-value below 10k rows
    assert small.effect == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref))
    ref, cur = rng.normal(size=40_000), rng.normal(0.3, 1, size=30_000)
    large = numerical_drift("x", ref, cur)
    assert large.statistic == pytest.approx(stats.ks_2samp(ref, cur).statistic)
    assert large.effect == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref), rel=1e-9)


def test_numerical_drift_ignores_missing_values_and_abstains_with_a_reason():
    ref = np.array([1.0, np.nan] * 50)
    assert numerical_drift("x", ref, np.full(100, np.nan)).reason.startswith("too few values: 50 reference, 0 current")
    constant = numerical_drift("x", np.ones(100), np.ones(100))
    assert constant.abstained and "constant" in constant.reason and constant.p_value is None


def test_psi_matches_its_formula_on_decile_bins():
    rng = np.random.default_rng(5)
    ref, cur = np.sort(rng.normal(size=10_000)), np.sort(rng.normal(0.5, 1, size=10_000))
    edges = quantile_edges(ref)
    r, c = binned_counts(ref, edges), binned_counts(cur, edges)
    assert r.sum() == ref.size and c.sum() == cur.size
    assert np.all(np.abs(r - 1000) <= 1)  # deciles of the reference
    expected_r = np.histogram(ref, bins=np.concatenate([[-np.inf], edges, [np.inf]]))[0]
    assert np.array_equal(r, expected_r)
    rs, cs = r / r.sum(), c / c.sum()
    assert psi(r, c) == pytest.approx(np.sum((cs - rs) * np.log(cs / rs)))
    assert psi(r, r) == 0.0


def test_categorical_drift_against_scipy():
    ref = {"a": 500, "b": 300, "c": 200}
    cur = {"a": 400, "b": 300, "c": 250, "d": 50}
    result = categorical_drift("topic", ref, cur)
    table = np.array([[500, 300, 200, 0], [400, 300, 250, 50]])
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert result.statistic == pytest.approx(chi2) and result.p_value == pytest.approx(p)
    assert result.effect == pytest.approx(distance.jensenshannon(table[0] / 1000, table[1] / 1000))
    assert result.details["top_changes"][0]["value"] == "a"  # the largest share change leads


def test_rare_categories_are_pooled_for_the_chi_squared_test():
    ref = {"a": 500, "b": 500, "x1": 2, "x2": 1}
    cur = {"a": 480, "b": 520, "x3": 3}
    result = categorical_drift("c", ref, cur)
    chi2, p, _, _ = stats.chi2_contingency(np.array([[500, 500, 3], [480, 520, 3]]), correction=False)
    assert result.p_value == pytest.approx(p)


def test_category_counts_merge_spellings_and_skip_missing():
    assert category_counts(pd.Series([1, "1", None, np.nan, "b"], dtype="object")) == {"1": 2, "b": 1}


def test_decision_applies_bh_the_effect_floor_and_severity():
    rng = np.random.default_rng(6)
    n = 200_000
    tiny = numerical_drift("tiny", rng.normal(size=n), rng.normal(0.03, 1, size=n))  # significant, but far below the floor
    big = numerical_drift("big", rng.normal(size=n), rng.normal(0.5, 1, size=n))
    same = numerical_drift("same", rng.normal(size=n), rng.normal(size=n))
    decided = {r.column: r for r in decide([tiny, big, same])}
    assert decided["tiny"].p_adjusted < 1e-6 and not decided["tiny"].drift and decided["tiny"].severity == "none"
    assert decided["big"].drift and decided["big"].severity == "high" and decided["big"].floor == 0.1
    assert not decided["same"].drift
    p = [tiny.p_value, big.p_value, same.p_value]
    assert [decided[c].p_adjusted for c in ("tiny", "big", "same")] == pytest.approx(list(stats.false_discovery_control(p)))


def test_small_samples_decide_by_the_test_alone_and_overrides_apply():
    rng = np.random.default_rng(7)
    small = numerical_drift("x", rng.normal(size=500), rng.normal(0.25, 1, size=500))
    [decided] = decide([small])
    assert decided.drift and decided.floor is None and "small sample" in decided.decided_by
    big = numerical_drift("y", rng.normal(size=50_000), rng.normal(0.5, 1, size=50_000))
    [as_psi] = decide([big], DriftPolicy(methods={"y": "psi"}))
    assert as_psi.effect_method == "psi" and as_psi.effect == pytest.approx(big.psi) and as_psi.drift
    with pytest.raises(ValueError, match="does not apply"):
        decide([big], DriftPolicy(methods={"y": "chi2"}))


def test_severity_thresholds():
    assert [severity("psi", v) for v in (0.11, 0.3, 0.6)] == ["low", "medium", "high"]
    assert [severity("wasserstein", v) for v in (0.15, 0.25, 0.45)] == ["low", "medium", "high"]


def _aa_frame(rng: np.random.Generator, n: int) -> tuple[dict, dict]:
    numerical = {f"n{i}": rng.normal(size=n) for i in range(6)}
    categorical = {f"c{i}": rng.choice(["a", "b", "c", "d"], p=[0.4, 0.3, 0.2, 0.1], size=n) for i in range(4)}
    return numerical, categorical


def _flags(rng: np.random.Generator, n: int, shift: float = 0.0) -> bool:
    ref_num, ref_cat = _aa_frame(rng, n)
    cur_num, cur_cat = _aa_frame(rng, n)
    cur_num["n0"] = cur_num["n0"] + shift
    results = [numerical_drift(k, ref_num[k], cur_num[k]) for k in ref_num]
    results += [categorical_drift(k, category_counts(ref_cat[k]), category_counts(cur_cat[k])) for k in ref_cat]
    return any(r.drift for r in decide(results, DriftPolicy(alpha=0.05)))


def test_aa_false_alarm_rate_is_near_alpha_after_correction():
    """200 seeded A/A trials of 10 columns: BH keeps the chance of any false alarm near alpha."""
    rng = np.random.default_rng(2026)
    rate = np.mean([_flags(rng, 300) for _ in range(200)])
    assert 0.02 <= rate <= 0.08, rate


def test_power_on_a_quarter_sd_shift():
    rng = np.random.default_rng(11)
    power = np.mean([_flags(rng, 300, shift=0.35) for _ in range(60)])
    assert power >= 0.8, power


def test_many_sparse_categories_keep_the_chi_squared_test_calibrated():
    """500 levels over 2,000 rows: pooling cells with expected counts under 5 keeps A/A rejections near alpha (0.5 without it)."""
    rng = np.random.default_rng(12)
    levels = np.arange(500).astype(str)
    p = rng.dirichlet(np.full(500, 0.5))
    rejections = [categorical_drift("c", category_counts(rng.choice(levels, 2000, p=p)), category_counts(rng.choice(levels, 2000, p=p))).p_value < 0.05
                  for _ in range(150)]
    assert 0.01 <= np.mean(rejections) <= 0.11, np.mean(rejections)
