"""The serving client: emitter (checks, flushes, spill and re-send), kill switch, router split and shadow calls."""

import ast
import asyncio
import gzip
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
from modelwatch.serving import Experiment, KillSwitch, LogEmitter, Price, RefusedByFilter, Router, SequentialPartNames, Shadow, serving_s3_client
from modelwatch.serving.calls import response_text, status_of, usage_tokens
from modelwatch.serving.layout import partition_prefix
from scipy import stats

SERVING = Path(__file__).resolve().parents[2] / "include" / "modelwatch" / "serving"
NOON = datetime(2026, 11, 3, 12, 30, tzinfo=UTC)


class MemoryS3:
    """put_object/get_object into a dict; ``down`` makes every call fail like an unreachable endpoint."""

    def __init__(self):
        self.objects: dict[tuple[str, str], bytes] = {}
        self.down = False
        self.puts = 0

    def put_object(self, Bucket, Key, Body, **_):  # noqa: N803 - boto3's argument names
        if self.down:
            raise ConnectionError("S3 unreachable")
        self.puts += 1
        self.objects[(Bucket, Key)] = Body

    def get_object(self, Bucket, Key):  # noqa: N803
        if self.down:
            raise ConnectionError("S3 unreachable")
        if (Bucket, Key) not in self.objects:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "missing"}}, "GetObject")
        return {"Body": NS(read=lambda: self.objects[(Bucket, Key)])}

    def rows(self) -> list[dict]:
        return [json.loads(line) for body in self.objects.values() for line in gzip.decompress(body).splitlines()]


def emitter(client, tmp_path, **kw) -> LogEmitter:
    defaults = {"background": False, "tokenizer": lambda text: len(text.split())}
    return LogEmitter(client, "s3://logs/inference", "support-bot-v3", spill_dir=tmp_path / "spill", **{**defaults, **kw})


def llm_row(i: int, **over) -> dict:
    return {"request_id": f"r-{i:06d}", "timestamp": NOON, "variant": "control", "latency_ms": 120.0, "prompt": "hello", "response": "hi",
            "prompt_tokens": 2, "completion_tokens": 1, **over}


def wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


# -- building rows ----------------------------------------------------------------------------------------


def test_usage_shapes_of_anthropic_and_openai_and_dicts():
    assert usage_tokens(NS(input_tokens=12, output_tokens=30)) == (12, 30)
    assert usage_tokens(NS(prompt_tokens=7, completion_tokens=3, total_tokens=10)) == (7, 3)
    assert usage_tokens({"input_tokens": 1, "output_tokens": 2}) == (1, 2)
    assert usage_tokens(None) == (None, None)
    anthropic = NS(content=[NS(type="text", text="Hello "), NS(type="tool_use", text=None), NS(type="text", text="there")], stop_reason="end_turn")
    openai = NS(choices=[NS(message=NS(content="Hi"), finish_reason="stop")])
    assert response_text(anthropic) == "Hello there" and response_text(openai) == "Hi"
    assert response_text({"choices": [{"text": "legacy"}]}) == "legacy" and response_text("plain") == "plain"


def test_status_from_exceptions_and_filters():
    class ReadTimeout(Exception):
        pass

    assert status_of(None) == "ok"
    assert status_of(TimeoutError()) == status_of(ReadTimeout()) == "timeout"
    assert status_of(RefusedByFilter()) == "refused_by_filter" and status_of(ValueError()) == "error"
    assert status_of(None, NS(stop_reason="refusal")) == "refused_by_filter"
    assert status_of(None, {"choices": [{"finish_reason": "content_filter", "message": {"content": ""}}]}) == "refused_by_filter"


def test_track_measures_the_call_and_reads_usage_tokenizer_and_price(tmp_path):
    s3 = MemoryS3()
    em = emitter(s3, tmp_path, price=Price(prompt_per_1k=0.5, completion_per_1k=1.5), tokenizer=lambda text: len(text.split()))
    with em.track(prompt="how do I reset it", variant="control", metadata={"topic": "account"}) as call:
        time.sleep(0.02)
        call.result = NS(content=[NS(type="text", text="use the reset link")], usage=NS(input_tokens=9, output_tokens=5))
    with em.track(prompt="four words right here") as call:
        call.result = "three words here"  # no usage: the tokenizer counts
    with pytest.raises(TimeoutError), em.track(prompt="slow one"):
        raise TimeoutError("upstream")
    em.close()
    rows = {r["prompt"]: r for r in s3.rows()}
    first = rows["how do I reset it"]
    assert first["latency_ms"] >= 20 and first["status"] == "ok" and first["response"] == "use the reset link"
    assert (first["prompt_tokens"], first["completion_tokens"], first["cost_usd"]) == (9, 5, round(9 / 1000 * 0.5 + 5 / 1000 * 1.5, 8))
    assert (rows["four words right here"]["prompt_tokens"], rows["four words right here"]["completion_tokens"]) == (4, 3)
    assert rows["slow one"]["status"] == "timeout" and rows["slow one"]["response"] is None
    assert datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00")).tzinfo is not None


# -- checks at the source -----------------------------------------------------------------------------------


def test_invalid_rows_are_counted_reported_and_never_sent(tmp_path):
    s3, seen = MemoryS3(), []
    em = emitter(s3, tmp_path, variants={"control", "treatment", "shadow", "production"}, on_invalid=lambda row, problems: seen.append(problems))
    assert em.record(**llm_row(1))
    assert not em.record(**llm_row(2, latency_ms=-5.0))
    assert not em.record(**llm_row(3, variant="mystery-arm"))
    assert not em.record(**llm_row(4, status="exploded"))
    assert not em.record(**llm_row(5, latency_ms="fast"))
    assert not em.record(**llm_row(6, response=None))  # status ok needs a response
    assert not em.emit({k: v for k, v in {**llm_row(7), "timestamp": "2026-11-03T12:00:00Z", "model_id": "m"}.items() if k != "status"})
    em.close()
    assert [r["request_id"] for r in s3.rows()] == ["r-000001"]
    assert em.stats()["invalid"] == 6 and em.stats()["emitted"] == 1 and len(seen) == 6
    reasons = " | ".join(em.invalid_reasons)
    for expected in ("latency_ms must be within", "variant must be one of", "status must be one of", "latency_ms: expected number",
                     "response is required when status is ok", "status is required"):
        assert expected in reasons


def test_rows_are_filed_under_their_own_hour_with_the_pipeline_layout(tmp_path):
    from modelwatch.core.partition import Partition

    assert partition_prefix("s3://logs/inference/", "m", NOON) == Partition("m", date(2026, 11, 3), 12).path("s3://logs/inference")
    s3 = MemoryS3()
    em = emitter(s3, tmp_path, part_namer=SequentialPartNames())
    for i, hour in enumerate([0, 12, 12, 23]):
        em.record(**llm_row(i, timestamp=NOON.replace(hour=hour)))
    em.close()
    assert sorted(k for _, k in s3.objects) == [f"inference/model_id=support-bot-v3/dt=2026-11-03/hour={h}/part-00000.jsonl.gz" for h in ("00", "12", "23")]


# -- flushing -----------------------------------------------------------------------------------------------


def test_flush_by_size_from_the_background_thread(tmp_path):
    s3 = MemoryS3()
    em = emitter(s3, tmp_path, background=True, max_rows=10, max_age_s=3600)
    for i in range(25):
        em.record(**llm_row(i))
    wait_for(lambda: em.stats()["flushed"] >= 20)
    assert em.stats()["buffered"] <= 5  # the rest waits for size, age or close
    em.close()
    assert sorted(r["request_id"] for r in s3.rows()) == [f"r-{i:06d}" for i in range(25)] and em.stats()["flushed"] == 25


def test_flush_by_age_from_the_background_thread(tmp_path):
    s3 = MemoryS3()
    em = emitter(s3, tmp_path, background=True, max_rows=10_000, max_age_s=0.2)
    em.record(**llm_row(1))
    wait_for(lambda: em.stats()["flushed"] == 1)
    assert len(s3.rows()) == 1
    em.close()


def test_flush_by_bytes(tmp_path):
    s3 = MemoryS3()
    em = emitter(s3, tmp_path, max_rows=10_000, max_bytes=2_000)
    for i in range(30):
        em.record(**llm_row(i))
    assert s3.puts >= 1 and em.stats()["buffered"] < 30
    em.close()
    assert len(s3.rows()) == 30


# -- spill and re-send --------------------------------------------------------------------------------------


@pytest.fixture
def refused_port():
    """A port bound but never listening: connections are refused, and no other server can take it during the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_s3_down_during_a_burst_then_back_every_row_exactly_once(s3, tmp_path, refused_port):
    from modelwatch.storage.s3 import ensure_bucket, get_bytes, list_objects

    bucket = f"logs-{uuid.uuid4().hex[:8]}"
    ensure_bucket(s3, bucket)
    down = serving_s3_client(endpoint_url=f"http://127.0.0.1:{refused_port}", connect_timeout_s=0.5)
    em = LogEmitter(down, f"s3://{bucket}/inference", "support-bot-v3", spill_dir=tmp_path / "spill", background=False, max_rows=50,
                    retry_initial_s=0.01, retry_max_s=0.01)
    for i in range(240):
        em.record(**llm_row(i, timestamp=NOON.replace(minute=i % 60, hour=10 + i % 3)))
    em.flush()
    assert em.stats()["spilled"] == 240 and em.stats()["flushed"] == 0 and em.stats()["spill_pending"] >= 5
    em.client = s3  # S3 is back
    for i in range(240, 300):
        em.record(**llm_row(i))
    em.close()
    uris = [u for u, _ in list_objects(s3, f"s3://{bucket}/inference")]
    ids = [json.loads(line)["request_id"] for u in uris for line in gzip.decompress(get_bytes(s3, u)).splitlines()]
    assert len(ids) == 300 and len(set(ids)) == 300
    final = em.stats()
    assert (final["flushed"], final["spill_pending"], final["dropped"]) == (300, 0, 0)
    assert 240 <= final["resent"] <= 300  # the 240 spilled while down, plus any batch flushed while the emitter still backs off
    assert not [p for p in (tmp_path / "spill").rglob("*") if p.is_file()]


def test_a_put_that_landed_but_failed_is_re_sent_to_the_same_key(tmp_path):
    class LandsThenFails(MemoryS3):
        def put_object(self, Bucket, Key, Body, **kw):  # noqa: N803
            super().put_object(Bucket, Key, Body)
            if self.fail:
                raise TimeoutError("read timeout after the object was stored")

    s3 = LandsThenFails()
    s3.fail = True
    em = emitter(s3, tmp_path, retry_initial_s=0.0)
    for i in range(20):
        em.record(**llm_row(i))
    em.flush()
    assert em.stats()["spilled"] == 20
    s3.fail = False
    em.flush()
    em.close()
    ids = [r["request_id"] for r in s3.rows()]
    assert len(ids) == 20 == len(set(ids)) and len(s3.objects) == 1


def test_spilled_batches_of_a_previous_process_are_re_sent_by_a_new_emitter(tmp_path):
    s3 = MemoryS3()
    s3.down = True
    first = emitter(s3, tmp_path)
    for i in range(5):
        first.record(**llm_row(i))
    first.close()
    assert first.stats()["spill_pending"] == 1 and first.stats()["dropped"] == 0
    s3.down = False
    second = emitter(s3, tmp_path)
    second.flush()
    second.close()
    assert sorted(r["request_id"] for r in s3.rows()) == [f"r-{i:06d}" for i in range(5)] and second.stats()["resent"] == 5


def test_a_closed_emitter_refuses_rows(tmp_path):
    em = emitter(MemoryS3(), tmp_path)
    em.close()
    with pytest.raises(RuntimeError, match="closed"):
        em.record(**llm_row(1))


# -- kill switch --------------------------------------------------------------------------------------------

EXP = Experiment("exp-042", {"control": 0.9, "treatment": 0.1})


def _switch(s3, document=None, **kw) -> KillSwitch:
    if document is not None:
        s3.objects[("serving", "routing/support-bot.json")] = json.dumps(document).encode()
    return KillSwitch(s3, "s3://serving/routing/support-bot.json", background=False, **kw)


def test_kill_switch_honours_the_routing_document_the_rollback_writes():
    from modelwatch.rollback.actions import routed_to_control

    s3 = MemoryS3()
    switch = _switch(s3, refresh_s=0.001)
    assert switch.decide(EXP).weights == {"control": 0.9, "treatment": 0.1} and switch.decide(EXP).source == "configured"
    breach = {"experiment_id": "exp-042", "control": "control", "treatment": "treatment", "breach_id": "b1", "reason": "error_rate",
              "detected_at": "2026-11-03T00:00:00Z", "model_id": "support-bot-v3"}
    s3.objects[("serving", "routing/support-bot.json")] = json.dumps(routed_to_control({"experiments": {}}, breach)).encode()
    time.sleep(0.002)
    decision = switch.decide(EXP)
    assert decision.source == "rolled_back" and decision.weights == {"control": 1.0, "treatment": 0.0}
    router = Router(emitter(MemoryS3(), Path("/tmp")), control=lambda p: "c", treatment=lambda p: "t", experiment=EXP, kill_switch=switch)
    assert {router.choose(f"u{i}") for i in range(2000)} == {"control"}


def test_kill_switch_uses_document_weights_and_rejects_bad_ones():
    s3 = MemoryS3()
    assert _switch(s3, {"experiments": {"exp-042": {"weights": {"control": 0.5, "treatment": 0.5}}}}).decide(EXP).weights == {"control": 0.5, "treatment": 0.5}
    bad = _switch(s3, {"experiments": {"exp-042": {"weights": {"control": 0.5, "other": 0.5}}}}).decide(EXP)
    assert bad.source == "unreadable" and bad.weights == {"control": 1.0, "treatment": 0.0}
    s3.objects[("serving", "routing/support-bot.json")] = b"{not json"
    assert _switch(s3).decide(EXP).source == "unreadable"


def test_kill_switch_defaults_to_control_when_unreadable_and_keeps_a_fresh_good_copy():
    s3, now = MemoryS3(), [0.0]
    switch = _switch(s3, {"experiments": {}}, refresh_s=10, max_stale_s=30, clock=lambda: now[0])
    s3.down = True
    now[0] = 15.0  # refresh due, read fails, the good copy is 15 s old: still used
    assert switch.decide(EXP).source == "configured" and switch.stats()["failures"] == 1
    now[0] = 31.0  # older than max_stale_s: safe default
    assert switch.decide(EXP).weights == {"control": 1.0, "treatment": 0.0}
    s3.down = False
    now[0] = 45.0
    assert switch.decide(EXP).source == "configured"
    s3.down = True
    assert _switch(s3).decide(EXP).source == "unreadable"  # never read: control from the start


# -- router -------------------------------------------------------------------------------------------------


def test_router_split_matches_the_weights_by_chi_squared_at_a_fixed_seed(tmp_path):
    s3 = MemoryS3()
    weights = {"control": 0.6, "treatment-a": 0.3, "treatment-b": 0.1}
    arms = {arm: (lambda p, arm=arm: f"answer from {arm}") for arm in weights}
    em = emitter(s3, tmp_path, max_rows=100_000)
    router = Router(em, arms=arms, experiment=Experiment("exp-3arm", weights))
    rng = __import__("random").Random(11)
    served = Counter()
    for _ in range(6000):
        rid = f"{rng.getrandbits(64):016x}"
        served[router.call("hello", request_id=rid).removeprefix("answer from ")] += 1
    em.close()
    logged = Counter(r["variant"] for r in s3.rows())
    assert logged == served and router.stats()["control"] == served["control"]
    p = stats.chisquare([logged[a] for a in weights], [6000 * w for w in weights.values()]).pvalue
    assert p > 0.001
    assert all(r["experiment_id"] == "exp-3arm" for r in s3.rows())


def test_router_is_sticky_and_logs_served_errors_then_re_raises(tmp_path):
    s3 = MemoryS3()
    em = emitter(s3, tmp_path)

    def broken(payload):
        raise ValueError("model crashed")

    router = Router(em, control=broken, treatment=lambda p: "fine", experiment=Experiment("exp-x", {"control": 0.5, "treatment": 0.5}))
    arms = [router.choose("user-7") for _ in range(50)]
    assert len(set(arms)) == 1
    outcomes = Counter()
    for i in range(40):
        try:
            router.call("q", request_id=f"q{i}")
            outcomes["ok"] += 1
        except ValueError:
            outcomes["error"] += 1
    em.close()
    logged = Counter(r["status"] for r in s3.rows())
    assert logged == outcomes and outcomes["error"] > 0
    assert all(r["response"] is None for r in s3.rows() if r["status"] == "error")


def test_router_without_experiment_serves_production_and_checks_its_arms(tmp_path):
    s3 = MemoryS3()
    em = emitter(s3, tmp_path)
    assert Router(em, control=lambda p: "x").call("q") == "x"
    em.close()
    assert [(r["variant"], "experiment_id" in r) for r in s3.rows()] == [("production", False)]
    with pytest.raises(ValueError, match="arms"):
        Router(em, arms={"control": lambda p: 1}, experiment=EXP)


# -- shadow -------------------------------------------------------------------------------------------------


def _served(payload, **kw):
    return f"served:{payload}"


def _slow_shadow(payload, **kw):
    time.sleep(0.3)
    return "shadow answer"


def _failing_shadow(payload, **kw):
    raise RuntimeError("shadow checkpoint exploded")


@pytest.mark.parametrize("shadow_model, status", [(_slow_shadow, "timeout"), (_failing_shadow, "error"), (lambda p, **kw: "shadow ok", "ok")])
def test_shadow_never_changes_the_served_response_sync(tmp_path, shadow_model, status):
    s3 = MemoryS3()
    em = emitter(s3, tmp_path)
    router = Router(em, control=_served, shadow=Shadow(shadow_model, timeout_s=0.05))
    answers = [router.call(f"q{i}", request_id=f"req-{i}") for i in range(4)]
    router.close(wait=True)
    em.close()
    assert answers == [f"served:q{i}" for i in range(4)]
    rows = {r["request_id"]: r for r in s3.rows()}
    for i in range(4):
        served, shadow = rows[f"req-{i}"], rows[f"req-{i}-shadow"]
        assert served["status"] == "ok" and served["response"] == f"served:q{i}" and served["variant"] == "production"
        assert shadow["variant"] == "shadow" and shadow["status"] == status and shadow["metadata"]["shadow_of"] == f"req-{i}"
        assert "experiment_id" not in shadow


@pytest.mark.parametrize("status", ["timeout", "error"])
def test_shadow_never_changes_the_served_response_async(tmp_path, status):
    s3 = MemoryS3()
    em = emitter(s3, tmp_path)

    async def served(payload, **kw):
        return f"served:{payload}"

    async def shadow(payload, **kw):
        if status == "error":
            raise RuntimeError("boom")
        await asyncio.sleep(5)

    router = Router(em, control=served, shadow=Shadow(shadow, timeout_s=0.05))

    async def main():
        answers = [await router.acall(f"q{i}", request_id=f"a{i}") for i in range(3)]
        await router.drain()
        return answers

    assert asyncio.run(main()) == ["served:q0", "served:q1", "served:q2"]
    em.close()
    rows = {r["request_id"]: r for r in s3.rows()}
    assert [rows[f"a{i}-shadow"]["status"] for i in range(3)] == [status] * 3
    assert all(rows[f"a{i}"]["status"] == "ok" for i in range(3))


def test_shadow_calls_beyond_max_in_flight_are_skipped_not_queued(tmp_path):
    release = threading.Event()

    def stuck(payload, **kw):
        release.wait(10)
        return "late"

    em = emitter(MemoryS3(), tmp_path)
    router = Router(em, control=_served, shadow=Shadow(stuck, timeout_s=5, max_in_flight=1))
    assert [router.call(f"q{i}") for i in range(3)] == ["served:q0", "served:q1", "served:q2"]
    assert router.stats()["shadow_started"] == 1 and router.stats()["shadow_skipped"] == 2
    release.set()
    router.close()
    em.close()


def test_shadow_share_is_sticky_by_request_id():
    shadow = Shadow(_served, share=0.25)
    picked = [shadow.mirrors(f"r{i}") for i in range(8000)]
    assert picked == [shadow.mirrors(f"r{i}") for i in range(8000)]
    assert stats.binomtest(sum(picked), 8000, 0.25).pvalue > 0.001


# -- counters for Prometheus --------------------------------------------------------------------------------


def test_prometheus_collector_exposes_the_counters(tmp_path):
    from modelwatch.serving.prometheus import register
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    em = emitter(MemoryS3(), tmp_path)
    router = Router(em, control=_served)
    register(em, router, registry)
    router.call("x")
    em.record(**llm_row(1, latency_ms=-1.0))
    em.flush()
    text = generate_latest(registry).decode()
    assert 'modelwatch_emitter_rows_total{model_id="support-bot-v3",outcome="flushed"} 1.0' in text
    assert 'modelwatch_emitter_rows_total{model_id="support-bot-v3",outcome="invalid"} 1.0' in text
    assert 'modelwatch_emitter_rows_total{model_id="support-bot-v3",outcome="dropped"} 0.0' in text
    assert 'modelwatch_router_requests_total{model_id="support-bot-v3",variant="production"} 1.0' in text
    em.close()


# -- packaging ----------------------------------------------------------------------------------------------

ALLOWED_TOP_LEVEL = {"modelwatch", "boto3", "botocore", "prometheus_client", "__future__"} | set(sys.stdlib_module_names)


# imported inside the one function that needs it, never at module level: a described murmur3 assignment
# (core.assignment.HashScheme) is checked by the pipeline, which installs mmh3; the serving client never hashes that way
LAZY_OPTIONAL = {"mmh3": "assignment.py"}


def _imports(tree: ast.AST, in_function: bool = False):
    """(imported module name, imported inside a function?) for every import of a module."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import):
            yield from ((a.name, in_function) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module, in_function
        yield from _imports(node, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


def test_serving_modules_import_only_the_standard_library_boto3_and_light_modelwatch_modules():
    """The serving client and ``core`` (all of modelwatch it may import) name only the standard library, boto3 and each other."""
    for path in [*SERVING.glob("*.py"), *(SERVING.parent / "core").glob("*.py")]:
        for name, in_function in _imports(ast.parse(path.read_text())):
            if in_function and LAZY_OPTIONAL.get(name) == path.name:
                continue
            assert name.split(".")[0] in ALLOWED_TOP_LEVEL, f"{path.name} imports {name}"
            if name.startswith("modelwatch.") and not name.startswith("modelwatch.serving"):
                assert name.startswith("modelwatch.core."), f"{path.name} imports {name}"


HEAVY = ["airflow", "pandas", "pyarrow", "numpy", "pydantic", "great_expectations", "prometheus_client"]


def test_importing_the_serving_package_loads_no_heavy_module():
    code = ("import sys, modelwatch.serving, modelwatch.serving.prometheus\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
