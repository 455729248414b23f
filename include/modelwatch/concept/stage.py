"""The concept stage: labels (or feedback) of the look-back joined to predictions, windowed metrics, change detection, performance estimation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.ingest.valid import valid_columns
from modelwatch.results import ConceptRecord, ValidateRecord
from modelwatch.stages import StageContext, StageResult, Upstream, record
from modelwatch.storage.keys import report_uri
from modelwatch.storage.s3 import put_json

NAME = "concept"
NEEDS: tuple[str, ...] = ("validate",)


def run(ctx: StageContext, upstream: Upstream) -> StageResult[ConceptRecord]:
    """Concept drift over the look-back, and the performance estimate of classic models."""
    return StageResult(NAME, _concept(ctx.client, ctx.cfg, record(upstream["validate"])))


def _concept(client, cfg: MonitoringConfig, validated: ValidateRecord) -> ConceptRecord:
    """Concept drift over the last ``drift.label_lookback_days`` days: labels (or feedback) joined to predictions.

    As-of semantics: only labels with ``labelled_at`` before the partition's end count, so
    a backfill sees what was known on that day, not what arrived later.

    LLMs get their delayed feedback (``feedback.signals``) from the same label files: each signal's
    rate on the day, per variant and per day of the look-back (``concept.feedback``), the primary
    signal as the loss stream, and per experiment arm the moments of ``feedback.<signal>_rate`` for
    every look-back day (``storage.keys.experiment_feedback_uri``; the experiments stage runs after
    this one and merges them). Every label line that could not be used is counted by its rule in
    ``labels.read.rejected`` and in the stage's record.

    Classic models also get the day's performance estimate (CBPE / DLE, ``estimation.reference``)
    in ``estimation.json``, with each past day's realised metric beside its estimate once its
    labels have arrived.
    """
    from datetime import timedelta

    import pyarrow as pa

    from modelwatch.concept import unlabelled as unlabelled_counts
    from modelwatch.concept.analysis import analyze_concept_drift
    from modelwatch.concept.feedback import feedback_summary
    from modelwatch.concept.lookback import read_lookback
    from modelwatch.estimation.estimate import estimate_stage
    from modelwatch.ingest.labels import join_labels, read_labels

    partition = Partition.from_dict(validated["partition"])
    model = cfg.model(partition.model_id)
    days = [partition.dt - timedelta(days=i) for i in range(model.drift.label_lookback_days - 1, -1, -1)]
    wanted = ["request_id", "timestamp", "variant", "experiment_id", "prediction", "probability", "class_probabilities", "feedback"]
    signals = model.feedback.signals
    read = read_labels(client, cfg.defaults.labels_uri, model.id, days, signals)
    labels = read.table.to_pandas()
    end = datetime(partition.dt.year, partition.dt.month, partition.dt.day, tzinfo=UTC) + timedelta(days=1)
    arrived = labels[labels["labelled_at"].isna() | (labels["labelled_at"] < end)]
    estimating = model.kind != "llm" and model.estimation.enabled
    lookback = read_lookback(client, cfg, model, days, pa.array(arrived["request_id"].dropna().astype(str).unique(), pa.string()), wanted,
                             valid_columns(("_source", "_line", "prompt", "response", "reference", "extra")) if estimating else None)
    days_used, tables, unlabelled = lookback.days, lookback.tables, lookback.unlabelled
    joined = join_labels(lookback.predictions, arrived)
    frame = joined.frame
    join = joined.counts() if unlabelled is None else unlabelled_counts.join_counts(joined.counts(), unlabelled)
    labels_info = {"read": read.to_dict(), "not_yet_arrived": int(len(labels) - len(arrived)), "join": join,
                   "rows_counted_not_kept": 0 if unlabelled is None else int(unlabelled["rows"].sum())}
    estimation, feedback = None, None
    if model.kind == "llm":
        feedback = feedback_summary(frame, signals, partition.dt.isoformat())
        if unlabelled is not None:
            feedback = unlabelled_counts.feedback_summary(feedback, unlabelled, signals)
        _store_experiment_feedback(client, cfg, model, frame, signals, unlabelled)
        frame = _primary_as_feedback(frame, signals, model.feedback.primary)
    else:
        estimation = estimate_stage(client, cfg, model, partition.dt, tables, arrived, report_uri(cfg, partition, "estimation.json"), lookback.sampled)
    report = analyze_concept_drift(frame, model.kind, positive_class=model.drift.positive_class, window="day", by_variant=False,
                                   feedback_name=model.feedback.primary.replace("_", " ")).to_dict()
    if unlabelled is not None:
        report = unlabelled_counts.concept_report(report, unlabelled)
    if read.problems:
        report["reason"] += f"; {_rejected_text(read)}"
    result = {"partition": partition.to_dict(), "outcome": "ok", "days": days_used, "labels": labels_info, **report, "feedback": feedback,
              "estimation_uri": estimation.get("estimation_uri") if estimation else None}
    uri = put_json(client, report_uri(cfg, partition, "concept.json"), result)
    return {"partition": partition.to_dict(), "outcome": "ok", "verdict": report["verdict"], "reason": report["reason"], "concept_uri": uri,
            "detections": len(report["detections"]), "evaluated": report["counts"]["evaluated"], "estimation": estimation,
            "labels_rejected": read.rejected_lines, "labels_rejected_by_rule": read.rejected_by_rule(),
            "feedback": _rates_record(feedback["rates"]) if feedback else None,
            "feedback_lookback": _rates_record(feedback["lookback_rates"]) if feedback else None}


def _rates_record(rates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The signals' rates as the stage's record carries them (no per-day detail: that is in concept.json)."""
    return {name: {k: r[k] for k in ("metric", "rate", "fired", "base", "base_kind", "ci_low", "ci_high")} for name, r in rates.items()}


def _rejected_text(read) -> str:
    """``3600 label lines rejected (labelled_at: 3600)``: what the summary says about lines that were not used."""
    rules = ", ".join(f"{rule}: {n}" for rule, n in read.rejected_by_rule().items())
    return f"{read.rejected_lines} label line(s) rejected ({rules}); see labels.read.problems in concept.json"


def _primary_as_feedback(frame, signals, primary: str):
    """The frame with ``feedback`` = -1 where the primary signal fired, 1 where it was rated and did not, else missing.

    The LLM concept analysis reads its loss stream (the thumbs-down indicator) from ``feedback``;
    this makes that stream the configured primary signal, from label files and logs alike.
    """
    import numpy as np

    from modelwatch.concept.feedback import signal_indicators

    indicator = signal_indicators(frame, {primary: signals[primary]})[primary]
    return frame.assign(feedback=np.where(indicator.isna(), np.nan, np.where(indicator == 1, -1.0, 1.0)))


def _store_experiment_feedback(client, cfg: MonitoringConfig, model, frame, signals, unlabelled=None) -> None:
    """Per experiment and look-back day (from its start): each arm's moments of ``feedback.<signal>_rate``, as known now.

    A later run rewrites a day as more feedback arrives, so the experiments stage, which runs after
    this one, reads every day of an experiment with what is known on the partition's day.
    """
    import pandas as pd

    from modelwatch.concept.feedback import arm_moments, experiment_rows, signal_indicators
    from modelwatch.concept.unlabelled import arm_requests
    from modelwatch.core.metric_names import feedback_metric
    from modelwatch.storage.keys import experiment_feedback_uri

    if frame.empty or not model.experiments:
        return
    indicators = signal_indicators(frame, signals)
    days = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce", format="ISO8601").dt.strftime("%Y-%m-%d")
    for exp in model.experiments:
        arms = [exp.control, exp.treatment]
        rows = experiment_rows(frame, exp.id, arms)
        tagged = bool((frame["experiment_id"] == exp.id).any()) if "experiment_id" in frame else False
        for day in sorted(days[rows].dropna().unique()):
            if exp.start and day < exp.start:
                continue
            on_day = rows & (days == day)
            stats = arm_moments(frame[on_day], indicators[on_day], arms)
            for arm, extra in arm_requests(unlabelled, exp.id, arms, day, tagged).items():  # left-out requests: not fired, no sum
                for name, signal in signals.items():
                    if not signal.negative:
                        stats[arm][feedback_metric(name)]["n"] += extra
            put_json(client, experiment_feedback_uri(cfg.defaults.reports_uri, model.id, exp.id, day), {"day": day, "stats": stats})
