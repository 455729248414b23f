"""modelwatch_promotion: a person approves a winning treatment before it takes all traffic.

Scheduled on the ``model_promoted`` asset (the daily run's promote decisions). Only experiments
configured with ``promotion: approval`` are put to a person: a human-in-the-loop form per promotion
(Approve / Reject) shows the decision's evidence (primary metrics with intervals, guardrails, reasons)
and waits up to the experiment's ``approval_timeout_hours``; an unanswered form resolves to Reject
with no responder, recorded as ``timed_out``. Approval routes every request of the experiment to
the treatment through the model's rollback action, exactly once (``modelwatch.rollback.promotion``);
rejection and time-out change nothing. All three leave an audit record under ``_audit/promotions/``.
Rollback (``modelwatch_rollback``) never waits for a person.
"""

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import dag, get_current_context, task
from common.monitoring import DEFAULT_ARGS, MODEL_PROMOTED, config_or_fail, failure_notifier, rollback_action, s3_client

APPROVE, REJECT = "Approve", "Reject"


@task
def plan() -> list[dict]:
    """The triggering events' promotions that wait for a person (not already promoted); skip when there are none."""
    from airflow.sdk.exceptions import AirflowSkipException
    from modelwatch.rollback.promotion import already_promoted, needs_approval

    cfg = config_or_fail()
    client = s3_client(cfg)
    events = get_current_context()["triggering_asset_events"][MODEL_PROMOTED]
    wanted = []
    for promotion in (p for event in events for p in event.extra.get("promotions", [])):
        if not needs_approval(cfg, promotion):
            print(f"{promotion['model_id']} {promotion['experiment_id']}: promotion is 'report' in the config; no approval asked")
        elif done := already_promoted(client, cfg.defaults.reports_uri, promotion):
            print(f"{promotion['model_id']} {promotion['experiment_id']}: already promoted ({done})")
        else:
            wanted.append(promotion)
    if not wanted:
        raise AirflowSkipException("no promotion waits for approval")
    return wanted


@task
def forms(promotions: list[dict]) -> list[dict]:
    """One approval form per promotion: its evidence and how long it waits."""
    from modelwatch.rollback.promotion import evidence

    cfg = config_or_fail()
    client = s3_client(cfg)
    out = []
    for promotion in promotions:
        subject, body = evidence(client, cfg, promotion)
        exp = next(e for e in cfg.model(promotion["model_id"]).experiments if e.id == promotion["experiment_id"])
        out.append({"subject": subject, "body": body, "response_timeout": timedelta(hours=exp.approval_timeout_hours)})
    return out


@task
def settle(promotions: list[dict], answers: list[dict]) -> list[dict]:
    """Act on each answer: Approve applies the promotion exactly once; Reject and time-out are recorded."""
    from modelwatch.rollback.actions import notifier
    from modelwatch.rollback.promotion import apply_promotion, record_outcome

    cfg = config_or_fail()
    client = s3_client(cfg)
    ctx = get_current_context()
    claimant = f"{ctx['dag'].dag_id}/{ctx['run_id']}"
    outcomes = []
    for promotion, answer in zip(promotions, answers[:], strict=True):
        responded_at = answer.get("responded_at")
        by = answer.get("responded_by_user") or {}
        approval = {"chosen": answer.get("chosen_options"), "responded_by": by.get("name") or by.get("id"),
                    "responded_at": responded_at.isoformat() if hasattr(responded_at, "isoformat") else responded_at}
        label = f"{promotion['model_id']} {promotion['experiment_id']} ({promotion['version']})"
        if approval["chosen"] == [APPROVE] and approval["responded_by"]:
            rollback = cfg.model(promotion["model_id"]).rollback
            notify = notifier(rollback.notify_url, timeout_s=rollback.timeout_s, retries=rollback.retries,
                              setting=f"rollback.notify_url of model {promotion['model_id']}")
            outcome = apply_promotion(client, cfg, promotion, rollback_action(client, rollback), claimant, approval, dry_run=rollback.dry_run, notify=notify)
            print(f"PROMOTED {label} approved by {approval['responded_by']}: {outcome['outcome']} via {outcome['action']} -> {outcome['audit_uri']}")
        else:
            kind = "rejected" if approval["responded_by"] else "timed_out"
            outcome = {"outcome": kind, "audit_uri": record_outcome(client, cfg, promotion, kind, approval, claimant)}
            print(f"NOT PROMOTED {label}: {kind} -> {outcome['audit_uri']}")
        outcomes.append(outcome)
    return outcomes


@dag(
    dag_id="modelwatch_promotion",
    schedule=[MODEL_PROMOTED],
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    on_failure_callback=failure_notifier("an approved promotion may not have been applied: check the routing and the audit records"),
    tags=["modelwatch", "promotion"],
    doc_md=__doc__,
)
def modelwatch_promotion():
    planned = plan()
    answers = HITLOperator.partial(task_id="approve", options=[APPROVE, REJECT], defaults=[REJECT], retries=0).expand_kwargs(forms(planned))
    settle(planned, answers.output)


modelwatch_promotion()
