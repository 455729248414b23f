"""modelwatch_rollback: route a breached experiment back to control, without a human in the path.

Scheduled on the ``guardrail_breach`` asset. Each event carries its breaches (model,
experiment, metric, evidence, report URI). Each breach is applied exactly once (S3
conditional writes) through the model's configured action (routing document, deployment
webhook or Airflow Variable), leaves an audit record under ``_audit/rollbacks/`` and is
notified to the model's ``rollback.notify_url``. ``rollback.dry_run`` decides and audits
without acting. A failed rollback run alerts through the run-failure notifier.
"""

from datetime import UTC, datetime

from airflow.sdk import dag, get_current_context, task
from common.monitoring import DEFAULT_ARGS, GUARDRAIL_BREACH, config_or_fail, failure_notifier, rollback_action, s3_client


def _settings(cfg, breach):
    """The config a breach is applied with: the deployment's, or the fire drill's canary world for a drill's breach (dry run)."""
    if not breach.get("drill"):
        return cfg
    from modelwatch.runtime.fire_drill import drill_config

    return drill_config(cfg)


@task
def roll_back() -> list[dict]:
    """Apply every breach of the triggering events; a bad config fails at once with its problems (a retry reads the same file)."""
    from modelwatch.rollback.actions import apply_rollback, notifier

    cfg = config_or_fail()
    ctx = get_current_context()
    events = ctx["triggering_asset_events"][GUARDRAIL_BREACH]
    client = s3_client(cfg)
    claimant = f"{ctx['dag'].dag_id}/{ctx['run_id']}"
    outcomes = []
    for event in events:
        for breach in event.extra.get("breaches", []):
            rollback = _settings(cfg, breach).model(breach["model_id"]).rollback
            notify = notifier(rollback.notify_url, timeout_s=rollback.timeout_s, retries=rollback.retries,
                              setting=f"rollback.notify_url of model {breach['model_id']}")
            outcome = apply_rollback(client, breach["reports_uri"], breach, rollback_action(client, rollback), claimant, dry_run=rollback.dry_run, notify=notify)
            print(f"ROLLBACK {breach['model_id']} {breach['experiment_id']} ({breach['reason']}): {outcome['outcome']} via {outcome['action']} "
                  f"{outcome['target']} -> {outcome['audit_uri']}")
            outcomes.append(outcome)
    if not outcomes:
        print("triggered without breaches in the event extras: nothing to roll back")
    return outcomes


@dag(
    dag_id="modelwatch_rollback",
    schedule=[GUARDRAIL_BREACH],
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    on_failure_callback=failure_notifier("a guardrail breach may not have been rolled back: check the routing and the audit records"),
    tags=["modelwatch", "rollback"],
    doc_md=__doc__,
)
def modelwatch_rollback():
    roll_back()


modelwatch_rollback()
