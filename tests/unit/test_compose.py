"""The production compose file matches what the DAGs expect: services, connections, pools, buckets, the execution API."""

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from modelwatch.config import load_config

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_SERVICES = {"airflow-init", "api-server", "scheduler", "dag-processor", "worker", "triggerer"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def bundled():
    return load_config(ROOT / "include" / "config" / "modelwatch.yaml")


def _env(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def test_the_stack_has_airflows_celery_services_plus_s3_and_metrics(compose):
    assert AIRFLOW_SERVICES | {"postgres", "redis", "minio", "s3-init", "pushgateway", "prometheus", "grafana"} <= set(compose["services"])


def test_every_service_the_readme_names_exists(compose):
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`([a-z0-9-]+)` \(:\d+", readme))  # "`grafana` (:3000" style mentions of compose services
    assert named, "the README names the compose services with their ports"
    assert named <= set(compose["services"])


def test_airflow_services_share_one_celery_postgres_environment(compose):
    envs = [_env(compose["services"][name]) for name in AIRFLOW_SERVICES]
    for env in envs:
        assert env == envs[0]
    env = envs[0]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert urlparse(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname == "postgres"
    assert urlparse(env["AIRFLOW__CELERY__BROKER_URL"]).hostname == "redis"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql")


def test_the_execution_api_url_points_at_the_api_server_port(compose):
    env = _env(compose["services"]["worker"])
    url = urlparse(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    api = compose["services"]["api-server"]
    assert url.hostname == "api-server" and url.path == "/execution/"
    assert f"--port {url.port}" in " ".join(api["command"]) if isinstance(api["command"], list) else f"--port {url.port}" in api["command"]


def test_the_s3_connection_is_the_one_the_config_names_and_reaches_minio(compose, bundled):
    env = _env(compose["services"]["worker"])
    conn = json.loads(env[f"AIRFLOW_CONN_{bundled.defaults.aws_conn_id.upper()}"])
    endpoint = urlparse(conn["extra"]["endpoint_url"])
    assert conn["conn_type"] == "aws" and endpoint.hostname == "minio" and f"127.0.0.1:{endpoint.port}:{endpoint.port}" in compose["services"]["minio"]["ports"]


def test_the_buckets_the_config_names_are_created(compose, bundled):
    uris = [bundled.defaults.logs_uri, bundled.defaults.reports_uri, bundled.defaults.labels_uri]
    uris += [m.rollback.uri for m in bundled.models if m.rollback and m.rollback.uri]
    buckets = {urlparse(u).netloc for u in uris}
    command = " ".join(compose["services"]["s3-init"]["command"])
    assert all(f"local/{b}" in command for b in buckets), (buckets, command)


def test_pools_the_dags_use_are_created_at_init(compose):
    used = set(re.findall(r'pool="([^"]+)"', "\n".join(p.read_text() for p in (ROOT / "dags").rglob("*.py"))))
    assert used, "the DAGs use a pool"
    init = " ".join(compose["services"]["airflow-init"]["command"])
    assert all(f"airflow pools set {pool} " in init for pool in used)


def test_the_config_path_is_inside_a_mounted_folder(compose):
    service = compose["services"]["worker"]
    config = _env(service)["MODELWATCH_CONFIG"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in service["volumes"]}
    target = next(t for t in mounts if config.startswith(t + "/"))
    assert (ROOT / mounts[target].removeprefix("./") / config.removeprefix(target + "/")).exists()


def test_airflow_waits_for_its_init_jobs_and_images_are_pinned(compose):
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        needs = compose["services"][name]["depends_on"]
        assert needs["airflow-init"]["condition"] == needs["s3-init"]["condition"] == "service_completed_successfully"
    for name, service in compose["services"].items():
        image = service.get("image", "")
        assert not image.endswith(":latest") and (":" in image or "build" in service), f"{name}: pin the image ({image!r})"


def test_every_published_port_is_bound_to_loopback(compose):
    """A port published as "8080:8080" listens on every interface of the host; the stack publishes on 127.0.0.1 only."""
    published = {(name, str(port)) for name, service in compose["services"].items() for port in service.get("ports", [])}
    assert published, "the stack publishes the ports the README names"
    assert [p for p in published if not p[1].startswith("127.0.0.1:")] == []


def test_the_evidently_ui_reads_the_workspace_the_workers_write_from_minio(compose):
    ui = compose["services"]["evidently-ui"]
    command = ui["command"]
    workspace = command[command.index("--workspace") + 1]
    assert workspace == _env(compose["services"]["worker"])["MODELWATCH_EVIDENTLY_WORKSPACE"]
    assert f"local/{urlparse(workspace).netloc}" in " ".join(compose["services"]["s3-init"]["command"])  # its bucket is created
    conn = json.loads(_env(compose["services"]["worker"])["AIRFLOW_CONN_AWS_DEFAULT"])
    env = _env(ui)
    assert env["FSSPEC_S3_ENDPOINT_URL"] == conn["extra"]["endpoint_url"]
    assert (env["FSSPEC_S3_KEY"], env["FSSPEC_S3_SECRET"]) == (conn["login"], conn["password"])
    assert ui["entrypoint"] == ["python", "-m", "modelwatch.drift.evidently_ui"]
    port = command[command.index("--port") + 1]
    assert ui["ports"] == [f"127.0.0.1:{port}:{port}"] and command[command.index("--host") + 1] == "0.0.0.0"
    assert f"`evidently-ui` (:{port}" in (ROOT / "README.md").read_text()
