"""Building a versioned baseline from a window of days (the modelwatch_baseline DAG's job); see ``baseline.store`` for the layout.

Each day of the window is read as a daily run reads it: its shards (``ingest.stage.plan_shards``)
through the one ingestion path (``ingest.read.validated_batches``), a batch of
``defaults.batch_rows`` rows at a time, validated with the same contract. One validator spans the
day, so a request id repeated in two shards is quarantined as the daily run's reduce step does.

A drift column's kind (numerical or categorical) is that of the whole day (``columns.drift_frame``),
known only once the day is read: the day's valid rows go to a local Parquet spill while their
kinds are gathered (``columns.PartitionColumns``), then come back batch by batch into the bottom-k
sample, the profiles and the estimation reference. Memory holds a batch, the sample and the
sketches, whatever the window's length and a day's size; local disk holds one day's valid rows.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from modelwatch.baseline.columns import DriftColumns, PartitionColumns
from modelwatch.baseline.profiles import ProfileBuilder
from modelwatch.baseline.sample import SAMPLE_KEY, bottom_k, sample_keys
from modelwatch.baseline.store import coerce_kinds, incumbent_variants
from modelwatch.config import Model, MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.ingest.read import StreamTally
from modelwatch.storage.keys import baseline_prefix
from modelwatch.storage.s3 import put_bytes, put_json


def window_days(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"baseline window ends ({end}) before it starts ({start})")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


class ValidSpill:
    """One day's valid rows in a local Parquet file, a row group per batch written, read back batch by batch."""

    def __init__(self, path: Path):
        self.path = path
        self._writer = None
        self.rows = 0

    def write(self, valid: pa.Table) -> None:
        import pyarrow.parquet as pq

        if self.rows and self._writer is None:
            raise RuntimeError(f"{self.path}: the spill was read back; write a day's rows before reading them")
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, valid.schema, compression="lz4")
        self._writer.write_table(valid)
        self.rows += valid.num_rows

    def batches(self, batch_rows: int) -> Iterator[pa.Table]:
        """The spilled rows in the order written, ``batch_rows`` at a time (none when nothing was written); ends the writing."""
        import pyarrow.parquet as pq

        if not self.rows:
            return
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=batch_rows):
            yield pa.Table.from_batches([batch])


def spill_valid_day(client, cfg: MonitoringConfig, model: Model, day: date, spill: ValidSpill, columns: PartitionColumns) -> StreamTally:
    """Read and validate every shard of ``day`` batch by batch into ``spill``, gathering the day's drift columns; its read figures.

    Rows read = valid + quarantined (``validated_batches`` checks it); the quarantined rows are
    counted, not kept: the daily run of that day is where they are reported.
    """
    from modelwatch.ingest.read import validated_batches
    from modelwatch.ingest.shards import first_row_id
    from modelwatch.ingest.stage import plan_shards
    from modelwatch.ingest.validation import StreamValidator

    partition = Partition(model.id, day)
    validator = StreamValidator(model, partition)  # one for the day: duplicates are found across its shards
    tally = StreamTally()
    for shard in plan_shards(client, cfg, partition):
        files = [(uri, size) for uri, size in shard["files"]]
        where = f"baseline day {partition.label} shard {shard['shard']}"
        for valid, _quarantined in validated_batches(client, cfg, files, validator, first_row_id(shard["shard"]), tally, where):
            if valid.num_rows:
                spill.write(valid)
                columns.update(valid)
    return tally


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
        with tempfile.TemporaryDirectory(prefix="modelwatch-baseline-day-") as scratch:
            spill = ValidSpill(Path(scratch) / "valid.parquet")
            day_columns = PartitionColumns(model.kind, settings.features, model.segments, settings.text)
            tally = spill_valid_day(client, cfg, model, day, spill, day_columns)
            if tally.rows_valid == 0:
                days.append({"dt": day.isoformat(), "rows_read": tally.rows_read, "rows_used": 0})
                progress(f"{model.id} {day}: no valid traffic")
                continue
            if columns is None:
                columns = day_columns.columns()
                profiles = ProfileBuilder(columns.kinds)
            used = 0
            for valid in spill.batches(cfg.defaults.batch_rows):
                frame = day_columns.frame(valid)
                frame = frame[frame["variant"].isin(incumbents)].reset_index(drop=True)
                if estimation is not None:
                    estimation.update(day, valid)
                frame = coerce_kinds(frame, columns.kinds)
                profiles.update(frame)
                frame[SAMPLE_KEY] = sample_keys(frame["request_id"])
                sample = bottom_k(sample, frame, settings.reference_sample)
                used += len(frame)
        days.append({"dt": day.isoformat(), "rows_read": tally.rows_read, "rows_quarantined": tally.rows_quarantined, "rows_used": used})
        progress(f"{model.id} {day}: {used:,} incumbent rows of {tally.rows_read:,} read; sample now {len(sample):,}")
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
        "embedding": _embedding_identity(embed_texts) if embedded else None,  # how those vectors were made (embeddings.backends.identity)
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


def _embedding_identity(embed_texts) -> dict[str, str] | None:
    """The backend identity of an ``EmbeddingCache``; None for any other function (its vectors are re-embedded before a comparison)."""
    from modelwatch.embeddings import EmbeddingCache

    return embed_texts.identity if isinstance(embed_texts, EmbeddingCache) else None


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
