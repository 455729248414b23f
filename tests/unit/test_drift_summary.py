"""The drift stage's per-shard summary: shards merge to the day's summary, a small day is tested exactly as its rows,
a large one on exact counts and a bounded uniform sample, and every text sample takes the smallest request-id hashes."""

from __future__ import annotations

from functools import reduce

import numpy as np
import pandas as pd
import pytest
from modelwatch.baseline.columns import DriftColumns
from modelwatch.drift.families import analyze, column_tests
from modelwatch.drift.sides import FrameSide, SummarySide, bottom_k_texts
from modelwatch.drift.summary import DriftPlan, DriftSummary, load
from modelwatch.drift.univariate import DriftPolicy
from modelwatch.summaries import sample_keys

KINDS = {"latency_ms": "numerical", "tokens": "numerical", "metadata.topic": "categorical", "status": "categorical"}
COLUMNS = DriftColumns(features=["latency_ms", "metadata.topic"], prediction=["status"], input_length=["tokens"],
                       segments=["metadata.locale", "metadata.topic"], text=["prompt"], kinds=KINDS)
LOCALES = ["en", "de", "fr", "ja"]


def day(rng: np.random.Generator, rows: int, prefix: str, shift_de: bool = False) -> pd.DataFrame:
    locale = rng.choice(LOCALES, size=rows, p=[0.5, 0.25, 0.2, 0.05])
    topic = rng.choice(["billing", "shipping", "other"], size=rows, p=[0.5, 0.3, 0.2])
    if shift_de:
        topic = np.where((locale == "de") & (rng.random(rows) < 0.3), "visa", topic)
    latency = rng.gamma(4.0, 100.0, rows)
    latency[rng.random(rows) < 0.02] = np.nan  # missing values stay missing on both paths
    prompts = np.array([f"{t} question {i}" if i % 17 else "   " for i, t in enumerate(topic)], dtype=object)  # some blank prompts
    return pd.DataFrame({"request_id": [f"{prefix}-{i}" for i in range(rows)], "metadata.locale": locale.astype(object),
                         "metadata.topic": topic.astype(object), "latency_ms": latency, "tokens": np.round(rng.lognormal(4, 0.5, rows)),
                         "status": rng.choice(["ok", "error"], size=rows, p=[0.97, 0.03]).astype(object), "prompt": prompts})


def plan(sample_rows: int = 200_000, **kw) -> DriftPlan:
    return DriftPlan(numerical=["latency_ms", "tokens"], categorical=["metadata.topic", "status"], segments=list(COLUMNS.segments),
                     text=["prompt"], sample_rows=sample_rows, report_rows=kw.pop("report_rows", 500), embedding_sample=kw.pop("embedding_sample", 300),
                     segment_embedding_rows=kw.pop("segment_embedding_rows", 50), segment_text_values={"metadata.locale": ["de", "en"]}, **kw)


def summarised(frame: pd.DataFrame, the_plan: DriftPlan, shards: int = 5, order: list[int] | None = None) -> DriftSummary:
    parts = []
    for rows in np.array_split(np.arange(len(frame)), shards):
        part = DriftSummary(the_plan)
        for batch in np.array_split(rows, 3):  # a shard takes its rows in batches
            part.update_frame(frame.iloc[batch])
        parts.append(load(part.dump()))
    ordered = [parts[i] for i in (order or range(shards))]
    return reduce(lambda a, b: a.merge(b), ordered)


def test_shards_merge_in_any_order_to_exact_counts_and_the_days_own_bottom_k():
    frame = day(np.random.default_rng(1), 3000, "r")
    one, other = summarised(frame, plan(sample_rows=700)), summarised(frame, plan(sample_rows=700), order=[4, 2, 0, 3, 1])
    for summary in (one, other):
        assert summary.category_counts("status") == frame["status"].value_counts().to_dict()
        de = frame[frame["metadata.locale"] == "de"]
        assert summary.category_counts("metadata.topic", "metadata.locale", "de") == de["metadata.topic"].value_counts().to_dict()
        assert summary.segment_rows("metadata.locale") == frame["metadata.locale"].value_counts().to_dict()
        assert summary.row_count == 3000 and not summary.rows.exact
        smallest = frame.iloc[np.argsort(sample_keys(frame["request_id"]), kind="stable")[:700]]
        assert summary.sample_frame()["request_id"].tolist() == smallest["request_id"].tolist()  # the day's bottom-k, whatever the shards
    assert one.counts.equals(other.counts)


def test_a_day_within_the_sample_is_tested_exactly_as_its_rows():
    rng = np.random.default_rng(2)
    reference, current = day(rng, 2500, "ref"), day(rng, 2000, "cur", shift_de=True)
    summary = summarised(current, plan())
    policy = DriftPolicy(alpha=0.05)
    from_rows = analyze(reference, current, COLUMNS, policy, 100)
    from_summary = analyze(reference, SummarySide(summary), COLUMNS, policy, 100)
    assert from_summary == from_rows
    locale = next(f for f in from_summary["segments"] if f["segment"] == "metadata.locale")
    assert "metadata.topic" in next(s for s in locale["segments"] if s["value"] == "de")["drifted"]  # the planted shift is found


def test_a_day_larger_than_the_sample_keeps_exact_counts_and_tests_numbers_on_k_rows():
    rng = np.random.default_rng(3)
    reference, current = day(rng, 2000, "ref"), day(rng, 6000, "cur")
    side = SummarySide(summarised(current, plan(sample_rows=1000)))
    result = analyze(reference, side, COLUMNS, DriftPolicy(alpha=0.05), 100)
    features = {c["column"]: c for c in result["families"][0]["columns"]}
    assert features["metadata.topic"]["n_current"] == 6000  # categorical: exact counts of every row
    assert 950 <= features["latency_ms"]["n_current"] <= 1000  # numerical: the 1,000-row sample, its missing values dropped
    assert result["rows"]["current"] == 6000 and result["severity"] == "none"
    de = side.groups("metadata.locale")["de"]
    assert len(de) == (current["metadata.locale"] == "de").sum() and 0 < de.numbers("tokens").size < len(de)


def test_the_sampled_numerical_test_keeps_its_false_alarm_rate():
    """Seeded A/A days of 4,000 rows whose numbers are tested on a 500-row bottom-k sample: the KS test's raw rejection rate stays
    at alpha (120 tests: outside 2-10% with probability under 3% at a true 5%)."""
    rng = np.random.default_rng(4)
    p_values = []
    for trial in range(60):
        reference, current = day(rng, 1000, f"ref{trial}"), day(rng, 4000, f"cur{trial}")
        side = SummarySide(summarised(current, plan(sample_rows=500), shards=2))
        p_values += [t.p_value for t in column_tests(reference, side, ["latency_ms", "tokens"], KINDS)]
    assert 0.02 <= np.mean(np.array(p_values) < 0.05) <= 0.1, np.mean(np.array(p_values) < 0.05)


def test_text_samples_are_the_smallest_hashes_of_non_empty_texts_and_only_for_testable_segments():
    frame = day(np.random.default_rng(5), 3000, "r")
    summary = summarised(frame, plan(embedding_sample=300, segment_embedding_rows=50))
    texts = summary.text_frame("prompt")["prompt"].tolist()
    assert texts == bottom_k_texts(frame, "prompt", 300) and all(t.strip() for t in texts) and len(texts) == 300
    de = frame[frame["metadata.locale"] == "de"]
    assert summary.text_frame("prompt", "metadata.locale", "de")["prompt"].tolist() == bottom_k_texts(de, "prompt", 50)
    assert summary.text_frame("prompt", "metadata.locale", "ja").empty  # not testable in the baseline: no texts kept
    assert SummarySide(summary).groups("metadata.locale")["de"].text_rows("prompt")["prompt"].tolist() == bottom_k_texts(de, "prompt", 50)


def test_the_report_sample_is_bounded_and_round_trips():
    frame = day(np.random.default_rng(6), 3000, "r")
    summary = summarised(frame, plan(report_rows=400))
    report = summary.report_frame()
    assert len(report) == 400 and set(report.columns) >= {"latency_ms", "metadata.topic", "prompt", "metadata.locale"}
    again = load(summary.dump())
    assert again.report_frame().equals(report) and again.counts.equals(summary.counts) and again.row_count == 3000


def test_an_evidently_report_on_a_sample_says_so_on_its_page():
    from datetime import UTC, datetime

    from modelwatch.drift.evidently_report import build_report

    frame = day(np.random.default_rng(7), 600, "r")
    run = build_report(frame, frame.iloc[:300], numerical=["latency_ms"], categorical=["status"], text=[], timestamp=datetime(2026, 1, 1, tzinfo=UTC),
                       title="t", max_rows=1000, current_rows=12_000)
    assert "Current day computed on a uniform sample of 300 of 12,000 rows" in run.html and "reference 600 rows" in run.html


def test_frame_and_summary_sides_agree_on_an_empty_segment_key():
    frame = day(np.random.default_rng(8), 200, "r")
    assert FrameSide(frame).groups("metadata.missing") == {}
    assert SummarySide(summarised(frame, plan(), shards=1)).groups("metadata.missing") == {}


@pytest.mark.parametrize("rows", [0, 1])
def test_tiny_shards_merge(rows):
    frame = day(np.random.default_rng(9), 50, "r").iloc[:rows]
    merged = summarised(frame, plan(), shards=1).merge(DriftSummary(plan()))
    assert merged.row_count == rows and len(merged.report_frame()) == rows
