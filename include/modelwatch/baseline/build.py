"""Building a versioned baseline from a window of days (the modelwatch_baseline DAG's job); see ``baseline.store`` for the layout."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.baseline.columns import DriftColumns, drift_frame
from modelwatch.baseline.profiles import ProfileBuilder
from modelwatch.baseline.sample import SAMPLE_KEY, bottom_k, sample_keys
from modelwatch.baseline.store import coerce_kinds, incumbent_variants
from modelwatch.config import Model, MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.storage.keys import baseline_prefix
from modelwatch.storage.s3 import put_bytes, put_json


def window_days(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"baseline window ends ({end}) before it starts ({start})")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def read_valid_day(client, cfg: MonitoringConfig, model: Model, day: date) -> tuple[Any, int, int]:
    """(valid rows, rows read, rows quarantined) of one day, validated in memory like a daily run."""
    from modelwatch.ingest.read import read_partition
    from modelwatch.ingest.validation import validate_partition

    partition = Partition(model.id, day)
    rows, rejects, _files = read_partition(client, cfg, partition)
    if rows.num_rows == 0:
        return rows, rejects.num_rows, rejects.num_rows
    outcome = validate_partition(rows, model, partition)
    return outcome.valid, rows.num_rows + rejects.num_rows, rejects.num_rows + outcome.rows_quarantined


def build_baseline(client, cfg: MonitoringConfig, model_id: str, start: date, end: date, version: str | None = None,
                   progress: Callable[[str], None] = print, embed_texts: Callable[[list[str]], np.ndarray] | None = None,
                   variants: list[str] | None = None) -> dict[str, Any]:
    """Build and store a baseline for ``model_id`` from the days ``start``..``end``; returns its manifest.

    ``variants`` defaults to the incumbent ones; a promotion passes the winning treatment arm,
    whose traffic is what the model will look like from now on.
    """
    model = cfg.model(model_id)
    version = version or model.baseline.resolved_version() or f"{start}_{end}"
    prefix = baseline_prefix(cfg.defaults.reports_uri, model.id, version)
    settings = model.drift
    incumbents = set(variants) if variants else incumbent_variants(model)
    sample: pd.DataFrame | None = None
    profiles: ProfileBuilder | None = None
    columns: DriftColumns | None = None
    days: list[dict[str, Any]] = []
    from modelwatch.estimation.reference import ReferenceBuilder

    # labelled incumbent rows of the window: the calibrator (CBPE) or nanny models (DLE) of performance estimation
    estimation = ReferenceBuilder(client, cfg, model, incumbents) if model.kind != "llm" and model.estimation.enabled else None
    for day in window_days(start, end):
        valid, read, quarantined = read_valid_day(client, cfg, model, day)
        if valid.num_rows == 0:
            days.append({"dt": day.isoformat(), "rows_read": read, "rows_used": 0})
            progress(f"{model.id} {day}: no valid traffic")
            continue
        frame, day_columns = drift_frame(valid, model.kind, settings.features, model.segments, settings.text)
        frame = frame[frame["variant"].isin(incumbents)].reset_index(drop=True)
        if estimation is not None:
            estimation.update(day, valid)
        if columns is None:
            columns, profiles = day_columns, ProfileBuilder(day_columns.kinds)
        frame = coerce_kinds(frame, columns.kinds)
        profiles.update(frame)
        frame[SAMPLE_KEY] = sample_keys(frame["request_id"])
        sample = bottom_k(sample, frame, settings.reference_sample)
        days.append({"dt": day.isoformat(), "rows_read": read, "rows_quarantined": quarantined, "rows_used": len(frame)})
        progress(f"{model.id} {day}: {len(frame):,} incumbent rows of {read:,} read; sample now {len(sample):,}")
    if sample is None or profiles is None or columns is None:
        raise ValueError(f"no valid incumbent traffic for {model.id} between {start} and {end} under {cfg.defaults.logs_uri}: nothing to build a baseline from")
    sample = sample.sort_values(SAMPLE_KEY, kind="stable").reset_index(drop=True)
    put_bytes(client, f"{prefix}/reference.parquet", _parquet(sample.drop(columns=[SAMPLE_KEY])))
    put_json(client, f"{prefix}/profiles.json", profiles.to_json())
    embedded = {}
    if embed_texts is not None and columns.text:
        embedded = _store_embeddings(client, prefix, sample, columns.text, settings.embedding_sample, embed_texts)
    manifest = {
        "model_id": model.id,
        "version": version,
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "variants": sorted(incumbents),
        "days": days,
        "rows_used": int(sum(d["rows_used"] for d in days)),
        "reference_rows": len(sample),
        "columns": {"features": columns.features, "prediction": columns.prediction, "input_length": columns.input_length,
                    "segments": columns.segments, "text": columns.text},
        "kinds": columns.kinds,
        "embeddings": embedded,
        "estimation": estimation.store(prefix, progress) if estimation is not None else None,  # its artefacts before the manifest
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "uri": prefix,
    }
    put_json(client, f"{prefix}/manifest.json", manifest)  # last: its presence marks a complete baseline
    progress(f"baseline {model.id} version {version}: {manifest['rows_used']:,} rows profiled, {len(sample):,} sampled -> {prefix}")
    return manifest


def _parquet(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer, compression="zstd")
    return buffer.getvalue()


def _store_embeddings(client, prefix: str, sample: pd.DataFrame, text_columns: list[str], n: int, embed_texts) -> dict[str, int]:
    import pyarrow as pa

    from modelwatch.storage.s3 import put_table

    parts = []
    counts = {}
    for column in text_columns:
        texts = [t for t in sample[column].dropna().tolist() if t.strip()][:n]
        vectors = embed_texts(texts)
        counts[column] = len(texts)
        parts.append(pa.table({"column": [column] * len(texts), "text": texts, "vector": list(vectors.astype(np.float32))}))
    put_table(client, f"{prefix}/embeddings.parquet", pa.concat_tables(parts))
    return counts
