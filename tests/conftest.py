"""Shared fixtures: a real S3-compatible server over HTTP, an Airflow metadata DB for dag.test(), and one
embedded Airflow (real scheduler) shared by the tests that need it.

Airflow reads its settings when first imported, so the environment is set here, at
collection time, before any test module imports it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="modelwatch-test-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AWS_ACCESS_KEY_ID": "modelwatch",
        "AWS_SECRET_ACCESS_KEY": "modelwatch",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
sys.path.insert(0, str(ROOT / "dags"))
sys.path.insert(0, str(ROOT / "plugins"))


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on a free port of 127.0.0.1, reached over real HTTP."""
    from modelwatch.runtime.localstack import LocalS3

    server = LocalS3(log=_AIRFLOW_HOME / "s3.log").start()
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = server.connection_json()
    os.environ["MODELWATCH_S3_ENDPOINT"] = server.endpoint
    yield server
    server.stop()


@pytest.fixture()
def s3(s3_server):
    from modelwatch.storage.s3 import make_client

    return make_client(endpoint_url=s3_server.endpoint)


@pytest.fixture()
def isolated_config(s3, tmp_path, monkeypatch):
    """The bundled config with buckets unique to this test, created on the S3 server."""
    import yaml
    from modelwatch.config import DEFAULT_CONFIG_PATH, load_config
    from modelwatch.storage.s3 import ensure_bucket

    tag = uuid.uuid4().hex[:10]
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["defaults"].update(
        logs_uri=f"s3://logs-{tag}/inference", reports_uri=f"s3://reports-{tag}/reports", labels_uri=f"s3://logs-{tag}/labels"
    )
    for model in data["models"]:
        if model.get("rollback"):
            model["rollback"]["uri"] = f"s3://serving-{tag}/routing/{model['id']}.json"
    path = tmp_path / "modelwatch.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("MODELWATCH_CONFIG", str(path))
    cfg = load_config(path)
    for bucket in (f"logs-{tag}", f"reports-{tag}", f"serving-{tag}"):
        ensure_bucket(s3, bucket)
    return cfg


EMBEDDED_AIRFLOW = "local_airflow"
_embedded: list = []  # the session's LocalAirflow once started, so the hook below can stop it early


@pytest.fixture(scope="session")
def scheduler_config_path(s3_server, tmp_path_factory) -> Path:
    """The bundled config with buckets ``scheduler-*`` (created), written where the session's embedded Airflow reads it."""
    import yaml
    from modelwatch.storage.s3 import make_client

    data = bundled_config_data("scheduler")
    scoped_config(make_client(endpoint_url=s3_server.endpoint), "scheduler", data)
    path = tmp_path_factory.mktemp("scheduler-config") / "modelwatch.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture()
def scheduler_config(scheduler_config_path):
    """The config the session's embedded Airflow runs with (see ``scheduler_config_path``)."""
    from modelwatch.config import load_config

    return load_config(scheduler_config_path)


@pytest.fixture(scope="session")
def alert_webhook():
    """The team webhook of the session's embedded Airflow (``$MODELWATCH_ALERT_WEBHOOK``): records what it is told."""
    from webhook_receiver import Receiver

    receiver = Receiver("/services/alerts")
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def local_airflow(s3_server, scheduler_config_path, alert_webhook, tmp_path_factory):
    """One embedded Airflow (API server, scheduler, dag-processor; LocalExecutor on SQLite) for every test that needs
    a real scheduler, reading ``scheduler_config`` and telling ``alert_webhook``; stopped right after the last test that uses it."""
    from modelwatch.runtime.localstack import LocalAirflow

    airflow = LocalAirflow(tmp_path_factory.mktemp("local-airflow") / "airflow",
                           extra_env={"MODELWATCH_CONFIG": str(scheduler_config_path), "AIRFLOW_CONN_AWS_DEFAULT": s3_server.connection_json(),
                                      "MODELWATCH_ALERT_WEBHOOK": alert_webhook.url})
    _embedded.append(airflow)
    try:
        airflow.migrate()
        airflow.start()
        yield airflow
    finally:
        airflow.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    # A session fixture lives until the session ends: stop the embedded Airflow once no later test needs it,
    # rather than leave its processes polling beside the rest of the suite.
    result = yield
    if _embedded and _embedded[0].procs and not _needed_later(item):
        _embedded[0].stop()
    return result


def _needed_later(item) -> bool:
    """Whether a test after ``item`` in this session uses the embedded Airflow."""
    later = item.session.items[item.session.items.index(item) + 1:]
    return any(EMBEDDED_AIRFLOW in getattr(test, "fixturenames", ()) for test in later)


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated Airflow metadata DB (SQLite) for dag.test() runs."""
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True, env=os.environ)
    subprocess.run([airflow, "pools", "set", "llm_judge", "2", "judge tasks"], check=True, capture_output=True, env=os.environ)
    return _AIRFLOW_HOME


def bundled_config_data(name: str) -> dict:
    """The bundled config as data, with buckets ``<name>-logs``, ``<name>-reports``, ``<name>-serving`` for one test module."""
    import yaml
    from modelwatch.config import DEFAULT_CONFIG_PATH

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["defaults"].update(logs_uri=f"s3://{name}-logs/inference", reports_uri=f"s3://{name}-reports/reports", labels_uri=f"s3://{name}-logs/labels")
    for model in data["models"]:
        if model.get("rollback"):
            model["rollback"]["uri"] = f"s3://{name}-serving/{model['id']}.json"
    return data


def scoped_config(client, name: str, data: dict | None = None):
    """Validate ``data`` (default: ``bundled_config_data(name)``) and create its buckets on the S3 server."""
    from modelwatch.config import parse_config
    from modelwatch.storage.s3 import ensure_bucket

    cfg = parse_config(data or bundled_config_data(name))
    for bucket in (f"{name}-logs", f"{name}-reports", f"{name}-serving"):
        ensure_bucket(client, bucket)
    return cfg
