"""The README's FastAPI example, run as written: Anthropic SDK against a local server, logs to the S3 server, read back by the pipeline."""

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

from judge_server import FakeJudgeServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "serving_fastapi.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("serving_fastapi_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_example_serves_routes_and_logs_what_the_pipeline_reads(s3, s3_server, isolated_config, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient
    from modelwatch.core.partition import Partition
    from modelwatch.ingest.valid import read_valid
    from modelwatch.runner import extract, validate

    cfg = isolated_config
    model = cfg.model("support-bot-v3")
    with FakeJudgeServer(["helpfulness"], []) as llm:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", llm.anthropic_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        monkeypatch.setenv("MODELWATCH_S3_ENDPOINT", s3_server.endpoint)
        monkeypatch.setenv("MODELWATCH_LOGS_URI", cfg.defaults.logs_uri)
        monkeypatch.setenv("MODELWATCH_ROUTING_URI", model.rollback.uri)
        monkeypatch.setenv("MODELWATCH_SPILL_DIR", str(tmp_path / "spill"))
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "modelwatch")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "modelwatch")
        example = _load_example()
        with TestClient(example.app) as client:  # runs the lifespan: closing flushes the emitter
            answers = [client.post("/answer", json={"question": f"Where is order {i}? Mail me at a{i}@example.com", "topic": "shipping",
                                                    "user_id": f"user-{i % 40}"}) for i in range(120)]
        calls = llm.records()
    assert all(a.status_code == 200 and a.json()["answer"] for a in answers)
    stats = example.emitter.stats()
    assert stats["invalid"] == 0 and stats["dropped"] == 0 and stats["flushed"] == stats["emitted"] > 120
    # 120 served answers plus the ~5% mirrored to the shadow candidate, all through the Anthropic SDK
    assert 120 < len(calls) == stats["emitted"] < 140
    assert {c.model for c in calls} <= {"support-bot-v3", "support-bot-v3-rc2", "support-bot-v4-candidate"} and "support-bot-v3" in {c.model for c in calls}

    today = datetime.now(UTC).date()
    extracted = extract(s3, cfg, Partition("support-bot-v3", today))
    validated = validate(s3, cfg, extracted)
    assert validated["rows_quarantined"] == 0, validated["failures"]
    assert validated["rows_read"] == stats["emitted"]
    rows = read_valid(s3, cfg, Partition("support-bot-v3", today)).to_pandas()
    assert set(rows["variant"]) <= {"control", "treatment", "shadow"} and not rows["prompt"].str.contains("@example.com").any()
    assert (rows["prompt_tokens"] > 0).all() and (rows["cost_usd"] > 0).all()  # token counts from the SDK's usage, priced
