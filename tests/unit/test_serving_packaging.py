"""`pip install modelwatch[serving]` must be the client alone: no Airflow, pandas or pyarrow."""

import re
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
PIPELINE_ONLY = {"apache-airflow", "pandas", "pyarrow", "numpy", "pydantic", "great-expectations", "torch"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[=<>!~ ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_serving_install_pulls_none_of_the_pipeline_stack():
    project = PYPROJECT["project"]
    serving = _names(project["dependencies"]) | _names(project["optional-dependencies"]["serving"])
    assert serving == {"boto3", "prometheus-client"}
    assert PIPELINE_ONLY <= _names(project["optional-dependencies"]["pipeline"])


def test_every_requirement_is_pinned_and_in_the_lock_file():
    lock = {line.split("==")[0].lower().replace("_", "-"): line.split("==")[1].strip()
            for line in (Path(__file__).resolve().parents[2] / "requirements.lock").read_text().splitlines() if "==" in line}
    project = PYPROJECT["project"]
    for requirement in project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]:
        name, version = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;]+)", requirement).groups()
        assert lock.get(name.lower().replace("_", "-"), "").split("+")[0] == version, f"{requirement} is not what requirements.lock pins"
