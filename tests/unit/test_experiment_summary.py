"""The experiments stage's per-shard summary: shards merge to the day's exact record, and past k rows an arm keeps its bottom-k sample."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from modelwatch.config import Experiment
from modelwatch.experiments import summary as experiments_summary
from modelwatch.experiments.data import day_record, load_cumulative, store_day, unit_ids
from modelwatch.experiments.decision import quantile_guardrail
from modelwatch.summaries import sample_keys
from team_router import ARMS, TeamRouter, team_day

START = date(2026, 10, 1)
P99 = {"metric": "latency_p99_ms", "direction": "decrease", "margin": 0.05}


def _experiment(assignment, **extra) -> Experiment:
    return Experiment(id="exp-rt", control=ARMS[0], treatment=ARMS[1], split={ARMS[1]: 0.5}, start=START.isoformat(),
                      assignment=assignment, guardrails=[P99], **extra)


def _shards(frame: pd.DataFrame, exp: Experiment, k: int, parts: int = 3, seed: int = 0) -> experiments_summary.ExperimentsSummary:
    """The frame cut into ``parts`` shards at random, each summarised in batches, written and read back, merged in shard order."""
    rng = np.random.default_rng(seed)
    shard_of = rng.integers(0, parts, len(frame))
    loaded = []
    for shard in range(parts):
        summary = experiments_summary.ExperimentsSummary.empty([exp], k)
        rows = frame[shard_of == shard]
        for batch in np.array_split(np.arange(len(rows)), 4):  # several batches per shard, as check_shard feeds them
            summary.update(pa.Table.from_pandas(rows.iloc[batch], preserve_index=False))
        loaded.append(experiments_summary.load(summary.dump()))
    merged = loaded[0]
    for other in loaded[1:]:
        merged = merged.merge(other)
    return merged


def _team_frame(seed: int, **traffic) -> pd.DataFrame:
    frame = team_day(START, TeamRouter("exp-rt"), seed=seed, **traffic)
    frame.loc[frame.index[:5], "variant"] = "legacy"  # an unplanned variant
    frame.loc[frame.index[5:25], "variant"] = frame.loc[frame.index[5:25], "variant"].map({ARMS[0]: ARMS[1], ARMS[1]: ARMS[0]})  # served wrong
    return frame


@pytest.mark.parametrize("assignment", ["hash", "external"])
def test_shards_merge_to_the_record_of_the_whole_day(assignment):
    router = TeamRouter("exp-rt")
    exp = _experiment(router.declaration() if assignment == "hash" else {"method": "external", "unit": "metadata.account.uid"})
    frame = _team_frame(1, accounts=400)
    frame.loc[frame.index[30:34], "metadata"] = None  # requests without a unit
    whole, whole_day = day_record(frame, exp)
    day = _shards(frame, exp, k=200_000).day(exp)
    record = day.record(exp)
    for key in ("counts", "unplanned_variants", "units_in_several_arms", "assignment_mismatches", "units_missing", "latency_sample"):
        assert record[key] == whole[key], key
    assert record["unplanned_variants"] == {"legacy": 5} and record["units_missing"] == 4
    assert record["units_in_several_arms"] > 0  # the accounts served both arms above
    if assignment == "hash":
        assert record["assignment_mismatches"] == 20
        served_wrong = set(unit_ids(frame.iloc[5:25], exp.assignment.unit))
        assert len(record["mismatch_examples"]) == 3 and {e["unit"] for e in record["mismatch_examples"]} <= served_wrong
    for arm in ARMS:
        for metric, moments in whole["stats"][arm].items():
            assert record["stats"][arm][metric] == pytest.approx(moments), metric
        assert day.latency_values(arm).tolist() == whole_day.latency_values(arm).tolist()
        every = np.sort(frame.loc[frame["variant"] == arm, "latency_ms"].to_numpy())
        assert day.latency_values(arm).tolist() == every.tolist()  # a small day keeps every latency
    assert day.unit_table().sort_by([("arm", "ascending"), ("unit", "ascending")]).equals(
        whole_day.unit_table().sort_by([("arm", "ascending"), ("unit", "ascending")]))


def test_a_day_is_tagged_when_any_shard_saw_a_tagged_row():
    exp = _experiment(TeamRouter("exp-rt").declaration())
    frame = team_day(START, TeamRouter("exp-rt"), accounts=100, seed=2)
    untagged = frame.assign(experiment_id=None)
    summary = _shards(untagged, exp, k=1000)
    assert summary.day(exp).rows == len(frame)  # no tagged row: the arms' rows by variant
    one_tagged = untagged.copy()
    one_tagged.loc[one_tagged.index[-1], "experiment_id"] = "exp-rt"
    day = _shards(one_tagged, exp, k=1000).day(exp)
    assert day.rows == 1 and sum(day.counts.values()) == 1
    with pytest.raises(KeyError, match="re-run the day from check_shard"):
        summary.day(_experiment(TeamRouter("exp-rt").declaration()).model_copy(update={"id": "exp-new"}))


def _bottom_k(frame: pd.DataFrame, arm: str, k: int) -> list[float]:
    rows = frame[frame["variant"] == arm]
    keys = sample_keys(rows["request_id"])
    return np.sort(rows["latency_ms"].to_numpy()[np.argsort(keys, kind="stable")[:k]]).tolist()


def test_a_large_day_keeps_each_arms_bottom_k_and_the_days_merge_to_the_experiments_bottom_k(s3):
    from modelwatch.storage.s3 import ensure_bucket

    ensure_bucket(s3, "summary-reports")
    prefix = "s3://summary-reports/reports/_experiments/model_id=travel/experiment=exp-rt"
    exp = _experiment(TeamRouter("exp-rt").declaration())
    k = 300
    frames = [team_day(START + timedelta(days=d), TeamRouter("exp-rt"), accounts=1500, seed=10 + d) for d in range(3)]
    for d, frame in enumerate(frames):
        day = _shards(frame, exp, k, seed=d).day(exp)
        record = day.record(exp)
        for arm in ARMS:
            n = int((frame["variant"] == arm).sum())
            assert n > k and record["counts"][arm] == n and record["stats"][arm]["latency_mean_ms"]["n"] == n  # moments stay exact
            assert record["latency_sample"][arm] == {"k": k, "seen": n, "exact": False}
            assert day.latency_values(arm).tolist() == _bottom_k(frame, arm, k)
        store_day(s3, prefix, START + timedelta(days=d), record, day)
    cumulative = load_cumulative(s3, prefix, START, START + timedelta(days=2))
    every = pd.concat(frames, ignore_index=True)
    assert not cumulative["latency_exact"]
    for arm in ARMS:
        assert cumulative["latency"][arm].tolist() == _bottom_k(every, arm, k)
        assert cumulative["latency_rows"][arm] == cumulative["counts"][arm] == int((every["variant"] == arm).sum())
    units = unit_ids(every, exp.assignment.unit)
    assert cumulative["unit_counts"] == {arm: int(units[every["variant"] == arm].nunique()) for arm in ARMS}
    p99 = quantile_guardrail(exp.guardrails[0], exp.model_copy(update={"min_quantile_count": 100}), cumulative, look=3)
    assert p99["n_control"] == k and p99["rows_control"] == cumulative["counts"][ARMS[0]]
    assert f"on uniform samples of {k:,} of {cumulative['counts'][ARMS[0]]:,} control" in p99["method"]
