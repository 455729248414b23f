import gzip
import json
import uuid
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from modelwatch.concept.analysis import analyze_concept_drift, parse_window, prepare, window_metrics
from modelwatch.concept.detectors import detect_changes
from modelwatch.concept.metrics import calibration, classifier_metrics, feedback_metrics, regressor_metrics
from modelwatch.ingest.labels import join_labels, read_labels
from modelwatch.ingest.readers import assemble, read_file
from modelwatch.runtime.generate import Scenario, classifier_day, jsonl_bytes, parquet_bytes
from modelwatch.storage.s3 import ensure_bucket, put_bytes
from river.drift import ADWIN
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_absolute_percentage_error,
    roc_auc_score,
    root_mean_squared_error,
)

DAY0 = date(2026, 11, 2)
CHANGE_AT = 2000
STREAM_LENGTH = 4000
# ADWIN's delta: river's default 0.002. Measured on Bernoulli(0.1) streams of 4000 rows it gave
# no detection on any of seeds 0..49, and on a 0.1 -> 0.3 jump at row 2000 it fired 47-239 rows
# after the jump (median 111) on seeds 1000..1049; so the 90% bound below has ample margin.
DELTA = 0.002


def bernoulli_stream(seed: int, rates: list[tuple[int, float]]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([(rng.random(n) < p).astype(float) for n, p in rates])


def classifier_frame(error_by_day: list[float], rows_per_day: int = 1000, seed: int = 0, variant: str = "production") -> pd.DataFrame:
    """Churn-style traffic where the share of wrong predictions on day i is error_by_day[i]."""
    rng = np.random.default_rng(seed)
    parts = []
    for i, err in enumerate(error_by_day):
        start = datetime(DAY0.year, DAY0.month, DAY0.day, tzinfo=UTC) + timedelta(days=i)
        ts = sorted(start + timedelta(seconds=float(s)) for s in rng.uniform(0, 86_399, rows_per_day))
        churn = rng.random(rows_per_day) < 0.3
        wrong = rng.random(rows_per_day) < err
        predicted_churn = churn ^ wrong
        p_churn = np.where(predicted_churn, rng.uniform(0.5, 1.0, rows_per_day), rng.uniform(0.0, 0.5, rows_per_day))
        parts.append(
            pd.DataFrame(
                {
                    "request_id": [f"{variant}-{i}-{k}" for k in range(rows_per_day)],
                    "timestamp": ts,
                    "variant": variant,
                    "prediction": np.where(predicted_churn, "churn", "stay"),
                    "class_probabilities": [json.dumps({"churn": float(p), "stay": float(1 - p)}) for p in p_churn],
                    "label": np.where(churn, "churn", "stay"),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- metrics vs sklearn


def test_classifier_metrics_equal_sklearn():
    rng = np.random.default_rng(3)
    y = np.where(rng.random(500) < 0.35, "churn", "stay")
    p = np.clip(np.where(y == "churn", 0.65, 0.35) + rng.normal(0, 0.25, 500), 0, 1)
    pred = np.where(p >= 0.5, "churn", "stay")
    m = classifier_metrics(y, pred, p, positive_class="churn")
    assert m["accuracy"].value == pytest.approx(accuracy_score(y, pred))
    assert m["f1"].value == pytest.approx(f1_score(y, pred, pos_label="churn"))
    assert m["roc_auc"].value == pytest.approx(roc_auc_score(y == "churn", p))
    assert 0.6 < m["accuracy"].value < 0.95 and m["roc_auc"].n == 500

    # Without a positive class: macro F1 over the classes seen, multiclass.
    y3 = rng.choice(["a", "b", "c"], 400)
    pred3 = np.where(rng.random(400) < 0.6, y3, rng.choice(["a", "b", "c"], 400))
    m3 = classifier_metrics(y3, pred3)
    assert m3["f1"].value == pytest.approx(f1_score(y3, pred3, average="macro"))
    assert m3["roc_auc"].value is None and "positive_class" in m3["roc_auc"].reason


def test_regressor_metrics_equal_sklearn_and_mape_skips_zero_targets():
    rng = np.random.default_rng(5)
    y = rng.gamma(3, 10, 300)
    y[::25] = 0.0  # 12 zero targets
    pred = y + rng.normal(0, 4, 300)
    m, skipped = regressor_metrics(y, pred)
    assert skipped == 12
    assert m["mae"].value == pytest.approx(mean_absolute_error(y, pred))
    assert m["rmse"].value == pytest.approx(root_mean_squared_error(y, pred))
    nz = y != 0
    assert m["mape"].value == pytest.approx(mean_absolute_percentage_error(y[nz], pred[nz])) and m["mape"].n == 288
    # sklearn's own MAPE over all rows divides by eps on the zero targets and is useless.
    assert mean_absolute_percentage_error(y, pred) > 1e6 * m["mape"].value


def test_feedback_metrics_thumbs_down_rate_and_coverage():
    fb = [-1, 0, 1, 1, None, -1, 0, 1, 1, 1]
    m = feedback_metrics(fb)
    assert m["thumbs_down_rate"].value == pytest.approx(2 / 7) and m["thumbs_down_rate"].n == 7
    assert m["feedback_coverage"].value == pytest.approx(7 / 10)


# --------------------------------------------------------------------------- abstentions


def test_metrics_abstain_with_a_reason_not_nan():
    one_class = classifier_metrics(["stay"] * 6, ["stay", "stay", "churn", "stay", "stay", "stay"], [0.1, 0.2, 0.7, 0.3, 0.2, 0.1], positive_class="churn")
    assert one_class["roc_auc"].value is None and "only one class" in one_class["roc_auc"].reason
    assert one_class["accuracy"].value == pytest.approx(5 / 6)
    no_positive = classifier_metrics(["stay"] * 3, ["stay"] * 3, None, positive_class="churn")
    assert no_positive["f1"].value is None and "neither observed nor predicted" in no_positive["f1"].reason
    assert no_positive["roc_auc"].value is None and "no probability" in no_positive["roc_auc"].reason
    zeros, skipped = regressor_metrics([0.0, 0.0], [1.0, 2.0])
    assert zeros["mape"].value is None and "zero" in zeros["mape"].reason and skipped == 2 and zeros["mae"].value == 1.5
    empty = classifier_metrics([], [])
    assert all(m.value is None and m.reason == "no labelled predictions" for m in empty.values())
    assert feedback_metrics([0, 0, None])["thumbs_down_rate"].reason.startswith("no thumbs up/down feedback")


def test_no_labels_gives_insufficient_labels_and_json_without_nan():
    frame = classifier_frame([0.1, 0.1], rows_per_day=200, seed=1)
    frame["label"] = None
    report = analyze_concept_drift(frame, "classifier", positive_class="churn")
    d = report.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["verdict"] == "insufficient_labels" and d["reason"].startswith("0 labelled predictions")
    assert d["detections"] == [] and d["counts"]["evaluated"] == 0 and d["counts"]["rows"] == 400
    assert len(d["windows"]) == 2
    for w in d["windows"]:
        assert w["accuracy"] is None and w["abstentions"]["accuracy"] == "no labelled predictions"
        assert w["label_coverage"] == 0.0
    assert d["calibration"]["ece"] is None and d["calibration"]["reason"]


def test_one_class_day_abstains_auc_in_that_window_only():
    frame = classifier_frame([0.1, 0.1], rows_per_day=300, seed=2)
    day1 = frame["timestamp"] >= datetime(2026, 11, 3, tzinfo=UTC)
    frame.loc[day1, "label"] = "stay"
    windows = window_metrics(frame, "classifier", positive_class="churn")
    assert [w["window"] for w in windows] == ["2026-11-02", "2026-11-03"]
    assert windows[0]["roc_auc"] is not None and "roc_auc" not in windows[0]["abstentions"]
    assert windows[1]["roc_auc"] is None and "only one class" in windows[1]["abstentions"]["roc_auc"]


def test_insufficient_labels_below_min_labels():
    frame = classifier_frame([0.1], rows_per_day=300, seed=4)
    frame.loc[frame.index[50:], "label"] = None
    report = analyze_concept_drift(frame, "classifier", positive_class="churn", min_labels=100)
    assert report.verdict == "insufficient_labels" and "50 labelled predictions (< min_labels 100)" in report.reason
    assert report.counts["coverage"] == pytest.approx(50 / 300)


# --------------------------------------------------------------------------- calibration


def test_ece_matches_numpy_and_reliability_table_matches_calibration_curve():
    rng = np.random.default_rng(11)
    p = rng.beta(2, 2, 3000)
    p[:40] = np.repeat([0.0, 0.3, 0.5, 1.0], 10)  # values on bin edges
    y = (rng.random(3000) < p**1.5).astype(float)  # over-confident: true rate below p
    cal = calibration(y, p, n_bins=10)

    # Direct computation with the bins written out: [0, .1], (.1, .2], ..., (.9, 1].
    ece, gaps = 0.0, []
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        in_bin = (p >= lo) & (p <= hi) if b == 0 else (p > lo) & (p <= hi)
        if in_bin.any():
            gap = abs(y[in_bin].mean() - p[in_bin].mean())
            ece += in_bin.sum() / len(p) * gap
            gaps.append(gap)
        assert cal.bins[b].count == int(in_bin.sum())
    assert cal.ece == pytest.approx(ece) and cal.mce == pytest.approx(max(gaps))
    assert cal.ece > 0.02  # the miscalibration is visible

    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    reported = [b for b in cal.bins if b.count]
    assert len(reported) == len(prob_true)
    assert [b.observed_frequency for b in reported] == pytest.approx(list(prob_true))
    assert [b.mean_confidence for b in reported] == pytest.approx(list(prob_pred))


def test_calibrated_probabilities_have_small_ece_and_empty_bins_are_null():
    rng = np.random.default_rng(12)
    p = rng.uniform(0.0, 0.6, 20_000)
    y = (rng.random(20_000) < p).astype(float)
    cal = calibration(y, p, n_bins=10)
    assert cal.ece < 0.02
    assert [b.count for b in cal.bins[6:]] == [0, 0, 0, 0] and cal.bins[9].mean_confidence is None


def test_positive_class_probability_from_class_map_and_from_bare_confidence():
    frame = pd.DataFrame(
        {
            "timestamp": ["2026-11-02T10:00:00Z", "2026-11-02T10:00:01Z", "2026-11-02T10:00:02Z"],
            "prediction": ["churn", "stay", "stay"],
            "probability": [0.8, 0.7, json.dumps({"churn": 0.45, "stay": 0.55})],
            "label": ["churn", "churn", "stay"],
        }
    )
    prepared, _ = prepare(frame, "classifier", positive_class="churn")
    assert prepared["p_pos"].tolist() == pytest.approx([0.8, 0.3, 0.45])
    assert prepared["confidence"].tolist() == pytest.approx([0.8, 0.7, 0.55])
    top_label, _ = prepare(frame, "classifier")
    assert top_label["p_pos"].isna().all()  # no positive class: nothing to map a bare number onto


# --------------------------------------------------------------------------- change detection


def test_adwin_detects_a_jump_after_it_and_soon():
    delays = []
    for seed in range(1000, 1010):
        stream = bernoulli_stream(seed, [(CHANGE_AT, 0.1), (STREAM_LENGTH - CHANGE_AT, 0.3)])
        found = detect_changes(stream, detector="adwin", delta=DELTA)
        assert found, f"seed {seed}: no detection"
        first = found[0]
        assert CHANGE_AT <= first.position <= CHANGE_AT + 500, f"seed {seed}: detected at {first.position}"
        assert first.mean_before < 0.2 < first.mean_after and first.direction == "worse"
        assert first.n_before + first.n_after <= STREAM_LENGTH
        delays.append(first.position - CHANGE_AT)
        # Same positions as driving river.drift.ADWIN by hand (update(x), then drift_detected).
        adwin, by_hand = ADWIN(delta=DELTA), []
        for i, x in enumerate(stream):
            adwin.update(float(x))
            if adwin.drift_detected:
                by_hand.append(i)
        assert [d.position for d in found] == by_hand
    assert np.median(delays) < 300


def test_adwin_stays_quiet_on_a_stationary_stream_in_most_seeds():
    alarms = sum(bool(detect_changes(bernoulli_stream(seed, [(STREAM_LENGTH, 0.1)]), delta=DELTA)) for seed in range(50))
    assert alarms <= 5  # >= 90% of 50 seeds without a detection


def test_page_hinkley_option_detects_the_jump_and_not_the_stationary_stream():
    jump = detect_changes(bernoulli_stream(1000, [(CHANGE_AT, 0.1), (STREAM_LENGTH - CHANGE_AT, 0.3)]), detector="page_hinkley", threshold=50.0)
    assert jump and CHANGE_AT <= jump[0].position <= CHANGE_AT + 600
    quiet = sum(bool(detect_changes(bernoulli_stream(s, [(STREAM_LENGTH, 0.1)]), detector="page_hinkley", threshold=50.0)) for s in range(20))
    assert quiet <= 2


def test_detection_is_reported_with_row_timestamp_and_day():
    frame = classifier_frame([0.1, 0.1, 0.35, 0.35], rows_per_day=1000, seed=7)
    frame.index = frame.index + 10_000  # detections name the frame's own index labels
    report = analyze_concept_drift(frame, "classifier", positive_class="churn", delta=DELTA)
    assert report.verdict == "drift" and "ADWIN" in report.reason
    first = report.detections[0]
    assert first.day == "2026-11-04"
    row = frame.loc[first.row]
    assert pd.Timestamp(row["timestamp"]).isoformat() == first.timestamp
    assert first.mean_before < 0.2 < first.mean_after
    stable = analyze_concept_drift(classifier_frame([0.1] * 4, rows_per_day=1000, seed=7), "classifier", positive_class="churn", delta=DELTA)
    assert stable.verdict == "stable" and stable.detections == [] and "no change" in stable.reason


def test_per_day_metrics_equal_sklearn_on_each_day():
    frame = classifier_frame([0.1, 0.25, 0.4], rows_per_day=400, seed=8)
    report = analyze_concept_drift(frame, "classifier", positive_class="churn")
    assert [w["window"] for w in report.windows] == ["2026-11-02", "2026-11-03", "2026-11-04"]
    days = pd.to_datetime(frame["timestamp"]).dt.strftime("%Y-%m-%d")
    for w in report.windows:
        day = frame[days == w["window"]]
        p = day["class_probabilities"].map(lambda s: json.loads(s)["churn"])
        assert w["accuracy"] == pytest.approx(accuracy_score(day["label"], day["prediction"]))
        assert w["f1"] == pytest.approx(f1_score(day["label"], day["prediction"], pos_label="churn"))
        assert w["roc_auc"] == pytest.approx(roc_auc_score(day["label"] == "churn", p))
        assert w["evaluated"] == w["rows"] == 400
    assert report.windows[0]["accuracy"] > report.windows[2]["accuracy"] + 0.2


def test_rows_windows_hold_n_evaluated_rows_and_account_for_every_row():
    frame = classifier_frame([0.1, 0.1], rows_per_day=500, seed=9)
    frame.loc[frame.index[::3], "label"] = None
    windows = window_metrics(frame, "classifier", positive_class="churn", window="rows:200")
    evaluated = int(frame["label"].notna().sum())
    assert [w["evaluated"] for w in windows[:-1]] == [200] * (len(windows) - 1)
    assert sum(w["evaluated"] for w in windows) == evaluated and sum(w["rows"] for w in windows) == 1000
    assert 0 < windows[-1]["evaluated"] <= 200
    assert parse_window(50) == ("rows", 50)
    with pytest.raises(ValueError):
        parse_window("rows:0")


def test_regressor_and_feedback_streams():
    rng = np.random.default_rng(21)
    n = 3000
    ts = pd.date_range("2026-11-02", periods=n, freq="85s", tz="UTC")
    y = rng.gamma(3, 10, n)
    noise = np.where(np.arange(n) < 1500, 2.0, 8.0)
    reg = pd.DataFrame({"timestamp": ts, "prediction": [repr(float(v)) for v in y + rng.normal(0, noise)], "label": y})
    report = analyze_concept_drift(reg, "regressor")
    assert report.verdict == "drift" and report.detections[0].position >= 1500
    day = report.windows[0]
    first = reg[ts.strftime("%Y-%m-%d") == day["window"]]
    assert day["mae"] == pytest.approx(mean_absolute_error(first["label"], first["prediction"].astype(float)))

    fb = np.where(rng.random(n) < 0.7, 0, np.where(rng.random(n) < np.where(np.arange(n) < 1500, 0.1, 0.4), -1, 1))
    llm = pd.DataFrame({"timestamp": ts, "feedback": fb})
    report = analyze_concept_drift(llm, "llm")
    assert report.verdict == "drift" and report.loss == "thumbs-down indicator"
    given = fb != 0
    assert report.overall["thumbs_down_rate"] == pytest.approx((fb == -1).sum() / given.sum())
    assert report.overall["feedback_coverage"] == pytest.approx(given.mean())
    assert report.counts["evaluated"] == int(given.sum())
    assert report.detections[0].timestamp >= ts[1500].isoformat()


def test_per_variant_breakdown():
    frame = pd.concat([classifier_frame([0.1, 0.1, 0.1], seed=30, variant="control"), classifier_frame([0.1, 0.1, 0.35], seed=31, variant="treatment")], ignore_index=True)
    report = analyze_concept_drift(frame, "classifier", positive_class="churn", by_variant=True)
    assert set(report.variants) == {"control", "treatment"}
    assert report.variants["control"].verdict == "stable" and report.variants["treatment"].verdict == "drift"
    assert report.variants["treatment"].detections[0].day == "2026-11-04"
    assert report.variants["control"].counts["rows"] + report.variants["treatment"].counts["rows"] == report.counts["rows"]
    json.dumps(report.to_dict(), allow_nan=False)


# --------------------------------------------------------------------------- joining


def test_join_accounts_for_every_prediction_and_label():
    predictions = pd.DataFrame({"request_id": ["a", "b", "c", "d", "d", None], "prediction": ["x", "y", "x", "y", "y", "x"], "feedback": [0, 1, None, 0, 0, 0]},
                               index=[10, 11, 12, 13, 14, 15])
    labels = pd.DataFrame(
        {
            "request_id": ["a", "a", "b", "d", "e", "a", "f", None],
            "label": ["old", "newest", "y", "y", "orphan", "middle", "orphan2", "no-id"],
            "feedback": [None, None, -1, None, None, None, None, None],
            "labelled_at": ["2026-11-09T00:00:00Z", "2026-11-11T00:00:00Z", "2026-11-09T00:00:00Z", None, "2026-11-09T00:00:00Z",
                            "2026-11-10T00:00:00Z", None, None],
        }
    )
    j = join_labels(predictions, labels)
    j.check()
    assert j.counts() == {"predictions_in": 6, "labels_in": 8, "matched": 4, "predictions_without_label": 2, "labels_kept": 6,
                          "labels_matched": 3, "labels_without_prediction": 3, "duplicate_labels": 2, "duplicate_predictions": 1}
    assert list(j.frame.index) == [10, 11, 12, 13, 14, 15] and list(j.frame["request_id"][:5]) == ["a", "b", "c", "d", "d"]
    assert j.frame.loc[10, "label"] == "newest"  # latest labelled_at wins over input order
    assert j.frame.loc[11, "feedback"] == -1 and j.frame.loc[10, "feedback"] == 0  # label feedback overrides where set
    assert j.frame["_labelled"].tolist() == [True, True, False, True, True, False]
    assert sorted(j.orphan_labels["label"]) == ["no-id", "orphan", "orphan2"]
    assert len(j.matched_frame) == 4


# --------------------------------------------------------------------------- reading from S3


def test_read_labels_from_s3_reports_bad_lines_and_missing_days_then_joins(s3):
    bucket = f"labels-{uuid.uuid4().hex[:10]}"
    ensure_bucket(s3, bucket)
    base = f"s3://{bucket}/labels"
    model = "churn-classifier-v2"
    days = [date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 4)]
    rows0, labels0 = classifier_day(model, days[0], 300, 5, Scenario())
    rows1, labels1 = classifier_day(model, days[1], 300, 5, Scenario())
    put_bytes(s3, f"{base}/model_id={model}/dt=2026-11-02/labels.jsonl", jsonl_bytes(labels0, gz=False))
    bad = [b'{"request_id": "x-1", "label": "churn"', b'{"request_id": "x-2", "label": "stay", "feedback": 5}', b'{"label": "stay"}', b"[1, 2]"]
    body = jsonl_bytes(labels1[:150], gz=False) + b"\n".join(bad) + b"\n" + jsonl_bytes(labels1[150:], gz=False)
    gz_uri = put_bytes(s3, f"{base}/model_id={model}/dt=2026-11-03/labels.jsonl.gz", gzip.compress(body))
    put_bytes(s3, f"{base}/model_id={model}/dt=2026-11-03/_SUCCESS", b"")
    numeric = [{"request_id": "r-num", "label": 3.5, "labelled_at": "2026-11-09T00:00:00Z"}, {"request_id": "r-fb", "label": None, "feedback": -1}]
    put_bytes(s3, f"{base}/model_id=other-model/dt=2026-11-02/labels.jsonl", jsonl_bytes(numeric, gz=False))

    read = read_labels(s3, base, model, days)
    assert read.rows == 600 and read.lines_read == 604
    assert read.days_with_labels == days[:2] and read.days_without_labels == [days[2]]
    assert read.skipped_files == [f"{base}/model_id={model}/dt=2026-11-03/_SUCCESS"]
    assert [(p.source, p.line) for p in read.problems] == [(gz_uri, 151), (gz_uri, 152), (gz_uri, 153), (gz_uri, 154)]
    reasons = [p.reason for p in read.problems]
    assert "not valid JSON" in reasons[0] and "feedback" in reasons[1] and "request_id" in reasons[2] and "JSON object" in reasons[3]
    assert read.table.schema.field("labelled_at").type.tz == "UTC"
    json.dumps(read.to_dict())

    other = read_labels(s3, base, "other-model", [date(2026, 11, 2)]).table.to_pylist()
    assert other[0]["label"] == "3.5" and other[0]["label_value"] == 3.5
    assert other[1]["label"] is None and other[1]["feedback"] == -1

    predictions, _ = assemble([read_file(parquet_bytes(rows0), "s3://b/0.parquet"), read_file(parquet_bytes(rows1), "s3://b/1.parquet")])
    joined = join_labels(predictions.to_pandas(), read.table.to_pandas())
    joined.check()
    assert joined.matched == 600 and joined.labels_without_prediction == 0
    report = analyze_concept_drift(joined.frame, "classifier", positive_class="churn")
    assert [w["window"] for w in report.windows] == ["2026-11-02", "2026-11-03"]
    truth = {r["request_id"]: r["label"] for r in labels0 + labels1}
    for w, rows in zip(report.windows, (rows0, rows1), strict=True):
        y = [truth[r["request_id"]] for r in rows]
        assert w["accuracy"] == pytest.approx(accuracy_score(y, [r["prediction"] for r in rows]))
        assert w["roc_auc"] == pytest.approx(roc_auc_score([v == "churn" for v in y], [r["probability"]["churn"] for r in rows]))


def test_a_label_line_nested_too_deeply_is_a_problem_with_its_line_not_a_crash():
    from modelwatch.ingest.labels import parse_label_lines

    deep = "[" * 5000 + "]" * 5000
    good = '{"request_id": "r1", "label": 1, "labelled_at": "2026-11-03T00:00:00Z"}'
    rows, problems, read = parse_label_lines(f"{good}\n{deep}\n".encode(), "labels.jsonl")
    assert [p.line for p in problems] == [2] and "nested too deeply" in problems[0].reason
    assert len(rows) == 1 and read == 2


def _labels(prefix: str, n: int) -> bytes:
    return b"".join(json.dumps({"request_id": f"{prefix}{i}", "label": "churn"}).encode() + b"\n" for i in range(n))


def _gzip_then(first: bytes, rest: bytes, tail: bytes = b"") -> bytes:
    """``first`` gzipped and fully flushed (decodable), then ``rest`` compressed and cut at a third, then ``tail``."""
    import zlib

    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = comp.compress(first) + comp.flush(zlib.Z_FULL_FLUSH)
    body = comp.compress(rest) + comp.flush()
    return head + body[: len(body) // 3] + tail


def test_a_corrupt_label_gzip_keeps_the_lines_before_the_damage_with_the_log_readers_file_problem():
    from modelwatch.ingest.labels import parse_label_lines
    from modelwatch.ingest.readers import open_file

    source = "s3://b/labels/model_id=m/dt=2026-11-03/labels.jsonl.gz"
    data = _gzip_then(_labels("r", 5), b"", b"\xff\x00garbage" * 10)
    rows, problems, lines = parse_label_lines(data, source)
    assert [r["request_id"] for r in rows] == [f"r{i}" for i in range(5)] and lines == 5
    assert [(p.source, p.line) for p in problems] == [(source, None)]
    assert problems[0].reason == open_file(data, source).problem  # one decoder, one message for logs and labels
    assert problems[0].reason.startswith(f"{source}: gzip data is corrupt (") and "5 complete lines decoded before the damage" in problems[0].reason


def test_a_label_gzip_cut_short_reports_the_partial_line_as_cut_not_as_bad_json():
    from modelwatch.ingest.labels import parse_label_lines

    data = _gzip_then(_labels("r", 4) + b'{"request_id": "s0", "lab', b"")  # the stream stops inside line 5
    rows, problems, lines = parse_label_lines(data, "labels.jsonl.gz")
    assert len(rows) == 4 and lines == 5
    assert [(p.line, p.reason) for p in problems[1:]] == [(5, "line cut off by the damaged gzip stream")]
    assert "4 complete lines decoded before the cut" in problems[0].reason and "lost at the source" in problems[0].reason
