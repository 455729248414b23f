"""Propose a monitoring config from what a folder of logs holds (``modelwatch try``).

``LogSurvey.observe`` takes each parsed log row (a JSON object, or a Parquet row as a dict)
with the model and day it belongs to and keeps bounded counts: rows per day, which contract
fields are present and with which JSON types, the values of every ``metadata.*`` and
``features.*`` key (up to ``TRACKED_VALUES`` distinct ones), the variants of every
``experiment_id``, and, per experiment, which arm each candidate unit value was served.
``propose_config`` turns the survey into a config the validator accepts:

- **kind**: ``llm`` when most rows carry a ``prompt``; otherwise ``classifier`` when the
  ``prediction`` is a label (text, boolean, or at most ``MAX_CLASSES`` distinct integers),
  ``regressor`` when it is a number with more distinct values;
- **segments**: low-cardinality text metadata and features (2 to ``SEGMENT_MAX_VALUES``
  distinct values, present in at least half the rows), at most ``MAX_SEGMENTS``;
- **experiments**: each logged ``experiment_id`` with two or more arms; the arm named
  ``control`` (else the most served) is the control. The split is the observed share rounded
  to a multiple of 0.05 (a proposal: the planned split is what the sample-ratio check tests
  against). The unit is the metadata key whose values repeat across requests and stay in one
  arm (at most ``UNIT_CONFLICT_SHARE`` of them seen in two arms), else ``request_id``, and the
  assignment is ``external`` (the logged variant is the truth: a team's router is not held to
  modelwatch's hash; the split, arm exposure and units in several arms are checked). With
  no primary metric declared, each experiment is a guardrail watch (p99 latency and error
  rate) whose rollback is a dry run;
- **baseline window**: the model's first days (``baseline_days``; by default the first third
  of its days, at most three).

A model whose rows lack a field the contract requires for its kind is left out, with the
field, the files, and the field of the logs that looks like it (a known alias, or a close
spelling: modelwatch's readers have no field mapping, so the fix is to rename it at the
producer). ``NothingUsable`` is raised when no model is left.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import yaml

from modelwatch.config import parse_config
from modelwatch.core.contract import FIELD_BY_NAME, KNOWN_FIELDS, required_fields

TRACKED_VALUES = 64  # distinct values counted per metadata/feature key before it is called high-cardinality
SEGMENT_MAX_VALUES = 20  # the profile stage folds values beyond the 20 most frequent into __other__
SEGMENT_MIN_PRESENCE = 0.5
MAX_SEGMENTS = 4  # each segment key multiplies the drift tests: keep a first config cheap
MAX_DRIFT_FEATURES = 20
MAX_CLASSES = 20
UNIT_CONFLICT_SHARE = 0.01  # a unit served two arms this often is still sticky (a router's re-bucketing, a shared id)
UNIT_MIN_REPEAT = 1.2  # rows per distinct value: a key whose values never repeat is a request id, not a unit
UNIT_TRACKED_VALUES = 200_000  # unit values remembered per experiment and key (memory bound)
SPLIT_STEP = 0.05
PASSIVE_VARIANTS = frozenset({"production", "shadow"})
_CONFIG_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # as config.Model accepts
_LINE_BREAKING = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

# Names teams give contract fields; the readers have no mapping, so a hit is reported with the rename to make.
ALIASES: dict[str, tuple[str, ...]] = {
    "request_id": ("id", "req_id", "requestid", "trace_id", "event_id", "uuid"),
    "timestamp": ("ts", "time", "datetime", "created_at", "event_time", "logged_at", "date"),
    "model_id": ("model", "model_name", "model_version", "deployment"),
    "variant": ("arm", "bucket", "group", "cohort", "treatment_group"),
    "experiment_id": ("experiment", "exp", "exp_id", "experiment_name"),
    "status": ("state", "outcome", "result_status"),
    "latency_ms": ("latency", "duration_ms", "elapsed_ms", "response_time_ms", "took_ms", "duration"),
    "prompt": ("input", "question", "query", "request_text", "user_message"),
    "response": ("output", "answer", "completion", "reply"),
    "prompt_tokens": ("input_tokens", "tokens_in"),
    "completion_tokens": ("output_tokens", "tokens_out"),
    "prediction": ("pred", "predicted", "predicted_label", "y_pred", "output"),
    "features": ("inputs", "x"),
}


class NothingUsable(ValueError):
    """The folder holds no rows modelwatch can monitor; the message names each file and field and the fix."""


@dataclass
class ValueStats:
    """Presence, JSON types and (bounded) distinct values of one field."""

    present: int = 0
    types: Counter[str] = field(default_factory=Counter)
    values: Counter[str] = field(default_factory=Counter)
    overflow: bool = False  # more than TRACKED_VALUES distinct values

    def observe(self, value: Any) -> None:
        if value is None:
            return
        self.present += 1
        self.types[json_type(value)] += 1
        key = str(value)
        if key in self.values or len(self.values) < TRACKED_VALUES:
            self.values[key] += 1
        else:
            self.overflow = True

    @property
    def distinct(self) -> int | None:
        """Distinct values, or None beyond TRACKED_VALUES."""
        return None if self.overflow else len(self.values)

    @property
    def main_type(self) -> str | None:
        return self.types.most_common(1)[0][0] if self.types else None


def json_type(value: Any) -> str:
    """The JSON type of a parsed value: boolean, integer, number, string, object, array."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__  # a Parquet datetime, decimal, ...


@dataclass
class UnitStats:
    """For one experiment and one candidate unit key: the arm each value was first served, and the values seen in two arms."""

    rows: int = 0
    arm_of: dict[str, str] = field(default_factory=dict)
    conflicts: set[str] = field(default_factory=set)

    def observe(self, unit: str, arm: str) -> None:
        self.rows += 1
        first = self.arm_of.get(unit)
        if first is None:
            if len(self.arm_of) < UNIT_TRACKED_VALUES:
                self.arm_of[unit] = arm
        elif first != arm:
            self.conflicts.add(unit)

    def is_sticky(self) -> bool:
        """Values repeat across requests, and almost none was served two arms."""
        distinct = len(self.arm_of)
        return distinct >= 2 and self.rows >= UNIT_MIN_REPEAT * distinct and len(self.conflicts) <= UNIT_CONFLICT_SHARE * distinct


@dataclass
class ExperimentSurvey:
    """What the logs say about one experiment id: its arms and their rows, its first day, and candidate unit keys."""

    arms: Counter[str] = field(default_factory=Counter)
    first_day: date | None = None
    units: dict[str, UnitStats] = field(default_factory=dict)


@dataclass
class ModelSurvey:
    """Everything observed about one model's rows."""

    model_id: str
    rows: int = 0
    days: Counter[date] = field(default_factory=Counter)
    files: set[str] = field(default_factory=set)
    fields: dict[str, ValueStats] = field(default_factory=dict)  # top-level keys
    nested: dict[str, ValueStats] = field(default_factory=dict)  # metadata.<key>, features.<key>
    variants: Counter[str] = field(default_factory=Counter)
    experiments: dict[str, ExperimentSurvey] = field(default_factory=dict)

    def present(self, name: str) -> int:
        stats = self.fields.get(name)
        return stats.present if stats else 0


@dataclass
class LogSurvey:
    """Bounded counts over every row placed in a model and a day (see the module docstring)."""

    models: dict[str, ModelSurvey] = field(default_factory=dict)

    def observe(self, model_id: str, day: date, record: dict[str, Any], source: str) -> None:
        model = self.models.setdefault(model_id, ModelSurvey(model_id))
        model.rows += 1
        model.days[day] += 1
        model.files.add(source)
        for name, value in record.items():
            model.fields.setdefault(name, ValueStats()).observe(value)
        for parent in ("metadata", "features"):
            nested = record.get(parent)
            if isinstance(nested, dict):
                for key, value in nested.items():
                    model.nested.setdefault(f"{parent}.{key}", ValueStats()).observe(value)
        variant = record.get("variant")
        if isinstance(variant, str):
            model.variants[variant] += 1
            experiment = record.get("experiment_id")
            if isinstance(experiment, str) and experiment and variant not in PASSIVE_VARIANTS:
                self._observe_experiment(model, experiment, variant, day, record)

    @staticmethod
    def _observe_experiment(model: ModelSurvey, experiment: str, arm: str, day: date, record: dict[str, Any]) -> None:
        survey = model.experiments.setdefault(experiment, ExperimentSurvey())
        survey.arms[arm] += 1
        survey.first_day = day if survey.first_day is None else min(survey.first_day, day)
        metadata = record.get("metadata")
        if isinstance(metadata, dict):
            for key, value in metadata.items():
                if isinstance(value, (str, int)) and not isinstance(value, bool):
                    survey.units.setdefault(f"metadata.{key}", UnitStats()).observe(str(value), arm)


@dataclass(frozen=True)
class Destinations:
    """Where the proposed config sends logs, reports, labels and the routing documents (buckets on the embedded S3)."""

    logs_uri: str
    reports_uri: str
    labels_uri: str
    routing_uri: str  # s3://bucket/prefix: a model's routing document is <routing_uri>/<model>.json


@dataclass
class Proposal:
    """The proposed config (as data, validated), a note for each guess a person should check, and the models left out."""

    config: dict[str, Any]
    notes: list[str]
    skipped: dict[str, str]  # model id -> why it is not in the config
    baseline_days: dict[str, list[date]]  # model id -> the days its baseline is built from
    monitored_days: dict[str, list[date]]  # model id -> the days the daily DAG runs for it

    def to_yaml(self, source: str) -> str:
        """The config as YAML, headed by comments: where it came from and every note."""
        head = [f"# modelwatch config proposed by `modelwatch try` from the logs in {source}.",
                "# Check every line below before deploying it; validate with: modelwatch validate-config <this file>"]
        for note in self.notes:
            first, *rest = _wrap(note)
            head += [f"# - {first}", *(f"#   {line}" for line in rest)]
        head += [f"# left out: {model}: {why}" for model, why in self.skipped.items()]
        return "\n".join(one_line(line) for line in head) + "\n" + yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True, width=150)


def one_line(text: str) -> str:
    """``text`` with every control, format and line-separator character (which YAML or a terminal could act on) as U+FFFD."""
    return "".join("\ufffd" if unicodedata.category(ch) in _LINE_BREAKING else ch for ch in text)


def _wrap(text: str, width: int = 140) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def default_baseline_days(days: int) -> int:
    """Days the baseline is built from when not given: the first third of the days, at least one and at most three."""
    return min(3, max(1, days // 3))


def infer_kind(model: ModelSurvey) -> tuple[str | None, str]:
    """(kind, why) from the fields present: ``llm``, ``classifier``, ``regressor``, or (None, the reason none fits)."""
    half = model.rows / 2
    if model.present("prompt") >= half:
        return "llm", f"'prompt' is in {model.present('prompt'):,} of {model.rows:,} rows"
    prediction = model.fields.get("prediction")
    if prediction is None or prediction.present < half:
        found = prediction.present if prediction else 0
        return None, (f"neither 'prompt' (an LLM) nor 'prediction' (a classifier or regressor) is in most rows "
                      f"(prompt in {model.present('prompt'):,}, prediction in {found:,} of {model.rows:,})")
    kind = prediction.main_type
    distinct = prediction.distinct
    if kind in ("string", "boolean"):
        return "classifier", f"'prediction' is a label ({kind}, {_count(distinct)} distinct values)"
    probability = model.fields.get("probability")
    if probability is not None and probability.main_type == "object":
        return "classifier", "'probability' is a class -> probability map"
    if kind == "integer" and distinct is not None and distinct <= MAX_CLASSES:
        return "classifier", f"'prediction' takes {distinct} integer values"
    if kind in ("integer", "number"):
        return "regressor", f"'prediction' is a number with {_count(distinct)} distinct values"
    return None, f"'prediction' holds {kind} values; the contract wants a class label or a number"


def _count(distinct: int | None) -> str:
    return f"more than {TRACKED_VALUES}" if distinct is None else str(distinct)


def look_alike(missing: str, present: list[str]) -> str | None:
    """The field of the logs that looks like contract field ``missing``: a known alias, else a close spelling."""
    for alias in ALIASES.get(missing, ()):
        for name in present:
            if name.lower() == alias:
                return name
    unknown = [p for p in present if p not in KNOWN_FIELDS]
    close = difflib.get_close_matches(missing, unknown, n=1, cutoff=0.75)
    return close[0] if close else None


def missing_required(model: ModelSurvey, kind: str) -> list[str]:
    """One problem per field the contract requires for ``kind`` that no row of the model carries, with the rename to make."""
    present = sorted(name for name, stats in model.fields.items() if stats.present)
    problems = []
    for name in required_fields(kind):
        if model.present(name):
            continue
        alike = look_alike(name, present)
        hint = (f"; the logs have '{alike}', which looks like it: rename it to '{name}' where the logs are written "
                "(modelwatch's readers have no field mapping)") if alike else ""
        problems.append(f"field '{name}' ({FIELD_BY_NAME[name].meaning}) is in no row{hint}")
    return problems


def segment_candidates(model: ModelSurvey, exclude: set[str]) -> list[str]:
    """Low-cardinality text metadata and features present in most rows, most present first (at most MAX_SEGMENTS)."""
    found = []
    for name, stats in model.nested.items():
        key = name.split(".", 1)[1]
        if name in exclude or not _CONFIG_KEY.match(key) or stats.main_type not in ("string", "boolean"):
            continue
        if stats.present >= SEGMENT_MIN_PRESENCE * model.rows and stats.distinct is not None and 2 <= stats.distinct <= SEGMENT_MAX_VALUES:
            found.append((-stats.present, name))
    return [name for _, name in sorted(found)[:MAX_SEGMENTS]]


def drift_features(model: ModelSurvey, kind: str, segments: list[str]) -> list[str]:
    """Columns drift compares with the baseline: latency and input length, the model's features, and the segment keys."""
    top = ["latency_ms"] + (["prompt_tokens", "completion_tokens"] if kind == "llm" else [])
    columns = [name for name in top if model.present(name)]
    for name, stats in sorted(model.nested.items()):
        if not name.startswith("features.") or not _CONFIG_KEY.match(name.split(".", 1)[1]):
            continue
        numeric = stats.main_type in ("integer", "number")
        categorical = stats.main_type in ("string", "boolean") and stats.distinct is not None
        if stats.present >= SEGMENT_MIN_PRESENCE * model.rows and (numeric or categorical):
            columns.append(name)
    columns += [s for s in segments if s not in columns]
    return columns[:MAX_DRIFT_FEATURES]


def choose_arms(arms: Counter[str]) -> tuple[str, str]:
    """(control, treatment): the arms named so, else the most served arm as control and the next as treatment."""
    ranked = [arm for arm, _ in arms.most_common()]
    control = "control" if "control" in arms else ranked[0]
    rest = [arm for arm in ranked if arm != control]
    treatment = "treatment" if "treatment" in rest else rest[0]
    return control, treatment


def rounded_split(share: float) -> float:
    """The observed treatment share on a 0.05 grid (0.01 below 0.05), kept inside (0, 1)."""
    step = SPLIT_STEP if share >= SPLIT_STEP else 0.01
    return round(min(max(round(share / step) * step, 0.01), 0.99), 2)


def unit_field(survey: ExperimentSurvey) -> str:
    """The sticky unit key of an experiment (most rows per value first), else ``request_id``."""
    sticky = [(stats.rows / len(stats.arm_of), name) for name, stats in survey.units.items() if stats.is_sticky()]
    return max(sticky)[1] if sticky else "request_id"


def propose_experiment(model_id: str, experiment_id: str, survey: ExperimentSurvey, notes: list[str]) -> dict[str, Any] | None:
    """An experiment section from its logged arms, or None (with a note) when it has one arm only."""
    if len(survey.arms) < 2:
        notes.append(f"{model_id}: experiment {experiment_id!r} logs one arm only ({', '.join(map(repr, survey.arms))}): not proposed as an experiment")
        return None
    control, treatment = choose_arms(survey.arms)
    served = survey.arms[control] + survey.arms[treatment]
    share = survey.arms[treatment] / served
    split = rounded_split(share)
    unit = unit_field(survey)
    section: dict[str, Any] = {"id": experiment_id, "control": control, "treatment": treatment, "split": {treatment: split},
                               "start": survey.first_day.isoformat(), "assignment": {"method": "external", "unit": unit}}
    section["guardrails"] = [{"metric": "latency_p99_ms", "direction": "decrease", "margin": 0.05},
                             {"metric": "error_rate", "direction": "decrease", "margin": 0.001, "absolute": True}]
    notes.append(f"{model_id}: experiment {experiment_id!r}: control {control!r} ({survey.arms[control]:,} requests), treatment "
                 f"{treatment!r} ({survey.arms[treatment]:,}); observed treatment share {share:.3f}, proposed split {split}: set the "
                 "split your router is configured with, since the sample-ratio check tests the logs against it")
    routed = f"units are {unit!r} (each value stays in one arm)" if unit != "request_id" else "no sticky unit field found: units are requests"
    notes.append(f"{model_id}: experiment {experiment_id!r}: assignment external (the logged variant is the truth: health checks the split, "
                 f"arm exposure and units seen in several arms); {routed}; describe your router's hash under assignment to have each request checked")
    notes.append(f"{model_id}: experiment {experiment_id!r} has no primary metric: it is a guardrail watch (p99 latency, error rate) "
                 "until you add primary metrics; its rollback is a dry run")
    extra = [arm for arm in survey.arms if arm not in (control, treatment)]
    if extra:
        notes.append(f"{model_id}: experiment {experiment_id!r} also serves {', '.join(map(repr, extra))}: modelwatch compares two arms, "
                     "so those are allowed variants, not compared")
    return section


def _experiments(model: ModelSurvey, notes: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """(experiment sections, extra allowed variants) of one model."""
    sections = [s for eid, survey in sorted(model.experiments.items()) if (s := propose_experiment(model.model_id, eid, survey, notes))]
    arms = {a for s in sections for a in (s["control"], s["treatment"])}
    extra = sorted(v for v in model.variants if v not in PASSIVE_VARIANTS and v not in arms)
    untagged = [v for v in extra if not any(v in e.arms for e in model.experiments.values())]
    if untagged:
        notes.append(f"{model.model_id}: variants {', '.join(map(repr, untagged))} are logged without an experiment_id: allowed, not compared")
    return sections, extra


def propose_model(model: ModelSurvey, destinations: Destinations, baseline_days: int | None, notes: list[str]) -> dict[str, Any]:
    """One model's section; raises ValueError with the reason when the model cannot be monitored."""
    if not MODEL_ID.match(model.model_id):
        raise ValueError("a model id is 1-128 letters, digits, '.', '_' or '-': rename the model where the logs are written")
    kind, why = infer_kind(model)
    if kind is None:
        raise ValueError(why)
    problems = missing_required(model, kind)
    if problems:
        raise ValueError(f"as an {kind} ({why}): " + "; ".join(problems))
    days = sorted(model.days)
    window = days[: baseline_days or default_baseline_days(len(days))]
    sections, extra_variants = _experiments(model, notes)
    units = {s.get("assignment", {}).get("unit") for s in sections}
    segments = segment_candidates(model, exclude={u for u in units if u})
    section: dict[str, Any] = {"id": model.model_id, "kind": kind, "cadence": ["daily"], "segments": segments,
                               "baseline": {"window": {"start": window[0].isoformat(), "end": window[-1].isoformat()}}}
    drift: dict[str, Any] = {"features": drift_features(model, kind, segments)}
    if kind == "llm":
        drift["text"] = [name for name in ("prompt", "response") if model.present(name)]
    positive = _positive_class(model) if kind == "classifier" else None
    if positive is not None:
        drift["positive_class"] = positive
    section["drift"] = drift
    if kind == "llm":
        section["judge"] = {"backend": "heuristic", "max_samples": 200, "stratify_by": ["variant"] if sections else segments[:1]}
    if sections:
        section["experiments"] = sections
        section["rollback"] = {"action": "routing_document", "uri": f"{destinations.routing_uri}/{model.model_id}.json", "dry_run": True}
    if extra_variants:
        section["variants"] = extra_variants
    notes.append(f"{model.model_id}: {kind} ({why}); {model.rows:,} rows over {len(days)} days; baseline from "
                 f"{window[0]}..{window[-1]}; segments {', '.join(segments) or 'none found'}")
    return section


def _positive_class(model: ModelSurvey) -> str | None:
    """The rarer of two predicted classes (the event F1 and AUC are about), None otherwise."""
    prediction = model.fields["prediction"]
    if prediction.distinct != 2:
        return None
    return prediction.values.most_common()[-1][0]


def propose_config(survey: LogSurvey, destinations: Destinations, baseline_days: int | None = None) -> Proposal:
    """A validated config for every model the survey can monitor; raises NothingUsable when there is none."""
    notes: list[str] = []
    models, skipped = [], {}
    for model_id, model in sorted(survey.models.items()):
        try:
            models.append(propose_model(model, destinations, baseline_days, notes))
        except ValueError as exc:
            skipped[repr(model_id)] = f"{exc} (files: {', '.join(sorted(model.files)[:3])}{' …' if len(model.files) > 3 else ''})"
    if not models:
        detail = "; ".join(f"model {m}: {why}" for m, why in skipped.items())
        raise NothingUsable(f"no model in the logs can be monitored: {detail}")
    config = {"defaults": {"logs_uri": destinations.logs_uri, "reports_uri": destinations.reports_uri, "labels_uri": destinations.labels_uri,
                           "max_invalid_share": 0.05, "redact_pii": True},
              "models": models}
    parse_config(config, "<proposed config>")  # a proposal the validator refuses is a bug here, not the user's
    baseline, monitored = {}, {}
    for section in models:
        days = sorted(survey.models[section["id"]].days)
        end = date.fromisoformat(section["baseline"]["window"]["end"])
        baseline[section["id"]] = [d for d in days if d <= end]
        monitored[section["id"]] = [d for d in days if d > end] or days[-1:]
    return Proposal(config, notes, skipped, baseline, monitored)
