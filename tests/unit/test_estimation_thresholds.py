"""Day-sized alert thresholds: each metric's sampling variance against closed forms, a direct computation or a seeded simulation;
the drift between reference days against statsmodels' DerSimonian–Laird; the combination and which part dominates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from modelwatch.estimation.thresholds import (
    DAY,
    DRIFT,
    REFERENCE,
    between_period_variance,
    classifier_unit_variances,
    confusion_metric,
    confusion_unit_variance,
    day_thresholds,
    delong_unit_variance,
    heterogeneity_p,
    period_statistics,
    regressor_unit_variances,
)
from sklearn.metrics import f1_score, roc_auc_score

# binary confusion counts, rows true (churn, stay), columns predicted (churn, stay); positive class index 0
COUNTS = np.array([[420.0, 80.0], [130.0, 370.0]])


def test_accuracy_precision_and_recall_variances_are_the_binomial_ones():
    n = COUNTS.sum()
    accuracy = np.trace(COUNTS) / n
    assert confusion_unit_variance(COUNTS, "accuracy", 0) == pytest.approx(accuracy * (1 - accuracy), rel=1e-6)
    precision, predicted_share = COUNTS[0, 0] / COUNTS[:, 0].sum(), COUNTS[:, 0].sum() / n
    assert confusion_unit_variance(COUNTS, "precision", 0) == pytest.approx(precision * (1 - precision) / predicted_share, rel=1e-6)
    recall, actual_share = COUNTS[0, 0] / COUNTS[0].sum(), COUNTS[0].sum() / n
    assert confusion_unit_variance(COUNTS, "recall", 0) == pytest.approx(recall * (1 - recall) / actual_share, rel=1e-6)


def test_f1_variance_is_the_closed_form_delta_method_and_matches_a_seeded_simulation():
    shares = COUNTS / COUNTS.sum()
    tp, fn, fp = shares[0, 0], shares[0, 1], shares[1, 0]
    closed = 4 * tp * (fp + fn) * (tp + fp + fn) / (2 * tp + fp + fn) ** 4  # Takahashi et al. (2022), binary F1
    unit = confusion_unit_variance(COUNTS, "f1", 0)
    assert unit == pytest.approx(closed, rel=1e-6)
    rng = np.random.default_rng(5)
    n = 2000
    draws = rng.multinomial(n, shares.ravel(), size=4000).reshape(-1, 2, 2)
    f1 = [confusion_metric(d, "f1", 0) for d in draws]
    assert np.var(f1) == pytest.approx(unit / n, rel=0.1)


def test_macro_averages_follow_the_headline_metric_and_their_variance_matches_a_seeded_simulation():
    counts = np.array([[300.0, 40.0, 10.0], [50.0, 200.0, 30.0], [20.0, 30.0, 320.0]])
    y = np.repeat(np.arange(3), [int(counts[j].sum()) for j in range(3)])
    pred = np.concatenate([np.repeat(np.arange(3), counts[j].astype(int)) for j in range(3)])
    assert confusion_metric(counts, "f1", None) == pytest.approx(f1_score(y, pred, average="macro"))
    unit = confusion_unit_variance(counts, "f1", None)
    rng = np.random.default_rng(6)
    draws = rng.multinomial(3000, (counts / counts.sum()).ravel(), size=3000).reshape(-1, 3, 3)
    assert np.var([confusion_metric(d, "f1", None) for d in draws]) == pytest.approx(unit / 3000, rel=0.1)


def _direct_delong(truth: np.ndarray, scores: np.ndarray) -> float:
    """Var(AUC) from DeLong's placement values computed pair by pair (O(n1 n0)): the definition, not the rank shortcut."""
    pos, neg = scores[truth], scores[~truth]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return float(np.var(psi.mean(axis=1), ddof=1) / len(pos) + np.var(psi.mean(axis=0), ddof=1) / len(neg))


def test_delong_variance_equals_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(7)
    truth = rng.uniform(size=600) < 0.3
    scores = np.round(rng.normal(truth * 0.8, 1.0), 1)  # rounded: many ties
    assert delong_unit_variance(truth, scores) / len(truth) == pytest.approx(_direct_delong(truth, scores), rel=1e-9)
    assert delong_unit_variance(np.array([True, False, False]), np.array([0.9, 0.1, 0.2])) is None  # one positive: undefined


def test_auc_variance_scaled_to_the_day_matches_a_seeded_simulation():
    rng = np.random.default_rng(8)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        truth = rng.uniform(size=n) < 0.35
        return truth, rng.normal(truth * 1.0, 1.0)

    unit = delong_unit_variance(*sample(50_000))
    n = 2000
    aucs = [roc_auc_score(*sample(n)) for _ in range(800)]
    assert np.var(aucs) == pytest.approx(unit / n, rel=0.15)


def test_regressor_variances_match_a_seeded_simulation():
    rng = np.random.default_rng(9)
    units = regressor_unit_variances(np.zeros(200_000), rng.standard_t(5, size=200_000))
    n = 2000
    errors = rng.standard_t(5, size=(3000, n))
    assert np.var(np.abs(errors).mean(axis=1)) == pytest.approx(units["mae"] / n, rel=0.1)
    assert np.var(np.sqrt((errors**2).mean(axis=1))) == pytest.approx(units["rmse"] / n, rel=0.2)


def test_drift_between_days_is_statsmodels_dersimonian_laird():
    from statsmodels.stats.meta_analysis import combine_effects

    rng = np.random.default_rng(10)
    values = 0.8 + rng.normal(0, 0.02, 12)
    variances = rng.uniform(0.5, 2.0, 12) * 1e-4
    reference = combine_effects(values, variances, method_re="dl")
    assert between_period_variance(values, variances) == pytest.approx(reference.tau2, rel=1e-9)
    assert between_period_variance(np.full(5, 0.8), np.full(5, 1e-4)) == 0.0  # no spread beyond sampling: no drift
    from scipy.stats import chi2

    q = float(np.sum((values - np.average(values, weights=1 / variances)) ** 2 / variances))
    assert heterogeneity_p(values, variances) == pytest.approx(chi2.sf(q, 11))


def test_days_that_only_differ_by_sampling_show_no_drift_and_real_drift_is_recovered():
    rng = np.random.default_rng(11)
    days, n = 20, 4000

    def periods_with(sd: float) -> dict:
        accuracy = np.clip(0.8 + rng.normal(0, sd, days), 0, 1)
        correct = np.concatenate([rng.uniform(size=n) < a for a in accuracy])
        groups = [(f"d{d}", np.arange(d * n, (d + 1) * n)) for d in range(days)]
        return period_statistics(groups, lambda rows: {"accuracy": float(correct[rows].mean())}, {"accuracy": 0.16})["accuracy"]

    stable = [periods_with(0.0) for _ in range(40)]
    assert np.mean([s["drift_measured_sd"] > 0 for s in stable]) > 0.2  # the truncated estimate is often positive by chance ...
    assert np.mean([s["drift_sd"] > 0 for s in stable]) <= 0.1  # ... but counts only when Cochran's Q says the days differ
    drifting = periods_with(0.02)
    assert drifting["drift_p"] < 0.05 and drifting["drift_sd"] == pytest.approx(0.02, rel=0.4)
    few = period_statistics([("d0", np.arange(10))], lambda rows: {"accuracy": 0.8}, {"accuracy": 0.16})["accuracy"]
    assert few["drift_sd"] is None and "longer baseline window" in few["drift_reason"]


def test_thresholds_tighten_with_the_day_and_name_the_part_that_dominates():
    unit, reference_rows = 0.16, 20_000
    sizes = (1_000, 5_000, 100_000, 1_000_000)
    bands = [day_thresholds(0.8, unit, n, reference_rows, 0.001, (0.0, 1.0)) for n in sizes]
    widths = [b.upper - b.lower for b in bands]
    assert widths == sorted(widths, reverse=True)
    assert bands[0].parts[DAY] == pytest.approx(math.sqrt(unit / 1000)) and bands[0].dominant == DAY
    assert bands[0].sd == pytest.approx(math.sqrt(unit / 1000 + unit / reference_rows + 0.001**2))
    assert bands[0].upper - bands[0].lower == pytest.approx(6 * bands[0].sd)
    assert bands[-1].dominant == REFERENCE and "estimation.reference_rows" in bands[-1].note and "longer baseline window" in bands[-1].note
    drifting = day_thresholds(0.8, unit, 1_000_000, 2_000_000, 0.01, (0.0, 1.0))
    assert drifting.dominant == DRIFT and "between reference days dominates" in drifting.note
    sampling_only = day_thresholds(0.8, unit, 5000, reference_rows, None, (0.0, 1.0), "the reference spans 1 day(s)")
    assert sampling_only.parts[DRIFT] is None and "sampling-only band" in sampling_only.note
    assert day_thresholds(None, unit, 5000, reference_rows, None, (0.0, 1.0)) is None
    assert day_thresholds(0.99, unit, 100, reference_rows, None, (0.0, 1.0)).upper == 1.0  # clipped to the metric's range


def test_classifier_variances_cover_every_headline_metric():
    rng = np.random.default_rng(12)
    scores = rng.uniform(size=5000)
    labels = (rng.uniform(size=5000) > scores).astype(int)  # class 0 ("churn") is likelier for a high churn score
    raw = np.column_stack([scores, 1 - scores])
    predicted = np.where(scores >= 0.5, 0, 1)
    binary = classifier_unit_variances(labels, predicted, raw, ("churn", "stay"), "churn")
    assert all(v is not None and v > 0 for v in binary.values())
    macro = classifier_unit_variances(labels, predicted, raw, ("churn", "stay"), None)
    assert macro["roc_auc"] == pytest.approx(binary["roc_auc"])  # the two one-vs-rest AUCs of a binary model are one curve
