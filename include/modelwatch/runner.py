"""The one runner: a stage of the registry (``modelwatch.stages``) on one partition, or a whole day, inside Airflow or not.

``run_stage`` is what every DAG task of ``dags/common/monitoring.py`` calls, and what ``run_day``
calls for each stage in order. It handles no traffic, a missing baseline and a stage that does not
apply to the model, so that no stage and no task has to.

The functions named after the stages (``extract``, ``validate``, ``profile``, ``drift``, ``concept``,
``judge``, ``experiments``, ``publish``) keep the signatures the stages had as plain functions; tests,
benchmarks and notebooks call them. Each is ``run_stage`` with its inputs; like the plain functions
they replace, they compute a stage on an empty partition instead of passing ``no_traffic`` on.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from typing import Any

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.results import SkippedRecord
from modelwatch.stages import NO_TRAFFIC, StageContext, StageResult, for_cadence, stage


def run_stage(name: str, ctx: StageContext, upstream: Mapping[str, Any] | None = None, *, pass_no_traffic: bool = True) -> StageResult:
    """Run stage ``name`` on ``ctx.partition`` with the results of the stages it needs (StageResults or XCom dicts)."""
    spec = stage(name)
    if ctx.summarize is None and name in ("extract", "validate"):
        ctx = with_summaries(ctx)
    inputs = {n: StageResult.of(n, (upstream or {}).get(n)) for n in spec.needs}
    if pass_no_traffic and not spec.runs_without_traffic and any(r is not None and r.outcome == NO_TRAFFIC for r in inputs.values()):
        return StageResult(name, SkippedRecord(partition=ctx.partition.to_dict(), outcome=NO_TRAFFIC))
    if spec.applies is not None and not spec.applies(ctx.model):
        return StageResult(name, SkippedRecord(partition=ctx.partition.to_dict(), outcome="not_configured"))
    result = _run_module(spec, ctx, inputs)
    check_record(name, result.record)
    return result


def _run_module(spec, ctx: StageContext, inputs: Mapping[str, StageResult | None]) -> StageResult:
    module = importlib.import_module(spec.module)
    if spec.baseline is None:
        return module.run(ctx, inputs)
    from modelwatch.baseline.store import BaselineMissing

    try:
        return module.run(ctx, inputs)
    except BaselineMissing as exc:
        from modelwatch.storage.keys import report_uri
        from modelwatch.storage.s3 import put_json

        missing = {"partition": ctx.partition.to_dict(), "outcome": "no_baseline", **spec.no_baseline, "reason": str(exc)}
        uri = put_json(ctx.client, report_uri(ctx.cfg, ctx.partition, spec.baseline), missing)
        return StageResult(spec.name, {**missing, f"{spec.name}_uri": uri})


def with_summaries(ctx: StageContext) -> StageContext:
    """``ctx`` able to build its partition's shard summaries: one per stage of its cadence that has a per-shard part."""
    from modelwatch.summaries import ShardSummaries, summary_modules

    modules = summary_modules(for_cadence(ctx.cadence))
    holder: list[StageContext] = []

    def summarize(shard: int, shards: int) -> ShardSummaries:
        return ShardSummaries(holder[0], shard, shards, modules)

    holder.append(replace(ctx, summarize=summarize))
    return holder[0]


def check_shard(client, cfg: MonitoringConfig, shard: Mapping[str, Any]) -> dict[str, Any]:
    """The map step on one shard (``ingest.stage.check_shard``), building every summarising stage's summary of its valid rows."""
    from modelwatch.ingest.stage import check_shard as check

    partition = Partition.from_dict(shard["partition"])
    ctx = with_summaries(StageContext(client, cfg, partition, "daily" if partition.hour is None else "hourly"))
    return dict(check(client, cfg, dict(shard), ctx.summarize(shard["shard"], shard["shards"])))


class RecordMismatch(TypeError):
    """A stage returned a record that is not the type the registry declares for it (``modelwatch.results``)."""


def check_record(name: str, record: Mapping[str, Any]) -> None:
    """Check ``record``, which stage ``name`` returned, against its declared TypedDict: every field present, of its type, and no other.

    (The runner's own records for a stage it did not run are ``results.SkippedRecord``s.)

    Raises RecordMismatch naming each field, so a stage that changes what it returns fails where it
    returns, not in a later stage or a later day that reads the field.
    """
    from pydantic import ValidationError

    kind = stage(name).record
    try:
        _adapter(kind).validate_python(record)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(record)'}: {e['msg']}" for e in exc.errors())
        raise RecordMismatch(f"stage {name!r} returned a record that is not a {kind.__name__} (modelwatch.results): {problems}. "
                             f"Declare the field in modelwatch/results.py or return what it declares.") from None


@cache
def _adapter(kind: type):
    from pydantic import TypeAdapter

    return TypeAdapter(kind)


def run_day(client, cfg: MonitoringConfig, partition: Partition, cadence: str = "daily", *, run: Mapping[str, Any] | None = None,
            connection: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every stage of ``cadence`` on ``partition``, in order, outside Airflow (shards one after another); each stage's record."""
    ctx = StageContext(client, cfg, partition, cadence, run or {"dag_id": "modelwatch.runner", "run_id": f"run_day {partition.label}"}, connection)
    results: dict[str, StageResult] = {}
    for spec in for_cadence(cadence):
        results[spec.name] = run_stage(spec.name, ctx, results)
    return {name: result.to_xcom() for name, result in results.items()}


# -- the stages as plain functions (their signatures before the registry) -----------------------------------


def _ctx(client, cfg: MonitoringConfig, record: Mapping[str, Any], **kw: Any) -> StageContext:
    return StageContext(client, cfg, Partition.from_dict(record["partition"]), **kw)


def extract(client, cfg: MonitoringConfig, partition: Partition, checked: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return run_stage("extract", StageContext(client, cfg, partition, checked=checked), pass_no_traffic=False).to_xcom()


def validate(client, cfg: MonitoringConfig, extracted: dict[str, Any]) -> dict[str, Any]:
    return run_stage("validate", _ctx(client, cfg, extracted), {"extract": extracted}, pass_no_traffic=False).to_xcom()


def profile(client, cfg: MonitoringConfig, validated: dict[str, Any], cadence: str) -> dict[str, Any]:
    return run_stage("profile", _ctx(client, cfg, validated, cadence=cadence), {"validate": validated}, pass_no_traffic=False).to_xcom()


def drift(client, cfg: MonitoringConfig, validated: dict[str, Any]) -> dict[str, Any]:
    return run_stage("drift", _ctx(client, cfg, validated), {"validate": validated}, pass_no_traffic=False).to_xcom()


def concept(client, cfg: MonitoringConfig, validated: dict[str, Any]) -> dict[str, Any]:
    return run_stage("concept", _ctx(client, cfg, validated), {"validate": validated}, pass_no_traffic=False).to_xcom()


def judge(client, cfg: MonitoringConfig, validated: dict[str, Any], connection: dict[str, Any] | None = None) -> dict[str, Any]:
    return run_stage("judge", _ctx(client, cfg, validated, connection=connection), {"validate": validated}, pass_no_traffic=False).to_xcom()


def experiments(client, cfg: MonitoringConfig, validated: dict[str, Any], profiled: dict[str, Any],
                judged: dict[str, Any] | None = None) -> dict[str, Any]:
    upstream = {"validate": validated, "profile": profiled, "judge": judged}
    return run_stage("experiments", _ctx(client, cfg, validated), upstream, pass_no_traffic=False).to_xcom()


def publish(client, cfg: MonitoringConfig, extracted: dict[str, Any], validated: dict[str, Any] | None, profiled: dict[str, Any] | None,
            run: dict[str, Any], drifted: dict[str, Any] | None = None, concepted: dict[str, Any] | None = None,
            experimented: dict[str, Any] | None = None, judged: dict[str, Any] | None = None) -> dict[str, Any]:
    upstream = {"extract": extracted, "validate": validated, "profile": profiled, "drift": drifted, "concept": concepted,
                "experiments": experimented, "judge": judged}
    return run_stage("publish", _ctx(client, cfg, extracted, run=run), upstream, pass_no_traffic=False).to_xcom()
