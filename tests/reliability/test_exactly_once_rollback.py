"""Exactly-once rollback against the real S3 server: concurrent, duplicate and retried breach events act once.

``apply_rollback`` claims a breach with a conditional create (``If-None-Match: *``) and
changes the routing document with a compare-and-swap (``If-Match`` on its ETag). These
tests fire it from many threads, from many processes, with two different breaches of one
experiment at once, through a proxy that loses answers of requests that did succeed
(so the client retries a write that already landed), and as a claimant that died
between acting and auditing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from faulty_s3 import Fault, FaultyS3
from modelwatch.rollback.actions import RoutingDocumentAction, apply_rollback
from modelwatch.storage.s3 import S3Error, ensure_bucket, get_json, list_objects, make_client

ROOT = Path(__file__).resolve().parents[2]


def _breach(bucket: str, breach_id: str = "b-1", metric: str = "error_rate") -> dict:
    return {"model_id": "m", "experiment_id": "exp-1", "control": "control", "treatment": "treatment", "breach_id": breach_id, "metric": metric,
            "reason": f"{metric} over its limit", "detected_at": "2027-01-02T00:10:00+00:00", "reports_uri": f"s3://{bucket}/reports",
            "routing_uri": f"s3://{bucket}/routing/m.json"}


@pytest.fixture()
def bucket(s3) -> str:
    name = f"once-{uuid.uuid4().hex[:10]}"
    ensure_bucket(s3, name)
    return name


def _records(s3, bucket: str) -> tuple[list[dict], list[str]]:
    """(audit records, routing versions kept) under the bucket."""
    audits = [get_json(s3, u) for u, _ in list_objects(s3, f"s3://{bucket}/reports/_audit") if not u.endswith(".claim.json")]
    versions = [u for u, _ in list_objects(s3, f"s3://{bucket}/routing") if ".json.v" in u]
    return audits, versions


def _fire(clients, bucket: str, breaches: list[dict]) -> list[dict]:
    """Call apply_rollback once per (client, breach) pair, all released at the same instant."""
    barrier = threading.Barrier(len(clients))
    results: list[dict] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            breach = breaches[i % len(breaches)]
            action = RoutingDocumentAction(clients[i], breach["routing_uri"])
            results.append(apply_rollback(clients[i], breach["reports_uri"], breach, action, f"run-{i}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_many_threads_one_breach_one_action_one_audit(s3_server, s3, bucket):
    for trial in range(5):
        b = f"{bucket}-{trial}"
        ensure_bucket(s3, b)
        results = _fire([make_client(endpoint_url=s3_server.endpoint) for _ in range(12)], b, [_breach(b)])
        outcomes = [r["outcome"] for r in results]
        assert outcomes.count("rolled_back") == 1 and set(outcomes) <= {"rolled_back", "claimed_elsewhere", "already_applied"}, outcomes
        audits, versions = _records(s3, b)
        assert len(audits) == 1 and audits[0]["outcome"] == "rolled_back"
        assert get_json(s3, f"s3://{b}/routing/m.json")["version"] == 1 and len(versions) == 1


def test_two_breaches_of_one_experiment_at_once_change_the_routing_once(s3_server, s3, bucket):
    """A hard limit and a guardrail of the same experiment, handled by different runs at the same time."""
    breaches = [_breach(bucket, "hard-limit", "error_rate"), _breach(bucket, "guardrail", "latency_p99_ms")]
    results = _fire([make_client(endpoint_url=s3_server.endpoint) for _ in range(10)], bucket, breaches)
    acted = [r for r in results if r["outcome"] == "rolled_back"]
    assert len(acted) == 1, [r["outcome"] for r in results]
    audits, versions = _records(s3, bucket)
    assert sorted(a["outcome"] for a in audits) == ["already_rolled_back", "rolled_back"]  # one record per breach, one action
    routing = get_json(s3, f"s3://{bucket}/routing/m.json")
    assert routing["version"] == 1 and len(versions) == 1 and routing["experiments"]["exp-1"]["breach_id"] == acted[0]["breach_id"]


_PROCESS = """
import json, sys
from modelwatch.rollback.actions import RoutingDocumentAction, apply_rollback
from modelwatch.storage.s3 import make_client
endpoint, breach, claimant = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
client = make_client(endpoint_url=endpoint)
print(json.dumps(apply_rollback(client, breach["reports_uri"], breach, RoutingDocumentAction(client, breach["routing_uri"]), claimant)))
"""


def test_many_processes_one_breach_one_action(s3_server, s3, bucket):
    breach = json.dumps(_breach(bucket))
    procs = [subprocess.Popen([sys.executable, "-c", _PROCESS, s3_server.endpoint, breach, f"proc-{i}"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(6)]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        outcomes.append(json.loads(out.strip().splitlines()[-1])["outcome"])
    assert outcomes.count("rolled_back") == 1, outcomes
    audits, versions = _records(s3, bucket)
    assert len(audits) == 1 and len(versions) == 1


def test_retries_of_writes_that_already_landed_still_act_once(s3_server, s3, bucket):
    """The proxy forwards a third of the PUTs and then drops the answer: botocore retries a conditional write that succeeded."""
    proxy = FaultyS3(s3_server.endpoint, seed=11).start()
    try:
        proxy.add(Fault("lost_answer", method="PUT", times=None, rate=0.35))
        clients = [make_client(endpoint_url=proxy.endpoint, max_attempts=8, mode="standard", read_timeout=5) for _ in range(8)]
        results = _fire(clients, bucket, [_breach(bucket)])
        assert proxy.injected("lost_answer") > 0
    finally:
        proxy.stop()
    outcomes = [r["outcome"] for r in results]
    assert outcomes.count("rolled_back") == 1, outcomes
    audits, versions = _records(s3, bucket)
    assert len(audits) == 1 and audits[0]["outcome"] == "rolled_back" and len(versions) == 1


def test_claimant_that_died_before_its_audit_is_retried_into_one_record(s3_server, s3, bucket):
    """The first attempt acts, then cannot write its audit record (the task dies); the task's retry completes it."""
    breach = _breach(bucket)
    proxy = FaultyS3(s3_server.endpoint).start()
    try:
        proxy.add(Fault("internal_error", method="PUT", path_contains=f"{breach['breach_id']}.json", times=None))
        broken = make_client(endpoint_url=proxy.endpoint, max_attempts=1, mode="standard")
        with pytest.raises(S3Error, match=f"{breach['breach_id']}.json"):
            apply_rollback(broken, breach["reports_uri"], breach, RoutingDocumentAction(broken, breach["routing_uri"]), "dag/run-1")
    finally:
        proxy.stop()
    assert get_json(s3, breach["routing_uri"])["version"] == 1 and _records(s3, bucket)[0] == []  # acted, not yet audited
    retry = apply_rollback(s3, breach["reports_uri"], breach, RoutingDocumentAction(s3, breach["routing_uri"]), "dag/run-1")
    other = apply_rollback(s3, breach["reports_uri"], breach, RoutingDocumentAction(s3, breach["routing_uri"]), "dag/run-2")
    assert retry["outcome"] == "rolled_back" and other["outcome"] == "already_applied"
    audits, versions = _records(s3, bucket)
    assert len(audits) == 1 and audits[0]["outcome"] == "rolled_back" and audits[0]["claimant"] == "dag/run-1"
    assert get_json(s3, breach["routing_uri"])["version"] == 1 and len(versions) == 1
