"""The fire drill with a real scheduler, the rollback DAG it triggers, a Pushgateway, promtool and the team's webhook:
one drill where every link works, and one where the webhook is down and the drill fails, naming that link."""

from __future__ import annotations

import json
import urllib.request
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
import yaml
from modelwatch.storage.s3 import exists, get_json, list_objects

DAG = "modelwatch_fire_drill"


@contextmanager
def _with_pushgateway(path, url: str):
    original = path.read_text()
    data = yaml.safe_load(original)
    data["defaults"]["pushgateway_url"] = url
    path.write_text(yaml.safe_dump(data))
    try:
        yield
    finally:
        path.write_text(original)


def _gauges(gateway: str) -> str:
    with urllib.request.urlopen(f"{gateway}/metrics", timeout=10) as resp:
        return resp.read().decode()


def _drill(api, run_id: str) -> dict:
    api.trigger(DAG, run_id, {"rollback_wait_s": 240})
    return api.wait_for_run(DAG, run_id, timeout=900)


@pytest.mark.scheduler
def test_fire_drill_passes_and_fails_when_the_webhook_is_down(s3, scheduler_config, scheduler_config_path, local_airflow, alert_webhook, tmp_path):
    from prom_servers import start_pushgateway

    cfg = scheduler_config
    airflow = local_airflow
    airflow.wait_for_dags([DAG, "modelwatch_rollback"])
    api = airflow.api()
    for dag_id in (DAG, "modelwatch_rollback"):
        api.unpause(dag_id)
    gateway = start_pushgateway(tmp_path)
    day = datetime.now(UTC).date()
    report_uri = f"{cfg.defaults.reports_uri}/_fire_drill/drills/dt={day.isoformat()}/fire_drill.json"
    try:
        with _with_pushgateway(scheduler_config_path, gateway.url):
            run = _drill(api, "drill-ok")
            assert run["state"] == "success", f"logs under {airflow.home}"
            report = get_json(s3, report_uri)
            print("passing drill:", json.dumps(report["links"], indent=1))
            assert report["ok"] and [link["name"] for link in report["links"]] == \
                ["stages", "breach_event", "rollback_audit", "notification", "pushgateway", "alert_rules"]
            assert all(link["ok"] for link in report["links"]), report["links"]
            rollbacks = airflow.query("select run_type from dag_run where dag_id = 'modelwatch_rollback'")
            assert ("asset_triggered",) in rollbacks  # the breach went through the asset event to the rollback DAG
            told = [b["modelwatch"] for b in alert_webhook.bodies if b.get("modelwatch", {}).get("model_id") == "modelwatch-canary"]
            assert {t["event"] for t in told} >= {"breach", "drift"}
            metrics = _gauges(gateway.url)
            assert 'modelwatch_fire_drill_success{instance="",job="modelwatch_fire_drill"} 1' in metrics
            assert 'model="modelwatch-canary"' not in metrics  # the canary's own gauges are removed once checked

            alert_webhook.down = True  # the team's webhook answers 503
            run = _drill(api, "drill-webhook-down")
            assert run["state"] == "failed"
            report = get_json(s3, report_uri)
            print("failing drill:", json.dumps(report["links"], indent=1))
            broken = {link["name"]: link["detail"] for link in report["links"] if not link["ok"]}
            assert list(broken) == ["notification"] and "503" in broken["notification"], report["links"]
            assert 'modelwatch_fire_drill_link_ok{instance="",job="modelwatch_fire_drill",link="notification"} 0' in _gauges(gateway.url)
    finally:
        alert_webhook.down = False
        gateway.stop()

    # canary data stays under its own prefix: no real model's reports, site index or baselines hold it
    real = [u for u, _ in list_objects(s3, f"{cfg.defaults.reports_uri}/") if "modelwatch-canary" in u and "/_fire_drill/" not in u]
    assert real == []
    assert not exists(s3, f"{cfg.defaults.reports_uri}/_fire_drill/routing/modelwatch-canary.json")  # the rollback was a dry run
    audits = [u for u, _ in list_objects(s3, f"{cfg.defaults.reports_uri}/_fire_drill/reports/_audit/rollbacks") if not u.endswith(".claim.json")]
    assert len(audits) >= 2 and all(json.loads(json.dumps(get_json(s3, u)))["dry_run"] for u in audits)
