"""What the stages hand each other: one typed record per stage, the contract between a stage and the stages after it.

A record is what a DAG task returns to XCom, so each is a ``TypedDict`` of JSON values rather
than a class: Airflow stores and passes it unchanged, a type checker sees its fields, and the
runner checks every record a stage returns against the type the registry declares for it
(``modelwatch.runner.check_record``), so a stage that drops a field or returns a new one fails
where it returns, naming the field, not in a later stage that reads it.

Only the top level (and what later stages read of it) is typed field by field; detail that only
the page shows (an alert's statistics, an experiment's test results) stays ``dict[str, Any]``,
described where it is made. Like ``modelwatch.stages``, this module imports nothing heavy: DAG
files read it at parse time.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from typing_extensions import TypedDict  # pydantic checks records against these; it needs typing_extensions' TypedDict before 3.12

Severity = Literal["none", "low", "medium", "high"]


class PartitionRecord(TypedDict):
    """``core.partition.Partition.to_dict()``: one model's day (``hour`` None) or hour."""

    model_id: str
    dt: str  # ISO date
    hour: int | None


class SkippedRecord(TypedDict):
    """What the runner records for a stage it did not run: no traffic upstream, or not configured for the model."""

    partition: PartitionRecord
    outcome: Literal["no_traffic", "not_configured"]


# -- ingest ------------------------------------------------------------------------------------------------


class FileRead(TypedDict):
    """One log file of a shard: how it was read."""

    uri: str
    format: str  # "jsonl", "jsonl.gz", "parquet", ... or "empty" for a zero-byte file
    rows_read: int
    rows_rejected: NotRequired[int]  # absent for a zero-byte file
    problem: str | None
    damaged: bool
    skipped: NotRequired[dict[str, int]]  # an OpenTelemetry export's spans that are no model request, by reason (absent when none)


class ShardFigures(TypedDict):
    """One shard's counts, as the reduce step merges them."""

    partition: PartitionRecord
    shard: int
    shards: int
    rows_read: int
    read_rejects: int
    rows_valid: int
    rows_quarantined: int
    failures: dict[str, int]  # rule -> rows
    examples: dict[str, list[str]]  # rule -> located examples
    summaries: dict[str, str]  # stage -> the URI of its summary of this shard's valid rows (modelwatch.summaries)


class ShardCheck(ShardFigures):
    """``ingest.stage.check_shard``'s result: the mapped task's XCom."""

    files: list[FileRead]


class ExtractRecord(TypedDict):
    partition: PartitionRecord
    source_prefix: str
    files: list[FileRead]
    files_damaged: int
    rows_read: int
    read_rejects: int
    outcome: Literal["ok", "no_traffic"]
    shards: list[ShardFigures]


class ValidateRecord(TypedDict):
    partition: PartitionRecord
    rows_read: int
    rows_valid: int
    rows_quarantined: int
    invalid_share: float
    failures: dict[str, int]
    examples: dict[str, list[str]]
    quarantine_uri: str
    valid_uri: str  # the valid rows' manifest; read with ingest.valid.read_valid


# -- profile -----------------------------------------------------------------------------------------------


class LimitCheckRecord(TypedDict):
    """``profile.limits.LimitCheck.to_dict()``: one hard limit on one experiment's treatment arm."""

    model_id: str
    experiment_id: str
    arm: str
    metric: str
    value: float | None
    requests: int
    max: float | None
    min: float | None
    state: Literal["ok", "breach", "abstain"]
    reason: str


class ProfileRecord(TypedDict):
    partition: PartitionRecord
    metrics_uri: str
    headline: dict[str, dict[str, float | None]]  # variant ("__all__", arms) -> metric -> value
    segments: list[dict[str, Any]]  # {"segment", "value", <metric>: value}
    prompt_token_histogram: list[dict[str, Any]]
    hard_limits: list[LimitCheckRecord]
    quantile_method: str  # "exact" (every row) | "kll" (merged KLL sketches: quantile ranks within rank_error)
    rank_error: float | None  # KLL's normalized rank error (99% confidence); None when exact


# -- drift, concept, judge -----------------------------------------------------------------------------------


class DriftRecord(TypedDict):
    """The drift stage's record; with ``outcome`` ``no_baseline`` (written by the runner) only the first five fields and ``reason``."""

    partition: PartitionRecord
    outcome: Literal["ok", "no_baseline"]
    severity: Severity
    alerts: list[dict[str, Any]]  # the 50 most severe: {"family", "column", "severity", "effect_method", "effect", "p_adjusted", ...}
    drift_uri: str
    alert_count: NotRequired[int]
    report_uri: NotRequired[str | None]  # Evidently's report.html
    evidently_ui_url: NotRequired[str | None]  # the day's snapshot in the Evidently UI (defaults.evidently_ui_url set and a workspace written)
    baseline_version: NotRequired[str]
    reason: NotRequired[str]
    segment_embedding: NotRequired[list[dict[str, Any]]]  # per-segment MMD: {"segment", "column", "n_reference", "n_current", "mmd2", "p_adjusted", ...}


class ConceptRecord(TypedDict):
    partition: PartitionRecord
    outcome: Literal["ok"]
    verdict: str
    reason: str
    concept_uri: str
    detections: int
    evaluated: int
    estimation: dict[str, Any] | None  # classic models: the day's performance estimate (estimation.estimate.estimate_stage)
    labels_rejected: NotRequired[int]  # label lines that could not be used, and by rule
    labels_rejected_by_rule: NotRequired[dict[str, int]]
    feedback: NotRequired[dict[str, dict[str, Any]] | None]  # LLMs: each feedback signal's rate on the day
    feedback_lookback: NotRequired[dict[str, dict[str, Any]] | None]  # and over the look-back, as known on the day


class JudgeRecord(TypedDict):
    partition: PartitionRecord
    outcome: Literal["ok"]
    judge_json: str
    judge_uri: str  # judge.parquet: one row per judged answer
    overall: dict[str, Any]  # dimension/flag -> weighted estimate with interval
    by_variant: dict[str, Any]
    counts: dict[str, int]  # judged, cached, failed, skipped_budget, ...
    spent_usd: float
    budget_usd: float
    sampled: int
    limited_by: str | None
    backend: dict[str, Any]
    pairwise: dict[str, Any] | None
    agreement: NotRequired[dict[str, dict[str, Any]]]  # dimension/flag -> agreement with the golden set's human labels
    agreement_warnings: NotRequired[list[Any]]
    # variant -> judge.<label> -> prediction-powered sums from today's human review labels (judge.estimates.ppi_moments)
    ppi_by_arm: NotRequired[dict[str, dict[str, dict[str, float]]]]


# -- experiments and publish -------------------------------------------------------------------------------


class Breach(TypedDict):
    """A guardrail or hard-limit breach: the extra of the breach asset event, everything the rollback DAG needs."""

    model_id: str
    experiment_id: str
    control: str
    treatment: str
    metric: str
    value: float | None
    limit: dict[str, float | bool | None]  # hard limit {"max", "min"}; guardrail {"margin", "absolute"}
    requests: int
    reason: str
    partition: str  # the partition's label
    breach_id: str
    routing_uri: str | None
    reports_uri: str
    report_uri: str
    evidence: dict[str, Any]
    detected_at: str


class ExperimentsRecord(TypedDict):
    partition: PartitionRecord
    outcome: Literal["ok"]
    experiments: list[dict[str, Any]]  # per experiment: decision, reasons, health, primary and guardrail summaries
    breaches: list[Breach]
    promotions: list[dict[str, Any]]
    experiments_uri: str
    shadow: bool


class RowCounts(TypedDict):
    read: int
    valid: int
    quarantined: int


class DriftState(TypedDict):
    severity: str | None
    alerts: int


class PublishRecord(TypedDict):
    """The run's result: the daily DAG's breach and promotion assets are emitted from it."""

    summary_uri: str
    outcome: Literal["ok", "breach", "no_traffic"]
    breaches: list[Breach]
    rows: RowCounts
    drift: DriftState | None
    promotions: list[dict[str, Any]]
    pushed: str | None  # "pushed <group>", "failed: ...", or None without a Pushgateway


def _forbid_other_fields() -> None:
    """Every record type above refuses fields it does not declare when the runner checks a record against it.

    pydantic reads a TypedDict's settings from ``__pydantic_config__``; a plain dict keeps pydantic
    out of this module's imports.
    """
    from typing_extensions import is_typeddict

    for value in list(globals().values()):
        if is_typeddict(value):
            value.__pydantic_config__ = {"extra": "forbid"}


_forbid_other_fields()
