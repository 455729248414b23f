"""With a real scheduler and API server: a promote decision waits for a person (human-in-the-loop), and only approval routes traffic.

The model_promoted asset event is posted through the REST API as the daily run's signal_promotion
task emits it; modelwatch_promotion runs by itself, parks its approval forms in awaiting_input, and
the answers are given through the REST API as the Airflow UI gives them.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import date

import pytest
import yaml
from modelwatch.core.partition import Partition
from modelwatch.storage.s3 import exists, get_json, list_objects, put_json

DAY = date(2026, 11, 12)
DAG = "modelwatch_promotion"


def _promotion(model_id: str, experiment_id: str, day: date) -> dict:
    return {"model_id": model_id, "experiment_id": experiment_id, "variants": ["treatment"], "start": "2026-11-01", "end": day.isoformat(),
            "version": f"promoted-{experiment_id}-{day.isoformat()}", "reasons": ["judge.helpfulness better: +6.1% [+2.0%, +10.2%]"]}


def _experiments_report(s3, cfg, model_id: str, experiment_id: str, day: date) -> None:
    """The day's experiments.json as the experiments stage writes it (the form's evidence is read from it)."""
    put_json(s3, f"{Partition(model_id, day).path(cfg.defaults.reports_uri)}/experiments.json", {
        "partition": Partition(model_id, day).to_dict(), "shadow": None,
        "experiments": [{"experiment_id": experiment_id, "decision": "promote", "requests": 48_210,
                         "reasons": ["judge.helpfulness better: +6.1% [+2.0%, +10.2%] <b>not markup</b>"],
                         "primary": [{"metric": "judge.helpfulness", "decision": "better", "relative_lift": 0.061, "lift_ci_low": 0.02,
                                      "lift_ci_high": 0.102, "p_adjusted": 0.0031, "reason": "better", "via": "judge"}],
                         "guardrails": [{"metric": "latency_ms.p95", "verdict": "non_inferior", "estimate": 0.01, "lower": -0.02, "upper": 0.04}]}]})


@contextmanager
def _approval_config(path, timeouts: dict[str, float]):
    """The embedded Airflow's config with ``promotion: approval`` on the named experiments and routing documents of this
    test's own (restored afterwards)."""
    original = path.read_text()
    data = yaml.safe_load(original)
    for model in data["models"]:
        model["rollback"]["uri"] = _routing_uri(model["rollback"]["uri"])
        for exp in model.get("experiments", []):
            if exp["id"] in timeouts:
                exp.update(promotion="approval", approval_timeout_hours=timeouts[exp["id"]])
    path.write_text(yaml.safe_dump(data))
    try:
        yield
    finally:
        path.write_text(original)


def _routing_uri(configured: str) -> str:
    return configured.rsplit("/", 1)[0] + "/approval-test-" + configured.rsplit("/", 1)[1]


def _post_promotions(api, promotions: list[dict]) -> None:
    [asset] = api.call("GET", "/assets?uri_pattern=modelwatch://model_promoted")["assets"]
    api.call("POST", "/assets/events", {"asset_id": asset["id"], "extra": {"promotions": promotions}})


def _new_run(api, known: set[str], timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r["dag_run_id"] for r in api.call("GET", f"/dags/{DAG}/dagRuns?limit=50")["dag_runs"] if r["dag_run_id"] not in known]
        if runs:
            return runs[0]
        time.sleep(2)
    raise TimeoutError(f"no new {DAG} run after the asset event")


def _form(api, run_id: str, index: int, timeout: float = 180) -> dict:
    """The approval form once the task waits for input (state ``awaiting_input``), as a person sees it.

    Answered within a second of that, the resumed try can be queued before the scheduler has seen
    the waiting task's process exit; Airflow's scheduler tolerates that exit event for a SCHEDULED
    try but fails a QUEUED one ("task state changed externally"). A person takes longer than the
    scheduler's loop; the pause stands in for that.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            form = api.call("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/approve/{index}/hitlDetails")
            if api.call("GET", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/approve/{index}")["state"] == "awaiting_input":
                time.sleep(3)
                return form
        except RuntimeError as exc:
            if "404" not in str(exc):
                raise
        time.sleep(1)
    raise TimeoutError(f"{DAG} {run_id} approve[{index}] never asked for input")


def _audits(s3, cfg) -> dict[str, dict]:
    uris = [u for u, _ in list_objects(s3, f"{cfg.defaults.reports_uri}/_audit/promotions") if not u.endswith(".claim.json")]
    return {u.rsplit("/", 1)[1]: get_json(s3, u) for u in uris}


@pytest.mark.scheduler
def test_promotion_waits_for_approval_and_only_approval_routes(s3, scheduler_config, scheduler_config_path, local_airflow):
    cfg = scheduler_config
    bot, clf = cfg.model("support-bot-v3"), cfg.model("churn-classifier-v2")
    bot_exp, clf_exp = bot.experiments[0], clf.experiments[0]
    for model, exp in ((bot, bot_exp), (clf, clf_exp)):
        _experiments_report(s3, cfg, model.id, exp.id, DAY)
    airflow = local_airflow
    airflow.wait_for_dags([DAG])
    api = airflow.api()
    api.unpause(DAG)

    with _approval_config(scheduler_config_path, {bot_exp.id: 24.0, clf_exp.id: 24.0}):
        _post_promotions(api, [_promotion(bot.id, bot_exp.id, DAY), _promotion(clf.id, clf_exp.id, DAY)])
        run_id = _new_run(api, set())
        form = _form(api, run_id, 0)
        assert form["subject"] == f"Promote {bot_exp.treatment} of {bot_exp.id} ({bot.id}) to all traffic?"
        assert "| judge.helpfulness | better | +6.1% | +2.0% to +10.2% |" in form["body"] and "\\<b\\>not markup\\</b\\>" in form["body"]
        assert form["options"] == ["Approve", "Reject"]
        assert not exists(s3, _routing_uri(bot.rollback.uri))  # nothing routed while the person has not answered
        api.call("PATCH", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/approve/0/hitlDetails", {"chosen_options": ["Approve"]})
        _form(api, run_id, 1)
        api.call("PATCH", f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/approve/1/hitlDetails", {"chosen_options": ["Reject"]})
        run = api.wait_for_run(DAG, run_id, timeout=180)
        assert run["state"] == "success", f"logs under {airflow.home}"

    routing = get_json(s3, _routing_uri(bot.rollback.uri))["experiments"][bot_exp.id]
    assert routing["state"] == "promoted" and routing["weights"] == {bot_exp.control: 0.0, bot_exp.treatment: 1.0}
    assert routing["promotion_id"] == f"promoted-{bot_exp.id}-{DAY.isoformat()}"
    assert not exists(s3, _routing_uri(clf.rollback.uri))  # the rejected one changed nothing
    audits = _audits(s3, cfg)
    assert audits[f"promoted-{bot_exp.id}-{DAY.isoformat()}.json"]["outcome"] == "promoted"
    assert audits[f"promoted-{bot_exp.id}-{DAY.isoformat()}.json"]["approval"]["responded_by"] == airflow.username
    assert audits[f"promoted-{clf_exp.id}-{DAY.isoformat()}.json"]["outcome"] == "rejected"

    # an unanswered form times out (the scheduler's awaiting-input sweep), recorded as such; the routing stays as it was
    later = date(2026, 11, 13)
    _experiments_report(s3, cfg, clf.id, clf_exp.id, later)
    with _approval_config(scheduler_config_path, {bot_exp.id: 24.0, clf_exp.id: 0.0015}):  # ~5 s
        _post_promotions(api, [_promotion(clf.id, clf_exp.id, later), _promotion(bot.id, bot_exp.id, later)])
        second = _new_run(api, {run_id})
        run = api.wait_for_run(DAG, second, timeout=240)
    assert run["state"] == "success", f"logs under {airflow.home}"
    audits = _audits(s3, cfg)
    assert audits[f"promoted-{clf_exp.id}-{later.isoformat()}.json"]["outcome"] == "timed_out"
    assert f"promoted-{bot_exp.id}-{later.isoformat()}.json" not in audits  # already promoted: not asked again
    hitl = api.call("GET", f"/dags/{DAG}/dagRuns/{second}/taskInstances/approve/0/hitlDetails")
    assert hitl["chosen_options"] == ["Reject"] and hitl["responded_by_user"] is None
    assert json.dumps(get_json(s3, _routing_uri(bot.rollback.uri))["experiments"][bot_exp.id]) == json.dumps(routing)
    assert not exists(s3, _routing_uri(clf.rollback.uri))
