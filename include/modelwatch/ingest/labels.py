"""Delayed labels: reading ``{labels_uri}/model_id=M/dt=D/*.jsonl[.gz]`` with every bad line reported, and joining them to predictions.

``join_labels`` accounts for every row: predictions in = matched + without label; labels in = kept + duplicates
dropped (latest ``labelled_at`` wins); kept = matched + without prediction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from modelwatch.ingest.readers import CUT_LINE, json_lines

LABEL_FILE_SUFFIXES: tuple[str, ...] = (".jsonl", ".jsonl.gz")
RAW_LIMIT = 2_000  # characters of a bad line kept in its problem record

LABELS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("label", pa.string()),  # as given; numbers and booleans rendered with repr(), like contract "scalar"
        pa.field("label_value", pa.float64()),  # the label as a number where it is one (regression targets)
        pa.field("feedback", pa.int8()),  # -1, 0 or 1
        pa.field("labelled_at", pa.timestamp("us", tz="UTC")),
        pa.field("_source", pa.string()),
        pa.field("_line", pa.int64()),
    ]
)


# --------------------------------------------------------------------------- reading labels


@dataclass(frozen=True)
class LabelProblem:
    """A label line (or whole file, ``line`` None) that could not be used, and why."""

    source: str
    line: int | None
    reason: str
    raw: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "reason": self.reason, "raw": self.raw}


@dataclass
class LabelRead:
    """What ``read_labels`` found: the label rows, every problem, and which days had labels."""

    table: pa.Table
    problems: list[LabelProblem] = field(default_factory=list)
    days_with_labels: list[date] = field(default_factory=list)
    days_without_labels: list[date] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)  # objects under the prefix that are not .jsonl[.gz]
    lines_read: int = 0  # non-blank lines: rows + line problems

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (without the rows themselves)."""
        return {
            "rows": self.rows,
            "lines_read": self.lines_read,
            "files": list(self.files),
            "skipped_files": list(self.skipped_files),
            "days_with_labels": [d.isoformat() for d in self.days_with_labels],
            "days_without_labels": [d.isoformat() for d in self.days_without_labels],
            "problems": [p.to_dict() for p in self.problems],
        }


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_label_record(record: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(label row, problem) for one decoded JSON value; exactly one of them is None."""
    if not isinstance(record, dict):
        return None, f"a label line must be a JSON object, got {type(record).__name__}"
    request_id = record.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        return None, f"request_id: expected a non-empty string, got {request_id!r}"[:200]
    raw_label = record.get("label")
    label: str | None
    label_value: float | None = None
    if raw_label is None:
        label = None
    elif isinstance(raw_label, str):
        label = raw_label
        try:
            number = float(raw_label)
            label_value = number if math.isfinite(number) else None
        except ValueError:
            label_value = None
    elif is_number(raw_label):
        if not math.isfinite(float(raw_label)):
            return None, f"label: {raw_label!r} is not a finite number"
        label, label_value = repr(raw_label), float(raw_label)
    elif isinstance(raw_label, bool):
        label = repr(raw_label)
    else:
        return None, f"label: expected a string or a number, got {type(raw_label).__name__}"
    feedback = record.get("feedback")
    if feedback is not None:
        if not (is_number(feedback) and float(feedback) in (-1.0, 0.0, 1.0)):
            return None, f"feedback: expected -1, 0 or 1, got {feedback!r}"[:200]
        feedback = int(feedback)
    if label is None and feedback is None:
        return None, "neither label nor feedback is set: the line carries no ground truth"
    labelled_at: datetime | None = None
    raw_at = record.get("labelled_at")
    if raw_at is not None:
        if not isinstance(raw_at, str):
            return None, f"labelled_at: expected an ISO-8601 string, got {type(raw_at).__name__}"
        try:
            labelled_at = datetime.fromisoformat(raw_at.replace("Z", "+00:00"))
        except ValueError:
            return None, f"labelled_at: not ISO-8601: {raw_at[:40]!r}"
        if labelled_at.tzinfo is None:
            return None, f"labelled_at: no UTC offset in {raw_at[:40]!r}"
        labelled_at = labelled_at.astimezone(UTC)
    row = {"request_id": request_id, "label": label, "label_value": label_value, "feedback": feedback, "labelled_at": labelled_at}
    return row, None


def parse_label_lines(data: bytes, source: str) -> tuple[list[dict[str, Any]], list[LabelProblem], int]:
    """Parse one labels file (JSON lines, gzipped when ``source`` ends in ``.gz``).

    Returns (rows, problems, non-blank lines). Line numbers are 1-based positions in the
    decompressed file, blank lines included, so that ``sed -n Np`` finds them. A damaged
    gzip keeps the lines before the damage and is reported as the log reader reports it
    (``ingest.readers.json_lines``): a file problem (line None), and the line it cut as a problem.
    """
    split = json_lines(data, source, gzipped=source.lower().endswith(".gz"))
    problems: list[LabelProblem] = [LabelProblem(source, None, split.problem)] if split.problem else []
    rows: list[dict[str, Any]] = []
    lines_read = 0
    for number, raw in enumerate(split.lines, start=1):
        if not raw.strip():
            continue
        lines_read += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(LabelProblem(source, number, f"line is not UTF-8 (bad byte at offset {exc.start})", raw.decode("utf-8", "backslashreplace")[:RAW_LIMIT]))
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(LabelProblem(source, number, f"not valid JSON ({exc.msg} at column {exc.colno})", text[:RAW_LIMIT]))
            continue
        except RecursionError:
            problems.append(LabelProblem(source, number, "JSON nested too deeply to read; labels are flat objects", text[:RAW_LIMIT]))
            continue
        row, problem = _parse_label_record(record)
        if problem is not None:
            problems.append(LabelProblem(source, number, problem, text[:RAW_LIMIT]))
            continue
        assert row is not None
        row["_source"], row["_line"] = source, number
        rows.append(row)
    if split.cut is not None:
        lines_read += 1
        problems.append(LabelProblem(source, len(split.lines) + 1, CUT_LINE, split.cut.decode("utf-8", "backslashreplace")[:RAW_LIMIT]))
    return rows, problems, lines_read


def read_labels(client: Any, labels_uri: str, model_id: str, days: Sequence[date]) -> LabelRead:
    """Read delayed labels ``{labels_uri}/model_id=M/dt=D/*.jsonl[.gz]`` for the given days.

    ``client`` is a boto3 S3 client (see ``modelwatch.storage.s3``). A day with no label file is
    not an error (labels arrive late): it is listed in ``days_without_labels``. Every bad line
    becomes a ``LabelProblem`` with its file URI and 1-based line number; objects that are not
    ``.jsonl``/``.jsonl.gz`` are listed in ``skipped_files``. Columns follow ``LABELS_SCHEMA``.
    """
    from modelwatch.storage.s3 import get_bytes, list_objects

    base = labels_uri.rstrip("/")
    result = LabelRead(table=LABELS_SCHEMA.empty_table())
    rows: list[dict[str, Any]] = []
    for day in sorted(set(days)):
        day_rows = 0
        for uri, _size in list_objects(client, f"{base}/model_id={model_id}/dt={day.isoformat()}"):
            if not uri.lower().endswith(LABEL_FILE_SUFFIXES):
                result.skipped_files.append(uri)
                continue
            result.files.append(uri)
            file_rows, problems, lines = parse_label_lines(get_bytes(client, uri), uri)
            rows.extend(file_rows)
            result.problems.extend(problems)
            result.lines_read += lines
            day_rows += len(file_rows)
        (result.days_with_labels if day_rows else result.days_without_labels).append(day)
    result.table = pa.Table.from_pylist(rows, schema=LABELS_SCHEMA)
    return result


# --------------------------------------------------------------------------- joining


@dataclass
class JoinResult:
    """Predictions with their labels, and where every prediction and label went.

    Identities (checked by ``check``): ``predictions_in == matched + predictions_without_label``;
    ``labels_in == labels_kept + duplicate_labels``; ``labels_kept == labels_matched + labels_without_prediction``.
    ``matched`` counts prediction rows (a repeated prediction ``request_id`` matches the same label twice).
    """

    frame: pd.DataFrame  # every prediction row, label columns null where no label arrived
    orphan_labels: pd.DataFrame  # labels whose request_id matches no prediction
    predictions_in: int
    labels_in: int
    matched: int
    predictions_without_label: int
    labels_kept: int
    labels_matched: int
    labels_without_prediction: int
    duplicate_labels: int
    duplicate_predictions: int

    @property
    def matched_frame(self) -> pd.DataFrame:
        return self.frame[self.frame["_labelled"]]

    def check(self) -> None:
        """Raise AssertionError if a row is unaccounted for."""
        assert self.predictions_in == self.matched + self.predictions_without_label
        assert self.labels_in == self.labels_kept + self.duplicate_labels
        assert self.labels_kept == self.labels_matched + self.labels_without_prediction

    def counts(self) -> dict[str, int]:
        keys = ("predictions_in", "labels_in", "matched", "predictions_without_label", "labels_kept", "labels_matched",
                "labels_without_prediction", "duplicate_labels", "duplicate_predictions")
        return {k: int(getattr(self, k)) for k in keys}


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame) -> JoinResult:
    """Left-join labels onto predictions by ``request_id``.

    Duplicate labels of one request keep the latest ``labelled_at`` (a missing
    ``labelled_at`` counts as oldest; ties keep the later row in input order) and the rest
    are counted in ``duplicate_labels``. Feedback in a label row overrides the prediction's
    own ``feedback`` where it is set. The result keeps the predictions' index and order and
    adds ``label``, ``label_value``, ``labelled_at`` and a boolean ``_labelled``.
    """
    if "request_id" not in predictions.columns or "request_id" not in labels.columns:
        raise ValueError("both frames need a request_id column")
    lab = labels.copy()
    for column in ("label", "label_value", "feedback", "labelled_at"):
        if column not in lab.columns:
            lab[column] = None
    if lab["label_value"].isna().all() and lab["label"].notna().any():
        lab["label_value"] = pd.to_numeric(lab["label"], errors="coerce")
    lab["labelled_at"] = pd.to_datetime(lab["labelled_at"], utc=True, errors="coerce", format="ISO8601")
    lab["_order"] = np.arange(len(lab))
    lab = lab.sort_values(["labelled_at", "_order"], na_position="first", kind="mergesort")
    keyed = lab[lab["request_id"].notna()]
    kept = keyed.drop_duplicates("request_id", keep="last")
    duplicate_labels = len(keyed) - len(kept)
    kept = pd.concat([kept, lab[lab["request_id"].isna()]]).sort_values("_order", kind="mergesort")

    pred_ids = predictions["request_id"]
    known = set(pred_ids.dropna())
    kept_ids = set(kept["request_id"].dropna())
    label_cols = kept[kept["request_id"].notna()][["request_id", "label", "label_value", "feedback", "labelled_at"]].rename(columns={"feedback": "_label_feedback"})
    label_cols = label_cols.assign(_labelled=True)
    base = predictions.drop(columns=[c for c in ("label", "label_value", "labelled_at", "_labelled") if c in predictions.columns])
    frame = base.merge(label_cols, on="request_id", how="left", sort=False)
    frame.index = predictions.index
    frame["_labelled"] = frame["_labelled"].astype("boolean").fillna(False).astype(bool) & pred_ids.notna().to_numpy()
    label_feedback = pd.to_numeric(frame.pop("_label_feedback"), errors="coerce")
    if "feedback" in frame.columns:
        frame["feedback"] = label_feedback.where(label_feedback.notna(), pd.to_numeric(frame["feedback"], errors="coerce"))
    else:
        frame["feedback"] = label_feedback
    matched = int(frame["_labelled"].sum())
    orphans = kept[~kept["request_id"].isin(known) | kept["request_id"].isna()].drop(columns="_order")
    return JoinResult(
        frame=frame,
        orphan_labels=orphans,
        predictions_in=len(predictions),
        labels_in=len(labels),
        matched=matched,
        predictions_without_label=len(predictions) - matched,
        labels_kept=len(kept),
        labels_matched=len(kept_ids & known),
        labels_without_prediction=len(orphans),
        duplicate_labels=duplicate_labels,
        duplicate_predictions=int(pred_ids.dropna().duplicated().sum()),
    )
