"""The concept stage: labels (or feedback) of the look-back joined to predictions, windowed metrics, change detection, performance estimation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.ingest.valid import read_valid, valid_columns
from modelwatch.stages import StageContext, StageResult, Upstream, record
from modelwatch.storage.keys import report_uri, valid_manifest_uri
from modelwatch.storage.s3 import put_json

NAME = "concept"
NEEDS: tuple[str, ...] = ("validate",)


def run(ctx: StageContext, upstream: Upstream) -> StageResult:
    """Concept drift over the look-back, and the performance estimate of classic models."""
    return StageResult(NAME, _concept(ctx.client, ctx.cfg, record(upstream["validate"])))


def _concept(client, cfg: MonitoringConfig, validated: dict[str, Any]) -> dict[str, Any]:
    """Concept drift over the last ``drift.label_lookback_days`` days: labels (or feedback) joined to predictions.

    As-of semantics: only labels with ``labelled_at`` before the partition's end count, so
    a backfill sees what was known on that day, not what arrived later.

    Classic models also get the day's performance estimate (CBPE / DLE, ``estimation.reference``)
    in ``estimation.json``, with each past day's realised metric beside its estimate once its
    labels have arrived.
    """
    from datetime import timedelta

    import pandas as pd

    from modelwatch.concept.analysis import analyze_concept_drift
    from modelwatch.estimation.estimate import estimate_stage
    from modelwatch.ingest.labels import join_labels, read_labels
    from modelwatch.storage.s3 import exists

    partition = Partition.from_dict(validated["partition"])
    model = cfg.model(partition.model_id)
    days = [partition.dt - timedelta(days=i) for i in range(model.drift.label_lookback_days - 1, -1, -1)]
    wanted = ["request_id", "timestamp", "variant", "prediction", "probability", "class_probabilities", "feedback"]
    frames, days_used, tables = [], [], {}
    for day in days:
        if exists(client, valid_manifest_uri(cfg, Partition(model.id, day))):
            table = read_valid(client, cfg, Partition(model.id, day), valid_columns(("_source", "_line", "prompt", "response", "reference", "extra")))
            frames.append(table.select(wanted).to_pandas())
            days_used.append(day.isoformat())
            if model.kind != "llm" and model.estimation.enabled:
                tables[day.isoformat()] = table
    predictions = pd.concat(frames, ignore_index=True)
    labels_info: dict[str, Any] = {}
    frame = predictions
    estimation = None
    if model.kind != "llm":
        read = read_labels(client, cfg.defaults.labels_uri, model.id, days)
        labels = read.table.to_pandas()
        end = datetime(partition.dt.year, partition.dt.month, partition.dt.day, tzinfo=UTC) + timedelta(days=1)
        arrived = labels[labels["labelled_at"].isna() | (labels["labelled_at"] < end)]
        joined = join_labels(predictions, arrived)
        frame = joined.frame
        labels_info = {"read": read.to_dict(), "not_yet_arrived": int(len(labels) - len(arrived)), "join": joined.counts()}
        estimation = estimate_stage(client, cfg, model, partition.dt, tables, arrived, report_uri(cfg, partition, "estimation.json"))
    report = analyze_concept_drift(frame, model.kind, positive_class=model.drift.positive_class, window="day", by_variant=False).to_dict()
    result = {"partition": partition.to_dict(), "outcome": "ok", "days": days_used, "labels": labels_info, **report,
              "estimation_uri": estimation.get("estimation_uri") if estimation else None}
    uri = put_json(client, report_uri(cfg, partition, "concept.json"), result)
    return {"partition": partition.to_dict(), "outcome": "ok", "verdict": report["verdict"], "reason": report["reason"], "concept_uri": uri,
            "detections": len(report["detections"]), "evaluated": report["counts"]["evaluated"], "estimation": estimation}
