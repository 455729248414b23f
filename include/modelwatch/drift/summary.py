"""The drift stage's per-shard part (``modelwatch.summaries``): what a shard's incumbent rows give the day's drift tests.

A ``DriftSummary`` holds, for the incumbent rows (``production`` and each experiment's control arm):

- **exact category counts** of every categorical tested column, over the day and within each value of
  each segment key, and each segment value's row count: the chi-squared, Jensen–Shannon and PSI tests
  of categorical columns, and which segment values reach ``drift.min_segment_count``, are exact;
- ``rows``: a bottom-k sample (``summaries.BottomK``, k = ``defaults.summary_sample_rows``) of the
  numerical tested columns and the segment keys. The KS, Wasserstein and PSI tests of numerical
  columns, overall and within each segment value, run on it: every row when the day has at most k
  incumbent rows, else a uniform sample of k rows without replacement;
- ``report``: a bottom-k sample of ``drift.report_rows`` rows with every drift column, texts included,
  for the Evidently report (which says on its page that it was computed on a sample of k of n rows);
- per text column, the ``drift.embedding_sample`` non-empty texts of smallest request-id hash (the
  baseline's embedding sample is drawn by the same rule) for the MMD test;
- per text column and segment value that the baseline's reference can test (at least
  ``drift.min_segment_count`` reference rows), the ``drift.segment_embedding_rows`` non-empty texts of
  smallest hash, for the segment's MMD test.

Its size does not grow with the day: category counts, k + report_rows rows, and per text column
embedding_sample + (testable segment values x segment_embedding_rows) texts; the testable segment
values are at most reference_rows / min_segment_count per key.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from modelwatch.summaries import BottomK, dump_tables, load_tables

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from modelwatch.stages import StageContext

COUNT_COLUMNS = ("key", "segment", "column", "value", "n")  # key "": the whole day; column "": the segment value's row count
VALID_EXCLUDED = ("_source", "_line", "reference", "extra", "class_probabilities", "model_id")


@dataclass(frozen=True)
class DriftPlan:
    """What a drift summary keeps: the baseline's columns and kinds, the sample sizes, the segment values with text samples."""

    numerical: list[str]
    categorical: list[str]
    segments: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    sample_rows: int = 200_000
    report_rows: int = 20_000
    embedding_sample: int = 4000
    segment_embedding_rows: int = 500
    segment_text_values: dict[str, list[str]] = field(default_factory=dict)  # key -> values whose texts are sampled
    model_kind: str = "llm"  # how valid rows become drift columns (baseline.columns.drift_frame)
    features: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    incumbents: list[str] = field(default_factory=lambda: ["production"])

    @property
    def sample_columns(self) -> list[str]:
        return list(dict.fromkeys(["request_id", *self.numerical, *self.segments]))

    @property
    def report_columns(self) -> list[str]:
        return list(dict.fromkeys(["request_id", *self.numerical, *self.categorical, *self.segments, *self.text]))


class DriftSummary:
    """Mergeable drift summary of a set of incumbent rows (module docstring: what it keeps and guarantees)."""

    def __init__(self, plan: DriftPlan, counts: pd.DataFrame | None = None, rows: BottomK | None = None, report: BottomK | None = None,
                 texts: dict[str, BottomK] | None = None, segment_texts: dict[tuple[str, str, str], BottomK] | None = None):
        import pandas as pd

        self.plan = plan
        self.counts = counts if counts is not None else pd.DataFrame({c: pd.Series(dtype="int64" if c == "n" else "object") for c in COUNT_COLUMNS})
        self.rows = rows or BottomK(plan.sample_rows)
        self.report = report or BottomK(plan.report_rows)
        self.texts = texts or {column: BottomK(plan.embedding_sample) for column in plan.text}
        self.segment_texts = segment_texts or {(key, value, column): BottomK(plan.segment_embedding_rows)
                                               for key, values in plan.segment_text_values.items() for value in values for column in plan.text}
        self._sample: pd.DataFrame | None = None

    # -- taking rows in ----------------------------------------------------------------------------------

    def update(self, valid: pa.Table) -> None:
        """A batch of valid rows (the columns ``columns`` names): its incumbent rows as drift columns of the baseline's kinds."""
        self.update_frame(drift_rows(valid, self.plan))

    def update_frame(self, frame: pd.DataFrame) -> None:
        """A batch already in drift columns (``request_id`` and the plan's columns, of their kinds)."""
        if not len(frame):
            return
        self._sample = None
        self.counts = _summed([self.counts, _batch_counts(frame, self.plan)])
        self.rows.update(_arrow(frame, self.plan.sample_columns))
        self.report.update(_arrow(frame, self.plan.report_columns))
        for column, sample in self.texts.items():
            sample.update(_arrow(frame[_has_text(frame[column])], ["request_id", column]))
        for (key, value, column), sample in self.segment_texts.items():
            sample.update(_arrow(frame[(frame[key] == value) & _has_text(frame[column])], ["request_id", column]))

    def merge(self, other: DriftSummary) -> DriftSummary:
        texts = {c: s.merge(other.texts[c]) for c, s in self.texts.items()}
        segment_texts = {k: s.merge(other.segment_texts[k]) for k, s in self.segment_texts.items()}
        return DriftSummary(self.plan, _summed([self.counts, other.counts]), self.rows.merge(other.rows), self.report.merge(other.report),
                            texts, segment_texts)

    # -- reading it --------------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        """Incumbent rows summarised (exact)."""
        return self.rows.seen

    def category_counts(self, column: str, key: str = "", segment: str = "") -> dict[str, int]:
        """Exact counts of ``column``'s values, over the day (``key`` "") or within ``key`` = ``segment``."""
        c = self.counts
        picked = c[(c["key"] == key) & (c["segment"] == segment) & (c["column"] == column)]
        return dict(zip(picked["value"], picked["n"].astype(int).tolist(), strict=True))

    def segment_rows(self, key: str) -> dict[str, int]:
        """Each value of segment ``key`` with its exact row count."""
        c = self.counts
        picked = c[(c["key"] == key) & (c["column"] == "")]
        return dict(zip(picked["segment"], picked["n"].astype(int).tolist(), strict=True))

    def sample_frame(self) -> pd.DataFrame:
        """The ``rows`` sample (numerical columns and segment keys), in sample-key order (made once: every segment side reads it)."""
        if self._sample is None:
            self._sample = _frame(self.rows, self.plan.sample_columns)
        return self._sample

    def report_frame(self) -> pd.DataFrame:
        """The ``report`` sample (every drift column, texts included), in sample-key order."""
        return _frame(self.report, self.plan.report_columns)

    def text_frame(self, column: str, key: str | None = None, segment: str | None = None) -> pd.DataFrame:
        """The sampled non-empty texts of ``column`` (with ``request_id``): the day's, or one segment value's (empty when none kept)."""
        sample = self.texts.get(column) if key is None else self.segment_texts.get((key, segment, column))
        return _frame(sample, ["request_id", column])

    # -- bytes -------------------------------------------------------------------------------------------

    def dump(self) -> bytes:
        import pyarrow as pa

        meta: dict[str, Any] = {"plan": asdict(self.plan), "segment_texts": []}
        tables: dict[str, pa.Table] = {"counts": pa.Table.from_pandas(self.counts, preserve_index=False)}
        for name, sample in (("rows", self.rows), ("report", self.report), *((f"text:{c}", s) for c, s in self.texts.items())):
            part_meta, part_tables = sample.to_parts(name)
            meta.update(part_meta)
            tables.update(part_tables)
        for index, ((key, value, column), sample) in enumerate(self.segment_texts.items()):
            part_meta, part_tables = sample.to_parts(f"segment_text:{index}")
            meta.update(part_meta)
            tables.update(part_tables)
            meta["segment_texts"].append([key, value, column])
        return dump_tables(meta, tables)


def load(data: bytes) -> DriftSummary:
    """A summary ``DriftSummary.dump`` wrote."""
    meta, tables = load_tables(data)
    plan = DriftPlan(**meta["plan"])
    texts = {c: BottomK.from_parts(f"text:{c}", meta, tables) for c in plan.text}
    segment_texts = {(k, v, c): BottomK.from_parts(f"segment_text:{i}", meta, tables) for i, (k, v, c) in enumerate(meta["segment_texts"])}
    counts = tables["counts"].to_pandas()
    return DriftSummary(plan, counts, BottomK.from_parts("rows", meta, tables), BottomK.from_parts("report", meta, tables), texts, segment_texts)


def columns(ctx: StageContext) -> list[str]:
    """The valid-row columns the drift columns are made of (every column but provenance and the unused ones)."""
    from modelwatch.ingest.valid import valid_columns

    return valid_columns(VALID_EXCLUDED)


def start(ctx: StageContext) -> DriftSummary | None:
    """An empty summary shaped by the model's baseline; None without a baseline (the stage records no_baseline itself)."""
    found = baseline_manifest(ctx.client, ctx.cfg, ctx.model)
    if found is None:
        return None
    manifest, reference_uri = found
    return DriftSummary(plan_for(ctx, manifest, reference_uri))


def baseline_manifest(client, cfg, model) -> tuple[dict[str, Any], str] | None:
    """The configured baseline's manifest and its reference sample's URI; None when there is none (yet)."""
    from modelwatch.storage.keys import baseline_prefix
    from modelwatch.storage.s3 import exists, get_json

    version = model.baseline.resolved_version()
    if version is None:
        return None
    prefix = baseline_prefix(cfg.defaults.reports_uri, model.id, version)
    if not exists(client, f"{prefix}/manifest.json"):
        return None
    return get_json(client, f"{prefix}/manifest.json"), f"{prefix}/reference.parquet"


def plan_for(ctx: StageContext, manifest: dict[str, Any], reference_uri: str) -> DriftPlan:
    """The plan of a model's day: the baseline's columns and kinds, the configured sample sizes, the testable segment values."""
    from modelwatch.baseline.store import incumbent_variants

    model, settings, names, kinds = ctx.model, ctx.model.drift, manifest["columns"], manifest["kinds"]
    tested = list(dict.fromkeys(names["features"] + names["prediction"] + names["input_length"]))
    text_values = segment_text_values(ctx.client, reference_uri, names["segments"], settings.min_segment_count) \
        if names["text"] and settings.segment_embedding_segments else {}
    return DriftPlan(numerical=[c for c in tested if kinds[c] == "numerical"], categorical=[c for c in tested if kinds[c] == "categorical"],
                     segments=list(names["segments"]), text=list(names["text"]), sample_rows=ctx.cfg.defaults.summary_sample_rows,
                     report_rows=settings.report_rows, embedding_sample=settings.embedding_sample,
                     segment_embedding_rows=settings.segment_embedding_rows, segment_text_values=text_values, model_kind=model.kind,
                     features=list(names["features"]), kinds=dict(kinds), incumbents=sorted(incumbent_variants(model)))


def segment_text_values(client, reference_uri: str, segments: list[str], min_count: int) -> dict[str, list[str]]:
    """Each segment key's values with at least ``min_count`` reference rows: the only ones a segment MMD test can run on."""
    from modelwatch.storage.s3 import get_table

    if not segments:
        return {}
    reference = get_table(client, reference_uri, list(segments)).to_pandas()
    out = {}
    for key in segments:
        sizes = reference[key].value_counts(dropna=True)
        out[key] = sorted(str(v) for v, n in sizes.items() if n >= min_count)
    return out


def drift_rows(valid: pa.Table, plan: DriftPlan) -> pd.DataFrame:
    """The incumbent rows of a batch of valid rows as drift columns of the baseline's kinds (``baseline.columns.drift_frame``)."""
    from modelwatch.baseline.columns import drift_frame
    from modelwatch.baseline.store import coerce_kinds

    # a column the baseline does not know is not tested: its kind here only has to be one drift_frame accepts
    kinds = defaultdict(lambda: "categorical", plan.kinds)
    frame, _ = drift_frame(valid, plan.model_kind, plan.features, plan.segments, plan.text, kinds=kinds,
                           probability="prediction.probability" in plan.kinds)
    frame = frame[frame["variant"].isin(plan.incumbents)].reset_index(drop=True)
    return coerce_kinds(frame, plan.kinds)


def _batch_counts(frame: pd.DataFrame, plan: DriftPlan) -> pd.DataFrame:
    """A batch's category counts (``COUNT_COLUMNS``): each categorical column over the batch and within each segment value."""
    import pandas as pd

    parts = []
    for column in plan.categorical:
        sizes = frame[column].value_counts(dropna=True)
        parts.append(pd.DataFrame({"key": "", "segment": "", "column": column, "value": sizes.index.astype(str), "n": sizes.to_numpy()}))
    for key in plan.segments:
        sizes = frame[key].value_counts(dropna=True)
        parts.append(pd.DataFrame({"key": key, "segment": sizes.index.astype(str), "column": "", "value": "", "n": sizes.to_numpy()}))
        for column in (c for c in plan.categorical if c != key):
            pairs = frame.groupby([key, column], dropna=True).size()
            parts.append(pd.DataFrame({"key": key, "segment": pairs.index.get_level_values(0).astype(str), "column": column,
                                       "value": pairs.index.get_level_values(1).astype(str), "n": pairs.to_numpy()}))
    return _summed(parts)


def _summed(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Count tables added up (one row per key, segment, column and value)."""
    import pandas as pd

    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "n" else "object") for c in COUNT_COLUMNS})
    table = pd.concat(parts, ignore_index=True).astype({"key": object, "segment": object, "column": object, "value": object, "n": "int64"})
    return table.groupby(list(COUNT_COLUMNS[:-1]), sort=True, as_index=False)["n"].sum()


def _has_text(values: pd.Series) -> pd.Series:
    """Non-empty texts (not only whitespace), as ``drift.families.sample_texts`` and the baseline's embedding sample keep them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    trimmed = pc.utf8_trim_whitespace(pa.array(values, pa.string(), from_pandas=True))
    return pc.fill_null(pc.greater(pc.utf8_length(trimmed), 0), False).to_numpy(zero_copy_only=False)


def _arrow(frame: pd.DataFrame, names: list[str]) -> pa.Table:
    """``names`` of a drift frame as an Arrow table: numbers as float64, everything else as strings."""
    import pyarrow as pa

    arrays = {}
    for name in names:
        numeric = name != "request_id" and frame[name].dtype.kind == "f"
        arrays[name] = pa.array(frame[name], pa.float64() if numeric else pa.string(), from_pandas=True)
    return pa.table(arrays)


def _frame(sample: BottomK | None, names: list[str]) -> pd.DataFrame:
    """A sample's rows as a pandas frame (strings as Python objects); an empty frame of ``names`` when nothing was kept."""
    import pandas as pd

    rows = None if sample is None else sample.rows
    if rows is None:
        return pd.DataFrame({name: pd.Series(dtype="object") for name in names})
    return rows.to_pandas()
