"""Rollback actions: webhook with retries against a real local HTTP server, Airflow-Variable style store, dry run, notification."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from modelwatch.observe.webhook import WebhookError, post_json
from modelwatch.rollback.actions import RoutingDocumentAction, VariableAction, WebhookAction, apply_rollback, notifier
from modelwatch.storage.s3 import ensure_bucket, exists, get_json, list_objects


class _Hook(BaseHTTPRequestHandler):
    script: list[int] = []
    received: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append({"body": body, "idempotency_key": self.headers.get("Idempotency-Key")})
        status = type(self).script.pop(0) if type(self).script else 200
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b'{"ok": true}' if status == 200 else b"nope")

    def log_message(self, *args):
        pass


@pytest.fixture()
def hook():
    _Hook.script, _Hook.received = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/rollback", _Hook
    server.shutdown()


def _breach(b: str, breach_id: str = "b1") -> dict:
    return {"model_id": "m", "experiment_id": "exp-1", "control": "control", "treatment": "treatment", "breach_id": breach_id,
            "reason": "latency_p99_ms inferior", "detected_at": "2026-11-08T00:10:00+00:00", "reports_uri": f"s3://{b}/reports"}


def test_webhook_retries_server_errors_then_succeeds(hook):
    url, handler = hook
    handler.script = [503, 502]
    result = post_json(url, {"a": 1}, retries=3, backoff_s=0.01)
    assert result["status"] == 200 and result["attempts"] == 3 and len(handler.received) == 3


def test_webhook_does_not_retry_a_client_error_and_names_the_url(hook):
    url, handler = hook
    handler.script = [400]
    with pytest.raises(WebhookError, match=f"POST {url} refused"):
        post_json(url, {"a": 1}, retries=3, backoff_s=0.01)
    assert len(handler.received) == 1


def test_webhook_gives_up_after_its_retries():
    with pytest.raises(WebhookError, match="after 2 attempts"):
        post_json("http://127.0.0.1:9/nothing-listens", {}, retries=1, timeout_s=0.5, backoff_s=0.01)


def test_webhook_action_sends_the_rollback_once_with_an_idempotency_key(s3, hook):
    url, handler = hook
    b = f"t-{uuid.uuid4().hex[:12]}"
    ensure_bucket(s3, b)
    notes = []
    first = apply_rollback(s3, f"s3://{b}/reports", _breach(b), WebhookAction(url, retries=1), "run-1", notify=notes.append)
    again = apply_rollback(s3, f"s3://{b}/reports", _breach(b), WebhookAction(url, retries=1), "run-2", notify=notes.append)
    assert first["outcome"] == "rolled_back" and first["notified"] == "sent" and again["outcome"] == "already_applied"
    assert len(handler.received) == 1 and handler.received[0]["idempotency_key"] == "b1"
    assert handler.received[0]["body"]["weights"] == {"control": 1.0, "treatment": 0.0}
    assert len(notes) == 1 and notes[0]["outcome"] == "rolled_back"


def test_variable_action_and_a_failing_notifier_do_not_block_the_rollback(s3):
    b = f"t-{uuid.uuid4().hex[:12]}"
    ensure_bucket(s3, b)
    store: dict[str, str] = {}

    def broken_notify(record):
        raise ConnectionError("hook down")

    action = VariableAction("routing_m", store.get, store.__setitem__)
    result = apply_rollback(s3, f"s3://{b}/reports", _breach(b), action, "run-1", notify=broken_notify)
    assert result["outcome"] == "rolled_back" and result["notified"].startswith("failed: hook down")
    assert json.loads(store["routing_m"])["experiments"]["exp-1"]["weights"] == {"control": 1.0, "treatment": 0.0}
    second = apply_rollback(s3, f"s3://{b}/reports", _breach(b, "b2"), action, "run-2")
    assert second["outcome"] == "already_rolled_back"


@pytest.mark.parametrize("status", [500, 404])
def test_a_failed_notification_is_recorded_without_the_notify_url(s3, hook, status):
    """The outcome becomes the task's XCom: it says the notification failed and why, naming the endpoint's host only."""
    url, handler = hook
    handler.script = [status] * 3
    notify_url = f"{url}/services/T0/B0/s3cr3t-path"
    b = f"t-{uuid.uuid4().hex[:12]}"
    ensure_bucket(s3, b)
    store: dict[str, str] = {}
    result = apply_rollback(s3, f"s3://{b}/reports", _breach(b), VariableAction("routing_m", store.get, store.__setitem__), "run-1",
                            notify=notifier(notify_url, timeout_s=2, retries=1, setting="rollback.notify_url of model m"))
    assert result["outcome"] == "rolled_back" and result["notified"].startswith(f"failed: POST {url.rsplit('/', 1)[0]}/… ")
    assert f"HTTP {status}" in result["notified"] and "s3cr3t-path" not in json.dumps(result)
    assert len(handler.received) == (2 if status == 500 else 1)  # the endpoint was really called (5xx retried once)
    assert notifier(None, timeout_s=2, retries=1, setting="rollback.notify_url of model m") is None


def test_dry_run_audits_but_changes_nothing(s3):
    b = f"t-{uuid.uuid4().hex[:12]}"
    ensure_bucket(s3, b)
    routing = f"s3://{b}/routing/m.json"
    result = apply_rollback(s3, f"s3://{b}/reports", _breach(b), RoutingDocumentAction(s3, routing), "run-1", dry_run=True)
    assert result["outcome"] == "dry_run" and not exists(s3, routing)
    audit = get_json(s3, result["audit_uri"])
    assert audit["dry_run"] is True and audit["target"] == routing


def test_routing_document_keeps_every_version(s3):
    b = f"t-{uuid.uuid4().hex[:12]}"
    ensure_bucket(s3, b)
    routing = f"s3://{b}/routing/m.json"
    apply_rollback(s3, f"s3://{b}/reports", _breach(b), RoutingDocumentAction(s3, routing), "run-1")
    other = {**_breach(b, "b9"), "experiment_id": "exp-2"}
    apply_rollback(s3, f"s3://{b}/reports", other, RoutingDocumentAction(s3, routing), "run-2")
    doc = get_json(s3, routing)
    assert doc["version"] == 2 and set(doc["experiments"]) == {"exp-1", "exp-2"}
    versions = sorted(u for u, _ in list_objects(s3, f"s3://{b}/routing/") if ".v" in u)
    assert versions == [f"{routing}.v1", f"{routing}.v2"] and get_json(s3, versions[0])["version"] == 1
