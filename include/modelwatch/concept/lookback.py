"""The look-back the concept stage reads, streamed: each day's valid rows a row group at a time, only the rows labels reach.

Memory is bounded by a row group plus what is kept:

- **predictions**: the rows whose request id has an arrived label, or whose own ``feedback`` value one
  of the model's signals reads as fired or not fired (the only rows a label join or a feedback rate can
  use; a value no signal knows, such as 0 for "no rating", makes a row like one without feedback). While the look-back's other rows number at
  most ``defaults.summary_sample_rows`` they are kept too, in their order, so a small look-back is
  analysed exactly as before; beyond that they are dropped and **counted** instead (``unlabelled``:
  rows, first and last timestamp per day, variant and experiment id — exact), and the stage adds the
  counts to what needs every request (coverage, window sizes, the base of a signal without negative
  values, an arm's number of requests).
- **estimation rows** (classic models with estimation on): per day, every row while the day has at most
  ``summary_sample_rows``, else the day's bottom-k sample by request-id hash (``summaries.BottomK``,
  k = ``summary_sample_rows``: a uniform sample, the same rows whichever part holds them). Performance
  estimation (CBPE / DLE) then reads at most that many rows a day; the estimate's band is sized at the
  rows it was computed on, so a sampled day's band is wider, never falsely narrow.

Estimation is streamed here, in the concept task, rather than summarised per shard: its look-back days
are read anyway for the label join, and the day's sample serves today's estimate, the segments and the
history alike, with the reference loaded once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch.summaries import BottomK

COUNT_KEYS = ["day", "variant", "experiment_id"]


@dataclass
class Lookback:
    """The look-back's rows the concept stage reads (see the module docstring for what is kept and what is counted)."""

    predictions: pd.DataFrame
    unlabelled: pd.DataFrame | None  # None: every row is in predictions; else COUNT_KEYS + rows, first, last of the rows left out
    tables: dict[str, pa.Table] = field(default_factory=dict)  # per day (ISO): its estimation rows
    sampled: dict[str, dict[str, int]] = field(default_factory=dict)  # per sampled day: {"rows", "sampled"}
    days: list[str] = field(default_factory=list)


class _Day:
    """One day's estimation rows: every batch while the day is small, then a bottom-k sample."""

    def __init__(self, limit: int):
        self.limit, self.batches, self.rows, self.sample = limit, [], 0, None

    def add(self, batch: pa.Table) -> None:
        self.rows += batch.num_rows
        if self.sample is None and self.rows <= self.limit:
            self.batches.append(batch)
            return
        if self.sample is None:
            self.sample = BottomK(self.limit)
            for held in self.batches:
                self.sample.update(held)
            self.batches = []
        self.sample.update(batch)

    def table(self) -> pa.Table:
        return pa.concat_tables(self.batches) if self.sample is None else self.sample.rows


def _counts(rows: pa.Table) -> pd.DataFrame:
    """Rows, first and last timestamp per (day, variant, experiment id) of rows left out (a row without timestamp: day missing)."""
    frame = rows.select(["timestamp", "variant", "experiment_id"]).to_pandas()
    frame["day"] = frame["timestamp"].dt.strftime("%Y-%m-%d")
    return frame.groupby(COUNT_KEYS, dropna=False, sort=False).agg(rows=("timestamp", "size"), first=("timestamp", "min"),
                                                                 last=("timestamp", "max")).reset_index()


def _merge_counts(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame(columns=[*COUNT_KEYS, "rows", "first", "last"])
    joined = pd.concat(parts, ignore_index=True)
    return joined.groupby(COUNT_KEYS, dropna=False, sort=True).agg(rows=("rows", "sum"), first=("first", "min"), last=("last", "max")).reset_index()


def read_lookback(client, cfg, model, days, label_ids: pa.Array, wanted: list[str], estimation_columns: list[str] | None) -> Lookback:
    """Stream the look-back ``days`` (those with a manifest); ``label_ids`` the request ids with an arrived label."""
    from modelwatch.core.partition import Partition
    from modelwatch.ingest.valid import iter_valid
    from modelwatch.storage.keys import valid_manifest_uri
    from modelwatch.storage.s3 import exists

    limit = cfg.defaults.summary_sample_rows
    columns = estimation_columns or wanted
    held: list[pa.Table] = []  # every row, in order, while the rows without a label are few
    held_unlabelled, kept, counts, estimation = 0, [], [], {}
    out = Lookback(pd.DataFrame(columns=wanted), None)
    for day in days:
        partition = Partition(model.id, day)
        if not exists(client, valid_manifest_uri(cfg, partition)):
            continue
        out.days.append(day.isoformat())
        per_day = estimation.setdefault(day.isoformat(), _Day(limit)) if estimation_columns else None
        for batch in iter_valid(client, cfg, partition, columns):
            if per_day is not None:
                per_day.add(batch)
            rows = batch.select(wanted)
            useful = _useful(rows, label_ids, model.feedback.signals)
            unlabelled = rows.num_rows - (pc.sum(useful).as_py() or 0)
            if counts or kept or held_unlabelled + unlabelled > limit:
                for table in held:  # too many rows without a label: from here on they are counted, not kept
                    _split(table, _useful(table, label_ids, model.feedback.signals), kept, counts)
                held = []
                _split(rows, useful, kept, counts)
            else:
                held.append(rows)
                held_unlabelled += unlabelled
    tables = held or kept
    if tables:
        out.predictions = pa.concat_tables(tables).to_pandas()
    out.unlabelled = _merge_counts(counts) if counts else None
    for name, per_day in estimation.items():
        if per_day.rows:
            out.tables[name] = per_day.table()
            if per_day.sample is not None:
                out.sampled[name] = {"rows": per_day.rows, "sampled": per_day.sample.table.num_rows}
    return out


def _useful(rows: pa.Table, label_ids: pa.Array, signals) -> pa.ChunkedArray:
    """Rows a label or feedback reaches: the request id has an arrived label, or a signal reads the row's own ``feedback``."""
    from modelwatch.ingest.labels import signal_value

    inline = [s for s in signals.values() if s.key == "feedback"]
    present = pc.unique(rows["feedback"].combine_chunks().drop_null()).to_pylist()  # an int8 column: a few values
    rated = pa.array([v for v in present if any(signal_value(s, float(v)) is not None for s in inline)], rows["feedback"].type)
    return pc.fill_null(pc.or_(pc.is_in(rows["request_id"], value_set=label_ids), pc.is_in(rows["feedback"], value_set=rated)), False)


def _split(rows: pa.Table, useful, kept: list[pa.Table], counts: list[pd.DataFrame]) -> None:
    kept.append(rows.filter(useful))
    left_out = rows.filter(pc.invert(useful))
    if left_out.num_rows:
        counts.append(_counts(left_out))
