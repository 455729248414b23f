"""The fire drill: a planted breach and a planted drift on a canary model, followed through every link of the alert path.

A silent alert path looks like a quiet week. The drill (``modelwatch_fire_drill``, weekly and on demand)
proves each link still works, with the real stages and the real services:

1. ``plant``: a canary model (``CANARY``; the bundled LLM model's settings, no judge, no text drift)
   gets a clean baseline day and a drill day with an error-rate regression in its experiment's
   treatment (a hard-limit breach) and a shift of its inputs (drift), written under the canary's
   own prefix ``<reports_uri>/_fire_drill/`` — never a real model's logs, reports, trends or baselines;
2. ``run_stages``: the daily stages on the drill day (``runner.run_day``), which publish its
   summary and push its metrics to the configured Pushgateway;
3. the breach goes out as the daily run's ``guardrail_breach`` asset event, marked ``drill``;
   ``modelwatch_rollback`` applies it in dry run against the canary's routing document
   (``drill_config``: the rollback DAG takes the canary's settings from here);
4. ``check_links``: the rollback's audit record (dry run, the canary's target, routing unchanged),
   the breach and drift notifications delivered to the webhook, the canary's metrics on the
   Pushgateway, and the alert rules evaluated by promtool on the pushed values (the error-rate
   and input-drift alerts must fire).

Each link's result goes into the drill's report (``fire_drill.json`` and a page under
``_fire_drill/drills/dt=D/``) and a ``modelwatch_fire_drill_link_ok`` gauge; a failed link fails
the drill, which alerts through the run-failure notifier and ``ModelwatchFireDrillFailed``.
"""

from __future__ import annotations

import copy
import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from modelwatch.config import DEFAULT_CONFIG_PATH, MonitoringConfig, parse_config
from modelwatch.core.partition import Partition
from modelwatch.storage.keys import audit_prefix
from modelwatch.storage.s3 import exists, get_json, put_bytes, put_json

CANARY = "modelwatch-canary"
EXPERIMENT = "fire-drill"
TEMPLATE_MODEL = "support-bot-v3"  # the bundled model whose settings the canary takes
PLANTED_ALERTS = ("ModelwatchErrorRateHigh", "ModelwatchInputDrift")
LINKS = ("stages", "breach_event", "rollback_audit", "notification", "pushgateway", "alert_rules")
DRILL_ROWS = 1500
_FAILED_ALERT = re.compile(r"alertname: (?P<name>\S+), time: [^\n]*\n\s*exp:\[[^\]]*\],?\s*\n\s*got:\[(?P<got>.*?)\n\s*\]", re.S)


def drill_root(cfg: MonitoringConfig) -> str:
    return f"{cfg.defaults.reports_uri}/_fire_drill"


def drill_config(cfg: MonitoringConfig, day: date | None = None) -> MonitoringConfig:
    """The canary's own world: the deployment's S3 connection and Pushgateway, everything else under ``_fire_drill/``."""
    bundled = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    model = copy.deepcopy(next(m for m in bundled["models"] if m["id"] == TEMPLATE_MODEL))
    day = day or datetime.now(UTC).date()
    root = drill_root(cfg)
    model.update(id=CANARY, cadence=["daily"], segments=["metadata.locale"])
    model.pop("judge", None)
    model.pop("source", None)
    model["baseline"] = {"window": {"start": (day - timedelta(days=1)).isoformat(), "end": (day - timedelta(days=1)).isoformat()}}
    model["drift"] = {"features": ["latency_ms", "prompt_tokens", "metadata.topic"], "text": []}
    model["experiments"] = [{
        "id": EXPERIMENT, "control": "control", "treatment": "treatment", "split": {"treatment": 0.5}, "start": day.isoformat(),
        "primary": [{"metric": "error_rate", "direction": "decrease", "mde": 0.01, "absolute": True}],
        "guardrails": [{"metric": "error_rate", "direction": "decrease", "margin": 0.001, "absolute": True}],
        "hard_limits": [{"metric": "error_rate", "max": 0.02}]}]
    model["rollback"] = {"action": "routing_document", "uri": f"{root}/routing/{CANARY}.json", "dry_run": True}
    defaults = {"logs_uri": f"{root}/logs", "reports_uri": f"{root}/reports", "labels_uri": f"{root}/labels",
                "aws_conn_id": cfg.defaults.aws_conn_id, "pushgateway_url": cfg.defaults.pushgateway_url, "notify_drift_severity": "low"}
    return parse_config({"defaults": defaults, "models": [model]}, source=f"fire drill of {cfg.defaults.reports_uri}")


@dataclass
class Link:
    """One link of the alert path and what the drill found."""

    name: str
    ok: bool
    detail: str


def plant(client, drill: MonitoringConfig, day: date) -> dict[str, Any]:
    """The canary's baseline day (clean) and drill day (error regression in the treatment, drifted inputs), and its baseline."""
    from modelwatch.baseline.build import build_baseline
    from modelwatch.runtime.generate import ExperimentPlan, Scenario, generate_traffic
    from modelwatch.storage.s3 import delete_prefix

    before = day - timedelta(days=1)
    for uri in (f"{Partition(CANARY, before).path(drill.defaults.logs_uri)}/", f"{Partition(CANARY, day).path(drill.defaults.logs_uri)}/"):
        delete_prefix(client, uri)  # a re-run plants the same days again, not beside an earlier drill's files
    exp = drill.model(CANARY).experiments[0]
    plan = ExperimentPlan(exp.id, exp.weights())
    generate_traffic(client, drill.defaults.logs_uri, drill.defaults.labels_uri, before, 1, llm_model=CANARY, classic_model=None,
                     llm_rows=DRILL_ROWS, plan=plan)
    written = generate_traffic(client, drill.defaults.logs_uri, drill.defaults.labels_uri, day, 1, llm_model=CANARY, classic_model=None,
                               llm_rows=DRILL_ROWS, plan=plan, scenario=Scenario(regression="errors", regression_from=day, drift_from=day))
    manifest = build_baseline(client, drill, CANARY, before, before, progress=lambda _: None)  # the version its window names
    return {"rows": written[CANARY], "baseline": manifest["version"]}


def run_stages(client, drill: MonitoringConfig, day: date, run: dict[str, Any]) -> dict[str, Any]:
    """The daily stages on the drill day; the publish record, its breaches marked ``drill`` for the rollback DAG."""
    from modelwatch.runner import run_day

    records = run_day(client, drill, Partition(CANARY, day), "daily", run=run)
    published = records["publish"]
    # each drill's breach is new to the rollback (a second drill on a day must prove the path again, not find the first's audit)
    breaches = [{**b, "drill": True, "breach_id": hashlib.sha256(f"{b['breach_id']}:{run['run_id']}".encode()).hexdigest()[:20]}
                for b in published["breaches"]]
    return {"summary_uri": published["summary_uri"], "breaches": breaches, "pushed": published["pushed"],
            "drift": published["drift"], "outcome": published["outcome"]}


def stages_link(ran: dict[str, Any]) -> Link:
    drift = ran.get("drift") or {}
    ok = bool(ran["breaches"]) and drift.get("severity") not in (None, "none")
    return Link("stages", ok, f"{len(ran['breaches'])} breaches, drift severity {drift.get('severity')}, metrics {ran['pushed']}")


def wait_for_rollback(client, drill: MonitoringConfig, breaches: list[dict[str, Any]], timeout_s: float, poll_s: float = 2.0,
                      sleep: Callable[[float], None] = time.sleep) -> Link:
    """The rollback DAG's audit record of every planted breach: a dry run against the canary's routing document, which is unchanged."""
    if not breaches:
        return Link("rollback_audit", False, "no breach was planted, so no rollback could be checked")
    target = drill.model(CANARY).rollback.uri
    uris = [f"{audit_prefix(drill.defaults.reports_uri, b['model_id'], b['experiment_id'])}/{b['breach_id']}.json" for b in breaches]
    deadline = time.monotonic() + timeout_s
    while not all(exists(client, u) for u in uris):
        if time.monotonic() > deadline:
            missing = [u for u in uris if not exists(client, u)]
            return Link("rollback_audit", False, f"no audit record after {timeout_s:.0f} s: {missing} (is modelwatch_rollback unpaused and the scheduler running?)")
        sleep(poll_s)
    records = [get_json(client, u) for u in uris]
    wrong = [r for r in records if not (r.get("dry_run") and r.get("target") == target and r.get("outcome") == "dry_run")]
    if wrong:
        return Link("rollback_audit", False, f"audit records not a dry run against {target}: {[r.get('audit_uri') for r in wrong]}")
    if exists(client, target):
        return Link("rollback_audit", False, f"the dry run changed the canary's routing document {target}")
    return Link("rollback_audit", True, f"{len(records)} dry-run rollback(s) audited by {records[0].get('claimant')}; routing unchanged")


def notification_link(client, drill: MonitoringConfig, summary_uri: str, webhook_url: str | None) -> Link:
    """The canary's breach and drift notifications, delivered to the deployment's webhook."""
    from modelwatch.observe.notifications import NotificationError, deliver, redact_url, run_notifications

    if not webhook_url:
        return Link("notification", False, "no webhook configured (MODELWATCH_ALERT_WEBHOOK): breaches would reach no one")
    due = run_notifications(get_json(client, summary_uri), reports_uri=drill.defaults.reports_uri, report_base_url=None, drift_level="low")
    kinds = sorted(n.event for n in due)
    if kinds != ["breach", "drift"]:
        return Link("notification", False, f"the canary's summary called for {kinds}, not a breach and a drift notification")
    try:
        for notification in due:
            deliver(webhook_url, notification.payload, retries=2, deadline_s=30)
    except NotificationError as exc:
        return Link("notification", False, str(exc))
    return Link("notification", True, f"breach and drift notifications delivered to {redact_url(webhook_url)}")


def pushed_samples(gateway_url: str | None) -> tuple[Link, list[tuple[str, dict[str, str], float]]]:
    """The canary's gauges on the Pushgateway, as (name, labels, value)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    if not gateway_url:
        return Link("pushgateway", False, "no defaults.pushgateway_url: the alert rules see nothing of a run"), []
    try:
        with urllib.request.urlopen(f"{gateway_url.rstrip('/')}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except OSError as exc:
        return Link("pushgateway", False, f"{gateway_url}/metrics did not answer: {exc}"), []
    samples = [(s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text) for s in family.samples
               if s.labels.get("model") == CANARY and s.name.startswith("modelwatch_")]
    names = {name for name, _, _ in samples}
    needed = {"modelwatch_error_rate", "modelwatch_drift_family_severity", "modelwatch_breaches"}
    if not needed <= names:
        return Link("pushgateway", False, f"the canary's {sorted(needed - names)} are not on {gateway_url}"), samples
    return Link("pushgateway", True, f"{len(samples)} canary samples on {gateway_url}"), samples


def fired_alerts(promtool_output: str) -> set[str]:
    """The alerts promtool reports as fired where the test expected none (its FAILED blocks with a non-empty ``got``)."""
    return {m["name"] for m in _FAILED_ALERT.finditer(promtool_output) if "Labels:" in m["got"]}


def alert_rules_link(drill: MonitoringConfig, samples: list[tuple[str, dict[str, str], float]], promtool: str | None = None) -> Link:
    """The canary's alert rules evaluated by ``promtool test rules`` on the pushed values: the planted alerts must fire."""
    from modelwatch.observe.alert_rules import TEST_EVAL_TIME, TEST_INTERVAL, TEST_POINTS, write_rules

    promtool = shutil.which(promtool or "promtool")
    if promtool is None:
        return Link("alert_rules", False, "promtool is not installed on this worker (Debian: prometheus), so the rules cannot be evaluated")
    if not samples:
        return Link("alert_rules", False, "no pushed values to evaluate the rules on")
    with tempfile.TemporaryDirectory(prefix="modelwatch-drill-") as tmp:
        write_rules(drill, Path(tmp) / "rules.yml")
        series = [{"series": name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k not in ("job", "instance")) + "}",
                   "values": f"{value:g}x{TEST_POINTS}"} for name, labels, value in samples]
        tests = {"rule_files": ["rules.yml"], "evaluation_interval": TEST_INTERVAL,
                 "tests": [{"interval": TEST_INTERVAL, "input_series": series,
                            "alert_rule_test": [{"eval_time": TEST_EVAL_TIME, "alertname": a, "exp_alerts": []} for a in PLANTED_ALERTS]}]}
        (Path(tmp) / "drill.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
        done = subprocess.run([promtool, "test", "rules", "drill.yml"], cwd=tmp, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    if done.returncode != 0 and "FAILED" not in output:
        return Link("alert_rules", False, f"promtool could not evaluate the rules: {output.strip()[-500:]}")
    fired = fired_alerts(output)
    missing = [a for a in PLANTED_ALERTS if a not in fired]
    if missing:
        return Link("alert_rules", False, f"on the pushed values {missing} would not fire (fired: {sorted(fired)})")
    return Link("alert_rules", True, f"on the pushed values {', '.join(PLANTED_ALERTS)} fire")


def forget_canary_metrics(gateway_url: str | None) -> None:
    """Delete the canary's group from the Pushgateway once checked, so no live Prometheus keeps alerting on it."""
    import urllib.request

    if not gateway_url:
        return
    request = urllib.request.Request(f"{gateway_url.rstrip('/')}/metrics/job/modelwatch/model/{CANARY}/cadence/daily", method="DELETE")
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except OSError:
        pass  # the group expires with the next drill's push; the drill's own result is what matters


def drill_report(client, cfg: MonitoringConfig, day: date, links: list[Link], run: dict[str, Any]) -> dict[str, Any]:
    """Write the drill's report (``fire_drill.json`` and ``index.html``) and push its gauges; the report."""
    from modelwatch.publish.templating import render

    prefix = f"{drill_root(cfg)}/drills/dt={day.isoformat()}"
    report = {"day": day.isoformat(), "run": run, "ok": all(link.ok for link in links), "links": [asdict(link) for link in links],
              "checked_at": datetime.now(UTC).isoformat(), "report_uri": f"{prefix}/index.html"}
    put_json(client, f"{prefix}/fire_drill.json", report)
    put_bytes(client, report["report_uri"], render("fire_drill.html", report=report).encode(), "text/html; charset=utf-8")
    report["pushed"] = push_drill_metrics(cfg.defaults.pushgateway_url, links)
    return report


def push_drill_metrics(gateway_url: str | None, links: list[Link]) -> str | None:
    """``modelwatch_fire_drill_link_ok{link}``, ``modelwatch_fire_drill_success`` and ``..._timestamp_seconds`` on the Pushgateway."""
    if not gateway_url:
        return None
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    link_ok = Gauge("modelwatch_fire_drill_link_ok", "1 when the fire drill found this link of the alert path working.", ["link"], registry=registry)
    for link in links:
        link_ok.labels(link=link.name).set(1 if link.ok else 0)
    Gauge("modelwatch_fire_drill_success", "1 when every link of the last fire drill worked.", registry=registry).set(all(link.ok for link in links))
    Gauge("modelwatch_fire_drill_timestamp_seconds", "When the last fire drill finished.", registry=registry).set(time.time())
    try:
        push_to_gateway(gateway_url, job="modelwatch_fire_drill", registry=registry, timeout=10)
    except OSError as exc:
        return f"failed: {exc}"
    return "pushed modelwatch_fire_drill"
