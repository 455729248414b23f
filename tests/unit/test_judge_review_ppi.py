"""A judge metric people do not agree with is decided from human review (prediction-powered inference), when there is enough."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from modelwatch.config import Experiment, MetricGoal
from modelwatch.experiments.decision import DEFAULT_MIN_REVIEW_LABELS, VIA_REVIEW, analyze_experiment, judge_trust, ppi_key
from modelwatch.experiments.inference import difference_test, ppi_difference_test
from modelwatch.experiments.stats import PPIStats
from modelwatch.judge.estimates import ppi_by_arm, ppi_mean, ppi_moments

SCORES = np.arange(1, 6)
# people's helpfulness scores per arm: the treatment is truly better by 0.4
HUMAN = {"control": np.array([0.10, 0.20, 0.35, 0.25, 0.10]), "treatment": np.array([0.05, 0.15, 0.30, 0.30, 0.20])}
# the judge errs differently in each arm: +1 on most control answers, -1 on many treatment answers (e.g. it likes the old style)
JUDGE_SHIFT = {"control": ([-1, 0, 1], [0.05, 0.25, 0.70]), "treatment": ([-1, 0, 1], [0.45, 0.45, 0.10])}


def _true_mean(arm: str) -> float:
    return float(SCORES @ HUMAN[arm])


def _arm_sample(arm: str, judged: int, labelled: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``judged`` rows' judge scores and human scores, the human score kept (not NaN) on a random ``labelled`` of them."""
    human = rng.choice(SCORES, size=judged, p=HUMAN[arm]).astype(float)
    shifts, weights = JUDGE_SHIFT[arm]
    judge = np.clip(human + rng.choice(shifts, size=judged, p=weights), 1, 5)
    kept = np.full(judged, np.nan)
    chosen = rng.choice(judged, size=labelled, replace=False)
    kept[chosen] = human[chosen]
    return judge, kept


def _ppi(arm: str, judged: int, labelled: int, rng: np.random.Generator) -> tuple[PPIStats, np.ndarray]:
    judge, human = _arm_sample(arm, judged, labelled, rng)
    return PPIStats.from_moments(ppi_moments(judge, human)), judge


def test_the_arm_moments_give_the_prediction_powered_mean_and_variance_of_the_reference():
    rng = np.random.default_rng(3)
    judge, human = _arm_sample("control", 300, 60, rng)
    stats = PPIStats.from_moments(ppi_moments(judge, human))
    labelled = ~np.isnan(human)
    reference = ppi_mean(judge[~labelled], judge[labelled], human[labelled], lam=1.0)
    assert stats.n_labelled == 60 and stats.n_unlabelled == 240
    assert stats.mean == pytest.approx(reference.estimate) and np.sqrt(stats.mean_variance) == pytest.approx(reference.se)
    assert stats.rectifier == pytest.approx(-reference.rectifier)  # human minus judge here, judge minus human there
    halves = [PPIStats.from_moments(ppi_moments(judge[s], human[s])) for s in (slice(0, 150), slice(150, 300))]
    assert halves[0] + halves[1] == stats  # days add up


def test_ppi_by_arm_keeps_each_variant_and_label_that_people_reviewed():
    frame = pd.DataFrame({"variant": ["a", "a", "a", "b", "b", "b"], "helpfulness": [4.0, 5.0, 3.0, 2.0, 2.0, 4.0],
                          "human_helpfulness": [3.0, None, None, None, None, None],
                          "toxicity": pd.array([True, False, False, False, True, False], dtype="boolean"),
                          "human_toxicity": pd.array([False, None, None, True, None, None], dtype="boolean")})
    moments = ppi_by_arm(frame)
    assert set(moments) == {"a", "b"} and set(moments["a"]) == {"judge.helpfulness", "judge.toxicity_rate"}
    assert set(moments["b"]) == {"judge.toxicity_rate"}  # no one scored b's helpfulness
    assert moments["a"]["judge.helpfulness"] == {"n_unlabelled": 2, "judge_sum": 8.0, "judge_sum_sq": 34.0, "n_labelled": 1,
                                                 "residual_sum": -1.0, "residual_sum_sq": 1.0}
    assert moments["b"]["judge.toxicity_rate"]["residual_sum"] == 1.0 and moments["b"]["judge.toxicity_rate"]["n_unlabelled"] == 2


def test_the_corrected_arm_difference_is_unbiased_and_covers_where_the_judge_is_biased_differently_per_arm():
    rng = np.random.default_rng(24)
    truth = _true_mean("treatment") - _true_mean("control")
    runs, differences, judge_differences, covered, covered_sequential = 1000, [], [], 0, 0
    for _ in range(runs):
        (control, judge_c), (treatment, judge_t) = _ppi("control", 400, 60, rng), _ppi("treatment", 400, 60, rng)
        fixed = ppi_difference_test(control, treatment)
        sequential = difference_test(control, treatment, sequential=True, tuning_n=800)
        differences.append(fixed.effect)
        judge_differences.append(judge_t.mean() - judge_c.mean())
        covered += fixed.ci_low <= truth <= fixed.ci_high
        covered_sequential += sequential.ci_low <= truth <= sequential.ci_high
    mean, se = np.mean(differences), np.std(differences, ddof=1) / np.sqrt(runs)
    assert abs(mean - truth) < 3 * se, (mean, truth)  # unbiased
    assert np.mean(judge_differences) < truth - 0.5  # the judge alone sees the better arm as worse
    assert 0.93 <= covered / runs <= 0.97  # the 95% CLT interval's coverage is nominal (0.945 with this seed)
    assert covered_sequential / runs >= 0.95  # the confidence sequence is wider (valid at every look)


def _cumulative(labelled: int, rng: np.random.Generator, judged: int = 1500) -> dict:
    """Two arms' cumulative statistics: the judge's moments on every judged row, and PPI sums from ``labelled`` reviews per arm."""
    stats = {}
    for arm in ("control", "treatment"):
        judge, human = _arm_sample(arm, judged, labelled, rng)
        stats[arm] = {"judge.helpfulness": {"n": judged, "sum": float(judge.sum()), "sum_sq": float(judge @ judge)}}
        if labelled:
            stats[arm][ppi_key("judge.helpfulness")] = ppi_moments(judge, human)
    return {"days": ["2026-11-01"], "missing_days": [], "counts": {"control": 20000, "treatment": 20000}, "unplanned_variants": {},
            "units_in_several_arms": 0, "assignment_mismatches": 0, "stats": stats, "latency": {}}


DISAGREES = {"agreement": {"helpfulness": {"kind": "dimension", "n": 60, "kappa": 0.12, "kappa_low": 0.01, "kappa_high": 0.3,
                                           "verdict": "does_not_agree", "reason": "kappa below 0.4"}}}


@pytest.mark.parametrize("mode", ["sequential", "fixed"])
def test_a_primary_judge_metric_below_the_minimum_abstains_without_reviews_and_decides_from_enough_of_them(mode):
    exp = Experiment(id="exp-ppi", split={"treatment": 0.5}, mode=mode, planned_requests=40000,
                     primary=[MetricGoal(metric="judge.helpfulness", direction="increase", mde=0.05)])
    trust = judge_trust(DISAGREES, 0.6)
    rng = np.random.default_rng(7)
    alone = analyze_experiment(exp, _cumulative(0, rng), date(2026, 11, 1), 40000, judge_trust=trust)
    [primary] = alone["primary"]
    assert primary["abstained"] and "via" not in primary and alone["decision"] != "promote"
    assert "judge.helpfulness abstains" in primary["reason"] and "kappa 0.12" in primary["reason"]
    assert f"each arm needs {DEFAULT_MIN_REVIEW_LABELS} answers labelled by people" in primary["reason"]
    assert "labelled so far: control 0, treatment 0" in primary["reason"] and alone["abstained"] == [primary["reason"]]

    few = analyze_experiment(exp, _cumulative(DEFAULT_MIN_REVIEW_LABELS - 1, rng), date(2026, 11, 1), 40000, judge_trust=trust)
    assert few["primary"][0]["abstained"] and "labelled so far: control 29, treatment 29" in few["primary"][0]["reason"]

    reviewed = analyze_experiment(exp, _cumulative(600, rng), date(2026, 11, 1), 40000, judge_trust=trust)
    [primary] = reviewed["primary"]
    assert not primary["abstained"] and primary["via"] == VIA_REVIEW and primary["sequential"] == (mode == "sequential")
    assert primary["decision"] == "better" and primary["significant_after_correction"]  # what people see, not the judge's reversal
    assert primary["control_estimate"] == pytest.approx(_true_mean("control"), abs=0.15)
    assert primary["judge_rectifier"]["control"] < -0.4 < 0 < primary["judge_rectifier"]["treatment"]
    assert reviewed["abstained"] == [] and reviewed["judge_decides"] == [primary["judge_agreement"]]
    assert "judge.helpfulness decides from human review (PPI): 600 control and 600 treatment" in primary["judge_agreement"]
    assert "kappa 0.12" in primary["judge_agreement"]
    trusted = analyze_experiment(exp, _cumulative(600, np.random.default_rng(7)), date(2026, 11, 1), 40000, judge_trust=judge_trust(None))
    assert trusted["primary"][0]["decision"] == "worse"  # the same days read from the judge alone point the other way


def test_the_configured_minimum_of_reviews_applies():
    exp = Experiment(id="exp-ppi", split={"treatment": 0.5}, primary=[MetricGoal(metric="judge.helpfulness", direction="increase", mde=0.05)])
    cumulative = _cumulative(100, np.random.default_rng(8))
    strict = analyze_experiment(exp, cumulative, date(2026, 11, 1), 40000, judge_trust=judge_trust(DISAGREES, 0.6, min_review_labels=200))
    assert strict["primary"][0]["abstained"] and "each arm needs 200 answers" in strict["primary"][0]["reason"]
    lenient = analyze_experiment(exp, cumulative, date(2026, 11, 1), 40000, judge_trust=judge_trust(DISAGREES, 0.6, min_review_labels=50))
    assert lenient["primary"][0].get("via") == VIA_REVIEW


def test_the_page_says_a_primary_was_decided_via_human_review():
    from modelwatch.publish.page import PageContext, render_partition_page
    from test_report import full_summary

    s = full_summary()
    base = s["experiments"][0]
    primary = {**base["primary"][0], "metric": "judge.helpfulness", "via": VIA_REVIEW}
    s["experiments"] = [{**base, "primary": [primary],
                         "judge_decides": ["judge.helpfulness decides from human review (PPI): 40 control and 41 treatment answers ..."]}]
    section = render_partition_page(s, PageContext())
    section = section[section.index("How are the experiments doing?"):]
    assert 'via <bdi>human review (PPI)</bdi>' in section and "decides from human review (PPI): 40 control" in section
