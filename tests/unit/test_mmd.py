"""MMD² two-sample test: exactness against a direct computation, the random-feature
approximation, calibration under no drift, power under a mean shift, abstention, validation."""

from __future__ import annotations

import numpy as np
import pytest
from modelwatch.drift.mmd import (
    EXACT_AUTO_MAX,
    MIN_ROWS,
    _split_masks,
    exact_permutation_stats,
    mmd_test,
    random_fourier_features,
    rbf_kernel,
    rff_permutation_stats,
)
from scipy.spatial.distance import cdist, pdist


def reference_mmd2_u(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """MMD²_u (Gretton et al. 2012, eq. 3) written out with scipy's cdist, independently of the module."""
    k = lambda a, b: np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma**2))  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * k(x, y).sum() / (m * n)
    )


def unit_rows(rng: np.random.Generator, n: int, dim: int = 384, shift: float = 0.0) -> np.ndarray:
    """Embedding-like rows: Gaussian, the first 8 coordinates shifted by ``shift``, L2-normalised."""
    x = rng.standard_normal((n, dim))
    x[:, :8] += shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_mmd2_matches_direct_scipy_computation():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((40, 6))
    y = rng.standard_normal((33, 6)) + 0.3
    result = mmd_test(x, y, method="exact", n_permutations=99)
    pooled = np.concatenate([x, y])
    # At most 1000 pooled rows, the median heuristic sees every pair.
    assert result.bandwidth == pytest.approx(float(np.median(pdist(pooled))), rel=1e-12)
    assert result.mmd2 == pytest.approx(reference_mmd2_u(x, y, result.bandwidth), abs=1e-6)
    assert result.method == "exact" and (result.n_reference, result.n_current) == (40, 33)
    # A fixed bandwidth is used as given.
    fixed = mmd_test(x, y, method="exact", n_permutations=99, bandwidth=2.5)
    assert fixed.bandwidth == 2.5 and fixed.mmd2 == pytest.approx(reference_mmd2_u(x, y, 2.5), abs=1e-6)


def test_vectorised_permutation_statistics_equal_recomputation_on_each_split():
    m, n = 28, 22
    pooled = np.random.default_rng(5).standard_normal((m + n, 4))
    sigma = 1.7

    def direct(mask: np.ndarray, kernel: np.ndarray) -> float:
        xs, ys = np.flatnonzero(mask), np.flatnonzero(mask == 0)
        kxx, kyy = kernel[np.ix_(xs, xs)], kernel[np.ix_(ys, ys)]
        return float(
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kernel[np.ix_(xs, ys)].sum() / (m * n)
        )

    kernel = rbf_kernel(pooled, pooled, sigma)
    observed, permuted = exact_permutation_stats(kernel.copy(), m, 7, np.random.default_rng(3))
    masks = _split_masks(m + n, m, 7, np.random.default_rng(3), np.float64)  # the same stream, so the same splits
    assert observed == pytest.approx(direct(np.r_[np.ones(m), np.zeros(n)], kernel), abs=1e-12)
    np.testing.assert_allclose(permuted, [direct(mask, kernel) for mask in masks], atol=1e-12)

    phi = random_fourier_features(pooled, sigma, 256, np.random.default_rng(8))
    approx_kernel = phi.astype(np.float64) @ phi.astype(np.float64).T
    observed, permuted = rff_permutation_stats(phi.copy(), m, 7, np.random.default_rng(3))
    masks = _split_masks(m + n, m, 7, np.random.default_rng(3), np.float32)
    assert observed == pytest.approx(direct(np.r_[np.ones(m), np.zeros(n)], approx_kernel), abs=1e-5)
    np.testing.assert_allclose(permuted, [direct(mask, approx_kernel) for mask in masks], atol=1e-5)


def test_random_features_estimate_is_close_to_exact():
    rng = np.random.default_rng(3)
    x, y = unit_rows(rng, 500), unit_rows(rng, 500, shift=1.0)
    exact = mmd_test(x, y, method="exact", n_permutations=19).mmd2
    estimates = np.array([mmd_test(x, y, method="random_features", n_permutations=19, seed=s).mmd2 for s in range(8)])
    # The estimate averages n_features/2 = 512 frequency terms, each with expectation ≈ the exact MMD²_u,
    # so its spread shrinks as 1/sqrt(n_features). Over 40 feature seeds on this data its relative
    # standard deviation is 3.2%: 15% for one estimate is ~4.7 sd, 5% for the mean of 8 is ~4.4 sd
    # and would catch a systematic bias (a wrong bandwidth or feature scale is off by far more).
    assert exact > 0.005
    assert np.abs(estimates - exact).max() <= 0.15 * exact
    assert abs(estimates.mean() - exact) <= 0.05 * exact


def _aa_and_shift_trial(seed: int, shift: float, method: str) -> bool:
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((40, 8)), rng.standard_normal((40, 8))
    y[:, 0] += shift
    return mmd_test(x, y, n_permutations=200, alpha=0.05, seed=seed, method=method).drift


@pytest.mark.parametrize("method", ["exact", "random_features"])
def test_false_alarm_rate_under_no_drift_is_calibrated(method):
    # 400 seeded A/A trials: a calibrated test rejects 5% ± 1.1% (binomial sd), so [2%, 8%] is ±2.7 sd.
    rate = np.mean([_aa_and_shift_trial(seed, 0.0, method) for seed in range(400)])
    assert 0.02 <= rate <= 0.08, rate


@pytest.mark.parametrize("method", ["exact", "random_features"])
def test_mean_shift_is_detected(method):
    # One coordinate of eight shifted by 1.25 sd, 40 rows a side.
    power = np.mean([_aa_and_shift_trial(10_000 + seed, 1.25, method) for seed in range(100)])
    assert power >= 0.9, power


def test_p_value_and_decision():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((60, 3)), rng.standard_normal((60, 3)) + 3.0
    result = mmd_test(x, y, n_permutations=199, alpha=0.01)
    # Every permuted split mixes the two clouds, so the observed split beats all 199.
    assert result.p_value == pytest.approx(1 / 200) and result.drift
    same = mmd_test(x, x + 0.0, n_permutations=199)
    assert same.p_value > 0.05 and not same.drift
    assert mmd_test(x, y, n_permutations=199, seed=4) == mmd_test(x, y, n_permutations=199, seed=4)


def test_auto_switches_to_random_features_for_large_samples():
    rng = np.random.default_rng(9)
    small = mmd_test(rng.standard_normal((100, 16)), rng.standard_normal((100, 16)), n_permutations=50)
    half = EXACT_AUTO_MAX // 2 + 1
    large = mmd_test(rng.standard_normal((half, 16)), rng.standard_normal((half, 16)) + 0.2, n_permutations=50)
    assert small.method == "exact"
    assert large.method == "random_features" and large.drift and large.p_value == pytest.approx(1 / 51)


def test_abstains_on_too_few_rows():
    rng = np.random.default_rng(0)
    result = mmd_test(rng.standard_normal((MIN_ROWS - 1, 4)), rng.standard_normal((500, 4)))
    assert result.reason is not None and "too few rows" in result.reason
    assert result.mmd2 is None and result.p_value is None and result.drift is False
    assert result.to_dict()["reason"] == result.reason and result.to_dict()["n_reference"] == MIN_ROWS - 1
    assert mmd_test(np.empty((0, 4)), np.empty((0, 4))).reason is not None


def test_abstains_when_every_row_is_identical_and_copes_with_many_duplicates():
    same = np.ones((30, 5))
    for kwargs in ({}, {"bandwidth": 1.0}, {"method": "random_features"}):
        result = mmd_test(same, same.copy(), **kwargs)
        assert result.reason is not None and "zero variance" in result.reason
        assert result.mmd2 is None and result.p_value is None and not result.drift
    # Most pairs coincide (median distance 0) but not all: the test still runs on a positive bandwidth.
    mostly = np.zeros((40, 5))
    mostly[:6] = np.random.default_rng(1).standard_normal((6, 5))
    ran = mmd_test(mostly, np.zeros((40, 5)))
    assert ran.reason is None and ran.bandwidth > 0 and np.isfinite(ran.mmd2)


@pytest.mark.parametrize(
    ("reference", "current", "message"),
    [
        (np.zeros((30, 4)), np.zeros((30, 5)), "differ in dimension"),
        (np.full((30, 4), np.nan), np.zeros((30, 4)), "NaN"),
        (np.zeros((30, 4)), np.r_[np.zeros((29, 4)), [[np.inf, 0, 0, 0]]], "NaN or infinite"),
        (np.zeros(30), np.zeros((30, 1)), "2-D"),
        (np.zeros((30, 4)), np.array([["a"] * 4] * 30), "real numbers"),
    ],
)
def test_invalid_input_raises_value_error_naming_the_problem(reference, current, message):
    with pytest.raises(ValueError, match=message):
        mmd_test(reference, current)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_permutations": 10}, "cannot reach alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"method": "fast"}, "method"),
        ({"n_features": 1001}, "even"),
        ({"bandwidth": 0.0}, "bandwidth"),
    ],
)
def test_invalid_options_raise(kwargs, message):
    x = np.zeros((30, 4))
    with pytest.raises(ValueError, match=message):
        mmd_test(x, x, **kwargs)
