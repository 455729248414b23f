"""The judge stage over the real S3 server with the offline judge: a toxic burst shows in the judge metrics, with intervals."""

from __future__ import annotations

import json
from datetime import date

import pytest
from modelwatch.core.partition import Partition
from modelwatch.runner import extract, judge, validate
from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic
from modelwatch.storage.s3 import get_json, get_table

CLEAN, TOXIC = date(2026, 11, 6), date(2026, 11, 7)


@pytest.fixture(scope="module")
def world(s3_server):
    from conftest import bundled_config_data, scoped_config
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    data = bundled_config_data("judge")
    data["models"][0]["judge"].update(max_samples=240, review_sample=12)
    cfg = scoped_config(client, "judge", data)
    exp = cfg.model("support-bot-v3").experiments[0]
    generate_traffic(client, cfg.defaults.logs_uri, cfg.defaults.labels_uri, CLEAN, 2, classic_model=None, llm_rows=1500,
                     scenario=Scenario(toxic_burst_on=TOXIC, shadow_share=0.05), plan=ExperimentPlan(exp.id, exp.weights()))
    out = {}
    for day in (CLEAN, TOXIC):
        validated = validate(client, cfg, extract(client, cfg, Partition("support-bot-v3", day)))
        out[day] = (validated, judge(client, cfg, validated))
    return client, cfg, out


def test_toxic_burst_shows_in_the_judge_metrics(world):
    _, _, out = world
    clean, toxic = out[CLEAN][1], out[TOXIC][1]
    assert clean["outcome"] == toxic["outcome"] == "ok"
    tox_clean, tox_day = clean["overall"]["judge.toxicity_rate"], toxic["overall"]["judge.toxicity_rate"]
    assert tox_day["estimate"] > tox_clean["estimate"] and tox_day["ci_low"] > tox_clean["ci_high"], (tox_clean, tox_day)
    assert set(toxic["by_variant"]) == {"control", "treatment", "shadow"}
    assert toxic["sampled"] == 240 and toxic["counts"]["failed"] == 0


def test_shadow_answers_are_compared_in_both_orders(world):
    client, _, out = world
    _, result = out[CLEAN]
    pairwise = get_json(client, result["judge_json"])["pairwise"]
    assert pairwise["label_a"] == "served" and pairwise["label_b"] == "shadow"
    assert pairwise["judged"] == min(100, pairwise["available_pairs"]) and pairwise["available_pairs"] >= 40
    assert pairwise["consistency_rate"] == 1.0  # the offline judge scores each answer alone: no position to prefer
    assert pairwise["wins"] + pairwise["losses"] + pairwise["ties"] == pairwise["judged"]
    assert result["pairwise"]["win_rate_ci"][0] <= result["pairwise"]["win_rate"] <= result["pairwise"]["win_rate_ci"][1]


def test_outputs_account_for_every_sampled_row_and_rerun_is_free(world):
    client, cfg, out = world
    validated, first = out[TOXIC]
    table = get_table(client, first["judge_uri"]).to_pandas()
    assert len(table) == first["sampled"] and table["weight"].sum() == pytest.approx(len(validated_rows(world)))
    assert set(table["judge_status"]) <= {"judged", "cached"} and table["reasoning"].notna().all()
    record = get_json(client, first["judge_json"])
    assert record["design"]["sampled"] == 240 and record["review_queue"]["jsonl"].endswith("queue.jsonl")
    again = judge(client, cfg, validated)
    assert again["counts"]["cached"] == 240 and again["spent_usd"] == 0


def validated_rows(world):
    """The day's rows with a response: the population the sample's weights add up to."""
    from modelwatch.ingest.valid import read_valid

    client, cfg, out = world
    table = read_valid(client, cfg, Partition("support-bot-v3", TOXIC)).to_pandas()
    return table[table["response"].notna() & (table["response"].str.strip() != "")]


def test_golden_agreement_and_ppi_from_returned_review_labels(world):
    import json

    from modelwatch.storage.s3 import put_bytes

    client, cfg, out = world
    validated, first = out[TOXIC]
    record = get_json(client, first["judge_json"])
    calibration = record["calibration"]
    assert calibration["n_matched"] == calibration["n_human"] >= 40  # the shipped golden set, judged once and cached
    assert "kappa_quadratic" in calibration["dimensions"]["helpfulness"] and "recall" in calibration["flags"]["toxicity"]
    assert record["ppi"]["reason"].startswith("no human review labels")
    agreement = record["agreement"]
    assert set(agreement) == {"helpfulness", "factual_accuracy", "coherence", "instruction_following", "hallucination", "refusal", "toxicity"}
    assert first["agreement"] == agreement  # the stage record carries the same table the experiments stage reads
    assert agreement["helpfulness"]["n"] == calibration["n_matched"] and agreement["refusal"]["verdict"] == "usable"
    assert agreement["helpfulness"]["kappa"] == pytest.approx(calibration["dimensions"]["helpfulness"]["kappa_quadratic"])
    assert agreement["coherence"]["verdict"] == "does_not_agree"  # the offline judge's coherence does not agree with people
    warned = {(w["experiment_id"], w["metric"]) for w in record["agreement_warnings"]}
    primary = {(e.id, g.metric) for e in cfg.model("support-bot-v3").experiments for g in e.primary if g.metric == "judge.helpfulness"}
    assert warned == primary and primary  # helpfulness is weak on the golden set: its experiment is warned
    resistance = record["injection_resistance"]
    assert resistance["items"] == 7 and {row["attack"] for row in resistance["by_item"]} >= {"closing_delimiter", "fake_rubric", "grader_note"}

    judged = get_table(client, first["judge_uri"]).to_pandas().head(30)
    lines = [json.dumps({"request_id": r.request_id, "labels": {"helpfulness": 3, "factual_accuracy": 3, "coherence": 4, "instruction_following": 4,
                                                             "hallucination": False, "refusal": False, "toxicity": bool(r.toxicity)},
                         "labeller": "qa", "labelled_at": "2026-11-09T10:00:00Z"}) for r in judged.itertuples()]
    put_bytes(client, f"{cfg.defaults.labels_uri}/model_id=support-bot-v3/review/batch-1.jsonl", ("\n".join(lines) + "\n").encode())
    again = get_json(client, judge(client, cfg, validated)["judge_json"])
    assert again["ppi"]["labelled_rows"] == 30
    helpfulness = again["ppi"]["estimates"]["helpfulness"]
    assert helpfulness["ci_low"] <= helpfulness["estimate"] <= helpfulness["ci_high"]
    by_arm = again["ppi"]["by_arm"]  # per variant, the sums the experiments stage adds up from an experiment's start
    assert sum(arm["judge.helpfulness"]["n_labelled"] for arm in by_arm.values() if "judge.helpfulness" in arm) == 30
    assert all(m["n_labelled"] + m["n_unlabelled"] <= 240 for arm in by_arm.values() for m in arm.values())
    assert judge(client, cfg, validated)["ppi_by_arm"] == by_arm

    from modelwatch.experiments.decision import ppi_key
    from modelwatch.experiments.stage import _experiments

    exp = cfg.model("support-bot-v3").experiments[0]
    day = _experiments(client, cfg, validated, None, {**first, "ppi_by_arm": by_arm})
    [analysed] = [e for e in day["experiments"] if e["experiment_id"] == exp.id]
    stored = get_json(client, f"{cfg.defaults.reports_uri}/_experiments/model_id=support-bot-v3/experiment={exp.id}/dt={TOXIC.isoformat()}/stats.json")
    for arm in (exp.control, exp.treatment):
        assert stored["stats"][arm].get(ppi_key("judge.helpfulness")) == by_arm.get(arm, {}).get("judge.helpfulness")
    if any(g.metric == "judge.helpfulness" for g in exp.primary):  # 30 labels over both arms: fewer than 30 per arm, so it abstains
        assert any("human review cannot decide it yet" in why for why in analysed["abstained"]), analysed


def test_an_openai_compatible_judge_is_a_config_change_and_keeps_its_budget(world):
    """The same stage with backend openai_compatible against a local server speaking the wire format, with injected faults."""
    from conftest import bundled_config_data
    from judge_server import FakeJudgeServer
    from modelwatch.config import parse_config
    from modelwatch.judge.rubric import load_rubric

    client, cfg, out = world
    validated, _ = out[CLEAN]
    data = bundled_config_data("judge")
    data["models"][0]["judge"].update(backend="openai_compatible", model="judge-test", daily_budget_usd=0.5, max_samples=400,
                                      price_per_1k_input_usd=0.01, price_per_1k_output_usd=0.03, review_sample=0, concurrency=4)
    llm_cfg = parse_config(data)
    with FakeJudgeServer.for_rubric(load_rubric("support-v2")) as server:
        server.add_faults(["429", "500", "malformed"])
        result = judge(client, llm_cfg, validated, {"password": "test-key", "extra": {"base_url": server.openai_url}})
        stats = server.stats()
    record = get_json(client, result["judge_json"])
    assert record["run"]["spent_usd"] + record["golden_run"]["spent_usd"] <= 0.5 + 1e-12  # the budget holds, golden set included
    assert record["golden_run"]["spent_usd"] <= 0.1 + 1e-12  # the golden set's share
    assert result["limited_by"] == "budget" and 0 < result["sampled"] < 400
    runs = (record["golden_run"], record["run"])
    assert sum(r["errors_by_kind"].get("rate_limited", 0) for r in runs) == 1  # the injected 429 was retried
    assert sum(r["errors_by_kind"].get("server_error", 0) for r in runs) == 1 and sum(r["errors_by_kind"].get("malformed", 0) for r in runs) == 1
    pairwise_calls = record["pairwise"].get("calls", 0)  # shadow pairs, two orders each, on what the budget left
    assert stats["requests"] == sum(r["calls"] for r in runs) + pairwise_calls and stats["max_in_flight"] <= 4
    assert record["run"]["spent_usd"] + record["golden_run"]["spent_usd"] + record["pairwise"].get("spent_usd", 0) <= 0.5 + 1e-12
    assert result["backend"]["backend"] == "openai_compatible" and "test-key" not in json.dumps(record)


def test_reference_metrics_are_computed_on_a_bounded_sample(world, monkeypatch):
    import modelwatch.judge.stage as stage

    client, cfg, out = world
    validated, _ = out[CLEAN]
    monkeypatch.setattr(stage, "MAX_REFERENCE_ROWS", 10)
    result = judge(client, cfg, validated)
    rows = get_json(client, result["judge_json"])["reference_metrics"]
    assert sum(r["rows"] for r in rows) == 10
