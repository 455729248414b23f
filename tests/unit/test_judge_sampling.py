"""Stratified judge sampling: allocation (minimums, oversampling, caps), inclusion probabilities and weights,
determinism, length bands, nested stratum keys and the sample-size rules."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from modelwatch.judge.sampling import (
    MISSING,
    add_length_band,
    bounded_allocation,
    budget_sample_size,
    plan_sample_size,
    sample_size_for_ci,
    stratified_sample,
    stratum_values,
)
from scipy import stats

TOPICS = {"billing": 0.3, "shipping": 0.25, "returns": 0.2, "account": 0.15, "technical": 0.1}


def traffic(n: int = 3000, seed: int = 0, refused_share: float = 0.02) -> pd.DataFrame:
    """Support-bot-like rows: topic in metadata (as a dict), a 90/10 experiment, rare filter refusals, varied lengths."""
    rng = np.random.default_rng(seed)
    topic = rng.choice(list(TOPICS), n, p=list(TOPICS.values()))
    return pd.DataFrame({
        "request_id": [f"req-{i:05d}" for i in range(n)],
        "variant": rng.choice(["control", "treatment"], n, p=[0.9, 0.1]),
        "status": np.where(rng.random(n) < refused_share, "refused_by_filter", "ok"),
        "completion_tokens": rng.choice([15, 80, 400], n, p=[0.6, 0.3, 0.1]),
        "metadata": [{"topic": t, "locale": "en-US"} for t in topic],
    })


def per_stratum(result) -> pd.Series:
    return result.rows.groupby("stratum").size()


def test_length_band_edges_and_missing_tokens():
    frame = pd.DataFrame({"completion_tokens": [0, 49, 50, 199, 200, None]})
    assert add_length_band(frame)["length_band"].tolist() == ["short", "short", "medium", "medium", "long", MISSING]
    assert add_length_band(frame, edges=(10, 20))["length_band"].tolist()[:3] == ["short", "long", "long"]
    with pytest.raises(ValueError):
        add_length_band(frame, edges=(20, 10))
    assert "length_band" not in frame  # a copy, not in place


def test_stratum_keys_read_nested_metadata_as_dicts_or_json_and_reject_unknown_keys():
    frame = pd.DataFrame({"metadata": [{"topic": "billing"}, json.dumps({"topic": "returns"}), None, {"other": 1}], "completion_tokens": [5, 60, 300, 5]})
    assert stratum_values(frame, "metadata.topic").tolist() == ["billing", "returns", MISSING, MISSING]
    assert stratum_values(frame, "length_band").tolist() == ["short", "medium", "long", "short"]
    with pytest.raises(KeyError):
        stratum_values(frame, "features.plan")


def test_allocation_keeps_minimums_never_exceeds_a_stratum_and_spends_exactly_n_total():
    frame = traffic()
    result = stratified_sample(frame, ["metadata.topic", "variant"], 120, min_per_stratum=8, seed=1)
    assert result.sampled == 120 and len(result.allocation) == 10
    counts = per_stratum(result)
    for a in result.allocation:
        assert counts[a.stratum] == a.sampled
        assert min(8, a.population) <= a.sampled <= a.population
        assert a.population == int((stratum_values(frame, "metadata.topic") + "|" + frame["variant"]).eq(
            a.stratum.replace("metadata.topic=", "").replace("variant=", "")).sum())
    # the minimum binds for the small treatment strata, the big control strata get more than the minimum
    treatment = [a for a in result.allocation if a.stratum.endswith("variant=treatment")]
    assert all(a.sampled == 8 for a in treatment)
    assert max(a.sampled for a in result.allocation) > 8


def test_proportional_allocation_without_binding_minimums():
    frame = traffic(n=4000)
    result = stratified_sample(frame, ["metadata.topic"], 400, min_per_stratum=1, seed=2)
    probabilities = [a.probability for a in result.allocation]
    assert max(probabilities) - min(probabilities) < 0.01  # proportional: about the same fraction everywhere
    assert result.sampled == 400


def test_a_tiny_stratum_is_taken_whole_and_its_surplus_goes_elsewhere():
    frame = traffic(n=2000)
    frame.loc[frame.index[:3], "variant"] = "canary"  # a 3-row stratum
    result = stratified_sample(frame, ["variant"], 300, min_per_stratum=5, seed=3)
    canary = next(a for a in result.allocation if a.stratum == "variant=canary")
    assert canary.sampled == canary.population == 3 and canary.probability == 1.0
    assert result.sampled == 300


def test_oversampled_high_risk_stratum_gets_factor_times_the_sampling_fraction():
    frame = traffic(n=6000, refused_share=0.02)
    plain = stratified_sample(frame, [], 300, min_per_stratum=1, oversample={"status=refused_by_filter": 1}, seed=4)
    over = stratified_sample(frame, [], 300, min_per_stratum=1, oversample={"status=refused_by_filter": 4}, seed=4)

    def probability(result, flag: str) -> float:
        return next(a.probability for a in result.allocation if a.stratum == f"status=refused_by_filter={flag}")

    assert probability(plain, "yes") / probability(plain, "no") == pytest.approx(1, abs=0.25)
    assert probability(over, "yes") / probability(over, "no") == pytest.approx(4, abs=0.4)
    refused_share = (over.rows["status"] == "refused_by_filter").mean()
    assert refused_share > 3 * (frame["status"] == "refused_by_filter").mean()
    assert over.strata_keys == ("status=refused_by_filter",)


def test_bare_value_oversampling_matches_a_length_band_stratum():
    frame = traffic(n=3000)
    result = stratified_sample(frame, ["length_band"], 200, min_per_stratum=1, oversample={"long": 3}, seed=5)
    by_band = {a.stratum: a for a in result.allocation}
    assert by_band["length_band=long"].factor == 3.0
    assert by_band["length_band=long"].probability / by_band["length_band=short"].probability == pytest.approx(3, abs=0.35)
    assert set(result.rows["length_band"]) == {"short", "medium", "long"}  # derived column carried on the sample


def test_weights_are_inverse_probabilities_and_sum_to_the_population():
    frame = traffic()
    result = stratified_sample(frame, ["metadata.topic", "variant", "length_band"], 250, oversample={"status=refused_by_filter": 5}, seed=6)
    rows = result.rows
    assert np.allclose(rows["weight"] * rows["inclusion_probability"], 1.0)
    assert rows["weight"].sum() == pytest.approx(len(frame))
    for stratum, weights in rows.groupby("stratum")["weight"]:
        assert weights.sum() == pytest.approx(result.population_sizes()[stratum])
    assert rows["request_id"].is_unique
    json.dumps(result.to_dict(), allow_nan=False)


def test_same_seed_same_sample_and_another_seed_another():
    frame = traffic()
    a = stratified_sample(frame, ["metadata.topic"], 100, seed=11)
    b = stratified_sample(frame, ["metadata.topic"], 100, seed=11)
    c = stratified_sample(frame, ["metadata.topic"], 100, seed=12)
    assert a.rows["request_id"].tolist() == b.rows["request_id"].tolist()
    assert a.rows["request_id"].tolist() != c.rows["request_id"].tolist()
    assert a.allocation == c.allocation  # the allocation does not depend on the seed, only the draw does


def test_census_when_the_day_is_smaller_than_the_request():
    frame = traffic(n=60)
    result = stratified_sample(frame, ["variant"], 500, seed=0)
    assert result.sampled == 60 and (result.rows["weight"] == 1.0).all()
    assert any("every row is judged" in note for note in result.notes)


def test_minimums_shrink_evenly_when_the_budget_cannot_cover_them():
    frame = traffic(n=3000)
    result = stratified_sample(frame, ["metadata.topic", "variant"], 20, min_per_stratum=5, seed=0)
    assert result.sampled == 20
    assert sorted(a.sampled for a in result.allocation) == [2] * 10
    assert any("minimums reduced" in note for note in result.notes)


def test_unmatched_oversample_predicate_is_noted_and_bad_factors_rejected():
    frame = traffic(n=500)
    result = stratified_sample(frame, ["variant"], 50, oversample={"variant=canary": 3}, seed=0)
    assert any("matched no row" in note for note in result.notes)
    with pytest.raises(ValueError):
        stratified_sample(frame, ["variant"], 50, oversample={"variant=control": 0}, seed=0)
    with pytest.raises(ValueError):
        stratified_sample(frame, ["variant"], -1, seed=0)


def test_bounded_allocation_respects_bounds_and_total_for_random_inputs():
    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(1, 12))
        upper = rng.integers(1, 200, k)
        lower = np.minimum(upper, rng.integers(0, 6, k))
        total = int(rng.integers(lower.sum(), upper.sum() + 1))
        out = bounded_allocation(rng.random(k) * upper, lower, upper, total)
        assert out.sum() == total and (out >= lower).all() and (out <= upper).all()
    assert bounded_allocation([1, 2, 3], [0, 0, 0], [100, 100, 100], 60).tolist() == [10, 20, 30]
    assert bounded_allocation([1, 1, 10], [0, 0, 0], [100, 100, 5], 25).tolist() == [10, 10, 5]
    with pytest.raises(ValueError):
        bounded_allocation([1, 1], [5, 5], [10, 10], 3)


def test_budget_sample_size():
    assert budget_sample_size(5.0, 0.02, 400) == 250
    assert budget_sample_size(5.0, 0.01, 400) == 400
    assert budget_sample_size(5.0, 0.01, 10_000) == 500  # no binary-rounding loss at an exact quotient
    assert budget_sample_size(0.0, 0.01, 400) == 0
    assert budget_sample_size(5.0, 0.0, 400) == 400  # a free backend is limited by max_calls only
    with pytest.raises(ValueError):
        budget_sample_size(-1.0, 0.01, 400)


def test_sample_size_for_ci_is_the_smallest_n_reaching_the_width():
    for width, sd, confidence in [(0.2, 1.0, 0.95), (0.1, 2.0, 0.9), (0.5, 1.3, 0.99)]:
        n = sample_size_for_ci(width, sd, confidence)
        z = stats.norm.ppf((1 + confidence) / 2)
        assert 2 * z * sd / math.sqrt(n) <= width < 2 * z * sd / math.sqrt(n - 1)
    assert sample_size_for_ci(0.2, 1.0, 0.95) == 385
    assert sample_size_for_ci(0.2) == 1537  # default sd 2: the largest possible for 1-5 scores
    with_fpc = sample_size_for_ci(0.2, 1.0, 0.95, population=1000)
    assert with_fpc == math.ceil(384.1459 / (1 + 383.1459 / 1000))
    assert sample_size_for_ci(0.2, 1.0, 0.95, design_effect=1.5) == math.ceil(1.5 * 384.1459)
    with pytest.raises(ValueError):
        sample_size_for_ci(0.0, 1.0)


def test_plan_sample_size_takes_the_smallest_constraint():
    assert (p := plan_sample_size(5.0, 0.02, 400)).n == 250 and p.limited_by == "budget"
    assert (p := plan_sample_size(5.0, 0.001, 400)).n == 400 and p.limited_by == "max_samples"
    assert (p := plan_sample_size(5.0, 0.001, 4000, ci_width=0.2, sd_guess=1.0)).n == 385 and p.limited_by == "ci_width"
    assert (p := plan_sample_size(5.0, 0.0, 400, population=120)).n == 120 and p.limited_by == "population"
    assert p.budget_calls is None
    json.dumps(p.to_dict(), allow_nan=False)
