"""Secrets never reach outputs or logs; config and rubric files are loaded with safe loaders only.

The run below uses an S3 client with its own access key pair and an OpenAI-compatible judge
(the local wire-format server) with an API key, runs extract, validate, profile, judge and
publish, then searches every object written (Parquet decoded, so compression cannot hide a
string), the stage results (what becomes XCom) and the captured output and log records.
"""

from __future__ import annotations

import ast
import json
import logging
from datetime import date
from pathlib import Path

import pytest
from corpus import lines

ROOT = Path(__file__).resolve().parents[2]
JUDGE_KEY = "sk-mw-judge-7f3a9c41e2b8d6"
ACCESS_KEY_ID = "AKIAMWSECRETID7731"
SECRET_ACCESS_KEY = "mw-s3-secret-QpZ81kLx0vTe"
SECRETS = (JUDGE_KEY, ACCESS_KEY_ID, SECRET_ACCESS_KEY)


def _object_text(client, uri: str) -> str:
    from modelwatch.storage.s3 import get_bytes, get_table

    if uri.endswith(".parquet"):
        return json.dumps(get_table(client, uri).to_pylist(), default=str)
    return get_bytes(client, uri).decode("utf-8", "replace")


def test_secrets_appear_in_no_output_result_or_log(s3_server, capfd, caplog):
    from conftest import bundled_config_data, scoped_config
    from judge_server import FakeJudgeServer
    from modelwatch.core.partition import Partition
    from modelwatch.judge.rubric import load_rubric
    from modelwatch.runner import extract, judge, profile, publish, validate
    from modelwatch.runtime.generate import ExperimentPlan, Scenario, llm_day
    from modelwatch.storage.s3 import list_objects, make_client, put_bytes

    caplog.set_level(logging.INFO)
    client = make_client(endpoint_url=s3_server.endpoint, access_key=ACCESS_KEY_ID, secret_key=SECRET_ACCESS_KEY)
    data = bundled_config_data("rel-secrets")
    data["models"][0]["judge"].update(backend="openai_compatible", model="judge-test", daily_budget_usd=0.2, max_samples=30, review_sample=5,
                                      price_per_1k_input_usd=0.01, price_per_1k_output_usd=0.03, concurrency=2)
    cfg = scoped_config(client, "rel-secrets", data)
    day = date(2026, 11, 6)
    exp = cfg.model("support-bot-v3").experiments[0]
    rows = llm_day("support-bot-v3", day, 300, 4, Scenario(), ExperimentPlan(exp.id, exp.weights()))
    partition = Partition("support-bot-v3", day)
    put_bytes(client, f"{partition.path(cfg.defaults.logs_uri)}/part-0.jsonl", lines(rows))

    with FakeJudgeServer.for_rubric(load_rubric("support-v2")) as server:
        server.add_faults(["500", "429"])  # error paths log too
        extracted = extract(client, cfg, partition)
        validated = validate(client, cfg, extracted)
        profiled = profile(client, cfg, validated, "daily")
        judged = judge(client, cfg, validated, {"password": JUDGE_KEY, "extra": {"base_url": server.openai_url}})
        published = publish(client, cfg, extracted, validated, profiled, {"run_id": "secrets"}, judged=judged)
    assert judged["outcome"] == "ok" and judged["backend"]["backend"] == "openai_compatible"

    results = json.dumps([extracted, validated, profiled, judged, published], default=str)  # what the DAG's tasks return as XCom
    objects = {uri: _object_text(client, uri) for bucket in ("rel-secrets-logs", "rel-secrets-reports", "rel-secrets-serving")
               for uri, _ in list_objects(client, f"s3://{bucket}/")}
    assert any(u.endswith("judge.parquet") for u in objects) and any(u.endswith("summary.json") for u in objects)
    out, err = capfd.readouterr()
    logs = "\n".join(r.getMessage() for r in caplog.records)
    for secret in SECRETS:
        assert secret not in results
        assert not [u for u, text in objects.items() if secret in text], secret
        assert secret not in out + err + logs


def test_secret_access_key_never_reaches_debug_logs(s3_server, caplog):
    """Even botocore's DEBUG logging (request headers) carries only the signature, never the secret key."""
    from modelwatch.storage.s3 import ensure_bucket, get_bytes, make_client, put_bytes

    caplog.set_level(logging.DEBUG)
    client = make_client(endpoint_url=s3_server.endpoint, access_key=ACCESS_KEY_ID, secret_key=SECRET_ACCESS_KEY)
    ensure_bucket(client, "rel-secrets-debug")
    put_bytes(client, "s3://rel-secrets-debug/x", b"1")
    assert get_bytes(client, "s3://rel-secrets-debug/x") == b"1"
    assert SECRET_ACCESS_KEY not in "\n".join(r.getMessage() for r in caplog.records)


UNSAFE_CALLS = {("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"), ("yaml", "load_all"), ("yaml", "unsafe_load_all"),
                ("pickle", "load"), ("pickle", "loads"), ("marshal", "load"), ("marshal", "loads"), ("dill", "load"), ("dill", "loads")}
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__"}
UNSAFE_MODULES = {"pickle", "marshal", "shelve", "dill", "cloudpickle"}


def _python_files() -> list[Path]:
    return sorted(p for folder in ("include", "dags", "plugins") for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unsafe_loader_or_eval_in_project_code(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            problems += [f"line {node.lineno}: imports {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in UNSAFE_BUILTINS:
            problems.append(f"line {node.lineno}: calls {func.id}()")
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and (func.value.id, func.attr) in UNSAFE_CALLS:
            loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
            safe = isinstance(loader, ast.Attribute) and loader.attr in ("SafeLoader", "CSafeLoader")
            if not safe:
                problems.append(f"line {node.lineno}: calls {func.value.id}.{func.attr}() without a safe loader")
    assert problems == [], f"{path.relative_to(ROOT)}: " + "; ".join(problems)


def test_a_rubric_with_a_python_tag_is_refused(tmp_path):
    """Rubric files go through yaml.safe_load as configs do: a code-executing tag is an error, not an object."""
    import yaml

    marker = tmp_path / "owned"
    text = f"name: x\nversion: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(text)
    assert not marker.exists()
    source = (ROOT / "include/modelwatch/judge/rubric.py").read_text()
    assert "yaml.safe_load(" in source
