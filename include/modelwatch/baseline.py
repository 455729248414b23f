"""Versioned baselines: what a model's traffic looked like in a chosen window (for example launch week).

A baseline is built from the contract-valid rows of every day of the window and holds:

- ``reference.parquet``: a uniform sample of at most ``drift.reference_sample`` rows,
  chosen by bottom-k hashing of ``request_id`` (Cohen & Kaplan 2007, "Summarizing data
  using bottom-k sketches"): each row keeps the k smallest hash keys, so days merge in
  any order, the sample is the same whichever way the window is split, and memory
  stays at k rows however long the window is;
- ``profiles.json``: per column, mergeable sketches from Apache DataSketches over every
  row of the window (KLL quantile sketches for numerical columns, frequent-items
  sketches for categorical ones), serialised, plus their readable quantiles and counts;
- ``embeddings.parquet`` (LLMs): embeddings of a sample of prompts and responses;
- ``estimation.json``, ``estimation_reference.parquet`` (classic models with labels for the
  window): the score calibrator or nanny-model inputs and reference-chunk statistics of
  performance estimation (``performance_estimation``); the manifest's ``estimation`` entry
  says whether they were built, or why not;
- ``manifest.json``: version, window, days, row counts, column kinds. Written last, so a
  baseline without a manifest is incomplete and is never read.

Only incumbent traffic enters a baseline (``production`` and each experiment's control
arm): treatment and shadow arms are the experiments' business, not the reference.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.columns import DriftColumns, as_kind, drift_frame
from modelwatch.config import Model, MonitoringConfig
from modelwatch.storage import Partition, exists, get_bytes, get_json, put_bytes, put_json

KLL_K = 200  # normalized rank error ~1.3%
FREQUENT_LG_MAX_K = 10  # up to 768 tracked categories; counts are exact below that
SAMPLE_KEY = "_sample_key"


class BaselineMissing(LookupError):
    """The configured baseline has not been built (or is incomplete)."""


def incumbent_variants(model: Model) -> set[str]:
    return {"production", *(e.control for e in model.experiments)}


def baseline_prefix(reports_uri: str, model_id: str, version: str) -> str:
    return f"{reports_uri}/_baselines/model_id={model_id}/version={version}"


def build_command(model: Model, version: str | None = None) -> str:
    """How to build this model's baseline, for error messages."""
    window = model.baseline.window
    start, end = (window.start, window.end) if window else ("YYYY-MM-DD", "YYYY-MM-DD")
    conf = {"model_id": model.id, "start": start, "end": end, "version": version or model.baseline.resolved_version() or "v1"}
    return f"trigger the modelwatch_baseline DAG with conf {json.dumps(conf)} (or run `modelwatch build-baseline --model {model.id} --start {start} --end {end}`)"


def sample_keys(request_ids: pd.Series) -> np.ndarray:
    """64-bit hash keys of request ids (pandas' SipHash with its fixed default key: stable across runs)."""
    return pd.util.hash_pandas_object(request_ids.astype(str), index=False).to_numpy(dtype=np.uint64)


def bottom_k(sample: pd.DataFrame | None, rows: pd.DataFrame, k: int) -> pd.DataFrame:
    """Merge ``rows`` into a bottom-k sample: the k rows with the smallest sample keys."""
    merged = rows if sample is None else pd.concat([sample, rows], ignore_index=True)
    return merged.nsmallest(k, SAMPLE_KEY).reset_index(drop=True) if len(merged) > k else merged


class ProfileBuilder:
    """Per-column DataSketches profiles, updated one day at a time."""

    def __init__(self, kinds: dict[str, str]):
        from datasketches import frequent_strings_sketch, kll_doubles_sketch

        self.kinds = dict(kinds)
        self.rows = 0
        self.missing = dict.fromkeys(kinds, 0)
        self.kll = {c: kll_doubles_sketch(KLL_K) for c, k in kinds.items() if k == "numerical"}
        self.frequent = {c: frequent_strings_sketch(FREQUENT_LG_MAX_K) for c, k in kinds.items() if k == "categorical"}

    def update(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        for column in self.kinds:
            values = frame[column]
            self.missing[column] += int(values.isna().sum())
            if column in self.kll:
                present = values.dropna().to_numpy(dtype=float)
                if present.size:
                    self.kll[column].update(present)
            else:
                for value, count in values.dropna().astype(str).value_counts().items():
                    self.frequent[column].update(str(value), int(count))

    def to_json(self) -> dict[str, Any]:
        from datasketches import frequent_items_error_type

        out: dict[str, Any] = {}
        for column, kind in self.kinds.items():
            entry: dict[str, Any] = {"kind": kind, "rows": self.rows, "missing": self.missing[column]}
            if kind == "numerical":
                sketch = self.kll[column]
                entry["count"] = int(sketch.n)
                if not sketch.is_empty():
                    ranks = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
                    entry["quantiles"] = dict(zip([f"p{int(r * 100):02d}" for r in ranks], sketch.get_quantiles(ranks)))
                    entry["min"], entry["max"] = sketch.get_min_value(), sketch.get_max_value()
                entry["kll"] = base64.b64encode(sketch.serialize()).decode()
            else:
                sketch = self.frequent[column]
                items = sketch.get_frequent_items(frequent_items_error_type.NO_FALSE_NEGATIVES)
                entry["count"] = int(sketch.total_weight)
                entry["frequent"] = {item: int(estimate) for item, estimate, _lo, _hi in items}
                entry["frequent_items"] = base64.b64encode(sketch.serialize()).decode()
            out[column] = entry
        return out


def kll_sketch(profile: dict[str, Any]):
    """The KLL sketch of a numerical column profile."""
    from datasketches import kll_doubles_sketch

    return kll_doubles_sketch.deserialize(base64.b64decode(profile["kll"]))


def psi_bins_from_profile(profile: dict[str, Any], bins: int = 10) -> tuple[np.ndarray, np.ndarray] | None:
    """PSI bin edges (deciles) and reference counts over the whole window, from the column's KLL sketch."""
    sketch = kll_sketch(profile)
    if sketch.is_empty():
        return None
    edges = np.unique(np.asarray(sketch.get_quantiles(list(np.linspace(0, 1, bins + 1)[1:-1]))))
    pmf = np.asarray(sketch.get_pmf(list(edges), inclusive=True))  # bins (-inf, e1], (e1, e2], ... like binned_counts
    return edges, np.rint(pmf * sketch.n)


def window_days(start: date, end: date) -> list[date]:
    if end < start:
        raise ValueError(f"baseline window ends ({end}) before it starts ({start})")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def read_valid_day(client, cfg: MonitoringConfig, model: Model, day: date) -> tuple[Any, int, int]:
    """(valid rows, rows read, rows quarantined) of one day, validated in memory like a daily run."""
    from modelwatch.pipeline import read_partition
    from modelwatch.validation import validate_partition

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
    from modelwatch.performance_estimation import ReferenceBuilder

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


def coerce_kinds(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Give the frame's columns the baseline's kinds (a column's kind is fixed by the baseline)."""
    frame = frame.copy()
    for column, kind in kinds.items():
        frame[column] = as_kind(frame[column], kind) if column in frame else pd.Series([None] * len(frame), dtype="object" if kind == "categorical" else float)
    return frame


def _parquet(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer, compression="zstd")
    return buffer.getvalue()


def _store_embeddings(client, prefix: str, sample: pd.DataFrame, text_columns: list[str], n: int, embed_texts) -> dict[str, int]:
    import pyarrow as pa

    from modelwatch.storage import put_table

    parts = []
    counts = {}
    for column in text_columns:
        texts = [t for t in sample[column].dropna().tolist() if t.strip()][:n]
        vectors = embed_texts(texts)
        counts[column] = len(texts)
        parts.append(pa.table({"column": [column] * len(texts), "text": texts, "vector": list(vectors.astype(np.float32))}))
    put_table(client, f"{prefix}/embeddings.parquet", pa.concat_tables(parts))
    return counts


@dataclass
class Baseline:
    manifest: dict[str, Any]
    reference: pd.DataFrame
    profiles: dict[str, Any]

    @property
    def kinds(self) -> dict[str, str]:
        return self.manifest["kinds"]

    def embeddings(self, client, column: str) -> np.ndarray | None:
        """The stored embedding sample of a text column, or None when the baseline has none."""
        if column not in self.manifest.get("embeddings", {}):
            return None
        from modelwatch.storage import get_table

        table = get_table(client, f"{self.manifest['uri']}/embeddings.parquet").to_pandas()
        rows = table[table["column"] == column]
        return np.vstack(rows["vector"].to_numpy()).astype(np.float32) if len(rows) else None


def load_baseline(client, cfg: MonitoringConfig, model: Model) -> Baseline:
    """The model's configured baseline; BaselineMissing (saying how to build it) when absent."""
    version = model.baseline.resolved_version()
    if version is None:
        raise BaselineMissing(f"model {model.id} has no baseline configured: add baseline: {{version: ...}} or {{window: {{start: ..., end: ...}}}} "
                              f"to its config, then {build_command(model)}")
    prefix = baseline_prefix(cfg.defaults.reports_uri, model.id, version)
    if not exists(client, f"{prefix}/manifest.json"):
        raise BaselineMissing(f"baseline version {version!r} of model {model.id} is not built ({prefix}/manifest.json is missing): {build_command(model, version)}")
    manifest = get_json(client, f"{prefix}/manifest.json")
    reference = pd.read_parquet(io.BytesIO(get_bytes(client, f"{prefix}/reference.parquet")))
    return Baseline(manifest, reference, get_json(client, f"{prefix}/profiles.json"))
