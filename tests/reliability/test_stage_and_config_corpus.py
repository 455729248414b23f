"""Bad input past the reader: configs, missing baselines, arms that never appear, labels for unknown requests.

The config cases load a YAML file through ``config.load_config`` and expect a
``ConfigError`` that names the file, the key path and what was expected (the fix). The
stage cases run the real stages on the S3 server and expect an explicit abstention
(``no_baseline``, inconclusive with a reason, orphan labels counted) instead of a crash
or a NaN.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pytest
import yaml
from corpus import good, lines
from modelwatch.config import ConfigError, load_config
from modelwatch.core.partition import Partition
from modelwatch.storage.s3 import put_bytes


@dataclass(frozen=True)
class ConfigCase:
    name: str
    how: str
    edit: Callable[[dict], object]  # returns the data to write (usually the edited dict)
    expect: tuple[str, ...]  # substrings of the error: key path and the fix


def _set(path: list, value) -> Callable[[dict], dict]:
    def edit(data: dict) -> dict:
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        return data

    return edit


def _rename(path: list, old: str, new: str) -> Callable[[dict], dict]:
    def edit(data: dict) -> dict:
        node = data
        for part in path:
            node = node[part]
        node[new] = node.pop(old)
        return data

    return edit


LLM_EXP = ["models", 0, "experiments", 0]
CONFIG_CASES: list[ConfigCase] = [
    ConfigCase("typo_top_level_key", "'models' written 'modles'", _rename([], "models", "modles"),
               ("modles: unknown key; did you mean 'models'?", "models: Field required")),
    ConfigCase("typo_nested_key", "drift.features written 'featurs'", _rename(["models", 0, "drift"], "features", "featurs"),
               ("models[0].drift.featurs: unknown key; did you mean 'features'?",)),
    ConfigCase("unknown_guardrail_metric", "guardrail metric 'latency_p99' (the name ends in _ms)", _set([*LLM_EXP, "guardrails", 0, "metric"], "latency_p99"),
               ("models[0].experiments[0].guardrails[0].metric: unknown metric 'latency_p99'", "did you mean 'latency_p99_ms'")),
    ConfigCase("unknown_metric_without_near_name", "hard-limit metric 'banana'", _set([*LLM_EXP, "hard_limits", 0, "metric"], "banana"),
               ("models[0].experiments[0].hard_limits[0].metric: unknown metric 'banana'", "known: ")),
    ConfigCase("impossible_rate_limit", "error_rate max 1.5 (a share cannot exceed 1)", _set([*LLM_EXP, "hard_limits", 0, "max"], 1.5),
               ("models[0].experiments[0].hard_limits[0]", "share between 0 and 1", "1.5 is impossible")),
    ConfigCase("min_above_max", "a hard limit with min 0.5 above max 0.02", _set([*LLM_EXP, "hard_limits", 0, "min"], 0.5),
               ("models[0].experiments[0].hard_limits[0]", "min 0.5 is above max 0.02")),
    ConfigCase("split_above_one", "treatment split 1.2", _set([*LLM_EXP, "split"], {"treatment": 1.2}),
               ("models[0].experiments[0].split", "must lie in (0, 1)")),
    ConfigCase("alpha_out_of_range", "drift alpha 1.5", _set(["models", 0, "drift", "alpha"], 1.5),
               ("models[0].drift.alpha", "less than 1")),
    ConfigCase("too_few_permutations", "100 permutations with embedding_alpha 0.001", _set(["models", 0, "drift", "embedding_alpha"], 0.001),
               ("models[0].drift", "cannot give a p-value below 0.001", "use at least 1000")),
    ConfigCase("unknown_cadence", "cadence 'weekly'", _set(["models", 0, "cadence"], ["weekly"]),
               ("models[0].cadence[0]", "'daily' or 'hourly'")),
    ConfigCase("logs_uri_not_s3", "logs_uri given as a local path", _set(["defaults", "logs_uri"], "/var/logs"),
               ("defaults.logs_uri", "expected an s3://bucket/prefix URI")),
    ConfigCase("duplicate_model_ids", "the second model renamed to the first one's id", _set(["models", 1, "id"], "support-bot-v3"),
               ("model ids must be unique", "support-bot-v3")),
    ConfigCase("string_where_number", "max_invalid_share 'five percent'", _set(["defaults", "max_invalid_share"], "five percent"),
               ("defaults.max_invalid_share", "valid number")),
    ConfigCase("zero_shard_bytes", "shard_bytes 0 (every file would be a shard of nothing)", _set(["defaults", "shard_bytes"], 0),
               ("defaults.shard_bytes", "greater than or equal to 1")),
    ConfigCase("not_a_mapping", "the file holds a YAML list", lambda data: [data], ("(top level): expected a mapping with 'models'",)),
]


@pytest.fixture()
def bundled() -> dict:
    from conftest import bundled_config_data

    data = bundled_config_data("rel-config")
    data["models"][0]["drift"]["permutations"] = 100
    data["models"][0]["drift"]["embedding_alpha"] = 0.01
    return data


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c.name for c in CONFIG_CASES])
def test_config_error_names_file_key_path_and_fix(tmp_path, bundled, case: ConfigCase):
    path = tmp_path / "modelwatch.yaml"
    path.write_text(yaml.safe_dump(case.edit(copy.deepcopy(bundled))))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    message = str(raised.value)
    assert str(path) in message
    for part in case.expect:
        assert part in message, message


@pytest.mark.parametrize("text", [
    "models: [\n  - id: x\n    kind: llm\n",  # unclosed bracket
    "defaults:\n\tlogs_uri: s3://a/b\n",  # a tab indentation
    "models: !!python/object/apply:os.system ['echo owned']\n",  # a code-executing tag: only a safe loader refuses it
], ids=["unclosed_bracket", "tab_indent", "python_tag"])
def test_unparseable_or_unsafe_yaml_is_a_config_error(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not valid YAML") as raised:
        load_config(path)
    assert str(path) in str(raised.value)


def test_missing_config_file_says_how_to_point_at_one(tmp_path):
    with pytest.raises(ConfigError, match="MODELWATCH_CONFIG"):
        load_config(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- stages

@pytest.fixture(scope="module")
def staged(s3_server):
    from conftest import bundled_config_data, scoped_config
    from modelwatch.storage.s3 import make_client

    client = make_client(endpoint_url=s3_server.endpoint)
    return client, scoped_config(client, "rel-stage", bundled_config_data("rel-stage"))


def _day(client, cfg, model_id: str, day: date, rows: list[dict]):
    from modelwatch.runner import extract, validate

    partition = Partition(model_id, day)
    put_bytes(client, f"{partition.path(cfg.defaults.logs_uri)}/part-0.jsonl", lines(rows))
    return validate(client, cfg, extract(client, cfg, partition))


def test_experiment_arm_that_never_appears_abstains_with_reasons(staged):
    from modelwatch.runner import experiments, profile

    client, cfg = staged
    day = date(2026, 11, 10)  # exp-042 runs from 2026-11-04
    rows = [good(day, i, variant="control", experiment_id="exp-042") if i % 2 else good(day, i) for i in range(300)]
    validated = _day(client, cfg, "support-bot-v3", day, rows)
    profiled = profile(client, cfg, validated, "daily")
    limit = next(c for c in profiled["hard_limits"] if c["experiment_id"] == "exp-042")
    assert limit["state"] == "abstain" and limit["value"] is None and "no treatment traffic" in limit["reason"]
    result = experiments(client, cfg, validated, profiled)
    exp = next(e for e in result["experiments"] if e["experiment_id"] == "exp-042")
    assert exp["decision"] == "invalid" and exp["health_ok"] is False  # an arm that never appears is a sample-ratio mismatch
    assert any("arms without traffic: ['treatment']" in r for r in exp["reasons"])
    for verdict in exp["primary"] + exp["guardrails"]:
        assert verdict.get("decision", verdict.get("verdict")) == "inconclusive" and verdict["reason"], verdict
        assert verdict["estimate" if "estimate" in verdict else "relative_lift"] is None  # abstained: no number, not a NaN
    assert result["breaches"] == []


def test_baseline_that_does_not_exist_gives_no_baseline_and_the_command(staged):
    from modelwatch.runner import drift

    client, cfg = staged
    day = date(2026, 11, 11)
    result = drift(client, cfg, _day(client, cfg, "support-bot-v3", day, [good(day, i) for i in range(50)]))
    assert result["outcome"] == "no_baseline" and result["severity"] == "none" and result["alerts"] == []
    assert "manifest.json is missing" in result["reason"] and "modelwatch_baseline" in result["reason"]


def test_labels_for_unknown_request_ids_are_counted_not_joined(staged):
    import json

    from modelwatch.runner import concept
    from modelwatch.storage.s3 import get_json

    client, cfg = staged
    day = date(2026, 11, 12)
    rows = [{"request_id": f"churn-{i}", "timestamp": f"{day}T{i % 24:02d}:00:00Z", "model_id": "churn-classifier-v2", "variant": "production",
             "status": "ok", "latency_ms": 12.0, "features": {"tenure_months": i % 40, "plan": "basic"}, "prediction": "stay", "probability": 0.3}
            for i in range(40)]
    validated = _day(client, cfg, "churn-classifier-v2", day, rows)
    labels = [{"request_id": f"churn-{i}", "label": "stay", "labelled_at": f"{day}T23:00:00Z"} for i in range(10)]
    labels += [{"request_id": f"ghost-{i}", "label": "churn", "labelled_at": f"{day}T23:00:00Z"} for i in range(7)]
    put_bytes(client, f"{cfg.defaults.labels_uri}/model_id=churn-classifier-v2/dt={day}/labels.jsonl", "\n".join(map(json.dumps, labels)).encode())
    result = concept(client, cfg, validated)
    join = get_json(client, result["concept_uri"])["labels"]["join"]
    assert join["labels_in"] == 17 and join["labels_matched"] == 10 and join["labels_without_prediction"] == 7
    assert join["predictions_in"] == join["matched"] + join["predictions_without_label"] == 40
    assert result["verdict"] == "insufficient_labels" and "10 labelled predictions" in result["reason"], result  # orphans never count
