"""modelwatch_fire_drill: prove, weekly and on demand, that a real breach still reaches the rollback and the people.

A canary model (its own prefix under ``<reports_uri>/_fire_drill/``; never a real model's data) gets a
planted guardrail breach and a planted drift; the real daily stages run on it; its breach goes out as
a ``guardrail_breach`` asset event, which ``modelwatch_rollback`` applies in dry run against the canary's
routing document. ``check_links`` then checks every link — the rollback's audit record, the
notifications delivered to ``$MODELWATCH_ALERT_WEBHOOK``, the metrics on the Pushgateway, and the alert
rules that would fire on them (promtool) — writes the drill's report and ``modelwatch_fire_drill_*``
gauges, and fails when a link is broken (which alerts: the run-failure notifier, ``ModelwatchFireDrillFailed``).
See ``modelwatch.runtime.fire_drill``.
"""

from datetime import UTC, datetime

from airflow.sdk import CronTriggerTimetable, Metadata, Param, dag, get_current_context, task
from common.monitoring import DEFAULT_ARGS, GUARDRAIL_BREACH, config_or_fail, failure_notifier, s3_client

PARAMS = {"rollback_wait_s": Param(600, type="integer", minimum=10, description="How long to wait for modelwatch_rollback's audit record.")}


def _day():
    return datetime.now(UTC).date()


@task
def plant() -> dict:
    """The canary's clean baseline day and its drill day (breach and drift), and its baseline."""
    from modelwatch.runtime import fire_drill as drill

    cfg = config_or_fail()
    day = _day()
    planted = drill.plant(s3_client(cfg), drill.drill_config(cfg, day), day)
    print(f"planted {planted['rows']} canary requests on {day}; baseline {planted['baseline']}")
    return {"day": day.isoformat(), **planted}


@task
def run_stages(planted: dict) -> dict:
    """The real daily stages on the drill day."""
    from datetime import date

    from modelwatch.runtime import fire_drill as drill

    cfg = config_or_fail()
    day = date.fromisoformat(planted["day"])
    ctx = get_current_context()
    ran = drill.run_stages(s3_client(cfg), drill.drill_config(cfg, day), day, {"dag_id": ctx["dag"].dag_id, "run_id": ctx["run_id"]})
    print(f"canary day {day}: {len(ran['breaches'])} breaches, drift {ran['drift']}, metrics {ran['pushed']}")
    return {**ran, "day": planted["day"]}


@task(outlets=[GUARDRAIL_BREACH], retries=0)
def signal_breach(ran: dict):
    """The canary's breaches as the daily run emits them (marked ``drill``: the rollback acts in dry run on the canary's target)."""
    if not ran["breaches"]:
        print("the planted breach was not found by the stages; check_links reports it")
        return
    yield Metadata(GUARDRAIL_BREACH, extra={"breaches": ran["breaches"]})


@task(retries=0)
def check_links(ran: dict) -> dict:
    """Every link of the alert path; the drill's report; fails when a link is broken."""
    from datetime import date

    from airflow.sdk.exceptions import AirflowFailException
    from modelwatch.runtime import fire_drill as drill
    from modelwatch_notifier import webhook_url

    cfg = config_or_fail()
    client = s3_client(cfg)
    ctx = get_current_context()
    day = date.fromisoformat(ran["day"])
    canary = drill.drill_config(cfg, day)
    links = [drill.stages_link(ran),
             drill.Link("breach_event", bool(ran["breaches"]), f"{len(ran['breaches'])} breach(es) in the guardrail_breach event")]
    links.append(drill.wait_for_rollback(client, canary, ran["breaches"], timeout_s=float(ctx["params"]["rollback_wait_s"])))
    links.append(drill.notification_link(client, canary, ran["summary_uri"], webhook_url()))
    pushed, samples = drill.pushed_samples(cfg.defaults.pushgateway_url)
    links += [pushed, drill.alert_rules_link(canary, samples)]
    drill.forget_canary_metrics(cfg.defaults.pushgateway_url)
    report = drill.drill_report(client, cfg, day, links, {"dag_id": ctx["dag"].dag_id, "run_id": ctx["run_id"]})
    for link in links:
        print(f"{'OK    ' if link.ok else 'BROKEN'} {link.name}: {link.detail}")
    if not report["ok"]:
        broken = [link.name for link in links if not link.ok]
        raise AirflowFailException(f"fire drill: broken link(s) {broken}; report {report['report_uri']}")
    return report


@dag(
    dag_id="modelwatch_fire_drill",
    schedule=CronTriggerTimetable("0 6 * * 1", timezone="UTC"),  # Mondays 06:00 UTC, and on demand
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    on_failure_callback=failure_notifier("the fire drill found a broken link in the alert path: a real breach may not reach the rollback or the team"),
    params=PARAMS,
    tags=["modelwatch", "fire-drill"],
    doc_md=__doc__,
)
def modelwatch_fire_drill():
    ran = run_stages(plant())
    signal_breach(ran) >> check_links(ran)


modelwatch_fire_drill()
