"""Running the same day twice through the pipeline gives the same outputs, and no second rollback.

Every object the run writes under the partition's report, work and quarantine prefixes is
compared byte for byte between the two runs; ``summary.json`` is compared without its
``run`` block (the run id and times are the only things allowed to differ).
"""

from __future__ import annotations

import json
import re
from datetime import date

import pytest
from corpus import lines
from modelwatch.core.partition import Partition
from modelwatch.storage.s3 import get_bytes, get_json, list_objects, put_bytes

MODEL = "churn-classifier-v2"
DAY = date(2026, 11, 4)


@pytest.fixture(scope="module")
def world(s3_server):
    from conftest import bundled_config_data, scoped_config
    from modelwatch.baseline.build import build_baseline
    from modelwatch.runtime.generate import ExperimentPlan, Scenario, classifier_day
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    data = bundled_config_data("rel-rerun")
    classic = next(m for m in data["models"] if m["id"] == MODEL)
    classic["experiments"][0]["hard_limits"] = [{"metric": "latency_p99_ms", "max": 1, "min_requests": 20}]  # breaches every day
    cfg = scoped_config(client, "rel-rerun", data)
    for offset in range(4):
        day = date(2026, 11, 1 + offset)
        rows, labels = classifier_day(MODEL, day, 400, 9, Scenario(), ExperimentPlan("exp-aa-7", {"control": 0.5, "treatment": 0.5}))
        put_bytes(client, f"{Partition(MODEL, day).path(cfg.defaults.logs_uri)}/part-0.jsonl", lines(rows + [b'{"broken": ']))
        put_bytes(client, f"{cfg.defaults.labels_uri}/model_id={MODEL}/dt={day}/labels.jsonl", lines(labels))
    build_baseline(client, cfg, MODEL, date(2026, 11, 1), date(2026, 11, 3), progress=lambda _: None)
    return client, cfg


def _run(client, cfg, run_id: str) -> dict:
    from modelwatch.runner import concept, drift, experiments, extract, profile, publish, validate

    partition = Partition(MODEL, DAY)
    extracted = extract(client, cfg, partition)
    validated = validate(client, cfg, extracted)
    profiled = profile(client, cfg, validated, "daily")
    drifted = drift(client, cfg, validated)
    concepted = concept(client, cfg, validated)
    experimented = experiments(client, cfg, validated, profiled)
    return publish(client, cfg, extracted, validated, profiled, {"run_id": run_id, "started_at": f"{run_id}-time"}, drifted=drifted,
                   concepted=concepted, experimented=experimented)


RANDOM_IDS = re.compile(rb"[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|sha256-[A-Za-z0-9+/]{43}=")
RUN_LINE = re.compile(rb'<span class="run-id">[^<]*</span>')


def _outputs(client, cfg) -> dict[str, bytes]:
    """Every object of the partition; the run block dropped from the summary, the run id from the page, and the
    random element ids Evidently gives its widgets replaced (evidently 0.7 draws them with uuid4 on every render), with the
    script hashes of the Evidently page's policy, which cover those ids."""
    partition = Partition(MODEL, DAY)
    out = {}
    base = cfg.defaults.reports_uri
    for prefix in (partition.path(base), partition.path(f"{base}/_work"), partition.path(f"{base}/_quarantine")):
        for uri, _ in list_objects(client, prefix):
            out[uri] = get_bytes(client, uri)
    for uri in out:
        name = uri.rsplit("/", 1)[-1]
        if name == "summary.json":
            doc = json.loads(out[uri])
            doc.pop("run")
            out[uri] = json.dumps(doc, sort_keys=True).encode()
        elif name == "index.html":
            out[uri] = RUN_LINE.sub(b'<span class="run-id"></span>', out[uri])
        elif name in ("report.html", "evidently_snapshot.json"):
            out[uri] = RANDOM_IDS.sub(b"<id>", out[uri])
    return out


def _diff(a: bytes, b: bytes) -> str:
    import difflib

    return "\n".join(list(difflib.unified_diff(a.decode(errors="replace").splitlines(), b.decode(errors="replace").splitlines(), lineterm="", n=0))[:12])


def test_same_day_twice_is_byte_identical_and_rolls_back_once(world):
    from modelwatch.rollback.actions import RoutingDocumentAction, apply_rollback

    client, cfg = world
    first = _run(client, cfg, "run-1")
    before = _outputs(client, cfg)
    second = _run(client, cfg, "run-2")
    after = _outputs(client, cfg)
    assert sorted(after) == sorted(before) and len(before) >= 10
    assert {u: _diff(before[u], after[u]) for u in before if before[u] != after[u]} == {}
    assert first["breaches"], "the tightened hard limit must breach"
    assert [b["breach_id"] for b in second["breaches"]] == [b["breach_id"] for b in first["breaches"]]

    uri = cfg.model(MODEL).rollback.uri
    acted = [apply_rollback(client, b["reports_uri"], b, RoutingDocumentAction(client, uri), "rollback/run-1")["outcome"] for b in first["breaches"]]
    third = _run(client, cfg, "run-3")  # a re-run after the rollback re-detects the same breach...
    again = [apply_rollback(client, b["reports_uri"], b, RoutingDocumentAction(client, uri), "rollback/run-3")["outcome"] for b in third["breaches"]]
    assert acted == ["rolled_back"] and again == ["already_applied"]  # ...which is not rolled back a second time
    audits = [u for u, _ in list_objects(client, f"{cfg.defaults.reports_uri}/_audit") if not u.endswith(".claim.json")]
    assert len(audits) == 1 and get_json(client, uri)["version"] == 1
