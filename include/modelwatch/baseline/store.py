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
- ``embeddings.parquet`` (LLMs): embeddings of a sample of prompts and responses (their texts beside them), made
  the way the manifest's ``embedding`` entry says (backend, key, model hash, runtime);
- ``estimation.json``, ``estimation_reference.parquet`` (classic models with labels for the
  window): the score calibrator or nanny-model inputs and reference-chunk statistics of
  performance estimation (``estimation.reference``); the manifest's ``estimation`` entry
  says whether they were built, or why not;
- ``manifest.json``: version, window, days, row counts, column kinds. Written last, so a
  baseline without a manifest is incomplete and is never read.

Only incumbent traffic enters a baseline (``production`` and each experiment's control
arm): treatment and shadow arms are the experiments' business, not the reference.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.baseline.columns import as_kind
from modelwatch.config import Model, MonitoringConfig
from modelwatch.storage.keys import baseline_prefix
from modelwatch.storage.s3 import exists, get_bytes, get_json


class BaselineMissing(LookupError):
    """The configured baseline has not been built (or is incomplete)."""


def incumbent_variants(model: Model) -> set[str]:
    return {"production", *(e.control for e in model.experiments)}


def build_command(model: Model, version: str | None = None) -> str:
    """How to build this model's baseline, for error messages."""
    window = model.baseline.window
    start, end = (window.start, window.end) if window else ("YYYY-MM-DD", "YYYY-MM-DD")
    conf = {"model_id": model.id, "start": start, "end": end, "version": version or model.baseline.resolved_version() or "v1"}
    return f"trigger the modelwatch_baseline DAG with conf {json.dumps(conf)} (or run `modelwatch build-baseline --model {model.id} --start {start} --end {end}`)"


def coerce_kinds(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """Give the frame's columns the baseline's kinds (a column's kind is fixed by the baseline)."""
    frame = frame.copy()
    for column, kind in kinds.items():
        frame[column] = as_kind(frame[column], kind) if column in frame else pd.Series([None] * len(frame), dtype="object" if kind == "categorical" else float)
    return frame


@dataclass
class Baseline:
    manifest: dict[str, Any]
    reference: pd.DataFrame
    profiles: dict[str, Any]

    @property
    def kinds(self) -> dict[str, str]:
        return self.manifest["kinds"]

    def embeddings(self, client, column: str, cache=None) -> np.ndarray | None:
        """The stored embedding sample of a text column, or None when the baseline has none.

        With ``cache`` (an ``embeddings.EmbeddingCache``) the vectors are the ones that cache's backend
        makes: the stored ones when the manifest's ``embedding.key`` is the cache's, else the sample's
        stored texts re-embedded through the cache (once: later days find them there). A baseline built
        before backends were recorded has no key and is re-embedded too.
        """
        if column not in self.manifest.get("embeddings", {}):
            return None
        from modelwatch.storage.s3 import get_table

        table = get_table(client, f"{self.manifest['uri']}/embeddings.parquet").to_pandas()
        rows = table[table["column"] == column]
        if not len(rows):
            return None
        if cache is not None and (self.manifest.get("embedding") or {}).get("key") != cache.identity["key"]:
            return cache.get_or_embed(rows["text"].tolist())[0]
        return np.vstack(rows["vector"].to_numpy()).astype(np.float32)


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
