"""The profile stage's per-shard part: a mergeable summary of the operational metrics of a shard's valid rows.

What it keeps, per group (model overall, per variant, per segment value, per variant x segment value),
and what each figure guarantees:

- **exact sums**: requests, errors, timeouts, filter refusals; count and sum of latency, prompt and
  completion tokens, cost and quality score; rated and negative feedback; requests per clock hour
  (the peak hour). Merging adds them, so rates, means and totals are the day's own (up to float rounding).
  Segment values are kept raw, one group each (exact per-category counts); the top
  ``max_segment_values`` by requests are chosen only when the day's summary is complete, the rest
  folded into ``__other__`` by adding their sums and merging their sketches.
- **quantiles** (latency p50/p95/p99, prompt tokens p50/p95, completion tokens p95): exact while the day
  has at most ``defaults.summary_sample_rows`` valid rows — the summary then holds the day's rows
  themselves and the metrics are computed exactly as before (``profile.metrics.compute_metrics``, numpy's
  linear-interpolation quantiles). Beyond that, from KLL sketches (Karnin, Lang and Liberty 2016, "Optimal
  Quantile Approximation in Streams", FOCS; Apache DataSketches ``kll_doubles_sketch`` with k = ``KLL_K``),
  one per group and column, merged across shards: a quantile's rank is off by at most ``rank_error``
  (the sketch's normalized rank error for single queries, at 99% confidence), which the profile
  record and the page state beside ``quantile_method: kll``.

Size: the exact rows are dropped as soon as a summary covers more than the limit, so a summary holds at
most ``summary_sample_rows`` rows of 12 narrow columns (about 20 MB) and otherwise groups x (17 sums +
3 sketches of at most ~3 k doubles each, ~25 KB) plus groups x hours counts: it does not grow with the day.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from modelwatch.profile.metrics import ALL, INPUT_COLUMNS, TOKEN_BINS, input_columns, to_frame
from modelwatch.summaries import dump_tables, load_tables

KLL_K = 1000
KEYS = ["variant", "segment", "segment_value"]
QUANTILE_COLUMNS = ("latency_ms", "prompt_tokens", "completion_tokens")
SUMS = ["requests", "errors", "timeouts", "refusals", "latency_n", "latency_sum", "prompt_n", "prompt_sum", "completion_n", "completion_sum",
        "tokens", "cost_n", "cost_sum", "quality_n", "quality_sum", "feedback_rated", "feedback_negative"]
MISSING = "__missing__"


def columns(ctx) -> list[str]:
    return input_columns(list(ctx.model.segments))


def start(ctx) -> ProfileSummary:
    return ProfileSummary.empty(list(ctx.model.segments), ctx.cfg.defaults.summary_sample_rows)


def load(data: bytes) -> ProfileSummary:
    return ProfileSummary.from_bytes(data)


def rank_error(k: int = KLL_K) -> float:
    """KLL's normalized rank error for a single quantile query at sketch size ``k`` (99% confidence, DataSketches)."""
    from datasketches import kll_doubles_sketch

    return float(kll_doubles_sketch.get_normalized_rank_error(k, False))


def _row_stats(frame: pd.DataFrame) -> pd.DataFrame:
    """Per row, its contribution to each sum (so a group's sums are the column sums of its rows)."""
    status = frame["status"]
    number = {c: pd.to_numeric(frame[c], errors="coerce").astype(float) for c in ("latency_ms", "prompt_tokens", "completion_tokens",
                                                                                     "cost_usd", "quality_score", "feedback")}
    feedback = number["feedback"]
    rated = feedback.notna() & (feedback != 0)
    out = pd.DataFrame({"requests": 1.0, "errors": (status == "error").astype(float), "timeouts": (status == "timeout").astype(float),
                        "refusals": (status == "refused_by_filter").astype(float)}, index=frame.index)
    for prefix, column in (("latency", "latency_ms"), ("prompt", "prompt_tokens"), ("completion", "completion_tokens"),
                           ("cost", "cost_usd"), ("quality", "quality_score")):
        out[f"{prefix}_n"] = number[column].notna().astype(float)
        out[f"{prefix}_sum"] = number[column].fillna(0.0)
    out["tokens"] = number["prompt_tokens"].fillna(0.0) + number["completion_tokens"].fillna(0.0)
    out["feedback_rated"] = rated.astype(float)
    out["feedback_negative"] = (rated & (feedback == -1)).astype(float)
    out = out[SUMS]
    for column in QUANTILE_COLUMNS:
        out["q:" + column] = number[column]
    out["hour"] = frame["timestamp"].astype("datetime64[ns, UTC]").astype("int64") // 3_600_000_000_000  # hours since the epoch
    return out


def _level_codes(frame: pd.DataFrame, segments: list[str]):
    """Each group level (overall, per variant, per segment value, both): its rows' group codes and the groups' keys.

    Yields (codes, keys): ``codes[i]`` the group of row i (-1: the row is not in this level, a missing
    variant), ``keys[g]`` the (variant, segment, value) of group g.
    """
    variant_codes, variant_names = pd.factorize(frame["variant"], use_na_sentinel=True)
    variant_names = [str(v) for v in variant_names]
    everyone = np.zeros(len(frame), dtype=np.int64)
    for segment in [ALL, *(s for s in segments if s in frame.columns)]:
        if segment == ALL:
            value_codes, values = everyone, [ALL]
        else:
            value_codes, uniques = pd.factorize(frame[segment].fillna(MISSING).astype(str))
            values = [str(v) for v in uniques]
        yield value_codes, [(ALL, segment, v) for v in values]
        by_variant = np.where(variant_codes >= 0, variant_codes * len(values) + value_codes, -1)
        yield by_variant, [(variant, segment, v) for variant in variant_names for v in values]


@dataclass
class ProfileSummary:
    """The profile of a set of valid rows: exact sums per group, KLL sketches per group and column, the exact rows while few."""

    segments: list[str]
    limit: int  # defaults.summary_sample_rows: the most rows kept exactly
    seen: int  # valid rows summarised (exact)
    sums: pd.DataFrame  # KEYS + SUMS
    hours: pd.DataFrame  # KEYS + hour (hours since the epoch) + requests
    sketches: dict[tuple[str, str, str, str], Any]  # (variant, segment, value, column) -> kll_doubles_sketch
    histogram: np.ndarray  # prompt-token counts in TOKEN_BINS, all rows
    exact_rows: pa.Table | None  # every row summarised while seen <= limit, else None

    @classmethod
    def empty(cls, segments: list[str], limit: int) -> ProfileSummary:
        return cls(segments, limit, 0, pd.DataFrame(columns=KEYS + SUMS), pd.DataFrame(columns=[*KEYS, "hour", "requests"]), {},
                   np.zeros(len(TOKEN_BINS) - 1, dtype=np.int64), None)

    @property
    def exact(self) -> bool:
        return self.seen <= self.limit

    def update(self, rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        frame = to_frame(rows, self.segments)
        self._keep_exact(frame.drop(columns=[c for c in ("metadata", "features") if c in frame.columns]), rows.num_rows)
        stats = _row_stats(frame)
        sums = stats[SUMS].to_numpy(dtype=float)
        hour = stats["hour"].to_numpy()
        first_hour = int(hour.min())
        hour_index = hour - first_hour
        hours_span = int(hour_index.max()) + 1
        quantiles = {c: stats["q:" + c].to_numpy(dtype=float) for c in QUANTILE_COLUMNS}
        for codes, keys in _level_codes(frame, self.segments):
            self._add_level(codes, keys, sums, hour_index, first_hour, hours_span, quantiles)
        prompt = pd.to_numeric(frame["prompt_tokens"], errors="coerce").dropna().to_numpy(dtype=float)
        self.histogram = self.histogram + np.histogram(prompt, bins=TOKEN_BINS)[0]

    def _add_level(self, codes: np.ndarray, keys: list[tuple[str, str, str]], sums: np.ndarray, hour_index: np.ndarray, first_hour: int,
                   hours_span: int, quantiles: dict[str, np.ndarray]) -> None:
        """Add one level's groups: sums and hourly counts by ``np.bincount`` over the group codes, sketches per group."""
        from datasketches import kll_doubles_sketch

        inside = codes >= 0
        codes, groups = codes[inside], len(keys)
        totals = np.column_stack([np.bincount(codes, weights=sums[inside, j], minlength=groups) for j in range(sums.shape[1])])
        present = totals[:, 0] > 0
        level = pd.DataFrame([k for k, p in zip(keys, present, strict=True) if p], columns=KEYS)
        level[SUMS] = totals[present]
        self.sums = _add(self.sums, level, KEYS)
        hourly = np.bincount(codes * hours_span + hour_index[inside], minlength=groups * hours_span).reshape(groups, hours_span)
        group, slot = np.nonzero(hourly)
        self.hours = _add(self.hours, pd.DataFrame({"variant": [keys[g][0] for g in group], "segment": [keys[g][1] for g in group],
                                                    "segment_value": [keys[g][2] for g in group],
                                                    "hour": first_hour + slot.astype(np.int64),
                                                    "requests": hourly[group, slot].astype(float)}), [*KEYS, "hour"])
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(groups + 1))
        for column, values in quantiles.items():
            ordered = values[inside][order]
            for g in np.flatnonzero(present):
                chunk = ordered[bounds[g]:bounds[g + 1]]
                chunk = chunk[~np.isnan(chunk)]
                if chunk.size:
                    self.sketches.setdefault((*keys[g], column), kll_doubles_sketch(KLL_K)).update(chunk)

    def _keep_exact(self, frame: pd.DataFrame, rows: int) -> None:
        self.seen += rows
        if not self.exact:
            self.exact_rows = None
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        self.exact_rows = table if self.exact_rows is None else pa.concat_tables([self.exact_rows, table], promote_options="permissive")

    def merge(self, other: ProfileSummary) -> ProfileSummary:
        seen = self.seen + other.seen
        exact_rows = None
        if seen <= max(self.limit, other.limit) and (self.exact_rows is not None or other.exact_rows is not None):
            parts = [t for t in (self.exact_rows, other.exact_rows) if t is not None]
            exact_rows = pa.concat_tables(parts, promote_options="permissive")
        sketches = dict(self.sketches)
        for key, sketch in other.sketches.items():
            if key in sketches:
                sketches[key].merge(sketch)
            else:
                sketches[key] = sketch
        return ProfileSummary(self.segments, max(self.limit, other.limit), seen, _add(self.sums, other.sums, KEYS),
                              _add(self.hours, other.hours, [*KEYS, "hour"]), sketches, self.histogram + other.histogram, exact_rows)

    def dump(self) -> bytes:
        keys = list(self.sketches)
        sketches = pa.table({"variant": [k[0] for k in keys], "segment": [k[1] for k in keys], "segment_value": [k[2] for k in keys],
                             "column": [k[3] for k in keys], "sketch": pa.array([self.sketches[k].serialize() for k in keys], pa.binary())})
        tables = {"sums": _table(self.sums, KEYS, SUMS), "hours": _table(self.hours, [*KEYS, "hour"], ["requests"]), "sketches": sketches}
        if self.exact_rows is not None:
            tables["exact"] = self.exact_rows
        meta = {"segments": self.segments, "limit": self.limit, "seen": self.seen, "histogram": self.histogram.tolist(), "kll_k": KLL_K}
        return dump_tables(meta, tables)

    @classmethod
    def from_bytes(cls, data: bytes) -> ProfileSummary:
        from datasketches import kll_doubles_sketch

        meta, tables = load_tables(data)
        s = tables["sketches"].to_pydict()
        sketches = {(v, seg, val, col): kll_doubles_sketch.deserialize(blob)
                    for v, seg, val, col, blob in zip(s["variant"], s["segment"], s["segment_value"], s["column"], s["sketch"], strict=True)}
        return cls(list(meta["segments"]), int(meta["limit"]), int(meta["seen"]), tables["sums"].to_pandas(), tables["hours"].to_pandas(),
                   sketches, np.asarray(meta["histogram"], dtype=np.int64), tables.get("exact"))


def _add(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Row-wise sums of two keyed tables (groups in either)."""
    if a.empty:
        return b.reset_index(drop=True)
    if b.empty:
        return a
    return pd.concat([a, b], ignore_index=True).groupby(keys, sort=False).sum().reset_index()


def _table(frame: pd.DataFrame, keys: list[str], values: list[str]) -> pa.Table:
    columns = {k: pa.array(frame[k].astype(str).tolist() if k != "hour" else frame[k].astype("int64").to_numpy(), None if k == "hour" else pa.string())
               for k in keys}
    columns.update({v: pa.array(frame[v].to_numpy(dtype=float)) for v in values})
    return pa.table(columns)


def exact_frame(summary: ProfileSummary) -> pd.DataFrame:
    """The day's rows a small day's summary holds, as ``profile.metrics.to_frame`` gives them (same order as the valid parts)."""
    present = [c for c in INPUT_COLUMNS if c not in ("metadata", "features")]
    if summary.exact_rows is None:
        return pd.DataFrame(columns=present)
    return summary.exact_rows.to_pandas()
