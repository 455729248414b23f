"""CBPE and DLE: calibrators against scikit-learn, estimates against direct references, and simulations with known processes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from modelwatch.config import ConfigError, parse_config
from modelwatch.estimation import cbpe, dle
from modelwatch.estimation.estimate import day_history, estimate_partition, summary_block
from modelwatch.estimation.reference import LABEL, fit_reference, metric_rows, reference_from_artefact
from scipy.special import expit, logit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

CLASSES = ("churn", "stay")
REFERENCE_MU = (0.6, 0.0)


def _model(kind: str = "classifier", **estimation):
    features = ["features.x0", "features.x1", "features.plan"] if kind == "regressor" else []
    data = {"models": [{"id": "m", "kind": kind, "segments": ["metadata.region"],
                        "drift": {"positive_class": "churn" if kind == "classifier" else None, "features": features},
                        "estimation": {"chunk_size": 500, "min_segment_count": 200, **estimation}}]}
    return parse_config(data).models[0]


# --------------------------------------------------------------------------- calibrators


def test_isotonic_map_is_sklearns_isotonic_regression_and_survives_json():
    rng = np.random.default_rng(1)
    s = rng.uniform(0.05, 0.95, 4000)
    y = (rng.uniform(size=4000) < s**2).astype(float)
    fitted = cbpe.fit_one_vs_rest(s, y, "isotonic")
    sk = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(s, y)
    probe = np.r_[0.0, 0.01, rng.uniform(0, 1, 500), 0.99, 1.0]  # including scores outside the fitted range
    np.testing.assert_allclose(fitted.apply(probe), sk.predict(probe), atol=1e-12)
    again = cbpe.OneVsRestCalibrator.from_dict(json.loads(json.dumps(fitted.to_dict())))
    np.testing.assert_array_equal(again.apply(probe), fitted.apply(probe))


def test_platt_map_is_a_logistic_regression_on_the_logit():
    rng = np.random.default_rng(2)
    s = rng.uniform(0.02, 0.98, 3000)
    y = (rng.uniform(size=3000) < expit(0.6 * logit(s) - 0.4)).astype(int)
    fitted = cbpe.fit_one_vs_rest(s, y, "platt")
    sk = LogisticRegression(C=np.inf, max_iter=1000).fit(logit(s).reshape(-1, 1), y)
    np.testing.assert_allclose(fitted.apply(s), sk.predict_proba(logit(s).reshape(-1, 1))[:, 1], atol=1e-6)
    assert fitted.a == pytest.approx(0.6, abs=0.1) and fitted.b == pytest.approx(-0.4, abs=0.1)


def test_multiclass_one_vs_rest_then_renormalised():
    rng = np.random.default_rng(3)
    raw = rng.dirichlet([1, 1, 1], size=3000)
    labels = np.array([rng.choice(3, p=p) for p in raw])
    names = np.array(["a", "b", "c"], dtype=object)[labels]
    cal = cbpe.fit_calibrator(raw, names, ("a", "b", "c"), "isotonic")
    out = cal.calibrate(raw)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    per_class = np.column_stack([IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(raw[:, j], labels == j).predict(raw[:, j])
                                 for j in range(3)])
    np.testing.assert_allclose(out, per_class / per_class.sum(axis=1, keepdims=True), atol=1e-12)
    assert cbpe.ScoreCalibrator.from_dict(json.loads(json.dumps(cal.to_dict()))).calibrate(raw) == pytest.approx(out)


def test_calibrator_artefact_errors_say_what_to_do():
    with pytest.raises(ValueError, match="unknown method 'sigmoid'"):
        cbpe.OneVsRestCalibrator.from_dict({"method": "sigmoid"})
    with pytest.raises(ValueError, match="rebuild the baseline"):
        cbpe.ScoreCalibrator.from_dict({"classes": ["a"]})
    with pytest.raises(ValueError, match="unknown calibration method"):
        cbpe.fit_calibrator(np.zeros((2, 2)), ["a", "b"], ("a", "b"), "beta")


# --------------------------------------------------------------------------- CBPE against direct references


def _binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = expit(rng.normal(-0.8, 1.6, n))  # calibrated probability of "churn" (class 0)
    calibrated = np.column_stack([p, 1 - p])
    predicted = np.where(p >= 0.5, 0, 1)
    return calibrated, calibrated.copy(), predicted


def test_expected_accuracy_is_the_mean_top_probability_at_threshold_one_half():
    calibrated, raw, predicted = _binary(5000, 4)
    est = cbpe.estimate_classifier(calibrated, raw, predicted, CLASSES, "churn")
    assert est.metrics["accuracy"] == pytest.approx(np.maximum(calibrated[:, 0], 1 - calibrated[:, 0]).mean(), abs=1e-12)


def test_expected_roc_auc_is_sklearns_auc_on_probability_weighted_rows():
    calibrated, raw, _ = _binary(3000, 5)
    raw = np.round(raw, 2)  # ties among scores
    p = calibrated[:, 0]
    weighted = roc_auc_score(np.r_[np.ones(len(p)), np.zeros(len(p))], np.r_[raw[:, 0], raw[:, 0]], sample_weight=np.r_[p, 1 - p])
    assert cbpe.expected_roc_auc(raw[:, 0], p) == pytest.approx(weighted, abs=1e-12)


@pytest.mark.parametrize("k", [2, 3])
def test_sklearn_metrics_on_labels_drawn_from_calibrated_probabilities_converge_to_the_estimate(k):
    """Monte Carlo: labels drawn from the calibrated probabilities; the mean realised metric (sklearn) is the CBPE estimate."""
    rng = np.random.default_rng(6 + k)
    n, draws = 3000, 150
    calibrated = rng.dirichlet(np.full(k, 0.7), size=n)
    raw = calibrated  # perfectly calibrated scores
    predicted = calibrated.argmax(axis=1)
    classes = tuple(f"c{j}" for j in range(k))
    positive = "c0" if k == 2 else None
    est = cbpe.estimate_classifier(calibrated, raw, predicted, classes, positive)
    cum = np.cumsum(calibrated, axis=1)
    realised = {m: [] for m in cbpe.CLASSIFIER_METRICS}
    mean_confusion = np.zeros((k, k))
    for _ in range(draws):
        y = (rng.uniform(size=(n, 1)) > cum).sum(axis=1)
        average = {"average": "binary", "pos_label": 0} if k == 2 else {"average": "macro", "zero_division": 0}
        realised["accuracy"].append(accuracy_score(y, predicted))
        realised["precision"].append(precision_score(y, predicted, **average))
        realised["recall"].append(recall_score(y, predicted, **average))
        realised["f1"].append(f1_score(y, predicted, **average))
        realised["roc_auc"].append(roc_auc_score(y == 0, raw[:, 0]) if k == 2 else roc_auc_score(y, raw, multi_class="ovr", average="macro"))
        mean_confusion += confusion_matrix(y, predicted, labels=list(range(k))) / draws
    np.testing.assert_allclose(mean_confusion, cbpe.expected_confusion(calibrated, predicted), rtol=0.01)
    for metric, values in realised.items():
        spread = np.std(values) / np.sqrt(draws)
        assert est.metrics[metric] == pytest.approx(np.mean(values), abs=max(5 * spread, 2e-3)), metric


def test_realised_metrics_match_sklearn():
    calibrated, raw, predicted = _binary(2000, 9)
    rng = np.random.default_rng(10)
    y = (rng.uniform(size=2000) > calibrated[:, 0]).astype(int)
    got = cbpe.realised_classifier(y, raw, predicted, CLASSES, "churn").metrics
    assert got["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    assert got["f1"] == pytest.approx(f1_score(y, predicted, pos_label=0))
    assert got["recall"] == pytest.approx(recall_score(y, predicted, pos_label=0))
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y == 0, raw[:, 0]))


# --------------------------------------------------------------------------- simulations with a known process


def _classifier_day(rng: np.random.Generator, n: int, mu: tuple[float, float], concept_shift: float = 0.0, day: int = 0) -> pd.DataFrame:
    """Known process: x ~ N(mu, 0.25 I); P(churn | x) = sigmoid(2 x0 - x1 + 0.3 + shift); the model is over-confident
    (score logit = 1.6 x the true logit without the shift), so P(churn | score) depends on the score alone until the concept shifts."""
    x = rng.normal(mu, 0.5, size=(n, 2))
    t = 2 * x[:, 0] - x[:, 1] + 0.3
    score = expit(1.6 * t)
    churn = rng.uniform(size=n) < expit(t + concept_shift)
    probs = [json.dumps({"churn": round(float(s), 6), "stay": round(float(1 - s), 6)}) for s in score]
    return pd.DataFrame({
        "request_id": [f"d{day}-{i}" for i in range(n)], "timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(day * 86400 + np.arange(n), "s"),
        "variant": "production", "prediction": np.where(score >= 0.5, "churn", "stay"), "probability": np.maximum(score, 1 - score),
        "class_probabilities": probs, "metadata.region": rng.choice(["na", "emea", "apac"], size=n, p=[0.5, 0.4, 0.1]),
        LABEL: np.where(churn, "churn", "stay"),
    })


@pytest.fixture(scope="module")
def classifier_reference():
    rng = np.random.default_rng(11)
    sample = pd.concat([_classifier_day(rng, 2000, REFERENCE_MU, day=d) for d in range(10)], ignore_index=True)
    artefact, rows = fit_reference(sample, _model())
    return reference_from_artefact(json.loads(json.dumps(artefact)), rows)


def _simulate(reference, days: int, seed: int, concept_from: int | None = None) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for d in range(days):
        mu = (REFERENCE_MU[0] - 0.7 * np.sin(np.pi * d / days), 0.0)  # inputs wander towards the decision boundary and back
        shift = -2.0 if concept_from is not None and d >= concept_from else 0.0
        frame = _classifier_day(rng, int(rng.integers(1000, 3000)), mu, shift, day=d)
        history = day_history(reference, f"day-{d:03d}", frame, min_labelled=200)
        today = {m["metric"]: m for m in metric_rows(reference, reference.estimate(reference.score(frame)[0]), len(frame))}
        out.append({"day": d, "history": {m["metric"]: m for m in history["metrics"]}, "today": today})
    return out


def test_covariate_shift_only_keeps_the_estimate_within_its_band_of_the_realised_accuracy(classifier_reference, capsys):
    days = _simulate(classifier_reference, 120, seed=12)
    acc = [d["history"]["accuracy"] for d in days]
    inside = np.mean([a["labelled_lower"] <= a["realised"] <= a["labelled_upper"] for a in acc])
    realised = [a["realised"] for a in acc]
    assert max(realised) - min(realised) > 0.08  # the shift really moved accuracy
    assert inside >= 0.90
    assert np.mean([a["gap_alert"] for a in acc]) <= 0.05
    with capsys.disabled():
        print(f"\nCBPE simulation, covariate shift only: accuracy estimate within its ±3 SE band of the realised accuracy on {inside:.1%} of 120 days "
              f"(realised accuracy ranged {min(realised):.3f}..{max(realised):.3f})")
    # the estimated drop raises the threshold alert on the days accuracy really fell below the day's thresholds, and only on those:
    # a day's realised accuracy lies within 3 sampling errors of its estimate, so beyond that margin the verdict is certain
    def margin(d: dict) -> float:
        today = d["today"]["accuracy"]
        return (d["history"]["accuracy"]["realised"] - today["threshold_lower"]) / today["sampling_error"]

    low, usual = [d for d in days if margin(d) < -3], [d for d in days if margin(d) > 3]
    assert low and all(d["today"]["accuracy"]["alert"] and d["today"]["accuracy"]["direction"] == "worse" for d in low)
    assert usual and not any(d["today"]["accuracy"]["alert"] for d in usual)


def test_concept_shift_raises_the_gap_alert(classifier_reference):
    days = _simulate(classifier_reference, 100, seed=13, concept_from=60)
    before = [d["history"]["accuracy"]["gap_alert"] for d in days[:60]]
    after = [d["history"]["accuracy"]["gap_alert"] for d in days[60:]]
    assert np.mean(after) >= 0.9 and np.mean(before) <= 0.05
    assert all(d["history"]["accuracy"]["gap"] < 0 for d in days[60:])  # realised below the estimate: the model got worse than it looks


def test_platt_calibration_also_covers(classifier_reference):
    rng = np.random.default_rng(14)
    sample = pd.concat([_classifier_day(rng, 2000, REFERENCE_MU, day=d) for d in range(10)], ignore_index=True)
    artefact, rows = fit_reference(sample, _model(method="platt"))
    reference = reference_from_artefact(artefact, rows)
    assert artefact["calibration"] == "platt" and artefact["calibrator"]["maps"]["churn"]["method"] == "platt"
    days = _simulate(reference, 40, seed=15)
    assert np.mean([d["history"]["accuracy"]["gap_alert"] for d in days]) <= 0.05


def test_partition_estimate_segments_history_and_summary(classifier_reference):
    rng = np.random.default_rng(16)
    frames = {f"2026-01-{d:02d}": _classifier_day(rng, 1500, REFERENCE_MU, day=d) for d in range(1, 4)}
    frames["2026-01-03"][LABEL] = None  # today: no labels yet
    result = estimate_partition(classifier_reference, frames, "2026-01-03", _model(), "v1")
    assert result["method"] == "cbpe" and result["calibration"] == "isotonic" and result["rows"] == 1500
    acc = next(m for m in result["metrics"] if m["metric"] == "accuracy")
    assert acc["lower"] < acc["estimate"] < acc["upper"] and acc["threshold_lower"] < acc["estimate"] < acc["threshold_upper"] and not acc["alert"]
    regions = {s["value"]: s for s in result["segments"] if s["segment"] == "metadata.region" and s["value"]}
    assert set(regions) == {"na", "emea"}  # apac (10%, ~150 rows) stays under the 200-row minimum
    skipped = next(s for s in result["segments"] if s["value"] is None)
    assert set(skipped["skipped"]) == {"apac"}
    assert result["latest_realised"]["day"] == "2026-01-02" and not result["gap_alert"]
    block = summary_block(result, "s3://r/estimation.json")
    assert [h["day"] for h in block["history"]] == sorted(frames) and block["history"][-1]["realised"] is None
    json.dumps(block, allow_nan=False)


# --------------------------------------------------------------------------- DLE


def _regressor_day(rng: np.random.Generator, n: int, shift: float, day: int) -> pd.DataFrame:
    """Known heteroscedastic process: y = x0 + sigma(x) e, sigma = 0.5 + 1.5 * [x1 > 0] + 0.5 * [plan = pro]; the model predicts x0
    exactly, so E|error| = sigma sqrt(2/pi) and E[error^2] = sigma^2. A covariate shift moves x1 to the noisy side."""
    x0 = rng.normal(0, 1, n)
    x1 = rng.normal(shift, 1, n)
    plan = rng.choice(["basic", "pro"], size=n, p=[0.7, 0.3])
    sigma = 0.5 + 1.5 * (x1 > 0) + 0.5 * (plan == "pro")
    y = x0 + sigma * rng.normal(size=n)
    return pd.DataFrame({"request_id": [f"r{day}-{i}" for i in range(n)], "timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(day * 86400 + np.arange(n), "s"),
                         "variant": "production", "prediction": [repr(float(v)) for v in x0], "features.x0": x0, "features.x1": x1, "features.plan": plan,
                         "metadata.region": "na", LABEL: y, "_sigma": sigma})


def test_dle_tracks_a_heteroscedastic_error_under_covariate_shift():
    rng = np.random.default_rng(17)
    sample = pd.concat([_regressor_day(rng, 1000, 0.0, d) for d in range(8)], ignore_index=True)
    artefact, rows = fit_reference(sample.drop(columns="_sigma"), _model("regressor"))
    reference = reference_from_artefact(json.loads(json.dumps(artefact)), rows)
    assert artefact["method"] == "dle" and set(artefact["features"]["categorical"]) == {"features.plan"}
    inside, estimates, truths = [], [], []
    for d, shift in enumerate(np.linspace(-1.0, 1.5, 30)):
        frame = _regressor_day(rng, 2000, shift, 100 + d)
        history = {m["metric"]: m for m in day_history(reference, f"d{d}", frame.drop(columns="_sigma"), 200)["metrics"]}
        truth = float(np.mean(frame["_sigma"]) * np.sqrt(2 / np.pi))  # the process's expected MAE for these inputs
        estimates.append(history["mae"]["estimate"])
        truths.append(truth)
        inside.append(history["mae"]["labelled_lower"] <= history["mae"]["realised"] <= history["mae"]["labelled_upper"])
        rmse_truth = float(np.sqrt(np.mean(frame["_sigma"] ** 2)))
        assert history["rmse"]["estimate"] == pytest.approx(rmse_truth, rel=0.1)
    assert np.mean(inside) >= 0.9
    assert np.max(np.abs(np.array(estimates) - truths)) < 0.08
    assert estimates[-1] - estimates[0] > 0.5  # the shift to the noisy side is seen without labels


def test_dle_refit_from_the_stored_table_is_deterministic():
    rng = np.random.default_rng(18)
    sample = _regressor_day(rng, 1500, 0.0, 0).drop(columns="_sigma")
    artefact, rows = fit_reference(sample, _model("regressor", chunk_size=100))
    a, b = reference_from_artefact(artefact, rows), reference_from_artefact(artefact, rows.copy())
    frame = _regressor_day(rng, 300, 1.0, 1).drop(columns="_sigma")
    np.testing.assert_array_equal(a.score(frame)[0].abs_loss, b.score(frame)[0].abs_loss)


def test_nanny_space_keeps_reference_levels_and_unseen_values_become_missing():
    space = dle.FeatureSpace(("x",), {"plan": ("basic", "pro")})
    matrix = space.matrix(pd.DataFrame({"x": [1.0, None], "plan": ["pro", "enterprise"]}), [3.0, 4.0])
    assert list(matrix["plan"].cat.categories) == ["basic", "pro"] and pd.isna(matrix["plan"].iloc[1])
    assert matrix[dle.PREDICTION_FEATURE].tolist() == [3.0, 4.0]


# --------------------------------------------------------------------------- configuration and reference failures


def test_config_errors_name_the_key_path():
    with pytest.raises(ConfigError) as err:
        parse_config({"models": [{"id": "m", "kind": "classifier", "estimation": {"method": "sigmoid", "chunk_size": 10, "chunks": 3}}]})
    text = str(err.value)
    assert "models[0].estimation.method" in text and "models[0].estimation.chunk_size" in text and "models[0].estimation.chunks: unknown key" in text


def test_a_one_day_reference_gives_sampling_only_thresholds_and_says_what_would_fix_it():
    rng = np.random.default_rng(19)
    artefact, rows = fit_reference(_classifier_day(rng, 1200, REFERENCE_MU), _model())  # one day, 2 chunks of 500
    reference = reference_from_artefact(artefact, rows)
    stats = artefact["statistics"]["accuracy"]
    assert stats["sd"] is None and "no chunk-to-chunk estimation error" in stats["reason"]  # too few chunks for the estimation error only
    assert stats["drift_sd"] is None and "longer baseline window" in stats["drift_reason"]
    for n in (500, 50_000):
        acc = next(m for m in metric_rows(reference, reference.estimate(reference.score(rows)[0]), n) if m["metric"] == "accuracy")
        assert acc["lower"] is not None and acc["threshold_lower"] < acc["estimate"] < acc["threshold_upper"] and not acc["alert"]
        assert acc["threshold_parts"]["reference_drift"] is None and "sampling-only band" in acc["threshold_note"]
        assert "longer baseline window" in acc["threshold_note"]
    # at 50,000 rows a day the reference's own 1,200 rows dominate, and the note says what would tighten the thresholds
    assert acc["threshold_dominant"] == "reference_sampling" and "estimation.reference_rows" in acc["threshold_note"]


def test_one_class_reference_is_refused():
    frame = _classifier_day(np.random.default_rng(20), 300, REFERENCE_MU)
    frame[LABEL], frame["prediction"] = "stay", "stay"
    frame["class_probabilities"] = json.dumps({"stay": 0.9})
    with pytest.raises(ValueError, match="one class only"):
        fit_reference(frame, _model())


def test_metric_names_cover_every_estimated_metric():
    from modelwatch.core.metric_names import PERFORMANCE_METRICS

    assert set(cbpe.CLASSIFIER_METRICS) | set(dle.REGRESSOR_METRICS) <= set(PERFORMANCE_METRICS)


def test_estimation_section_renders_estimate_band_realised_and_assumptions(classifier_reference):
    from modelwatch.publish.estimation_section import render_estimation_section

    rng = np.random.default_rng(21)
    frames = {f"2026-01-{d:02d}": _classifier_day(rng, 1500, (REFERENCE_MU[0] - 0.7 * (d == 3), 0.0), day=d) for d in range(1, 4)}
    frames["2026-01-03"][LABEL] = None
    block = summary_block(estimate_partition(classifier_reference, frames, "2026-01-03", _model(), "v<1>"), "s3://r/m/estimation.json")
    html = render_estimation_section({"verdict": "stable", "estimation": block})
    assert "Estimated performance" in html and "v&lt;1&gt;" in html and "v<1>" not in html  # escaped
    assert "calibration learnt on the reference still holds" in html and "isotonic" in html and 'href="estimation.json"' in html
    acc = next(m for m in block["metrics"] if m["metric"] == "accuracy")
    assert acc["alert"] and f"{100 * acc['estimate']:.1f}%" in html
    # the thresholds' parts, the dominant one in bold, and the note saying which dominates
    assert acc["threshold_dominant"] == "day_sampling" and "threshold sd by part (dominant in bold)" in html
    assert f"<strong>day {acc['threshold_parts']['day_sampling']:.4g}</strong>" in html and "reference size" in html and "reference drift" in html
    assert "dominates (" in html and "of the variance)" in html
    assert render_estimation_section({"verdict": "stable", "estimation": None}) == "" and render_estimation_section(None) == ""
    missing = render_estimation_section({"estimation": {"outcome": "no_reference", "reason": "rebuild the baseline"}})
    assert "rebuild the baseline" in missing


def test_a_baseline_built_before_the_analytic_variances_still_gets_day_sized_thresholds(classifier_reference):
    new_keys = ("value", "unit_variance", "rows", "variance_method", "periods", "drift_sd", "drift_measured_sd", "drift_p", "drift_reason",
                "threshold_reason")
    legacy = {m: {k: v for k, v in s.items() if k not in new_keys} for m, s in classifier_reference.statistics.items()}
    reference = type(classifier_reference)(classifier_reference.kind, classifier_reference.chunk_size, legacy, classifier_reference.info,
                                           calibrator=classifier_reference.calibrator, positive_class=classifier_reference.positive_class)
    stats = legacy["accuracy"]
    assert reference.unit_variance("accuracy") == pytest.approx(stats["sd"] ** 2 * classifier_reference.chunk_size)  # NannyML's chunk estimate
    rows = {n: next(m for m in metric_rows(reference, {"metrics": {"accuracy": stats["mean"]}}, n) if m["metric"] == "accuracy")
            for n in (1_000, 100_000)}
    assert rows[100_000]["threshold_upper"] - rows[100_000]["threshold_lower"] < rows[1_000]["threshold_upper"] - rows[1_000]["threshold_lower"]
    assert "rebuild it to measure drift" in rows[1_000]["threshold_note"] and not rows[1_000]["alert"]
    too_few = {m: {**s, "mean": None, "sd": None, "reason": "2 reference chunks (< 6)"} for m, s in legacy.items()}
    reference.statistics = too_few
    row = next(m for m in metric_rows(reference, {"metrics": {"accuracy": 0.8}}, 1000) if m["metric"] == "accuracy")
    assert row["threshold_lower"] is None and not row["alert"] and row["reason"] == "2 reference chunks (< 6)"
