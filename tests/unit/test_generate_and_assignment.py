from collections import Counter
from datetime import date

import pytest
from modelwatch.core.assignment import assign, bucket
from modelwatch.runtime.generate import ExperimentPlan, Scenario, broken_rows, classifier_day, jsonl_bytes, llm_day
from scipy import stats

DAY = date(2026, 11, 2)


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = jsonl_bytes(llm_day("m", DAY, 300, 5, Scenario(), ExperimentPlan()), gz=True)
    b = jsonl_bytes(llm_day("m", DAY, 300, 5, Scenario(), ExperimentPlan()), gz=True)
    c = jsonl_bytes(llm_day("m", DAY, 300, 6, Scenario(), ExperimentPlan()), gz=True)
    assert a == b and a != c


def test_drift_scenario_changes_topic_mix_and_vocabulary():
    before = Counter(r["metadata"]["topic"] for r in llm_day("m", DAY, 2000, 1, Scenario(drift_from=date(2026, 11, 3)), None))
    after = Counter(r["metadata"]["topic"] for r in llm_day("m", DAY, 2000, 1, Scenario(drift_from=DAY), None))
    assert "crypto_wallet" not in before and after["crypto_wallet"] > 500


def test_error_regression_hits_only_the_treatment_arm():
    rows = llm_day("m", DAY, 20000, 1, Scenario(regression="errors", regression_from=DAY), ExperimentPlan())
    rate = {arm: sum(r["status"] == "error" for r in rows if r["variant"] == arm) / sum(r["variant"] == arm for r in rows) for arm in ("control", "treatment")}
    assert rate["control"] < 0.01 and rate["treatment"] > 0.03


def test_latency_regression_raises_treatment_p99():
    import numpy as np

    rows = llm_day("m", DAY, 20000, 1, Scenario(regression="latency", regression_from=DAY), ExperimentPlan())
    p99 = {arm: np.percentile([r["latency_ms"] for r in rows if r["variant"] == arm and r["status"] == "ok"], 99) for arm in ("control", "treatment")}
    assert p99["treatment"] > 2 * p99["control"]


def test_toxic_burst_and_labels():
    rows = llm_day("m", DAY, 3000, 1, Scenario(toxic_burst_on=DAY), None)
    assert sum("idiot" in (r["response"] or "") or "moron" in (r["response"] or "") for r in rows) > 100
    traffic, labels = classifier_day("c", DAY, 400, 1, Scenario())
    assert len(labels) == 400 and {lab["request_id"] for lab in labels} == {t["request_id"] for t in traffic}
    assert all(lab["labelled_at"] > t["timestamp"] for lab, t in zip(labels, traffic))


def test_broken_rows_are_deterministic():
    assert broken_rows("m", DAY, 9, 1) == broken_rows("m", DAY, 9, 1) and len(broken_rows("m", DAY, 9, 1)) == 9


def test_assignment_is_sticky_and_follows_weights():
    weights = {"control": 0.9, "treatment": 0.1}
    arms = [assign(f"user-{i}", "exp-1", weights) for i in range(20000)]
    assert arms == [assign(f"user-{i}", "exp-1", weights) for i in range(20000)]
    observed = Counter(arms)
    # chi-squared goodness of fit against the planned split (SRM check), fixed population
    p = stats.chisquare([observed["control"], observed["treatment"]], [18000, 2000]).pvalue
    assert p > 0.001


def test_assignment_is_independent_across_experiments():
    a = [assign(f"u{i}", "exp-a", {"x": 0.5, "y": 0.5}) for i in range(10000)]
    b = [assign(f"u{i}", "exp-b", {"x": 0.5, "y": 0.5}) for i in range(10000)]
    table = Counter(zip(a, b))
    chi2 = stats.chi2_contingency([[table[("x", "x")], table[("x", "y")]], [table[("y", "x")], table[("y", "y")]]])
    assert chi2.pvalue > 0.001
    assert 0 <= bucket("u", "s") < 10_000


def test_assignment_rejects_bad_weights():
    with pytest.raises(ValueError, match="sum to 1"):
        assign("u", "s", {"a": 0.5, "b": 0.6})
