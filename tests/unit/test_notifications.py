"""Notification payloads (Slack Block Kit and plain JSON), report links, and delivery that never reveals the webhook URL."""

from __future__ import annotations

import copy
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelwatch.config import ConfigError, parse_config
from modelwatch.observe import notifications as nt
from prom_servers import sample_summary

REPORTS = "s3://ml-monitoring/reports"
BASE = "https://reports.example.com/modelwatch"
HOSTILE = "<!channel> & <https://evil.example|click here> <script>alert(1)</script>"


def _summary(**knobs) -> dict:
    s = sample_summary(decision="roll_back", **knobs)
    s["outputs"] = {"page": f"{REPORTS}/model_id=support-bot-v3/dt=2026-11-20/index.html",
                    "evidently_report": f"{REPORTS}/model_id=support-bot-v3/dt=2026-11-20/report.html"}
    s["breaches"] = [{"model_id": "support-bot-v3", "experiment_id": "exp-042", "metric": "error_rate", "value": 0.051,
                      "limit": {"max": 0.02, "min": None}, "reason": f"error_rate 0.051 above max 0.02 in segment {HOSTILE}",
                      "breach_id": "b-1"}]
    return s


def _mrkdwn_texts(payload: dict) -> list[str]:
    """Every string Slack parses as mrkdwn: the fallback text and every mrkdwn object in the blocks."""
    found = [payload["text"]]

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(payload["blocks"])
    return found


_OWN_LINK = re.compile(r"<https?://[^\s<>|]+\|[^<>]*>")


def _assert_no_control_characters(payload: dict) -> None:
    """Outside the links the builder made, no raw ``<``/``>`` and every ``&`` starts an entity."""
    for text in _mrkdwn_texts(payload):
        rest = _OWN_LINK.sub("", text)
        assert "<" not in rest and ">" not in rest, text
        assert not re.search(r"&(?!amp;|lt;|gt;)", rest), text


def _assert_slack_shape(payload: dict) -> None:
    assert isinstance(payload["text"], str) and payload["text"]
    json.dumps(payload)  # plain JSON, nothing else
    assert payload["blocks"][0]["type"] == "header" and len(payload["blocks"][0]["text"]["text"]) <= nt.HEADER_LIMIT
    assert len(payload["blocks"]) <= 50
    for block in payload["blocks"]:
        assert block["type"] in {"header", "section", "actions", "context"}
        if block["type"] == "section":
            assert "text" in block or "fields" in block
            assert len(block.get("text", {}).get("text", "")) <= nt.SECTION_LIMIT
            assert len(block.get("fields", [])) <= 10
        if block["type"] == "actions":
            assert all(e["url"].startswith(("https://", "http://")) for e in block["elements"])


def test_escape_mrkdwn_escapes_the_three_control_characters_once():
    assert nt.escape_mrkdwn("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert nt.escape_mrkdwn("&lt;") == "&amp;lt;"  # a literal entity in traffic stays literal


@given(st.text())
def test_escaping_round_trips_and_leaves_no_control_character(text):
    escaped = nt.escape_mrkdwn(text)
    assert "<" not in escaped and ">" not in escaped
    assert escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text


@pytest.mark.parametrize(("uri", "base", "expected"), [
    (f"{REPORTS}/model_id=m/dt=2026-11-20/index.html", BASE, f"{BASE}/model_id=m/dt=2026-11-20/index.html"),
    (f"{REPORTS}/model_id=m/dt=2026-11-20/index.html", BASE + "/", f"{BASE}/model_id=m/dt=2026-11-20/index.html"),
    (f"{REPORTS}/model_id=a b/dt=2026-11-20/index.html", BASE, f"{BASE}/model_id=a%20b/dt=2026-11-20/index.html"),
    (f"{REPORTS}/model_id=m/dt=2026-11-20/index.html", None, f"{REPORTS}/model_id=m/dt=2026-11-20/index.html"),
    ("s3://other-bucket/reports/x/index.html", BASE, "s3://other-bucket/reports/x/index.html"),  # not under the prefix
    (f"{REPORTS}-old/x/index.html", BASE, f"{REPORTS}-old/x/index.html"),  # a sibling prefix is not mapped
    (None, BASE, None),
])
def test_report_link_maps_the_reports_prefix_or_falls_back_to_s3(uri, base, expected):
    assert nt.report_link(uri, REPORTS, base) == expected


def test_breach_payload_is_slack_shaped_escaped_and_links_the_report():
    s = _summary()
    url = nt.report_link(s["outputs"]["page"], REPORTS, BASE)
    payload = nt.breach_payload(s, s["breaches"], url)
    _assert_slack_shape(payload)
    _assert_no_control_characters(payload)
    body = json.dumps(payload["blocks"])
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click here&gt;" in body
    assert f"<{url}|Open report>" in body
    assert [e["url"] for b in payload["blocks"] if b["type"] == "actions" for e in b["elements"]] == [url]
    data = payload["modelwatch"]
    assert data["event"] == "breach" and data["model_id"] == "support-bot-v3" and data["report_url"] == url
    assert data["breaches"][0]["reason"].endswith(HOSTILE)  # the JSON consumer gets the raw text
    assert "exp-042" in payload["text"] and "error_rate" in payload["text"] and url in payload["text"]


def test_an_s3_report_is_shown_as_code_not_as_a_link_or_button():
    s = _summary()
    payload = nt.breach_payload(s, s["breaches"], s["outputs"]["page"])
    assert not [b for b in payload["blocks"] if b["type"] == "actions"]
    assert f"`{s['outputs']['page']}`" in json.dumps(payload["blocks"])
    _assert_no_control_characters(payload)


def test_drift_payload_lists_the_worst_alerts_first_and_counts_the_rest():
    s = _summary()
    s["drift"]["alerts"] = [{"family": "features", "column": f"c{i}", "severity": "low", "effect_method": "psi", "effect": 0.1}
                            for i in range(14)] + [{"family": "segment metadata.locale", "segment": "metadata.locale=de<DE>&",
                                                    "column": "prompt_tokens", "severity": "high", "effect_method": "wasserstein", "effect": 0.9}]
    s["drift"]["alert_count"] = 40
    s["drift"]["severity"] = "high"
    payload = nt.drift_payload(s, nt.report_link(s["outputs"]["page"], REPORTS, BASE), nt.report_link(s["outputs"]["evidently_report"], REPORTS, BASE))
    _assert_slack_shape(payload)
    _assert_no_control_characters(payload)
    body = payload["blocks"][1]["text"]["text"]
    lines = [line for line in body.splitlines() if line.startswith("•")]
    assert len(lines) == nt.MAX_LISTED and lines[0].startswith("• high") and "metadata.locale=de&lt;DE&gt;&amp;" in lines[0]
    assert body.endswith(f"…and {40 - nt.MAX_LISTED} more")
    assert payload["modelwatch"]["severity"] == "high" and payload["modelwatch"]["alert_count"] == 40
    buttons = [e["url"] for b in payload["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == [f"{BASE}/model_id=support-bot-v3/dt=2026-11-20/index.html", f"{BASE}/model_id=support-bot-v3/dt=2026-11-20/report.html"]


def test_long_traffic_text_is_clipped_to_slack_limits():
    s = _summary()
    s["breaches"] = [{**s["breaches"][0], "reason": "x" * 5000, "experiment_id": f"exp-{i}"} for i in range(30)]
    payload = nt.breach_payload(s, s["breaches"], None)
    _assert_slack_shape(payload)
    assert len(payload["text"]) <= nt.FALLBACK_LIMIT
    assert "_no report link_" in json.dumps(payload["blocks"])


@pytest.mark.parametrize(("severity", "level", "expected"), [
    ("medium", "medium", True), ("high", "medium", True), ("low", "medium", False), ("none", "low", False),
    ("high", "high", True), ("medium", "high", False), (None, "low", False), ("bogus", "low", False),
])
def test_severity_at_least(severity, level, expected):
    assert nt.severity_at_least(severity, level) is expected


def test_severity_level_must_be_known():
    with pytest.raises(ValueError, match="unknown severity level 'severe'"):
        nt.severity_at_least("high", "severe")


def _keys(summary, level):
    return [n.event for n in nt.run_notifications(summary, reports_uri=REPORTS, report_base_url=BASE, drift_level=level)]


def test_run_notifications_choose_breach_and_drift_by_level():
    s = _summary()  # breach, drift severity medium
    assert _keys(s, "medium") == ["breach", "drift"]
    assert _keys(s, "low") == ["breach", "drift"]
    assert _keys(s, "high") == ["breach"]
    assert _keys(s, None) == ["breach"]
    quiet = copy.deepcopy(s)
    quiet["breaches"] = []
    quiet["drift"]["severity"] = "low"
    assert _keys(quiet, "medium") == []
    no_baseline = copy.deepcopy(s)
    no_baseline["breaches"], no_baseline["drift"] = [], {"outcome": "no_baseline", "severity": "none", "alerts": [], "reason": "missing"}
    assert _keys(no_baseline, "low") == []
    hourly = copy.deepcopy(s)
    hourly["partition"]["hour"], hourly["drift"] = 5, None
    [only] = nt.run_notifications(hourly, reports_uri=REPORTS, report_base_url=None, drift_level="low")
    assert only.key == "breach:model_id=support-bot-v3/2026-11-20 05:00 UTC"
    assert only.payload["modelwatch"]["report_url"] == s["outputs"]["page"]  # no base URL: the S3 URI


def test_run_failure_payload_names_the_task_and_links_the_log():
    run = nt.FailedRun(dag_id="modelwatch_daily", run_id="manual__2026-11-21T00:00:00+00:00", task_id="monitor.validate", map_index=1,
                       try_number=3, log_url="http://airflow.example/dags/modelwatch_daily/runs/r/tasks/monitor.validate/mapped/1?try_number=3",
                       reason="task_failure", error="ContractViolation: 12% rows invalid, e.g. <b>bad</b> & worse", note="check the data")
    payload = nt.run_failure_payload(run)
    _assert_slack_shape(payload)
    _assert_no_control_characters(payload)
    body = json.dumps(payload["blocks"])
    assert "`monitor.validate[1]`" in body and "(try 3)" in body and f"<{run.log_url}|Task log>" in body
    assert "&lt;b&gt;bad&lt;/b&gt; &amp; worse" in body and "check the data" in body
    assert payload["modelwatch"]["task_id"] == "monitor.validate" and payload["modelwatch"]["log_url"] == run.log_url


class _Receiver:
    """An HTTP endpoint on 127.0.0.1 that answers each POST with the next scripted status (200 once the script is used up)."""

    def __init__(self, statuses: list[int] | None = None, echo: bool = False):
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        script = list(statuses or [])
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                outer.paths.append(self.path)
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                status = script.pop(0) if script else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else f"no route for {self.path}".encode() if echo else b"no")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"


def test_deliver_posts_the_payload():
    payload = nt.breach_payload(_summary(), _summary()["breaches"], None)
    with _Receiver([503]) as receiver:
        result = nt.deliver(receiver.url("/services/T0/B0/s3cr3t"), payload, retries=2, backoff_s=0.01)
    assert result["status"] == 200 and result["attempts"] == 2
    assert receiver.bodies == [payload, payload] and receiver.paths == ["/services/T0/B0/s3cr3t"] * 2


@pytest.mark.parametrize("statuses", [[404], [500, 500, 500]])
def test_a_failed_delivery_never_shows_the_webhook_path(statuses):
    with _Receiver(statuses) as receiver:
        url = receiver.url("/services/T0/B0/s3cr3t-token")
        with pytest.raises(nt.NotificationError) as info:
            nt.deliver(url, {"text": "x"}, retries=2, backoff_s=0.01)
    message = str(info.value)
    assert "s3cr3t-token" not in message and f"127.0.0.1:{receiver.server.server_port}/…" in message
    assert f"HTTP {statuses[0]}" in message


@pytest.mark.parametrize("statuses", [[403], [502, 502, 502]])
def test_a_failed_delivery_hides_the_path_an_endpoint_echoes_back(statuses):
    """A gateway answering "no route for /services/…" puts the token into the error body: that copy is masked too."""
    with _Receiver(statuses, echo=True) as receiver:
        url = receiver.url("/services/T0/B0/s3cr3t-token?sig=abc")
        with pytest.raises(nt.NotificationError) as info:
            nt.deliver(url, {"text": "x"}, retries=2, backoff_s=0.01)
    message = str(info.value)
    assert "s3cr3t-token" not in message and "sig=abc" not in message
    assert f"HTTP {statuses[0]}: no route for" in message and f"127.0.0.1:{receiver.server.server_port}/…" in message


def test_a_refused_endpoint_is_reported_without_its_path():
    with _Receiver() as receiver:
        url = receiver.url("/services/T0/B0/s3cr3t-token")
    with pytest.raises(nt.NotificationError, match="after 2 attempts") as info:  # the receiver is closed: connection refused
        nt.deliver(url, {"text": "x"}, retries=1, backoff_s=0.01)
    assert "s3cr3t-token" not in str(info.value)


def test_redact_in_masks_the_url_and_its_secret_parts_only():
    url = "https://user:pw@hooks.slack.com/services/T/B/XYZ?token=1"
    text = f"POST {url} failed; gateway said: no route for /services/T/B/XYZ?token=1 (user user:pw)"
    masked = nt.redact_in(text, url)
    assert masked == "POST https://hooks.slack.com/… failed; gateway said: no route for … (user …)"
    assert nt.redact_in("HTTP 500 at /", "https://hooks.example.com/") == "HTTP 500 at /"  # a bare host has nothing to hide


def test_an_unusable_url_is_reported_without_echoing_it():
    with pytest.raises(nt.NotificationError, match="not a usable URL") as info:
        nt.deliver("hooks.example.com/services/secret-token", {"text": "x"}, retries=0)
    assert "secret-token" not in str(info.value)


def test_redact_url_keeps_scheme_host_and_port_only():
    assert nt.redact_url("https://hooks.slack.com/services/T/B/XYZ?token=1") == "https://hooks.slack.com/…"
    assert nt.redact_url("http://user:pw@127.0.0.1:8080/x") == "http://127.0.0.1:8080/…"


def test_config_report_base_url_and_drift_level():
    base = {"models": [{"id": "m", "kind": "regressor"}]}
    cfg = parse_config({**base, "defaults": {"report_base_url": BASE + "/", "notify_drift_severity": "high"}})
    assert cfg.defaults.report_base_url == BASE and cfg.defaults.notify_drift_severity == "high"
    assert parse_config(base).defaults.notify_drift_severity == "medium" and parse_config(base).defaults.report_base_url is None
    with pytest.raises(ConfigError, match=r"defaults\.report_base_url: expected an https:// URL"):
        parse_config({**base, "defaults": {"report_base_url": "s3://ml-monitoring/reports"}})
    with pytest.raises(ConfigError, match=r"defaults\.notify_drift_severity"):
        parse_config({**base, "defaults": {"notify_drift_severity": "severe"}})
