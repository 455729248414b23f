"""Baseline and drift stages over the real S3 server: a clean day raises nothing, a drifted day is caught where it starts."""

from __future__ import annotations

from datetime import date

import pytest
from modelwatch.baseline.build import build_baseline
from modelwatch.baseline.store import BaselineMissing, load_baseline
from modelwatch.core.partition import Partition
from modelwatch.runner import drift, extract, validate
from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic
from modelwatch.storage.s3 import get_json

START = date(2026, 11, 1)
DRIFT_DAY = date(2026, 11, 5)


@pytest.fixture(scope="module")
def world(s3_server, tmp_path_factory):
    """Six days of traffic; from day 5 the de-DE locale drifts (new topic, longer prompts); baselines from days 1-3."""
    from conftest import bundled_config_data, scoped_config
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    data = bundled_config_data("drift")
    for model in data["models"]:
        model.setdefault("drift", {}).update(embedding_sample=300, permutations=200)
    cfg = scoped_config(client, "drift", data)
    llm = cfg.model("support-bot-v3")
    generate_traffic(client, cfg.defaults.logs_uri, cfg.defaults.labels_uri, START, 6, llm_rows=2500, classic_rows=1500,
                     scenario=Scenario(drift_from=DRIFT_DAY, drift_locale="de-DE"), plan=ExperimentPlan("exp-042", llm.experiments[0].weights()))
    return client, cfg


def _drift_of(client, cfg, model_id: str, day: date) -> dict:
    return drift(client, cfg, validate(client, cfg, extract(client, cfg, Partition(model_id, day))))


def test_missing_baseline_says_how_to_build_it(world):
    client, cfg = world
    with pytest.raises(BaselineMissing, match="modelwatch_baseline"):
        load_baseline(client, cfg, cfg.model("churn-classifier-v2"))


def test_baseline_artifact(world):
    client, cfg = world
    manifest = build_baseline(client, cfg, "churn-classifier-v2", START, date(2026, 11, 3), progress=lambda _: None)
    assert manifest["version"] == "2026-11-01_2026-11-03"
    assert manifest["rows_used"] == 3 * 1500 and manifest["reference_rows"] == 3 * 1500  # under the sample cap: every row
    profiles = get_json(client, f"{manifest['uri']}/profiles.json")
    assert profiles["features.tenure_months"]["kind"] == "numerical" and profiles["features.tenure_months"]["count"] == 4500
    assert profiles["features.plan"]["kind"] == "categorical" and sum(profiles["features.plan"]["frequent"].values()) == 4500
    baseline = load_baseline(client, cfg, cfg.model("churn-classifier-v2"))
    assert len(baseline.reference) == 4500 and baseline.kinds["prediction.class"] == "categorical"


def test_clean_day_raises_no_alarm_and_drift_day_is_caught_in_its_segment(world):
    from modelwatch.embeddings import EmbeddingCache

    client, cfg = world
    cache = EmbeddingCache(client, cfg.defaults.reports_uri, backend=cfg.defaults.embedding_backend)
    manifest = build_baseline(client, cfg, "support-bot-v3", START, date(2026, 11, 3), progress=lambda _: None,
                              embed_texts=cache)
    assert manifest["embeddings"] == {"prompt": 300, "response": 300}
    clean = _drift_of(client, cfg, "support-bot-v3", date(2026, 11, 4))
    drifted = _drift_of(client, cfg, "support-bot-v3", DRIFT_DAY)
    assert clean["outcome"] == "ok" and clean["severity"] == "none", clean["alerts"]
    assert drifted["severity"] in ("medium", "high")

    report = get_json(client, drifted["drift_uri"])
    locale = next(f for f in report["segments"] if f["segment"] == "metadata.locale")
    by_value = {s["value"]: s for s in locale["segments"]}
    assert {"metadata.topic", "input.prompt_tokens"} <= set(by_value["de-DE"]["drifted"]) and by_value["de-DE"]["severity"] == "high"
    assert all(not by_value[v]["drifted"] for v in by_value if v != "de-DE"), {v: s["drifted"] for v, s in by_value.items()}
    for small in locale["skipped"]:  # es-ES (8% of traffic) stays under the 200-row minimum on the current side
        assert min(small["n_reference"], small["n_current"]) < 200 and small["value"] not in by_value

    clean_report = get_json(client, clean["drift_uri"])
    for check in clean_report["embedding"]:  # a day like the baseline: the MMD permutation test ran and did not fire
        assert check["p_value"] is not None and not check["drift"], check
    assert report["report"]["uri"].endswith("report.html") and report["report"]["rows"]["current"] > 0
    # embedding drift per segment: the new topic's prompts are named in their locale, and a clean day flags no segment
    prompts = {e["segment"]: e for e in report["segment_embedding"] if e["column"] == "prompt"}
    assert prompts["metadata.locale=de-DE"]["drift"] and prompts["metadata.locale=de-DE"]["p_adjusted"] < 0.05, prompts
    assert any(a["family"] == "segment embedding" and a["segment"] == "metadata.locale=de-DE" for a in report["alerts"])
    assert clean_report["segment_embedding"] and not [e for e in clean_report["segment_embedding"] if e["drift"]]


def test_concept_drift_counts_only_labels_that_had_arrived(world):
    from modelwatch.runner import concept

    client, cfg = world
    for day in (1, 2, 3, 4, 5, 6):
        validate(client, cfg, extract(client, cfg, Partition("churn-classifier-v2", date(2026, 11, day))))
    early = concept(client, cfg, {"partition": Partition("churn-classifier-v2", date(2026, 11, 6)).to_dict()})
    report = get_json(client, early["concept_uri"])
    # labels arrive 7 days after the request: on Nov 6 none of them is known yet
    assert early["verdict"] == "insufficient_labels" and report["labels"]["not_yet_arrived"] == 6 * 1500
    assert report["labels"]["join"]["predictions_in"] == 6 * 1500 and report["days"][-1] == "2026-11-06"
    later = concept(client, cfg, {"partition": Partition("churn-classifier-v2", date(2026, 11, 13)).to_dict()})
    report = get_json(client, later["concept_uri"])
    assert later["evaluated"] == 6 * 1500 and report["labels"]["not_yet_arrived"] == 0
    assert [w["window"] for w in report["windows"]] == [f"2026-11-0{d}" for d in range(1, 7)]
    assert report["calibration"]["ece"] is not None and report["overall"]["roc_auc"] > 0.6


def test_embedding_family_is_corrected_like_the_others():
    from modelwatch.drift.stage import _decide_embedding_family

    checks = _decide_embedding_family([{"column": "prompt", "p_value": 0.025}, {"column": "response", "p_value": 0.09},
                                       {"column": "reference", "p_value": None, "reason": "too few rows"}], alpha=0.05)
    assert [c["p_adjusted"] for c in checks[:2]] == pytest.approx([0.05, 0.09])
    assert [c["drift"] for c in checks[:2]] == [False, False] and checks[2]["severity"] == "none"
    [single] = _decide_embedding_family([{"column": "prompt", "p_value": 0.001}], alpha=0.05)
    assert single["drift"] and single["severity"] == "medium"
