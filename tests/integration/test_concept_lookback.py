"""The concept stage's streamed look-back: with few rows kept (defaults.summary_sample_rows small) the rows without a label are
counted instead of held, and the verdict, counts, coverage and windows equal those of the exact path; estimation reads a
day's bottom-k sample and says so."""

from __future__ import annotations

from datetime import date, timedelta

from modelwatch.baseline.build import build_baseline
from modelwatch.core.partition import Partition
from modelwatch.runner import concept, extract, validate
from modelwatch.runtime.generate import ExperimentPlan, generate_traffic
from modelwatch.storage.s3 import exists, get_json

START = date(2026, 11, 1)
DAYS = 9
MODEL = "churn-classifier-v2"


def test_a_counted_lookback_reports_what_the_exact_one_does(s3):
    from conftest import bundled_config_data, scoped_config

    data = bundled_config_data("lookback")
    data["models"] = [m for m in data["models"] if m["id"] == MODEL]
    cfg = scoped_config(s3, "lookback", data)
    generate_traffic(s3, cfg.defaults.logs_uri, cfg.defaults.labels_uri, START, DAYS, llm_model=None, classic_rows=800)
    build_baseline(s3, cfg, MODEL, START, START + timedelta(2), progress=lambda _: None)
    for offset in range(DAYS):
        validate(s3, cfg, extract(s3, cfg, Partition(MODEL, START + timedelta(offset))))
    day = START + timedelta(DAYS - 1)
    exact = concept(s3, cfg, {"partition": Partition(MODEL, day).to_dict()})
    exact_report = get_json(s3, exact["concept_uri"])

    counted_cfg = cfg.model_copy(update={"defaults": cfg.defaults.model_copy(update={"summary_sample_rows": 300})})
    counted = concept(s3, counted_cfg, {"partition": Partition(MODEL, day).to_dict()})
    counted_report = get_json(s3, counted["concept_uri"])

    assert counted_report["labels"]["rows_counted_not_kept"] > 0 and exact_report["labels"]["rows_counted_not_kept"] == 0
    assert counted_report["labels"]["join"] == exact_report["labels"]["join"]
    for key in ("verdict", "reason", "counts", "detections", "calibration"):
        assert counted_report[key] == exact_report[key], key
    assert [{k: w[k] for k in ("window", "rows", "evaluated", "label_coverage", "first_timestamp", "last_timestamp")} for w in counted_report["windows"]] \
        == [{k: w[k] for k in ("window", "rows", "evaluated", "label_coverage", "first_timestamp", "last_timestamp")} for w in exact_report["windows"]]
    assert counted_report["overall"]["label_coverage"] == exact_report["overall"]["label_coverage"]
    sampled = counted["estimation"]["sampled_days"]
    assert sampled and all(v["rows"] > v["sampled"] == 300 for v in sampled.values()) and not exact["estimation"]["sampled_days"]
    assert counted["estimation"]["rows"] <= 300 < exact["estimation"]["rows"]


def test_a_counted_lookback_gives_an_llm_the_same_feedback_rates_and_arm_moments(s3):
    from conftest import bundled_config_data, scoped_config
    from modelwatch.storage.keys import experiment_feedback_uri

    llm = "support-bot-v3"
    data = bundled_config_data("lookback-llm")
    data["models"] = [m for m in data["models"] if m["id"] == llm]
    cfg = scoped_config(s3, "lookback-llm", data)
    days, exp = 3, cfg.model(llm).experiments[0]
    start = date.fromisoformat(exp.start)  # the experiment's days, so the arms' moments are written
    generate_traffic(s3, cfg.defaults.logs_uri, cfg.defaults.labels_uri, start, days, llm_model=llm, classic_model=None, llm_rows=900,
                     plan=ExperimentPlan(exp.id, exp.weights()))
    for offset in range(days):
        validate(s3, cfg, extract(s3, cfg, Partition(llm, start + timedelta(offset))))
    day = start + timedelta(days - 1)
    model = cfg.model(llm)
    feedback_uris = [experiment_feedback_uri(cfg.defaults.reports_uri, llm, exp.id, (start + timedelta(o)).isoformat())
                     for exp in model.experiments for o in range(days)]

    def run(config):
        result = concept(s3, config, {"partition": Partition(llm, day).to_dict()})
        moments = {uri: get_json(s3, uri) for uri in feedback_uris if exists(s3, uri)}
        return get_json(s3, result["concept_uri"]), moments

    exact, exact_moments = run(cfg)
    counted, counted_moments = run(cfg.model_copy(update={"defaults": cfg.defaults.model_copy(update={"summary_sample_rows": 200})}))

    assert counted["labels"]["rows_counted_not_kept"] > 0 and exact["labels"]["rows_counted_not_kept"] == 0
    assert counted["labels"]["join"] == exact["labels"]["join"]
    assert counted["feedback"] == exact["feedback"]
    for key in ("verdict", "counts"):
        assert counted[key] == exact[key], key
    assert exact_moments and counted_moments == exact_moments
