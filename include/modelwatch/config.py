"""Deployment configuration: one YAML file, validated with pydantic.

Every problem is reported with the file and its key path (``models[0].experiments[0].split``),
so that a bad config fails the first task of a run with a message a person can act on.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError, field_validator, model_validator

from modelwatch.config_errors import describe_errors, key_path  # noqa: F401  (key_path: the rubric's errors use it too)
from modelwatch.config_sources import Source
from modelwatch.core.assignment import MODELWATCH, HashScheme, describe_assignment
from modelwatch.core.metric_names import OPERATIONAL_METRICS, feedback_signal

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"  # include/config, beside the package
DEFAULT_CONFIG_PATH = CONFIG_DIR / "modelwatch.yaml"
CONFIG_ENV_VAR = "MODELWATCH_CONFIG"
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SEGMENT = re.compile(r"^(metadata|features)\.[A-Za-z0-9_.-]+$|^variant$|^status$")


class ConfigError(ValueError):
    """A configuration problem list, one line per problem, each naming its key path."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"invalid modelwatch config {path}:\n" + "\n".join(f"  - {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Strict):
    logs_uri: str = "s3://ml-logs/inference"
    reports_uri: str = "s3://ml-monitoring/reports"
    labels_uri: str = "s3://ml-logs/labels"
    aws_conn_id: str = "aws_default"
    pushgateway_url: str | None = None  # e.g. http://pushgateway:9091: each run pushes its metrics there (Prometheus' batch-job convention)
    max_invalid_share: float = Field(0.05, ge=0.0, le=1.0)
    report_base_url: str | None = None  # https address serving reports_uri (e.g. https://reports.example.com/modelwatch): notification links
    notify_drift_severity: Literal["low", "medium", "high"] | None = "medium"  # drift at or above this is notified; null: never
    # Mask emails, phone numbers and card numbers (modelwatch.core.redaction) in prompts, responses, references and quarantined
    # lines as they are read, so no sample, judgment, review queue, report or quarantine record stores them.
    redact_pii: bool = False
    # A partition whose log files total more than shard_bytes is split into shards of about that size (whole files, in
    # key order), read and validated by parallel tasks and merged by a reduce step; smaller partitions are one shard.
    shard_bytes: int = Field(256 * 2**20, ge=1)
    batch_rows: int = Field(50_000, ge=1)  # rows a task holds at once while reading and validating a shard
    # The largest uniform sample a stage's per-shard summary keeps of a column (bottom-k by request-id hash, modelwatch.summaries):
    # a day with at most this many rows is summarised exactly (every row), a larger one by the sample, whatever its size.
    summary_sample_rows: int = Field(200_000, ge=1)
    # Evidently workspace the drift stage adds each model's day to (one project per model, one snapshot per day), e.g.
    # s3://ml-monitoring/evidently beside reports_uri; MODELWATCH_EVIDENTLY_WORKSPACE (a local folder or URI) overrides it.
    evidently_workspace_uri: str | None = None
    evidently_ui_url: str | None = None  # the Evidently UI serving that workspace (e.g. http://127.0.0.1:8000): report pages link to their day
    # How texts are embedded (modelwatch.embeddings): the int8 ONNX export on ONNX Runtime, or the float32 torch model it was made from.
    # A baseline records its backend; a day embedded another way re-embeds the baseline's texts (through the cache) before comparing.
    embedding_backend: Literal["onnx-int8", "torch-float32"] = "onnx-int8"

    @field_validator("logs_uri", "reports_uri", "labels_uri")
    @classmethod
    def _s3_uri(cls, value: str) -> str:
        if not value.startswith("s3://") or len(value) <= len("s3://"):
            raise ValueError(f"expected an s3://bucket/prefix URI, got {value!r}")
        return value.rstrip("/")

    @field_validator("report_base_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError(f"expected an https:// URL that serves reports_uri, got {value!r}")
        return value.rstrip("/") if value else value

    @field_validator("evidently_workspace_uri")
    @classmethod
    def _workspace_uri(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("s3://") or len(value.rstrip("/")) <= len("s3://")):
            raise ValueError(f"expected an s3://bucket/prefix URI for the Evidently workspace, got {value!r}")
        return value.rstrip("/") if value else value

    @field_validator("evidently_ui_url")
    @classmethod
    def _ui_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError(f"expected the http(s):// address of the Evidently UI, got {value!r}")
        return value.rstrip("/") if value else value


class Window(_Strict):
    start: str
    end: str


class Baseline(_Strict):
    version: str | None = None
    window: Window | None = None

    def resolved_version(self) -> str | None:
        """The configured version, else one named after the window (``2026-11-01_2026-11-03``)."""
        if self.version:
            return self.version
        return f"{self.window.start}_{self.window.end}" if self.window else None


DriftMethod = Literal["ks", "wasserstein", "psi", "chi2", "jensenshannon"]


class DriftSettings(_Strict):
    features: list[str] = []
    text: list[str] = []
    embedding_sample: int = Field(4000, ge=50, le=200_000)
    reference_sample: int = Field(20_000, ge=100, le=2_000_000)  # rows kept in a baseline's reference sample
    alpha: float = Field(0.05, gt=0, lt=1)  # false-discovery rate across the columns of one family
    min_segment_count: int = Field(200, ge=20)  # rows needed on both sides before a segment is tested
    methods: dict[str, DriftMethod] = {}  # per-column override of the drift statistic
    permutations: int = Field(1000, ge=100, le=100_000)  # MMD permutation test
    # Embedding drift has no effect-size floor to stop a daily false alarm, so it is held to a stricter level.
    embedding_alpha: float = Field(0.01, gt=0, lt=1)
    report_rows: int = Field(20_000, ge=100)  # rows per side in the Evidently report
    positive_class: str | None = None  # classifiers: the class F1, AUC and calibration are about

    @model_validator(mode="after")
    def _permutations_can_reach_alpha(self) -> DriftSettings:
        level = min(self.alpha, self.embedding_alpha)
        if 1 / (self.permutations + 1) > level:
            raise ValueError(f"{self.permutations} permutations cannot give a p-value below {level}: use at least {int(1 / level)}")
        return self
    label_lookback_days: int = Field(14, ge=1, le=90)  # concept drift looks at this many days of labelled traffic
    # Per-segment embedding drift (MMD), bounded: the largest segments only, a seeded sample of rows per side.
    segment_embedding_segments: int = Field(6, ge=0, le=50)  # segment values tested per text column (0: off)
    segment_embedding_rows: int = Field(500, ge=50, le=5_000)  # texts per side and segment


FeedbackValue = StrictBool | StrictInt | StrictFloat | StrictStr
_SIGNAL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class FeedbackSignal(_Strict):
    """A signal a team logs per request in its label files (thumbs down, escalation, user correction).

    ``key`` is the label line's top-level key that carries it; ``positive`` the values that mean the
    signal fired; ``negative`` the values that mean the request was rated and it did not (thumbs up).
    With ``negative`` empty the rate is over every request of the day (an escalation is logged only
    when it happens); otherwise over the rated requests.
    """

    key: str = Field("feedback", min_length=1)
    positive: list[FeedbackValue] = Field(min_length=1)
    negative: list[FeedbackValue] = []

    @model_validator(mode="after")
    def _disjoint(self) -> FeedbackSignal:
        both = [v for v in self.positive if any(type(v) is type(n) and v == n for n in self.negative)]
        if both:
            raise ValueError(f"values {both} are both positive and negative")
        return self


def _thumbs_down() -> dict[str, FeedbackSignal]:
    return {"thumbs_down": FeedbackSignal(key="feedback", positive=[-1, "down", "thumbs_down"], negative=[1, "up", "thumbs_up"])}


class FeedbackSettings(_Strict):
    """Delayed feedback of LLMs read from ``labels_uri``: each signal's rate is ``feedback.<name>_rate``."""

    signals: dict[str, FeedbackSignal] = Field(default_factory=_thumbs_down)
    primary: str = "thumbs_down"  # the signal whose indicator is the concept-drift loss stream of an LLM

    @model_validator(mode="after")
    def _names(self) -> FeedbackSettings:
        bad = [n for n in self.signals if not _SIGNAL_NAME.match(n)]
        if bad:
            raise ValueError(f"signal names must be lower-case letters, digits and '_' (they become metric names feedback.<name>_rate), got {bad}")
        if self.primary not in self.signals:
            raise ValueError(f"primary {self.primary!r} is not one of the signals {sorted(self.signals)}")
        return self


class JudgeSettings(_Strict):
    backend: Literal["heuristic", "anthropic", "openai_compatible"] = "heuristic"  # heuristic: offline, no network
    model: str | None = None  # the judge model for anthropic / openai_compatible
    connection_id: str = "llm_judge"  # Airflow connection holding the API key (and base_url in its extra)
    rubric: str = "default"  # include/config/rubrics/<rubric>.yaml
    daily_budget_usd: float = Field(5.0, ge=0)
    max_samples: int = Field(400, ge=0)
    ci_width: float | None = Field(None, gt=0)  # target width of the 95% interval of mean helpfulness; sizes the sample
    stratify_by: list[str] = []
    min_per_stratum: int = Field(5, ge=1)
    oversample: dict[str, float] = {}  # stratum value -> factor, for rare high-risk strata (e.g. {length_band=long: 2})
    concurrency: int = Field(4, ge=1, le=64)
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(3, ge=0, le=10)
    price_per_1k_input_usd: float = Field(0.003, ge=0)
    price_per_1k_output_usd: float = Field(0.015, ge=0)
    review_sample: int = Field(20, ge=0)  # rows exported each day for human labelling
    pairwise_samples: int = Field(100, ge=0)  # shadow answers compared with the served answer to the same request, both orders
    # golden-set kappa a judge dimension or flag needs to be "usable" (and to decide an experiment); Landis & Koch's
    # "substantial" agreement starts at 0.61 (see modelwatch.judge.trust)
    min_kappa: float = Field(0.6, ge=0, le=1)
    # human review labels each arm needs (from an experiment's start) before a judge metric below min_kappa is decided from them
    # by prediction-powered inference; 30 labelled rows per arm keep the rectifier's CLT interval near its nominal coverage
    min_review_labels: int = Field(30, ge=2)

    @model_validator(mode="after")
    def _model_for_llm_backends(self) -> JudgeSettings:
        if self.backend != "heuristic" and not self.model:
            raise ValueError(f"backend {self.backend} needs model (the judge model's name)")
        return self


def _check_metric(name: str) -> str:
    if name.startswith(("judge.", "quality.")):
        return name
    if name.startswith("feedback."):  # a feedback signal's rate; the model's feedback.signals name them
        if feedback_signal(name) is None:
            raise ValueError(f"unknown metric {name!r}: a feedback metric is feedback.<signal>_rate")
        return name
    if name not in OPERATIONAL_METRICS:
        close = difflib.get_close_matches(name, OPERATIONAL_METRICS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(sorted(OPERATIONAL_METRICS))}"
        raise ValueError(f"unknown metric {name!r}{hint}")
    return name


class _MetricRef(_Strict):
    metric: str

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        return _check_metric(value)


class MetricGoal(_MetricRef):
    direction: Literal["increase", "decrease"]
    mde: float | None = Field(None, gt=0)
    margin: float | None = Field(None, ge=0)
    absolute: bool = False


class HardLimit(_MetricRef):
    max: float | None = None
    min: float | None = None
    min_requests: int = Field(100, ge=1)  # below this many requests in the arm the check abstains

    @model_validator(mode="after")
    def _bounds(self) -> HardLimit:
        if self.max is None and self.min is None:
            raise ValueError("a hard limit needs max or min")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}: no value can pass")
        if self.metric.endswith("_rate") and self.max is not None and not 0 <= self.max <= 1:
            raise ValueError(f"{self.metric} is a share between 0 and 1; max {self.max} is impossible")
        return self


_UNIT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$")
_HASH_FIELDS = ("algorithm", "salt", "bits", "buckets")


class Assignment(_Strict):
    """How an experiment's units reach its arms, which the experiments stage checks (``core.assignment``).

    ``modelwatch``: modelwatch's own router, checked per request. ``hash``: a team's router
    described, checked per request. ``external``: the logged variant is the truth (SRM, arm
    exposure and units in several arms are checked, not hashes). ``unit``: the field the router
    assigns by, ``request_id`` or a dotted path into the log row (``metadata.user_id``).
    """

    method: Literal["modelwatch", "hash", "external"] = "modelwatch"
    unit: str = "request_id"
    algorithm: Literal["md5", "sha1", "sha256", "sha512", "murmur3"] | None = None
    salt: str | None = None  # the text hashed, with {experiment_id} and {unit}: e.g. "{experiment_id}-{unit}"
    bits: int | None = Field(None, ge=1, le=512)  # leading bits of the digest, read as an unsigned big-endian integer
    buckets: int | None = Field(None, ge=2)  # that integer modulo buckets, cut by the arms' weights
    order: list[str] | None = None  # the arms along the buckets (hash only; default: control, treatment)
    seed: int | None = Field(None, ge=0, lt=2**32)  # MurmurHash3's seed (murmur3 only; default 0)

    @field_validator("unit")
    @classmethod
    def _unit_path(cls, value: str) -> str:
        if not _UNIT.match(value):
            raise ValueError(f"unit must be a log field or a dotted path into the log row such as metadata.user_id, got {value!r}")
        return value

    @model_validator(mode="after")
    def _hash_described(self) -> Assignment:
        given = [f for f in (*_HASH_FIELDS, "order", "seed") if getattr(self, f) is not None]
        missing = [f for f in _HASH_FIELDS if getattr(self, f) is None]
        if self.method != "hash" and given:
            raise ValueError(f"{', '.join(given)} describe a hash: only for method: hash (method is {self.method})")
        if self.method == "hash" and missing:
            raise ValueError(f"method: hash needs {', '.join(missing)} (e.g. algorithm: md5, salt: '{{experiment_id}}:{{unit}}', bits: 32, "
                             "buckets: 100)")
        self.scheme()  # HashScheme checks the salt's placeholders, the bits the algorithm has and the seed
        return self

    def describe(self) -> str:
        """The declaration in words, for health messages."""
        return describe_assignment(self.method, self.unit, self.scheme(), self.order)

    def scheme(self) -> HashScheme | None:
        """The hash to check requests against; None for external assignment."""
        if self.method == "external":
            return None
        return MODELWATCH if self.method == "modelwatch" else HashScheme(self.algorithm, self.salt, self.bits, self.buckets, self.seed or 0)


class Experiment(_Strict):
    id: str
    control: str = "control"
    treatment: str = "treatment"
    split: dict[str, float] = {"treatment": 0.5}
    start: str | None = None  # first day of the experiment (YYYY-MM-DD); the analysis is cumulative from here
    mode: Literal["sequential", "fixed"] = "sequential"  # sequential: anytime-valid under daily looks
    alpha: float = Field(0.05, gt=0, lt=0.5)
    power: float = Field(0.8, gt=0.5, lt=1)
    correction: Literal["holm", "bh"] = "holm"  # across the primary metrics
    planned_requests: int | None = Field(None, ge=100)  # total experiment requests the test is tuned for (default: from the power analysis)
    min_quantile_count: int = Field(1000, ge=100)  # rows per arm before a p95/p99 comparison is made
    primary: list[MetricGoal] = []
    guardrails: list[MetricGoal] = []
    hard_limits: list[HardLimit] = []
    assignment: Assignment = Assignment()
    # A promote decision is reported (and its baseline built); with "approval" a person approves it in Airflow
    # (modelwatch_promotion), and approval routes all traffic to the treatment through the model's rollback action.
    promotion: Literal["report", "approval"] = "report"
    approval_timeout_hours: float = Field(48.0, gt=0, le=24 * 30)  # an unanswered approval is recorded as timed out

    @field_validator("assignment", mode="before")
    @classmethod
    def _assignment_shorthand(cls, value: object) -> object:
        return {"method": value} if isinstance(value, str) else value

    @field_validator("start")
    @classmethod
    def _day(cls, value: str | None) -> str | None:
        if value is not None:
            from datetime import date

            date.fromisoformat(value)
        return value

    @field_validator("split")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        if any(not 0 < w < 1 for w in value.values()) or sum(value.values()) > 1 + 1e-9:
            raise ValueError(f"split weights must lie in (0, 1) and sum to at most 1, got {value}")
        return value

    @model_validator(mode="after")
    def _arms(self) -> Experiment:
        if self.control == self.treatment:
            raise ValueError("control and treatment must be different variants")
        arms = {self.control, self.treatment}
        unknown = set(self.split) - arms
        if unknown:
            raise ValueError(f"split names unknown arm(s) {sorted(unknown)}; arms are {sorted(arms)}")
        order = self.assignment.order
        if order is not None and sorted(order) != sorted(arms):
            raise ValueError(f"assignment.order must list the arms {sorted(arms)} once each, got {order}")
        return self

    def assignment_weights(self) -> dict[str, float]:
        """The arms' weights in the order their buckets come: modelwatch's :meth:`weights` order, or the declared hash's."""
        weights = self.weights()
        if self.assignment.method != "hash":
            return weights
        return {arm: weights[arm] for arm in self.assignment.order or [self.control, self.treatment]}

    def weights(self) -> dict[str, float]:
        """Planned share of experiment traffic per arm; the control takes the remainder."""
        given = dict(self.split)
        given.setdefault(self.control, 1.0 - sum(w for a, w in given.items() if a != self.control))
        given.setdefault(self.treatment, 1.0 - given[self.control])
        return given


class Rollback(_Strict):
    action: Literal["routing_document", "webhook", "airflow_variable"] = "routing_document"
    uri: str | None = None  # routing_document: the s3:// document a router reads
    url: str | None = None  # webhook: the deployment endpoint that receives the rollback
    variable: str | None = None  # airflow_variable: the Variable a router reads
    timeout_s: float = Field(10.0, gt=0, le=300)
    retries: int = Field(3, ge=0, le=10)
    dry_run: bool = False  # decide, audit and notify, but change nothing
    notify_url: str | None = None  # a webhook told of every rollback decision

    @field_validator("uri")
    @classmethod
    def _s3(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("s3://"):
            raise ValueError(f"expected an s3:// URI for the routing document, got {value!r}")
        return value

    @field_validator("url", "notify_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s):// URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _target(self) -> Rollback:
        needed = {"routing_document": "uri", "webhook": "url", "airflow_variable": "variable"}[self.action]
        if getattr(self, needed) is None:
            raise ValueError(f"action {self.action} needs {needed}")
        return self


class ValidationSettings(_Strict):
    suite: str | None = None  # file name under include/config/gx/, applied after the contract suite
    max_invalid_share: float | None = Field(None, ge=0.0, le=1.0)


class EstimationSettings(_Strict):
    """Performance estimation before labels arrive: CBPE (classifiers) and DLE (regressors); see ``estimation.reference``."""

    enabled: bool = True  # no effect on LLMs
    method: Literal["isotonic", "platt"] = "isotonic"  # how CBPE calibrates the scores on the baseline's labelled rows
    chunk_size: int = Field(250, ge=50, le=1_000_000)  # reference rows per chunk: the cross-fitted estimation error (thresholds are sized for the day)
    min_segment_count: int = Field(200, ge=20)  # rows a segment value needs before it gets its own estimate
    min_labelled: int = Field(200, ge=1)  # arrived labels a past day needs before its realised metric is set beside the estimate
    reference_rows: int = Field(50_000, ge=100, le=2_000_000)  # labelled baseline rows kept to fit the calibrator / nanny models


class Model(_Strict):
    id: str
    kind: Literal["llm", "classifier", "regressor"]
    cadence: list[Literal["daily", "hourly"]] = ["daily"]
    segments: list[str] = []
    baseline: Baseline = Baseline()
    drift: DriftSettings = DriftSettings()
    judge: JudgeSettings | None = None
    experiments: list[Experiment] = []
    rollback: Rollback | None = None
    validation: ValidationSettings = ValidationSettings()
    estimation: EstimationSettings = EstimationSettings()
    feedback: FeedbackSettings = FeedbackSettings()  # LLMs: delayed feedback signals in labels_uri
    variants: list[str] = []  # extra variant names allowed besides production, shadow and experiment arms
    source: Source | None = None  # traffic from OpenTelemetry Collector exports instead of log lines (config_sources)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _MODEL_ID.match(value):
            raise ValueError(f"model id {value!r} must be 1-128 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("segments")
    @classmethod
    def _segments(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not _SEGMENT.match(s)]
        if bad:
            raise ValueError(f"segment keys must look like metadata.<key> or features.<name>, got {bad}")
        return value

    @model_validator(mode="after")
    def _rollback_needed(self) -> Model:
        if any(e.hard_limits or e.guardrails for e in self.experiments) and self.rollback is None:
            raise ValueError("experiments with guardrails or hard limits need a rollback: {uri: s3://...} section")
        return self

    @model_validator(mode="after")
    def _arms_from_spans(self) -> Model:
        routed = [e.id for e in self.experiments if e.assignment.method == "modelwatch"]
        if self.source is not None and routed:
            raise ValueError(f"experiments {routed} take their arms from the spans (feature flags): set assignment: external, or hash to describe the router")
        return self

    @model_validator(mode="after")
    def _one_hourly_schedule(self) -> Model:
        if self.source is not None and self.source.otel.events is not None and "hourly" in self.cadence:
            raise ValueError("source.otel.events runs the hours when their exports land (modelwatch_hourly_events): remove 'hourly' from cadence, "
                             "or drop events to run them on the hourly timer")
        return self

    def allowed_variants(self) -> list[str]:
        arms = {a for e in self.experiments for a in (e.control, e.treatment)}
        return sorted({"production", "shadow", *arms, *self.variants})


class MonitoringConfig(_Strict):
    defaults: Defaults = Defaults()
    models: list[Model]

    @model_validator(mode="after")
    def _unique_ids(self) -> MonitoringConfig:
        ids = [m.id for m in self.models]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"model ids must be unique, repeated: {dupes}")
        return self

    def model(self, model_id: str) -> Model:
        for m in self.models:
            if m.id == model_id:
                return m
        raise KeyError(f"model {model_id!r} is not configured; configured: {[m.id for m in self.models]}")

    def models_for(self, cadence: str) -> list[str]:
        return [m.id for m in self.models if cadence in m.cadence]

    def max_invalid_share(self, model_id: str) -> float:
        own = self.model(model_id).validation.max_invalid_share
        return self.defaults.max_invalid_share if own is None else own


def parse_config(data: object, source: str = "<config>") -> MonitoringConfig:
    """Validate already-loaded YAML data; raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(top level): expected a mapping with 'models', got {type(data).__name__}"])
    try:
        return MonitoringConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, describe_errors(exc, MonitoringConfig)) from None


def config_path(explicit: str | os.PathLike | None = None) -> Path:
    """The config file: explicit path, else $MODELWATCH_CONFIG, else the bundled default."""
    return Path(explicit or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load_config(path: str | os.PathLike | None = None) -> MonitoringConfig:
    """Read and validate the YAML config file."""
    resolved = config_path(path)
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(resolved), [f"cannot read the file: {exc.strerror}; set {CONFIG_ENV_VAR} or pass a path"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(resolved), [f"not valid YAML: {exc}"]) from None
    return parse_config(data, str(resolved))
