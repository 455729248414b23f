import copy

import pytest
import yaml
from modelwatch.config import DEFAULT_CONFIG_PATH, ConfigError, load_config, parse_config
from modelwatch.runtime.cli import main

BASE = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


def problems(data) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "cfg.yaml")
    return info.value.problems


def test_bundled_config_is_valid():
    cfg = load_config()
    assert cfg.models_for("daily") == ["support-bot-v3", "churn-classifier-v2"]
    assert cfg.models_for("hourly") == ["support-bot-v3"]
    assert cfg.model("support-bot-v3").experiments[0].weights() == {"treatment": 0.1, "control": 0.9}


def test_typo_names_the_key_path_and_suggests_the_fix():
    data = copy.deepcopy(BASE)
    data["models"][0]["cadense"] = data["models"][0].pop("cadence")
    assert problems(data) == ["models[0].cadense: unknown key; did you mean 'cadence'?"]


def test_every_problem_is_reported_at_once():
    data = copy.deepcopy(BASE)
    data["models"][0]["kind"] = "llm2"
    data["models"][0]["experiments"][0]["hard_limits"][0]["metric"] = "eror_rate"
    data["models"][1]["segments"] = ["topic"]
    found = problems(data)
    assert len(found) == 3
    assert any(p.startswith("models[0].kind:") for p in found)
    assert "models[0].experiments[0].hard_limits[0].metric: unknown metric 'eror_rate' (did you mean 'error_rate'?)" in found
    assert any(p.startswith("models[1].segments:") and "metadata.<key>" in p for p in found)


@pytest.mark.parametrize(
    "limit, message",
    [({"metric": "error_rate", "max": 2}, "is a share between 0 and 1"),
     ({"metric": "latency_p99_ms", "min": 10, "max": 5}, "no value can pass"),
     ({"metric": "latency_p99_ms"}, "needs max or min")],
)
def test_impossible_thresholds(limit, message):
    data = copy.deepcopy(BASE)
    data["models"][0]["experiments"][0]["hard_limits"] = [limit]
    assert message in problems(data)[0]


def test_split_and_arms_are_checked():
    data = copy.deepcopy(BASE)
    data["models"][0]["experiments"][0]["split"] = {"treatment": 1.5}
    assert "split weights must lie in (0, 1)" in problems(data)[0]
    data["models"][0]["experiments"][0]["split"] = {"arm-c": 0.2}
    assert "unknown arm(s) ['arm-c']" in problems(data)[0]


def test_duplicate_ids_and_missing_rollback():
    data = copy.deepcopy(BASE)
    data["models"][1]["id"] = "support-bot-v3"
    assert "repeated: ['support-bot-v3']" in problems(data)[0]
    data = copy.deepcopy(BASE)
    del data["models"][0]["rollback"]
    assert "need a rollback" in problems(data)[0]


def test_bad_uri_and_missing_file(tmp_path):
    data = copy.deepcopy(BASE)
    data["defaults"]["logs_uri"] = "/local/path"
    assert problems(data) == ["defaults.logs_uri: expected an s3://bucket/prefix URI, got '/local/path'"]
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_the_evidently_workspace_is_an_s3_uri_and_the_ui_a_web_address():
    data = copy.deepcopy(BASE)
    data["defaults"].update(evidently_workspace_uri="demo_output/evidently", evidently_ui_url="127.0.0.1:8000")
    assert problems(data) == [
        "defaults.evidently_workspace_uri: expected an s3://bucket/prefix URI for the Evidently workspace, got 'demo_output/evidently'",
        "defaults.evidently_ui_url: expected the http(s):// address of the Evidently UI, got '127.0.0.1:8000'",
    ]
    data["defaults"].update(evidently_workspace_uri="s3://ml-monitoring/evidently/", evidently_ui_url="http://127.0.0.1:8000/")
    defaults = parse_config(data).defaults
    assert (defaults.evidently_workspace_uri, defaults.evidently_ui_url) == ("s3://ml-monitoring/evidently", "http://127.0.0.1:8000")


def test_cli_validate_config_prints_problems(tmp_path, capsys):
    assert main(["validate-config", str(DEFAULT_CONFIG_PATH)]) == 0
    assert "ok (2 models" in capsys.readouterr().out
    data = copy.deepcopy(BASE)
    data["models"][0]["judge"]["backend"] = "gpt"
    data["defaults"]["max_invalid_share"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["validate-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err
    assert "defaults.max_invalid_share:" in err and "models[0].judge.backend:" in err
