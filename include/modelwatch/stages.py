"""Start here: the stages of a monitoring run, in order, and the contract every stage keeps.

A run processes one partition: one model's day (``modelwatch_daily``) or hour (``modelwatch_hourly``),
a ``core.partition.Partition``. The ingest stage reads its log files in shards (the map step:
``ingest.stage.plan_shards`` and ``check_shard``, one Airflow task per shard), ``validate`` is the
reduce step, and every later stage reads what the valid rows' manifest lists (its stage's merged
per-shard summaries, or the valid parts streamed a row group at a time: ``ingest.valid``), writes its
outputs under keys fixed by model and partition (``storage.keys``: a retry or a re-run overwrites,
never doubles) and returns a small JSON-able record for the stages after it (the DAG's XCom).

Each stage is one module, ``modelwatch/<package>/stage.py`` (validate: ``ingest/validate_stage.py``)::

    NAME    the stage's name, which is also its DAG task id (``monitor.<NAME>``)
    NEEDS   the stages whose results ``run`` receives, in the order the DAG task takes them
    run(ctx: StageContext, upstream: dict[str, StageResult | None]) -> StageResult[<its record type>]

A stage's record is a ``TypedDict`` of ``modelwatch.results`` (``ValidateRecord``, ``DriftRecord``, ...),
declared in the registry below (``Stage.record``); the runner checks each record a stage returns
against it, so the fields the stages after it read are a contract, not a convention.

A stage that reads the day's rows has a per-shard part (``Stage.summary``, see ``modelwatch.summaries``):
a mergeable summary each shard task builds while the shard's valid rows stream past, so the stage's
own task merges summaries and decides instead of reading the whole day again.

``run`` is the only thing the runner (``modelwatch.runner``) calls. The runner, not the stages,
handles what used to be written once per task:

- no traffic: a stage after ``extract`` whose input had none passes ``no_traffic`` on without running
  (``extract`` and ``publish`` run on an empty partition: publish writes a summary saying so);
- a missing baseline: ``BaselineMissing`` raised by a stage that declares ``baseline`` becomes its
  ``no_baseline`` record, written where the stage's output would have been (drift: ``drift.json``);
- a stage that does not apply to the model (``applies``): ``not_configured`` (the judge of a model
  without judge settings).

``dags/common/monitoring.py`` builds each DAG's task group from STAGES; ``runner.run_day`` runs the
same stages outside Airflow. This module imports nothing heavy: DAG files read it at parse time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from modelwatch.core.partition import Partition
from modelwatch.results import ConceptRecord, DriftRecord, ExperimentsRecord, ExtractRecord, JudgeRecord, ProfileRecord, PublishRecord, ValidateRecord

if TYPE_CHECKING:
    from modelwatch.config import Model, MonitoringConfig

BOTH: frozenset[str] = frozenset({"daily", "hourly"})
DAILY: frozenset[str] = frozenset({"daily"})
NO_TRAFFIC = "no_traffic"


@dataclass(frozen=True)
class Stage:
    """One entry of the registry: what the runner and the DAG need to know about a stage without importing it."""

    name: str  # the DAG task id (monitor.<name>)
    module: str  # the stage's module, imported when the stage runs (never at DAG parse time)
    record: type  # the TypedDict (modelwatch.results) of the record its run returns
    needs: tuple[str, ...] = ()  # upstream stages, in the order the DAG task takes their results
    cadences: frozenset[str] = BOTH  # the hourly DAG keeps to the fast checks
    runs_without_traffic: bool = False  # extract and publish run on an empty partition; the others pass no_traffic on
    baseline: str | None = None  # the output a missing baseline is recorded in; None: the stage needs no baseline
    no_baseline: Mapping[str, Any] = field(default_factory=dict)  # that record's fields beyond partition, outcome and reason
    applies: Callable[[Model], bool] | None = None  # None: every model
    summary: str | None = None  # the module of its per-shard part (modelwatch.summaries), built while each shard is checked


def _has_judge(model: Model) -> bool:
    return model.judge is not None and model.kind == "llm"


STAGES: tuple[Stage, ...] = (
    Stage("extract", "modelwatch.ingest.stage", ExtractRecord, runs_without_traffic=True),
    Stage("validate", "modelwatch.ingest.validate_stage", ValidateRecord, needs=("extract",)),
    Stage("profile", "modelwatch.profile.stage", ProfileRecord, needs=("validate",), summary="modelwatch.profile.summary"),
    Stage("drift", "modelwatch.drift.stage", DriftRecord, needs=("validate",), cadences=DAILY, baseline="drift.json",
          no_baseline={"severity": "none", "alerts": []}, summary="modelwatch.drift.summary"),
    Stage("concept", "modelwatch.concept.stage", ConceptRecord, needs=("validate",), cadences=DAILY),
    Stage("judge", "modelwatch.judge.stage", JudgeRecord, needs=("validate",), cadences=DAILY, applies=_has_judge,
          summary="modelwatch.judge.summary"),
    Stage("experiments", "modelwatch.experiments.stage", ExperimentsRecord, needs=("validate", "profile", "judge", "concept"), cadences=DAILY,
          summary="modelwatch.experiments.summary"),
    Stage("publish", "modelwatch.publish.stage", PublishRecord,
          needs=("extract", "validate", "profile", "drift", "concept", "experiments", "judge"), runs_without_traffic=True),
)
_BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    """The registry entry of ``name``."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no stage {name!r}; the stages are {[s.name for s in STAGES]}") from None


def for_cadence(cadence: str) -> tuple[Stage, ...]:
    """The stages a ``cadence`` ("daily" or "hourly") run has, in order."""
    return tuple(s for s in STAGES if cadence in s.cadences)


@dataclass(frozen=True)
class StageContext:
    """What a stage runs with: one partition of one model, the validated config and an S3 client."""

    client: Any  # boto3 S3 client (inside Airflow: the Amazon provider's S3Hook(...).get_conn())
    cfg: MonitoringConfig
    partition: Partition
    cadence: str = "daily"
    run: Mapping[str, Any] = field(default_factory=dict)  # {"dag_id", "run_id"}: recorded in summary.json
    connection: Mapping[str, Any] | Callable[[], Mapping[str, Any] | None] | None = None  # the llm_judge connection, or how to look it up
    checked: list[dict[str, Any]] | None = None  # the map step's shard results (extract; None: extract checks the shards itself)
    summarize: Callable[[int, int], Any] | None = None  # (shard, shards) -> summaries.ShardSummaries of this partition (set by the runner)

    @property
    def model(self) -> Model:
        return self.cfg.model(self.partition.model_id)

    def judge_connection(self) -> Mapping[str, Any] | None:
        """The llm_judge connection, looked up only when a judge really runs."""
        return self.connection() if callable(self.connection) else self.connection


R = TypeVar("R", bound=Mapping[str, Any])


@dataclass(frozen=True)
class StageResult(Generic[R]):
    """A stage's result: the stage, and its record (a ``modelwatch.results`` TypedDict) for XCom and the stages after it."""

    stage: str
    record: R

    @property
    def outcome(self) -> str:
        """``ok`` unless the record says otherwise (``no_traffic``, ``no_baseline``, ``not_configured``, ...)."""
        return self.record.get("outcome", "ok")

    @property
    def partition(self) -> Partition | None:
        p = self.record.get("partition")
        return Partition.from_dict(p) if p else None

    def to_xcom(self) -> R:
        return self.record

    @classmethod
    def of(cls, stage: str, value: StageResult | Mapping[str, Any] | None) -> StageResult | None:
        """A result from what a DAG task received through XCom (a dict), or None when that stage did not run."""
        if value is None or isinstance(value, StageResult):
            return value
        return cls(stage, dict(value))


Upstream = Mapping[str, StageResult | None]


def record(result: StageResult[R] | None) -> R | None:
    """The record of an upstream result, or None when that stage did not run in this DAG."""
    return None if result is None else result.record
