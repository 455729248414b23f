"""The embedded runtime is reachable only from this machine, and its API only with the runtime's own credentials.

Uses the session's embedded Airflow (``local_airflow``) and S3 server (``s3_server``) from conftest rather than
starting an Airflow of its own.
"""

import json
import stat
import urllib.error
import urllib.request

import pytest
from modelwatch.runtime.localstack import Listener


def _status(url: str, body: dict | None = None) -> int:
    """The HTTP status ``url`` answers to a request without credentials (a POST of ``body`` as JSON if given)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.scheduler
def test_every_listener_of_the_embedded_runtime_is_on_loopback(local_airflow, s3_server):
    local_airflow.wait_for_dags(["modelwatch_daily", "modelwatch_rollback"])  # every component is up and working
    listeners = local_airflow.listeners() + s3_server.listeners()
    ports = {listener.port for listener in listeners}
    assert {local_airflow.api_port, s3_server.port} <= ports, listeners  # the check sees the servers it guards
    exposed = [listener for listener in listeners if not listener.loopback]
    assert not exposed, f"listening beyond 127.0.0.1: {exposed}"


@pytest.mark.scheduler
def test_the_api_server_answers_only_the_runtimes_own_user(local_airflow):
    base = f"http://127.0.0.1:{local_airflow.api_port}"
    assert _status(f"{base}/api/v2/dags") in (401, 403)
    assert _status(f"{base}/api/v2/connections") in (401, 403)
    assert _status(f"{base}/auth/token") in (401, 403)  # the no-credentials token of "everyone is admin"
    assert _status(f"{base}/auth/token", {"username": local_airflow.username, "password": "not-the-password"}) == 401

    assert stat.S_IMODE(local_airflow.passwords_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(local_airflow.home.stat().st_mode) == 0o700, "AIRFLOW_HOME holds the metadata DB: owner only"
    local_airflow.wait_for_dags(["modelwatch_rollback"])
    dags = local_airflow.api().call("GET", "/dags?limit=100")["dags"]
    assert "modelwatch_rollback" in {dag["dag_id"] for dag in dags}


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("::ffff:127.0.0.1", True),
                                                ("0.0.0.0", False), ("::", False), ("::ffff:10.1.2.3", False), ("192.168.1.5", False),
                                                ("fe80::1%eth0", False)])
def test_a_listener_counts_as_loopback_only_on_a_loopback_address(host, loopback):
    assert Listener("x (pid 1)", host, 80).loopback is loopback
