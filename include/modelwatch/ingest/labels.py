"""Delayed labels: reading ``{labels_uri}/model_id=M/dt=D/*.jsonl[.gz]`` with every bad line reported, and joining them to predictions.

A label line is a JSON object with ``request_id`` and at least one of ``label`` (classic models),
``feedback`` (-1, 0 or 1) or a configured feedback signal (``feedback.signals``: a key of the line
and the values that mean the signal fired or not, e.g. ``"feedback": "down"``, ``"event": "escalated"``).
``labelled_at`` is ISO-8601 with a UTC offset, or a date alone (``2026-10-06``), which means the end
of that UTC day (23:59:59.999999Z): the label counts from that day's run on.

``join_labels`` accounts for every row: predictions in = matched + without label; labels in = kept + duplicates
dropped (latest ``labelled_at`` wins); kept = matched + without prediction.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from modelwatch.ingest.readers import CUT_LINE, json_lines

if TYPE_CHECKING:
    from modelwatch.config import FeedbackSignal

LABEL_FILE_SUFFIXES: tuple[str, ...] = (".jsonl", ".jsonl.gz")
RAW_LIMIT = 2_000  # characters of a bad line kept in its problem record
EXAMPLES_PER_RULE = 5  # problems listed per rule in a summary; every problem is counted
END_OF_DAY = time(23, 59, 59, 999_999, tzinfo=UTC)  # a date-only labelled_at means the end of that UTC day

LABELS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("label", pa.string()),  # as given; numbers and booleans rendered with repr(), like contract "scalar"
        pa.field("label_value", pa.float64()),  # the label as a number where it is one (regression targets)
        pa.field("feedback", pa.int8()),  # -1, 0 or 1
        pa.field("signals", pa.string()),  # JSON {signal: 1 fired | 0 rated, not fired} of the configured feedback signals; null: none
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
    rule: str = "line"  # what was wrong, for counting: the field (request_id, labelled_at, ...), json, utf8, cut, file

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "rule": self.rule, "reason": self.reason, "raw": self.raw}


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

    @property
    def rejected_lines(self) -> int:
        """Label lines that were not used (file problems are not lines)."""
        return sum(1 for p in self.problems if p.line is not None)

    def rejected_by_rule(self) -> dict[str, int]:
        """Rejected lines (and file problems, as ``file``) counted by rule, largest first."""
        return dict(Counter(p.rule for p in self.problems).most_common())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (without the rows themselves): every problem counted by rule, the first few of each rule listed."""
        listed: Counter[str] = Counter()
        examples = []
        for problem in self.problems:
            listed[problem.rule] += 1
            if listed[problem.rule] <= EXAMPLES_PER_RULE:
                examples.append(problem.to_dict())
        return {
            "rows": self.rows,
            "lines_read": self.lines_read,
            "rejected_lines": self.rejected_lines,
            "rejected": self.rejected_by_rule(),
            "files": list(self.files),
            "skipped_files": list(self.skipped_files),
            "days_with_labels": [d.isoformat() for d in self.days_with_labels],
            "days_without_labels": [d.isoformat() for d in self.days_without_labels],
            "problems": examples,
            "problems_total": len(self.problems),
        }


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


Signals = Mapping[str, "FeedbackSignal"]


def _same_value(raw: Any, configured: Any) -> bool:
    """JSON equality of a logged and a configured value: numbers by value, booleans only with booleans, strings exactly."""
    if isinstance(raw, bool) or isinstance(configured, bool):
        return isinstance(raw, bool) and isinstance(configured, bool) and raw == configured
    if is_number(raw) and is_number(configured):
        return float(raw) == float(configured)
    return type(raw) is type(configured) and raw == configured


def signal_value(signal: FeedbackSignal, raw: Any) -> int | None:
    """1 when ``raw`` is one of the signal's positive values, 0 when one of its negative values, else None."""
    if any(_same_value(raw, v) for v in signal.positive):
        return 1
    if any(_same_value(raw, v) for v in signal.negative):
        return 0
    return None


def _signals_of(record: dict[str, Any], signals: Signals) -> tuple[dict[str, int], tuple[str, str] | None]:
    """(signal -> 1/0 for the signals the line sets, (key, problem) for a key whose value no signal knows)."""
    found: dict[str, int] = {}
    for name, signal in signals.items():
        value = signal_value(signal, record.get(signal.key))
        if value is not None:
            found[name] = value
    for key in sorted({s.key for s in signals.values()}):
        raw = record.get(key)
        if raw is None or any(signals[n].key == key for n in found):
            continue
        if key == "feedback" and is_number(raw) and float(raw) in (-1.0, 0.0, 1.0):
            continue  # the contract's own -1/0/1
        known = {n: [*s.positive, *s.negative] for n, s in signals.items() if s.key == key}
        return found, (key, f"{key}: {raw!r} is none of the values feedback.signals gives this key ({known}); "
                            f"add it to the signal's positive or negative values, or fix the line"[:400])
    return found, None


def _parse_labelled_at(raw_at: Any) -> tuple[datetime | None, str | None]:
    """(UTC time, problem): ISO-8601 with a UTC offset, or a date alone meaning the end of that UTC day."""
    if raw_at is None:
        return None, None
    if not isinstance(raw_at, str):
        return None, f"labelled_at: expected an ISO-8601 string, got {type(raw_at).__name__}"
    if len(raw_at) == 10:
        try:
            return datetime.combine(date.fromisoformat(raw_at), END_OF_DAY), None
        except ValueError:
            return None, f"labelled_at: not an ISO-8601 date: {raw_at!r}"
    try:
        labelled_at = datetime.fromisoformat(raw_at.replace("Z", "+00:00"))
    except ValueError:
        return None, f"labelled_at: not ISO-8601: {raw_at[:40]!r}"
    if labelled_at.tzinfo is None:
        return None, f"labelled_at: no UTC offset in {raw_at[:40]!r} (give one, e.g. {raw_at[:19]}Z, or a date alone for the end of that UTC day)"
    return labelled_at.astimezone(UTC), None


def _parse_label(raw_label: Any) -> tuple[str | None, float | None, str | None]:
    """(label as text, label as a number where it is one, problem)."""
    if raw_label is None:
        return None, None, None
    if isinstance(raw_label, str):
        try:
            number = float(raw_label)
        except ValueError:
            return raw_label, None, None
        return raw_label, (number if math.isfinite(number) else None), None
    if is_number(raw_label):
        if not math.isfinite(float(raw_label)):
            return None, None, f"label: {raw_label!r} is not a finite number"
        return repr(raw_label), float(raw_label), None
    if isinstance(raw_label, bool):
        return repr(raw_label), None, None
    return None, None, f"label: expected a string or a number, got {type(raw_label).__name__}"


def _parse_label_record(record: Any, signals: Signals | None = None) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    """(label row, (rule, problem)) for one decoded JSON value; exactly one of them is None."""
    if not isinstance(record, dict):
        return None, ("line", f"a label line must be a JSON object, got {type(record).__name__}")
    request_id = record.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        return None, ("request_id", f"request_id: expected a non-empty string, got {request_id!r}"[:200])
    label, label_value, problem = _parse_label(record.get("label"))
    if problem is not None:
        return None, ("label", problem)
    found, signal_problem = _signals_of(record, signals or {})
    if signal_problem is not None:
        return None, signal_problem
    feedback = record.get("feedback")
    if feedback is not None:
        if is_number(feedback) and float(feedback) in (-1.0, 0.0, 1.0):
            feedback = int(feedback)
        elif any(s.key == "feedback" for s in (signals or {}).values()):
            feedback = None  # a signal's own value ("down"): it is in signals
        else:
            return None, ("feedback", f"feedback: expected -1, 0 or 1, got {feedback!r}"[:200])
    if label is None and feedback is None and not found:
        keys = sorted({"label", "feedback", *(s.key for s in (signals or {}).values())})
        return None, ("no_ground_truth", f"none of {keys} is set: the line carries no label or feedback")
    labelled_at, problem = _parse_labelled_at(record.get("labelled_at"))
    if problem is not None:
        return None, ("labelled_at", problem)
    row = {"request_id": request_id, "label": label, "label_value": label_value, "feedback": feedback,
           "signals": json.dumps(found, sort_keys=True) if found else None, "labelled_at": labelled_at}
    return row, None


def parse_label_lines(data: bytes, source: str, signals: Signals | None = None) -> tuple[list[dict[str, Any]], list[LabelProblem], int]:
    """Parse one labels file (JSON lines, gzipped when ``source`` ends in ``.gz``).

    Returns (rows, problems, non-blank lines). Line numbers are 1-based positions in the
    decompressed file, blank lines included, so that ``sed -n Np`` finds them. A damaged
    gzip keeps the lines before the damage and is reported as the log reader reports it
    (``ingest.readers.json_lines``): a file problem (line None), and the line it cut as a problem.
    ``signals`` are the model's feedback signals (``feedback.signals``), read from the keys they name.
    """
    split = json_lines(data, source, gzipped=source.lower().endswith(".gz"))
    problems: list[LabelProblem] = [LabelProblem(source, None, split.problem, rule="file")] if split.problem else []
    rows: list[dict[str, Any]] = []
    lines_read = 0
    for number, raw in enumerate(split.lines, start=1):
        if not raw.strip():
            continue
        lines_read += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(LabelProblem(source, number, f"line is not UTF-8 (bad byte at offset {exc.start})", raw.decode("utf-8", "backslashreplace")[:RAW_LIMIT], "utf8"))
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(LabelProblem(source, number, f"not valid JSON ({exc.msg} at column {exc.colno})", text[:RAW_LIMIT], "json"))
            continue
        except RecursionError:
            problems.append(LabelProblem(source, number, "JSON nested too deeply to read; labels are flat objects", text[:RAW_LIMIT], "json"))
            continue
        row, problem = _parse_label_record(record, signals)
        if problem is not None:
            problems.append(LabelProblem(source, number, problem[1], text[:RAW_LIMIT], problem[0]))
            continue
        assert row is not None
        row["_source"], row["_line"] = source, number
        rows.append(row)
    if split.cut is not None:
        lines_read += 1
        problems.append(LabelProblem(source, len(split.lines) + 1, CUT_LINE, split.cut.decode("utf-8", "backslashreplace")[:RAW_LIMIT], "cut"))
    return rows, problems, lines_read


def read_labels(client: Any, labels_uri: str, model_id: str, days: Sequence[date], signals: Signals | None = None) -> LabelRead:
    """Read delayed labels ``{labels_uri}/model_id=M/dt=D/*.jsonl[.gz]`` for the given days.

    ``client`` is a boto3 S3 client (see ``modelwatch.storage.s3``). A day with no label file is
    not an error (labels arrive late): it is listed in ``days_without_labels``. Every bad line
    becomes a ``LabelProblem`` with its file URI and 1-based line number; objects that are not
    ``.jsonl``/``.jsonl.gz`` are listed in ``skipped_files``. Columns follow ``LABELS_SCHEMA``; ``signals``
    (the model's ``feedback.signals``) fill its ``signals`` column.
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
            file_rows, problems, lines = parse_label_lines(get_bytes(client, uri), uri, signals)
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
    adds ``label``, ``label_value``, ``signals`` (JSON of the feedback signals), ``labelled_at`` and a boolean ``_labelled``.
    """
    if "request_id" not in predictions.columns or "request_id" not in labels.columns:
        raise ValueError("both frames need a request_id column")
    lab = labels.copy()
    for column in ("label", "label_value", "feedback", "signals", "labelled_at"):
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
    label_cols = kept[kept["request_id"].notna()][["request_id", "label", "label_value", "feedback", "signals", "labelled_at"]].rename(columns={"feedback": "_label_feedback"})
    label_cols = label_cols.assign(_labelled=True)
    base = predictions.drop(columns=[c for c in ("label", "label_value", "signals", "labelled_at", "_labelled") if c in predictions.columns])
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
