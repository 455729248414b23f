"""Task wiring shared by modelwatch_daily and modelwatch_hourly: the stages of ``modelwatch.stages``, one task each.

Each stage task is a thin call into ``modelwatch.runner.run_stage`` (which passes no traffic on,
records a missing baseline and skips a stage that does not apply); the task group is built from
the registry in its order. Heavy imports (pandas, pyarrow, great_expectations) happen inside the
tasks, so that parsing a DAG file stays fast. Tasks exchange small dicts through XCom; data moves
through S3 under keys fixed by model and partition, so retries and re-runs overwrite.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, Metadata, Param, get_current_context, task, task_group

GUARDRAIL_BREACH = Asset(name="guardrail_breach", uri="modelwatch://guardrail_breach", group="modelwatch")
MODEL_PROMOTED = Asset(name="model_promoted", uri="modelwatch://model_promoted", group="modelwatch")

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "ml-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}

PARAMS = {
    "target_date": Param(None, type=["null", "string"], format="date", description="Partition day (YYYY-MM-DD) for manual runs; scheduled runs use the data interval."),
    "target_hour": Param(None, type=["null", "integer"], minimum=0, maximum=23, description="Hour of target_date (hourly DAG only)."),
    "models": Param([], type="array", description="Restrict the run to these model ids (default: every model with this cadence)."),
}


def config_or_fail():
    """The validated config, or a non-retried failure whose message lists every problem."""
    from airflow.sdk.exceptions import AirflowFailException
    from modelwatch.config import ConfigError, load_config

    try:
        return load_config()
    except ConfigError as exc:
        raise AirflowFailException(str(exc)) from None


def s3_client(cfg):
    """The S3 client of the config's aws connection, retrying with backoff like ``modelwatch.storage.s3`` clients."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from botocore.config import Config
    from modelwatch.storage.s3 import config_kwargs

    hook = S3Hook(aws_conn_id=cfg.defaults.aws_conn_id, config=Config(**config_kwargs()))
    client = hook.get_conn()
    _report_lineage(cfg, hook, client)
    return client


def _report_lineage(cfg, hook, client) -> None:
    """Report the datasets the task reads and writes through ``client`` to Airflow's hook lineage (OpenLineage, when configured).

    ``modelwatch.observe.lineage`` maps each object to its dataset (a log day, a report file, a baseline
    version, a routing document) and leaves modelwatch's intermediate data out.
    """
    from airflow.sdk.lineage import NoOpCollector, get_hook_lineage_collector

    collector = get_hook_lineage_collector()
    if isinstance(collector, NoOpCollector):
        return
    from modelwatch.observe.lineage import TaskLineage

    def report(side: str, dataset: str) -> None:
        (collector.add_input_asset if side == "input" else collector.add_output_asset)(context=hook, uri=dataset)

    TaskLineage(cfg).watch(client, report)


def rollback_action(client, rollback):
    """The model's configured routing action (also what an approved promotion changes, modelwatch_promotion)."""
    from modelwatch.rollback.actions import RoutingDocumentAction, VariableAction, WebhookAction

    if rollback.action == "webhook":
        return WebhookAction(rollback.url, rollback.timeout_s, rollback.retries)
    if rollback.action == "airflow_variable":
        from airflow.sdk import Variable

        return VariableAction(rollback.variable, lambda key: Variable.get(key, default=None), lambda key, value: Variable.set(key, value))
    return RoutingDocumentAction(client, rollback.uri)


def _run_info() -> dict[str, Any]:
    ctx = get_current_context()
    return {"dag_id": ctx["dag"].dag_id, "run_id": ctx["run_id"]}


def _run(name: str, partition: dict[str, Any], *, checked=None, **upstream) -> dict[str, Any]:
    """Run stage ``name`` of the registry on this task's partition (``modelwatch.runner.run_stage``); its XCom record.

    The cadence is the partition's own: an hour partition is an hourly run's, a day partition a daily run's.
    """
    from modelwatch.core.partition import Partition
    from modelwatch.runner import run_stage
    from modelwatch.stages import StageContext

    cfg = config_or_fail()
    connection = (lambda: _judge_connection(cfg, [partition["model_id"]])) if name == "judge" else None  # looked up only if the judge runs
    cadence = "daily" if partition.get("hour") is None else "hourly"
    ctx = StageContext(s3_client(cfg), cfg, Partition.from_dict(partition), cadence, _run_info(), connection, checked)
    return run_stage(name, ctx, upstream).to_xcom()


@task(retries=0)
def plan_partitions(cadence: str) -> list[dict[str, Any]]:
    """Validate the config and name the partition each configured model processes in this run."""
    from modelwatch.core.partition import resolve_partition

    cfg = config_or_fail()
    ctx = get_current_context()
    params = ctx["params"]
    models = cfg.models_for(cadence)
    if params.get("models"):
        unknown = sorted(set(params["models"]) - set(models))
        if unknown:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"models param names {unknown}, which have no {cadence} cadence in the config; choose from {models}")
        models = [m for m in models if m in params["models"]]
    interval_start = ctx.get("data_interval_start")
    return [resolve_partition(m, cadence, interval_start, params.get("target_date"), params.get("target_hour")).to_dict() for m in models]


@task
def plan_shards(partitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each partition's log files in shards of at most ``defaults.shard_bytes``: one shard unless the day is large."""
    from modelwatch.core.partition import Partition
    from modelwatch.ingest.stage import plan_shards as plan

    cfg = config_or_fail()
    client = s3_client(cfg)
    shards = [s for p in partitions for s in plan(client, cfg, Partition.from_dict(p))]
    for s in shards:
        print(f"{s['partition']['model_id']} {s['partition']['dt']} shard {s['shard'] + 1}/{s['shards']}: {len(s['files'])} files, "
              f"{sum(size for _, size in s['files']):,} bytes")
    return shards


@task(map_index_template="{{ shard_label }}")
def check_shard(shard: dict[str, Any]) -> dict[str, Any]:
    """Read, coerce and validate one shard's files in batches (the map step of the fan-out), summarising its valid rows for the stages."""
    from modelwatch.runner import check_shard as run

    get_current_context()["shard_label"] = f"{shard['partition']['model_id']} {shard['partition']['dt']} {shard['shard'] + 1}/{shard['shards']}"
    cfg = config_or_fail()
    result = run(s3_client(cfg), cfg, shard)
    print(f"{result['rows_read']} rows read from {len(result['files'])} files = valid {result['rows_valid']} + quarantined {result['rows_quarantined']}")
    return result


@task
def extract(partition: dict[str, Any], checked: list[dict[str, Any]]) -> dict[str, Any]:
    """The reduce step's first half: the partition's read figures from its shards."""
    # A slice reads every shard's result in one request; iterating the lazy XCom sequence would ask for
    # the item past its end, which the task SDK logs as an "XCom not found" error.
    result = _run("extract", partition, checked=checked[:])
    print(f"{partition['model_id']} {partition['dt']}: {result['rows_read']} rows read from {len(result['files'])} files "
          f"in {len(result['shards'])} shards ({result['outcome']})")
    return result


@task
def validate(extracted: dict[str, Any]) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowFailException
    from modelwatch.ingest.validation import ContractViolation

    try:
        result = _run("validate", extracted["partition"], extract=extracted)
    except ContractViolation as exc:
        raise AirflowFailException(str(exc)) from None  # bad data does not get better on retry
    if result.get("outcome") != "no_traffic":
        print(f"rows read {result['rows_read']} = valid {result['rows_valid']} + quarantined {result['rows_quarantined']}")
    return result


@task
def profile(validated: dict[str, Any]) -> dict[str, Any]:
    """Operational metrics per variant and segment, and the hard limits (the hourly run's whole check)."""
    return _run("profile", validated["partition"], validate=validated)


@task(execution_timeout=timedelta(hours=2))
def drift(validated: dict[str, Any]) -> dict[str, Any]:
    """Feature, prediction, input-length, segment and embedding drift against the baseline; Evidently report."""
    result = _run("drift", validated["partition"], validate=validated)
    if result["outcome"] == "no_baseline":
        print(f"WARNING drift not checked: {result['reason']}")
    elif result["outcome"] == "ok":
        print(f"drift severity {result['severity']}: {result['alert_count']} alerts; {result['drift_uri']}")
        for alert in result["alerts"][:20]:
            print(f"  {alert['severity']:>6} {alert['family']} {alert.get('segment', '')} {alert['column']} {alert['effect_method']}={alert['effect']}")
    return result


@task
def concept(validated: dict[str, Any]) -> dict[str, Any]:
    """Concept drift: delayed labels (or feedback) joined to recent predictions, windowed metrics, ADWIN."""
    result = _run("concept", validated["partition"], validate=validated)
    if result["outcome"] == "ok":
        print(f"concept drift: {result['verdict']} ({result['reason']}); {result['concept_uri']}")
    return result


def _judge_connection(cfg, model_ids: list[str]) -> dict[str, Any] | None:
    """The llm_judge connection as a dict, for LLM judge backends only (never logged)."""
    settings = [cfg.model(m).judge for m in model_ids if cfg.model(m).judge]
    wanted = [s for s in settings if s.backend != "heuristic"]
    if not wanted:
        return None
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(wanted[0].connection_id)
    return {"password": conn.password, "host": conn.host, "port": conn.port, "schema": conn.schema, "extra": conn.extra_dejson}


@task(execution_timeout=timedelta(hours=2), pool="llm_judge")  # the pool bounds judge tasks across runs; the runner bounds calls within one
def judge(validated: dict[str, Any]) -> dict[str, Any]:
    """LLM-as-judge on a stratified, budgeted sample: judge.parquet, weighted estimates with intervals, review queue."""
    result = _run("judge", validated["partition"], validate=validated)
    if result["outcome"] == "ok":
        print(f"judged {result['sampled']} rows ({result['counts']}), spent ${result['spent_usd']:.4f} of ${result['budget_usd']}; {result['judge_json']}")
    return result


@task
def experiments(validated: dict[str, Any], profiled: dict[str, Any], judged: dict[str, Any] | None = None,
                concepted: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every experiment from its start: health, primary metrics, guardrails, decision; experiments.json.

    Runs after concept, which writes the arms' feedback-signal moments (``feedback.<signal>_rate``) it merges.
    """
    result = _run("experiments", validated["partition"], validate=validated, profile=profiled, judge=judged)
    for exp in result.get("experiments", []):
        print(f"{exp['experiment_id']}: {exp['decision'].upper()} — " + "; ".join(exp.get("reasons") or []))
    return result


@task
def publish(extracted: dict[str, Any], validated: dict[str, Any], profiled: dict[str, Any], drifted: dict[str, Any] | None = None,
            concepted: dict[str, Any] | None = None, experimented: dict[str, Any] | None = None, judged: dict[str, Any] | None = None) -> dict[str, Any]:
    result = _run("publish", extracted["partition"], extract=extracted, validate=validated, profile=profiled, drift=drifted, concept=concepted,
                  experiments=experimented, judge=judged)
    print(f"summary {result['summary_uri']} outcome={result['outcome']}")
    return result


@task(outlets=[GUARDRAIL_BREACH], retries=0)
def signal_breach(published: dict[str, Any]):
    """Emit a guardrail_breach asset event when a hard limit broke or a guardrail is inferior; skip (no event) otherwise."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not published["breaches"]:
        raise AirflowSkipException("no guardrail breach in this partition")
    for b in published["breaches"]:
        print(f"BREACH {b['model_id']} {b['experiment_id']}: {b['reason']}")
    yield Metadata(GUARDRAIL_BREACH, extra={"breaches": published["breaches"]})


@task(retries=2)
def notify(published: dict[str, Any]):
    """Tell the team's webhook about this partition's guardrail breaches, and its drift at or above ``defaults.notify_drift_severity``.

    Skipped when there is nothing to tell. Delivery is at least once: a retry after a partial failure resends.
    """
    from airflow.sdk.exceptions import AirflowSkipException
    from modelwatch.observe.notifications import run_notifications
    from modelwatch.storage.s3 import get_json
    from modelwatch_notifier import PartitionEventNotifier

    cfg = config_or_fail()
    summary = get_json(s3_client(cfg), published["summary_uri"])
    due = run_notifications(summary, reports_uri=cfg.defaults.reports_uri, report_base_url=cfg.defaults.report_base_url,
                            drift_level=cfg.defaults.notify_drift_severity)
    if not due:
        raise AirflowSkipException("no breach and no drift at or above the notification level in this partition")
    context = get_current_context()
    for notification in due:
        PartitionEventNotifier(notification)(context)
        print(f"NOTIFIED {notification.event} {notification.key}")
    return [n.key for n in due]


def failure_notifier(note: str | None = None):
    """The DAGs' ``on_failure_callback``: the failed task and its log link, POSTed to ``$MODELWATCH_ALERT_WEBHOOK``."""
    from modelwatch_notifier import RunFailureNotifier

    return RunFailureNotifier(note=note)


@task(outlets=[MODEL_PROMOTED], retries=0)
def signal_promotion(published: dict[str, Any]):
    """Emit a model_promoted asset event (modelwatch_baseline builds the winner's baseline); skip otherwise."""
    from airflow.sdk.exceptions import AirflowSkipException

    if not published.get("promotions"):
        raise AirflowSkipException("no experiment was promoted in this partition")
    for p in published["promotions"]:
        print(f"PROMOTED {p['model_id']} {p['experiment_id']}: new baseline {p['version']} requested")
    yield Metadata(MODEL_PROMOTED, extra={"promotions": published["promotions"]})


def monitor_models(cadence: str, partitions=None):
    """Plan the run's partitions and their shards, check every shard in parallel, then one mapped branch of stages per model.

    The branch is the registry's stages for the cadence, in order, each task taking its NEEDS' results.
    ``partitions``: an upstream task's list of partition dicts to process instead of ``plan_partitions``
    (modelwatch_hourly_events: the hours it claimed).
    """
    from modelwatch.stages import for_cadence  # light: the registry imports no stage

    tasks = {"extract": extract, "validate": validate, "profile": profile, "drift": drift, "concept": concept, "judge": judge,
             "experiments": experiments, "publish": publish}

    @task_group(group_id="monitor")
    def monitor(partition: dict[str, Any], checked):
        results: dict[str, Any] = {}
        for stage in for_cadence(cadence):  # the hourly DAG keeps to the fast checks: hard limits only (in profile)
            inputs = (partition, checked) if stage.name == "extract" else [results.get(n) for n in stage.needs]
            results[stage.name] = tasks[stage.name](*inputs)
        published = results["publish"]
        signal_breach(published)
        notify(published)
        if cadence == "daily":
            signal_promotion(published)

    partitions = plan_partitions(cadence) if partitions is None else partitions
    checked = check_shard.expand(shard=plan_shards(partitions))  # fan-out: one task per model x shard
    return monitor.partial(checked=checked).expand(partition=partitions)
