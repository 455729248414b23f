"""Traffic through Router + LogEmitter on the S3 server, read back by the pipeline: nothing quarantined, the split as configured."""

import random
import time
from datetime import date
from types import SimpleNamespace as NS

from modelwatch.serving import Experiment, KillSwitch, LogEmitter, Price, RefusedByFilter, Router, Shadow
from scipy import stats

MODEL = "support-bot-v3"


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _control(prompt: str, rng=random.Random(5)):
    u = rng.random()
    if u < 0.01:
        raise ConnectionError("upstream reset")
    if u < 0.02:
        raise TimeoutError("model took too long")
    if u < 0.03:
        raise RefusedByFilter(response="I'm sorry, but I can't help with that request.")
    return NS(content=[NS(type="text", text=f"Here is how to fix it: {prompt[:20]}")], usage=NS(input_tokens=_tokens(prompt), output_tokens=9))


def _treatment(prompt: str):
    return {"choices": [{"message": {"content": "Try restarting the app; mail help@example.com"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": _tokens(prompt), "completion_tokens": 7}}


def _shadow(prompt: str):
    if random.random() < 0.2:
        raise RuntimeError("shadow checkpoint failed")
    return "A shadow answer with a card 4111 1111 1111 1111 in it"


def _partitions(s3, logs_uri):
    from modelwatch.storage.s3 import list_objects

    days = {u.split("/dt=")[1].split("/")[0] for u, _ in list_objects(s3, f"{logs_uri}/model_id={MODEL}")}
    return sorted(date.fromisoformat(d) for d in days)


def test_router_traffic_is_read_back_with_nothing_quarantined_and_the_configured_split(s3, isolated_config, tmp_path):
    from modelwatch.core.partition import Partition
    from modelwatch.experiments.data import day_record
    from modelwatch.ingest.valid import read_valid
    from modelwatch.runner import extract, validate

    cfg = isolated_config
    model = cfg.model(MODEL)
    exp = Experiment.from_config(model.experiments[0])
    emitter = LogEmitter(s3, cfg.defaults.logs_uri, MODEL, "llm", price=Price(0.5, 1.5), tokenizer=_tokens, redact=True,
                         variants=model.allowed_variants(), max_rows=700, max_age_s=0.5, spill_dir=tmp_path / "spill")
    switch = KillSwitch(s3, model.rollback.uri, refresh_s=5)
    router = Router(emitter, control=_control, treatment=_treatment, experiment=exp, kill_switch=switch, shadow=Shadow(_shadow, timeout_s=2, share=0.1))
    rng = random.Random(42)
    topics = ["billing", "shipping", "returns"]
    served = 0
    for i in range(3000):
        try:
            router.call(f"My order {i} never arrived, call me at +1 415 555 {rng.randint(1000, 9999)}", metadata={"topic": rng.choice(topics)})
        except (ConnectionError, TimeoutError, RefusedByFilter):
            pass
        served += 1
    router.close()
    emitter.close()
    counts = emitter.stats()
    assert counts["invalid"] == 0 and counts["dropped"] == 0 and counts["flushed"] == counts["emitted"] > served

    total_read, frames = 0, []
    for day in _partitions(s3, cfg.defaults.logs_uri):
        partition = Partition(MODEL, day)
        extracted = extract(s3, cfg, partition)
        validated = validate(s3, cfg, extracted)
        assert validated["rows_quarantined"] == 0, validated["failures"]
        total_read += validated["rows_read"]
        frames.append(read_valid(s3, cfg, partition).to_pandas())
    assert total_read == counts["emitted"]

    import pandas as pd

    valid = pd.concat(frames, ignore_index=True)
    assert set(valid["status"]) == {"ok", "error", "timeout", "refused_by_filter"}
    assert not valid["prompt"].str.contains("415 555").any() and not valid["response"].fillna("").str.contains("@|4111").any()
    arms = valid[valid["variant"] != "shadow"]["variant"].value_counts()
    assert arms.sum() == served
    weights = exp.weights
    p = stats.chisquare([arms.get(a, 0) for a in weights], [served * w for w in weights.values()]).pvalue
    assert p > 0.001
    record, _ = day_record(valid, model.experiments[0])
    assert record["assignment_mismatches"] == 0 and record["units_in_several_arms"] == 0
    shadows = valid[valid["variant"] == "shadow"]
    # a 10% share is mirrored; a mirror finding the bounded shadow pool full is skipped (counted), never queued
    mirrored = len(shadows) + router.stats().get("shadow_skipped", 0)
    assert 0.05 * served < mirrored < 0.15 * served and len(shadows) > 0 and set(shadows["status"]) <= {"ok", "error"}


def test_a_rollback_written_by_the_rollback_action_reaches_the_router_without_a_deploy(s3, isolated_config, tmp_path):
    from modelwatch.rollback.actions import RoutingDocumentAction

    cfg = isolated_config
    model = cfg.model(MODEL)
    exp = Experiment.from_config(model.experiments[0])
    emitter = LogEmitter(s3, cfg.defaults.logs_uri, MODEL, tokenizer=_tokens, spill_dir=tmp_path / "spill")
    switch = KillSwitch(s3, model.rollback.uri, refresh_s=0.05)
    router = Router(emitter, control=lambda p: "control", treatment=lambda p: "treatment", experiment=exp, kill_switch=switch)
    assert {router.call("q", request_id=f"before-{i}") for i in range(400)} == {"control", "treatment"}
    RoutingDocumentAction(s3, model.rollback.uri).apply({
        "experiment_id": exp.id, "control": "control", "treatment": "treatment", "breach_id": "b-1", "reason": "error_rate above 0.02",
        "detected_at": "2026-11-03T01:00:00Z", "model_id": MODEL})
    deadline = time.monotonic() + 10
    while switch.decide(exp).source != "rolled_back":
        assert time.monotonic() < deadline, switch.stats()
        time.sleep(0.02)
    assert {router.call("q", request_id=f"after-{i}") for i in range(400)} == {"control"}
    router.close()
    emitter.close()
