"""Judge calibration: the bundled golden set loads and validates, bad golden lines are reported with their numbers,
kappa / precision / recall equal sklearn's, and the review queue round-trips (export, fill in, read back)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
from modelwatch.judge.calibration import (
    DIMENSIONS,
    FLAGS,
    LABELS,
    LabelFileError,
    agreement,
    check_labels,
    golden_path,
    load_golden,
    read_review_labels,
    review_queue,
)
from sklearn.metrics import cohen_kappa_score, precision_score, recall_score

GOOD_LABELS = {"helpfulness": 4, "factual_accuracy": 5, "coherence": 5, "instruction_following": 4,
               "hallucination": False, "refusal": False, "toxicity": False}


def golden_line(**overrides) -> str:
    row = {"id": "g-1", "prompt": "Where is my order?", "response": "It ships today.", "reference": None, "labels": GOOD_LABELS,
           "labeller": "a.b", "labelled_at": "2026-11-01T10:00:00Z"}
    row.update(overrides)
    return json.dumps(row)


def test_bundled_golden_set_loads_and_covers_the_support_traffic():
    golden = load_golden(golden_path("support-v2"))
    assert len(golden) >= 40 and golden.index.is_unique and golden.index.name == "id"
    assert all(golden[d].between(1, 5).all() for d in DIMENSIONS)
    assert all(golden[f].dtype == "boolean" and golden[f].any() and not golden[f].all() for f in FLAGS)
    for d in DIMENSIONS:
        assert golden[d].nunique() >= 3  # good and bad answers, not all fives
    topics = {m["topic"] for m in golden["metadata"]}
    locales = {m["locale"] for m in golden["metadata"]}
    assert {"billing", "shipping", "returns", "account", "technical"} <= topics and len(locales) >= 4
    assert golden["reference"].notna().sum() >= 10
    assert str(golden["labelled_at"].dt.tz) == "UTC"
    assert agreement(golden, golden)["dimensions"]["helpfulness"]["kappa_quadratic"] == pytest.approx(1.0)


def test_load_golden_reports_every_bad_line_with_its_number(tmp_path):
    lines = [
        golden_line(id="g-1"),
        golden_line(id="g-2", labels={**GOOD_LABELS, "helpfulness": 6}),
        "",
        "{not json",
        golden_line(id="g-1"),
        golden_line(id="g-5", labels={k: v for k, v in GOOD_LABELS.items() if k != "toxicity"}),
        golden_line(id="g-6", labeller="", extra=1),
        golden_line(id="g-7", labelled_at="yesterday"),
    ]
    path = tmp_path / "golden.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LabelFileError) as info:
        load_golden(path)
    problems = {p.line: p.reason for p in info.value.problems}
    assert sorted(problems) == [2, 4, 5, 6, 7, 8]
    assert "helpfulness must be an integer 1-5" in problems[2]
    assert "invalid JSON" in problems[4]
    assert "duplicate id (first on line 1)" in problems[5]
    assert "toxicity is missing" in problems[6]
    assert "unknown key 'extra'" in problems[7] and "labeller must be a non-empty string" in problems[7]
    assert "ISO 8601" in problems[8]
    path.write_text(lines[0] + "\n")
    assert load_golden(path).index.tolist() == ["g-1"]


def test_label_validation_rejects_booleans_as_scores_and_numbers_as_flags():
    _, problems = check_labels({**GOOD_LABELS, "coherence": True, "refusal": 1, "tone": 3}, complete=True)
    assert len(problems) == 3
    _, problems = check_labels({**GOOD_LABELS, "coherence": 4.0}, complete=True)
    assert problems == ["coherence must be an integer 1-5, got 4.0"]
    labels, problems = check_labels({"helpfulness": 2}, complete=False)
    assert problems == [] and labels["toxicity"] is None


def random_labels(seed: int, n: int = 120) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    human = pd.DataFrame({"request_id": [f"r{i}" for i in range(n)]})
    for d in DIMENSIONS:
        human[d] = rng.integers(1, 6, n)
    for f in FLAGS:
        human[f] = rng.random(n) < 0.3
    judge = human.copy()
    for d in DIMENSIONS:
        judge[d] = np.clip(human[d] + rng.choice([-1, 0, 0, 1, 2], n), 1, 5)
    for f in FLAGS:
        judge[f] = np.where(rng.random(n) < 0.2, ~human[f], human[f])
    return judge.sample(frac=1, random_state=seed), human  # different row order: matched by request_id


def test_kappa_precision_and_recall_equal_sklearn():
    judge, human = random_labels(0)
    result = agreement(judge, human)
    aligned = judge.set_index("request_id").loc[human["request_id"]]
    assert result["n_matched"] == len(human)
    for d in DIMENSIONS:
        expected = cohen_kappa_score(human[d], aligned[d], weights="quadratic")
        assert result["dimensions"][d]["kappa_quadratic"] == pytest.approx(expected)
        assert result["dimensions"][d]["mean_bias"] == pytest.approx((aligned[d].to_numpy() - human[d].to_numpy()).mean())
    for f in FLAGS:
        stats = result["flags"][f]
        assert stats["kappa"] == pytest.approx(cohen_kappa_score(human[f], aligned[f]))
        assert stats["precision"] == pytest.approx(precision_score(human[f], aligned[f]))
        assert stats["recall"] == pytest.approx(recall_score(human[f], aligned[f]))
    json.dumps(result, allow_nan=False)


def test_agreement_reports_undefined_statistics_instead_of_nan():
    human = pd.DataFrame({"id": ["a", "b", "c"], "helpfulness": [5, 5, 5], "toxicity": [False, False, False]})
    judge = pd.DataFrame({"id": ["a", "b", "c", "z"], "helpfulness": [5, 5, 5, 1], "toxicity": [False, False, False, True]})
    result = agreement(judge, human)
    assert result["n_matched"] == 3
    assert result["dimensions"]["helpfulness"]["kappa_quadratic"] is None and "chance agreement" in result["dimensions"]["helpfulness"]["reason"]
    tox = result["flags"]["toxicity"]
    assert tox["precision"] is None and tox["recall"] is None and "no human-flagged row" in tox["reason"]
    json.dumps(result, allow_nan=False)
    few = agreement(judge.iloc[:1], human)
    assert few["dimensions"]["helpfulness"] == {"n": 1, "reason": "1 rows labelled by both; need at least 2"}


def judged_sample(n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame({
        "request_id": [f"req-{i:04d}" for i in range(n)],
        "variant": rng.choice(["control", "treatment"], n, p=[0.8, 0.2]),
        "prompt": [f"question {i}?" for i in range(n)],
        "response": [None if i % 50 == 0 else f"answer {i}, with a comma and \"quotes\"\nand a new line" for i in range(n)],
        "reference": [f"reference {i}" if i % 7 == 0 else None for i in range(n)],
        "metadata": [{"topic": t} for t in rng.choice(["billing", "shipping", "returns"], n)],
        "helpfulness": rng.integers(1, 6, n),  # the judge's score: must not reach the labellers
    })


def test_review_queue_exports_blind_rows_with_empty_labels_in_jsonl_and_csv():
    sample = judged_sample()
    jsonl, csv_bytes = review_queue(sample, 24, ["metadata.topic", "variant"], seed=3)
    records = [json.loads(line) for line in jsonl.decode().splitlines()]
    assert len(records) == 24 and len({r["request_id"] for r in records}) == 24
    assert set(records[0]) == {"request_id", "prompt", "response", "reference", "labels", "labeller", "labelled_at", "notes"}
    assert all(set(r["labels"]) == set(LABELS) and all(v is None for v in r["labels"].values()) for r in records)
    assert all(r["response"] for r in records)  # rows without a response are not sent for labelling
    by_id = sample.set_index("request_id")
    assert all(r["prompt"] == by_id.loc[r["request_id"], "prompt"] for r in records)
    rows = list(csv.DictReader(io.StringIO(csv_bytes.decode())))
    assert [r["request_id"] for r in rows] == [r["request_id"] for r in records]
    assert rows[0]["response"] == records[0]["response"]  # commas, quotes and new lines survive the CSV
    assert all(r[label] == "" for r in rows for label in LABELS)
    assert "helpfulness" in rows[0] and "variant" not in rows[0]
    topics = {by_id.loc[r["request_id"], "metadata"]["topic"] for r in records}
    assert topics == {"billing", "shipping", "returns"}
    assert review_queue(sample, 24, ["metadata.topic", "variant"], seed=3) == (jsonl, csv_bytes)  # seeded


def test_review_round_trip_reads_filled_labels_and_reports_bad_lines():
    sample = judged_sample()
    jsonl, _ = review_queue(sample, 10, ["variant"], seed=1)
    records = [json.loads(line) for line in jsonl.decode().splitlines()]
    filled = []
    for i, record in enumerate(records):
        if i < 6:
            record["labels"] = {**GOOD_LABELS, "helpfulness": 1 + i % 5, "toxicity": i == 2}
            record["labeller"], record["labelled_at"] = "m.okafor", "2026-11-05T09:00:00Z"
        filled.append(json.dumps(record))
    filled[6] = json.dumps({**records[6], "labels": {**GOOD_LABELS, "coherence": 7}, "labeller": "x"})  # out of range
    filled[7] = json.dumps({**records[7], "labels": {**GOOD_LABELS, "refusal": "no"}, "labeller": "x"})  # not a boolean
    filled[8] = json.dumps({**records[8], "labels": {"helpfulness": 3}})  # labelled without a labeller; line 10 stays untouched
    filled.append(json.dumps({**records[0], "labels": GOOD_LABELS, "labeller": "x"}))  # duplicate of line 1
    filled.append(json.dumps({**records[1], "request_id": "req-unknown", "labels": GOOD_LABELS, "labeller": "x"}))
    filled.append("{\"request_id\": ")  # cut off
    content = ("\n".join(filled) + "\n").encode()

    result = read_review_labels(content, known_ids=[r["request_id"] for r in records])
    assert not result.ok
    assert {p.line: p.id for p in result.problems} == {7: records[6]["request_id"], 8: records[7]["request_id"], 9: records[8]["request_id"],
                                                        11: records[0]["request_id"], 12: "req-unknown", 13: None}
    reasons = {p.line: p.reason for p in result.problems}
    assert "coherence must be an integer 1-5, got 7" in reasons[7] and "refusal must be true or false" in reasons[8]
    assert "labeller is missing" in reasons[9] and "duplicate request_id (first on line 1)" in reasons[11]
    assert "not in the review queue" in reasons[12] and "invalid JSON" in reasons[13]
    assert result.unlabelled == 1 and result.lines == 13
    labels = result.labels
    assert labels.index.tolist() == [r["request_id"] for r in records[:6]]
    assert labels["helpfulness"].tolist() == [1, 2, 3, 4, 5, 1]
    assert labels["toxicity"].tolist() == [False, False, True, False, False, False]
    assert str(labels["helpfulness"].dtype) == "Int64" and (labels["labeller"] == "m.okafor").all()
    human = labels.reset_index()
    judge = sample[sample["request_id"].isin(human["request_id"])][["request_id", "helpfulness"]]
    assert agreement(judge, human)["dimensions"]["helpfulness"]["n"] == 6  # read-back labels feed agreement directly


def test_partial_labels_are_kept_and_a_path_can_be_read(tmp_path):
    path = tmp_path / "review.jsonl"
    path.write_text(json.dumps({"request_id": "r1", "labels": {"helpfulness": 2, "toxicity": True}, "labeller": "a"}) + "\n")
    result = read_review_labels(path)
    assert result.ok and result.labels.loc["r1", "helpfulness"] == 2 and result.labels.loc["r1", "toxicity"]
    assert pd.isna(result.labels.loc["r1", "coherence"])
