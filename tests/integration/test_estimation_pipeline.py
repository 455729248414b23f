"""Performance estimation over the real S3 server: the baseline's calibrator, the estimated drop on the shift day, the closed loop."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from modelwatch.baseline.build import build_baseline
from modelwatch.core.partition import Partition
from modelwatch.runner import concept, extract, publish, validate
from modelwatch.runtime.generate import ExperimentPlan, Scenario, classifier_day, generate_traffic
from modelwatch.storage.s3 import exists, get_json

START = date(2026, 11, 1)
SHIFT = date(2026, 11, 8)
DAYS = 12
MODEL = "churn-classifier-v2"


@pytest.fixture(scope="module")
def world(s3_server):
    """Twelve days of churn-classifier traffic; from Nov 8 a sign-up campaign shifts the inputs; labels arrive 7 days late."""
    from conftest import bundled_config_data, scoped_config
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    data = bundled_config_data("estimation")
    data["models"] = [m for m in data["models"] if m["id"] == MODEL]
    cfg = scoped_config(client, "estimation", data)
    aa = cfg.model(MODEL).experiments[0]
    generate_traffic(client, cfg.defaults.logs_uri, cfg.defaults.labels_uri, START, DAYS, llm_model=None, classic_rows=1500,
                     scenario=Scenario(classic_shift_from=SHIFT), classic_plan=ExperimentPlan(aa.id, aa.weights()))
    manifest = build_baseline(client, cfg, MODEL, START, START + timedelta(2), progress=lambda _: None)
    for offset in range(DAYS):
        validate(client, cfg, extract(client, cfg, Partition(MODEL, START + timedelta(offset))))
    return client, cfg, manifest


def _concept(client, cfg, day: date) -> dict:
    return concept(client, cfg, {"partition": Partition(MODEL, day).to_dict()})


def _metric(rows: list[dict], name: str) -> dict:
    return next(r for r in rows if r["metric"] == name)


def test_the_baseline_stores_the_calibrator_before_its_manifest(world):
    client, cfg, manifest = world
    entry = manifest["estimation"]
    assert entry["outcome"] == "ok" and entry["calibration"] == "isotonic" and entry["chunks"] >= 4
    artefact = get_json(client, entry["uri"])
    assert artefact["calibrator"]["classes"] == ["churn", "stay"] and list(artefact["calibrator"]["maps"]) == ["churn"]
    assert artefact["reference_rows"] == entry["labelled_rows"] <= entry["rows_seen"] and exists(client, entry["reference_uri"])
    assert get_json(client, f"{manifest['uri']}/manifest.json")["estimation"] == entry


def test_estimated_drop_on_the_shift_day_before_any_label(world):
    client, cfg, _ = world
    clean, shifted = _concept(client, cfg, SHIFT - timedelta(1)), _concept(client, cfg, SHIFT)
    before, after = clean["estimation"], shifted["estimation"]
    assert before["outcome"] == after["outcome"] == "ok" and after["method"] == "cbpe"
    acc_before, acc_after = _metric(before["metrics"], "accuracy"), _metric(after["metrics"], "accuracy")
    assert not acc_before["alert"]
    assert acc_after["alert"] and acc_after["direction"] == "worse" and "accuracy" in after["alerts"]
    assert acc_after["estimate"] < acc_before["estimate"] - 0.08
    assert after["history"][-1]["day"] == SHIFT.isoformat() and after["history"][-1]["realised"] is None  # labels come a week later
    assert after["latest_realised"] is None or after["latest_realised"]["day"] < (SHIFT - timedelta(6)).isoformat()
    stored = get_json(client, after["estimation_uri"])
    assert stored["day"] == SHIFT.isoformat() and {s["segment"] for s in stored["segments"]} == {"metadata.region", "features.plan"}
    assert get_json(client, shifted["concept_uri"])["estimation_uri"] == after["estimation_uri"]


def test_realised_accuracy_joins_the_estimate_when_labels_arrive(world):
    client, cfg, _ = world
    later = _concept(client, cfg, SHIFT + timedelta(7))["estimation"]  # Nov 15: the shift day's labels have arrived
    shift_day = next(h for h in later["history"] if h["day"] == SHIFT.isoformat())
    rows, labels = classifier_day(MODEL, SHIFT, 1500, 7, Scenario(classic_shift_from=SHIFT))
    assert shift_day["labelled"] == shift_day["rows"] and shift_day["realised"] is not None
    assert shift_day["gap_limit"] > 0 and abs(shift_day["gap"]) <= shift_day["gap_limit"] and not shift_day["gap_alert"]
    clean_day = next(h for h in later["history"] if h["day"] == (SHIFT - timedelta(1)).isoformat())
    assert shift_day["realised"] < clean_day["realised"] - 0.05  # the estimated drop was real
    assert later["latest_realised"]["day"] == SHIFT.isoformat() and not later["gap_alert"]
    assert len(rows) == len(labels)


def test_publish_carries_the_block_and_its_metrics(world):
    from modelwatch.observe.prom_metrics import summary_metrics
    from modelwatch.publish.estimation_section import render_estimation_section
    from prometheus_client import CollectorRegistry

    client, cfg, _ = world
    partition = Partition(MODEL, SHIFT)
    extracted = extract(client, cfg, partition)
    concepted = _concept(client, cfg, SHIFT)
    out = publish(client, cfg, extracted, None, None, {"run_id": "test"}, concepted=concepted)
    summary = get_json(client, out["summary_uri"])
    est = summary["concept"]["estimation"]
    assert est["alerts"] and est["method"] == "cbpe"
    html = render_estimation_section(summary["concept"])
    assert "Estimated performance" in html and "isotonic" in html and "calibration" in html.lower()
    samples = {(s.name, s.labels.get("metric")): s.value for f in summary_metrics(summary, CollectorRegistry()).collect() for s in f.samples}
    assert samples[("modelwatch_performance_estimate", "accuracy")] == pytest.approx(_metric(est["metrics"], "accuracy")["estimate"])
    assert samples[("modelwatch_performance_estimate_alert", "accuracy")] == 1
