"""modelwatch_rollback: route a breached experiment back to control, without a human in the path.

Scheduled on the ``guardrail_breach`` asset. Each event carries its breaches (model,
experiment, metric, evidence); each breach is applied exactly once (S3 conditional
writes) and leaves an audit record under ``_audit/rollbacks/``.
"""

from datetime import UTC, datetime

from airflow.sdk import dag, get_current_context, task
from common.monitoring import DEFAULT_ARGS, GUARDRAIL_BREACH


@task
def roll_back() -> list[dict]:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from modelwatch.config import load_config
    from modelwatch.rollback import apply_rollback

    ctx = get_current_context()
    events = ctx["triggering_asset_events"][GUARDRAIL_BREACH]
    client = S3Hook(aws_conn_id=load_config().defaults.aws_conn_id).get_conn()
    claimant = f"{ctx['dag'].dag_id}/{ctx['run_id']}"
    outcomes = []
    for event in events:
        for breach in event.extra.get("breaches", []):
            outcome = apply_rollback(client, breach["reports_uri"], breach["routing_uri"], breach, claimant)
            print(f"ROLLBACK {breach['model_id']} {breach['experiment_id']} ({breach['reason']}): {outcome['outcome']} -> {outcome['audit_uri']}")
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
    tags=["modelwatch", "rollback"],
    doc_md=__doc__,
)
def modelwatch_rollback():
    roll_back()


modelwatch_rollback()
