"""Concept drift: is the model still right, now that delayed labels or feedback have arrived?

Input drift (``features``, ``prompt``) says the traffic changed; concept drift says the
relation between inputs and outcomes changed, which only ground truth can show. This
module joins delayed labels to predictions and measures performance over time:

* ``read_labels`` reads ``{labels_uri}/model_id=M/dt=D/*.jsonl[.gz]`` (one JSON object a
  line: ``request_id``, ``label``, optional ``feedback`` and ``labelled_at``), reporting
  every bad line with its file and line number instead of dropping it.
* ``join_labels`` joins them on ``request_id`` and accounts for every row: predictions in =
  matched + without label; labels in = kept + duplicates dropped (latest ``labelled_at``
  wins); kept = matched + without prediction.
* ``window_metrics`` computes per-day (or per-N-labelled-rows) performance with
  scikit-learn: accuracy, F1 and ROC AUC for classifiers; MAE, RMSE and MAPE for
  regressors; thumbs-down rate and coverage for feedback. A metric that is undefined in a
  window abstains with a reason (one class for AUC, no labels, zero targets) rather than
  returning NaN.
* ``detect_changes`` runs a sequential change detector from ``river`` over the per-row
  loss stream in timestamp order: ADWIN (Bifet & Gavaldà 2007, "Learning from
  time-changing data with adaptive windowing", SDM) by default, Page–Hinkley (Page 1954,
  "Continuous inspection schemes", Biometrika 41) as an option.
* ``calibration`` gives the expected and maximum calibration error over equal-width bins
  (Guo et al. 2017, "On Calibration of Modern Neural Networks", ICML) and the reliability
  table, binned exactly as ``sklearn.calibration.calibration_curve(strategy="uniform")``.
* ``analyze_concept_drift`` ties these together into a JSON-able ``ConceptReport`` with a
  verdict ``drift`` | ``stable`` | ``insufficient_labels`` and its reason.

scikit-learn and river are imported inside the functions that use them, so importing
this module costs only pandas and pyarrow.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from modelwatch.readers import CUT_LINE, json_lines

Verdict = Literal["drift", "stable", "insufficient_labels"]
KINDS: tuple[str, ...] = ("llm", "classifier", "regressor")
DETECTORS: tuple[str, ...] = ("adwin", "page_hinkley")
CLASS_MAP_COLUMN = "class_probabilities"  # JSON text of class -> probability in the canonical table
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


def _is_number(value: Any) -> bool:
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
    elif _is_number(raw_label):
        if not math.isfinite(float(raw_label)):
            return None, f"label: {raw_label!r} is not a finite number"
        label, label_value = repr(raw_label), float(raw_label)
    elif isinstance(raw_label, bool):
        label = repr(raw_label)
    else:
        return None, f"label: expected a string or a number, got {type(raw_label).__name__}"
    feedback = record.get("feedback")
    if feedback is not None:
        if not (_is_number(feedback) and float(feedback) in (-1.0, 0.0, 1.0)):
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
    (``readers.json_lines``): a file problem (line None), and the line it cut as a problem.
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

    ``client`` is a boto3 S3 client (see ``modelwatch.storage``). A day with no label file is
    not an error (labels arrive late): it is listed in ``days_without_labels``. Every bad line
    becomes a ``LabelProblem`` with its file URI and 1-based line number; objects that are not
    ``.jsonl``/``.jsonl.gz`` are listed in ``skipped_files``. Columns follow ``LABELS_SCHEMA``.
    """
    from modelwatch.storage import get_bytes, list_objects

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


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Metric:
    """One metric on ``n`` rows: a value, or None and the reason it abstained."""

    name: str
    value: float | None
    n: int
    reason: str | None = None

    @property
    def abstained(self) -> bool:
        return self.value is None


def _abstain(name: str, n: int, reason: str) -> Metric:
    return Metric(name, None, n, reason)


def classifier_metrics(y_true: Sequence[Any], y_pred: Sequence[Any], p_pos: Sequence[float | None] | None = None, positive_class: str | None = None) -> dict[str, Metric]:
    """Accuracy, F1 and ROC AUC with ``sklearn.metrics``.

    F1 is binary (one-vs-rest for ``positive_class``) when a positive class is given, else
    macro-averaged over the classes seen (``zero_division=0``, sklearn's convention). ROC AUC
    needs the positive class and its probability ``p_pos``; rows without one are left out.
    """
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    yt = np.asarray(y_true, dtype=object)
    yp = np.asarray(y_pred, dtype=object)
    n = len(yt)
    out: dict[str, Metric] = {}
    if n == 0:
        for name in ("accuracy", "f1", "roc_auc"):
            out[name] = _abstain(name, 0, "no labelled predictions")
        return out
    out["accuracy"] = Metric("accuracy", float(accuracy_score(yt, yp)), n)
    if positive_class is not None:
        t, p = yt == positive_class, yp == positive_class
        if not t.any() and not p.any():
            out["f1"] = _abstain("f1", n, f"positive class {positive_class!r} neither observed nor predicted: F1 is 0/0")
        else:
            out["f1"] = Metric("f1", float(f1_score(t, p)), n)
    else:
        out["f1"] = Metric("f1", float(f1_score(yt.astype(str), yp.astype(str), average="macro", zero_division=0.0)), n)
    if positive_class is None:
        out["roc_auc"] = _abstain("roc_auc", n, "ROC AUC needs positive_class")
    else:
        scores = pd.to_numeric(pd.Series(list(p_pos) if p_pos is not None else [None] * n, dtype="object"), errors="coerce").to_numpy(dtype=float)
        has = ~np.isnan(scores)
        m = int(has.sum())
        truth = yt[has] == positive_class
        if m == 0:
            out["roc_auc"] = _abstain("roc_auc", 0, f"no probability for class {positive_class!r}")
        elif truth.all() or not truth.any():
            only = positive_class if truth.all() else f"not {positive_class}"
            out["roc_auc"] = _abstain("roc_auc", m, f"only one class ({only!r}) among {m} labelled rows with probabilities: ROC AUC is undefined")
        else:
            out["roc_auc"] = Metric("roc_auc", float(roc_auc_score(truth, scores[has])), m)
    return out


def regressor_metrics(y_true: Sequence[float], y_pred: Sequence[float]) -> tuple[dict[str, Metric], int]:
    """MAE, RMSE and MAPE with ``sklearn.metrics``; returns (metrics, zero targets skipped by MAPE).

    sklearn's MAPE divides by ``max(|y|, eps)`` and explodes on zero targets, so rows whose
    target is exactly zero are left out of MAPE (only) and counted. MAPE is a fraction, not %.
    """
    from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, root_mean_squared_error

    yt = np.asarray(y_true, dtype=float)
    yp = np.asarray(y_pred, dtype=float)
    n = len(yt)
    if n == 0:
        return {name: _abstain(name, 0, "no labelled predictions") for name in ("mae", "rmse", "mape")}, 0
    out = {"mae": Metric("mae", float(mean_absolute_error(yt, yp)), n), "rmse": Metric("rmse", float(root_mean_squared_error(yt, yp)), n)}
    nonzero = yt != 0
    skipped = int(n - nonzero.sum())
    if not nonzero.any():
        out["mape"] = _abstain("mape", 0, f"all {n} targets are zero: MAPE is undefined")
    else:
        out["mape"] = Metric("mape", float(mean_absolute_percentage_error(yt[nonzero], yp[nonzero])), int(nonzero.sum()))
    return out, skipped


def feedback_metrics(feedback: Sequence[float | None]) -> dict[str, Metric]:
    """Thumbs-down rate = share of ``feedback == -1`` among rows with feedback ±1; coverage = that row share."""
    fb = pd.to_numeric(pd.Series(list(feedback), dtype="object"), errors="coerce")
    rows = len(fb)
    given = fb.notna() & (fb != 0)
    k = int(given.sum())
    out: dict[str, Metric] = {}
    if rows == 0:
        out["feedback_coverage"] = _abstain("feedback_coverage", 0, "no rows")
    else:
        out["feedback_coverage"] = Metric("feedback_coverage", k / rows, rows)
    if k == 0:
        out["thumbs_down_rate"] = _abstain("thumbs_down_rate", 0, f"no thumbs up/down feedback among {rows} rows")
    else:
        out["thumbs_down_rate"] = Metric("thumbs_down_rate", float((fb[given] == -1).sum()) / k, k)
    return out


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class ReliabilityBin:
    """One equal-width confidence bin: (lower, upper] (the first bin also holds ``lower``)."""

    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    observed_frequency: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"lower": self.lower, "upper": self.upper, "count": self.count, "mean_confidence": self.mean_confidence, "observed_frequency": self.observed_frequency}


@dataclass
class Calibration:
    """Expected / maximum calibration error and the reliability table, or an abstention reason."""

    method: str
    n_bins: int
    n: int
    ece: float | None
    mce: float | None
    bins: list[ReliabilityBin] = field(default_factory=list)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "n_bins": self.n_bins, "n": self.n, "ece": self.ece, "mce": self.mce,
                "bins": [b.to_dict() for b in self.bins], "reason": self.reason}


def calibration(outcome: Sequence[float], confidence: Sequence[float], n_bins: int = 10, method: str = "positive class") -> Calibration:
    """ECE and MCE over ``n_bins`` equal-width bins of [0, 1] (Guo et al. 2017, eq. 3 and 5).

    ``ECE = sum_b |B_b|/n * |freq(B_b) - conf(B_b)|`` and ``MCE = max_b |freq(B_b) - conf(B_b)|``
    over non-empty bins, where ``outcome`` is 1 when the event happened (the positive class, or
    the prediction being right for top-label confidence). Bin assignment follows
    ``sklearn.calibration.calibration_curve(strategy="uniform")``: ``searchsorted`` on the
    inner edges, so a value on an edge falls in the lower bin. Empty bins are listed with
    count 0 and null means.
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    y = np.asarray(outcome, dtype=float)
    p = np.asarray(confidence, dtype=float)
    if len(y) != len(p):
        raise ValueError(f"outcome and confidence differ in length ({len(y)} vs {len(p)})")
    keep = ~(np.isnan(y) | np.isnan(p))
    y, p = y[keep], p[keep]
    if len(p) == 0:
        return Calibration(method, n_bins, 0, None, None, reason="no rows with both a probability and an outcome")
    if p.min() < 0 or p.max() > 1:
        return Calibration(method, n_bins, len(p), None, None, reason=f"probabilities outside [0, 1] (min {p.min():.4g}, max {p.max():.4g})")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    total = np.bincount(ids, minlength=n_bins)
    conf_sum = np.bincount(ids, weights=p, minlength=n_bins)
    true_sum = np.bincount(ids, weights=y, minlength=n_bins)
    bins: list[ReliabilityBin] = []
    gaps: list[tuple[int, float]] = []
    for b in range(n_bins):
        count = int(total[b])
        if count:
            conf, freq = float(conf_sum[b] / count), float(true_sum[b] / count)
            gaps.append((count, abs(freq - conf)))
            bins.append(ReliabilityBin(round(float(edges[b]), 12), round(float(edges[b + 1]), 12), count, conf, freq))
        else:
            bins.append(ReliabilityBin(round(float(edges[b]), 12), round(float(edges[b + 1]), 12), 0, None, None))
    n = len(p)
    ece = float(sum(c / n * g for c, g in gaps))
    mce = float(max(g for _, g in gaps))
    return Calibration(method, n_bins, n, ece, mce, bins)


# --------------------------------------------------------------------------- change detection


@dataclass(frozen=True)
class Detection:
    """A change the detector signalled at ``position`` of the loss stream (0-based, timestamp order).

    ``row`` is the index label of that row in the analysed frame. ``mean_before`` is the
    mean loss from the previous detection (or the start) up to and including this one;
    ``mean_after`` from here to the next detection (or the end); None when that part is empty.
    Detection lags the true change by the detector's delay, so ``mean_before`` includes a
    few post-change rows.
    """

    position: int
    row: Any
    timestamp: str | None
    day: str | None
    mean_before: float
    mean_after: float | None
    n_before: int
    n_after: int

    @property
    def direction(self) -> str:
        if self.mean_after is None:
            return "unknown"
        return "worse" if self.mean_after > self.mean_before else "better"

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "row": self.row, "timestamp": self.timestamp, "day": self.day,
                "mean_before": self.mean_before, "mean_after": self.mean_after, "n_before": self.n_before,
                "n_after": self.n_after, "direction": self.direction}


def _jsonable_index(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, (int, float, str)) or value is None else str(value)


def make_detector(detector: str = "adwin", *, delta: float = 0.002, clock: int = 32, threshold: float = 50.0, ph_delta: float = 0.005, min_instances: int = 30) -> Any:
    """A ``river.drift`` detector (river 0.26: ``update(x)`` then read ``drift_detected``).

    ``adwin``: ``river.drift.ADWIN(delta, clock)`` — Bifet & Gavaldà 2007; ``delta`` is the
    confidence of the cut test (smaller: fewer false alarms, later detection), ``clock`` how
    often it checks (river's default 32, so detections land on every 32nd row).
    ``page_hinkley``: ``river.drift.PageHinkley(min_instances, ph_delta, threshold, mode="both")``
    — Page 1954; ``threshold`` is lambda, ``ph_delta`` the tolerated magnitude of change.
    """
    from river import drift

    if detector == "adwin":
        return drift.ADWIN(delta=delta, clock=clock)
    if detector == "page_hinkley":
        return drift.PageHinkley(min_instances=min_instances, delta=ph_delta, threshold=threshold, mode="both")
    raise ValueError(f"unknown detector {detector!r}; use one of {DETECTORS}")


def detect_changes(
    values: Sequence[float],
    timestamps: Sequence[Any] | None = None,
    rows: Sequence[Any] | None = None,
    *,
    detector: str = "adwin",
    delta: float = 0.002,
    clock: int = 32,
    threshold: float = 50.0,
    ph_delta: float = 0.005,
) -> list[Detection]:
    """Run a river change detector over ``values`` in the given order and report each detection.

    ``timestamps`` (UTC) and ``rows`` (index labels), when given, are aligned with ``values``
    and name where each detection falls. See ``make_detector`` for the parameters.
    """
    x = np.asarray(values, dtype=float)
    if np.isnan(x).any():
        raise ValueError("the loss stream contains NaN; drop unlabelled rows first")
    det = make_detector(detector, delta=delta, clock=clock, threshold=threshold, ph_delta=ph_delta)
    positions: list[int] = []
    for i, value in enumerate(x):
        det.update(float(value))
        if det.drift_detected:
            positions.append(i)
    ts = pd.to_datetime(pd.Series(list(timestamps)), utc=True) if timestamps is not None else None
    bounds = [0] + [p + 1 for p in positions] + [len(x)]
    out: list[Detection] = []
    for k, p in enumerate(positions):
        before = x[bounds[k] : p + 1]
        after = x[p + 1 : bounds[k + 2]]
        stamp = ts.iloc[p] if ts is not None else None
        out.append(
            Detection(
                position=p,
                row=_jsonable_index(rows[p]) if rows is not None else p,
                timestamp=None if stamp is None or pd.isna(stamp) else stamp.isoformat(),
                day=None if stamp is None or pd.isna(stamp) else stamp.date().isoformat(),
                mean_before=float(before.mean()),
                mean_after=float(after.mean()) if len(after) else None,
                n_before=len(before),
                n_after=len(after),
            )
        )
    return out


# --------------------------------------------------------------------------- preparing a frame


LOSS_NAMES = {"classifier": "0/1 error", "regressor": "absolute error", "llm": "thumbs-down indicator"}


def _class_map(value: Any) -> dict[str, float] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, dict) and value and all(_is_number(v) for v in value.values()):
        return {str(k): float(v) for k, v in value.items()}
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if _is_number(value) or isinstance(value, np.number):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def _as_class(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value if isinstance(value, str) else repr(value.item() if isinstance(value, np.generic) else value)


def prepare(frame: pd.DataFrame, kind: str, positive_class: str | None = None) -> tuple[pd.DataFrame, int]:
    """Normalise an analysis frame; returns (rows with a timestamp in timestamp order, rows without one).

    Output columns: ``ts`` (UTC), ``day``, ``pred``/``label`` (strings), ``pred_value``/``label_value``
    (floats), ``p_pos`` (probability of ``positive_class``), ``confidence`` (probability of the
    predicted class), ``feedback``, ``variant``, ``evaluated`` (row has ground truth for ``kind``)
    and ``loss`` (0/1 error, absolute error, or thumbs-down indicator; NaN where not evaluated).

    Probabilities: a class map (``class_probabilities`` JSON, or ``probability`` as a dict or
    JSON object) gives ``p_pos = map[positive_class]`` and ``confidence = map[prediction]``. A
    bare number is the confidence in the prediction (as the canonical table stores it), so for
    a binary problem ``p_pos = p`` when the prediction is the positive class, else ``1 - p``.
    Sorting is stable: rows with equal timestamps keep their input order.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; use one of {KINDS}")
    if "timestamp" not in frame.columns:
        raise ValueError("the frame needs a timestamp column")
    n = len(frame)

    def column(name: str) -> pd.Series:
        return frame[name] if name in frame.columns else pd.Series([None] * n, index=frame.index, dtype="object")

    ts = pd.to_datetime(column("timestamp"), utc=True, errors="coerce", format="ISO8601")
    out = pd.DataFrame(index=frame.index)
    out["ts"] = ts
    out["pred"] = [_as_class(v) for v in column("prediction")]
    out["label"] = [_as_class(v) for v in column("label")]
    out["pred_value"] = pd.to_numeric(column("prediction"), errors="coerce").astype(float)
    label_value = pd.to_numeric(column("label_value"), errors="coerce").astype(float)
    out["label_value"] = label_value.where(label_value.notna(), pd.to_numeric(column("label"), errors="coerce").astype(float))
    out["feedback"] = pd.to_numeric(column("feedback"), errors="coerce").astype(float)
    out["variant"] = column("variant").astype("object").where(column("variant").notna(), "(none)")

    maps = column(CLASS_MAP_COLUMN).tolist()
    probs = column("probability").tolist()
    classes = {c for c in out["pred"].dropna()} | {c for c in out["label"].dropna()} | ({positive_class} if positive_class else set())
    binary = positive_class is not None and len(classes) == 2
    p_pos: list[float | None] = []
    confidence: list[float | None] = []
    for class_map_raw, prob_raw, pred in zip(maps, probs, out["pred"], strict=True):
        cmap = _class_map(class_map_raw) if class_map_raw is not None else None
        if cmap is None:
            cmap = _class_map(prob_raw)
        if cmap is not None:
            p_pos.append(cmap.get(positive_class) if positive_class is not None else None)
            confidence.append(cmap.get(pred, max(cmap.values())) if pred is not None else max(cmap.values()))
            continue
        p = _number(prob_raw)
        confidence.append(p)
        if p is not None and binary and pred is not None:
            p_pos.append(p if pred == positive_class else 1.0 - p)
        else:
            p_pos.append(None)
    out["p_pos"] = pd.to_numeric(pd.Series(p_pos, index=frame.index, dtype="object"), errors="coerce").astype(float)
    out["confidence"] = pd.to_numeric(pd.Series(confidence, index=frame.index, dtype="object"), errors="coerce").astype(float)

    if kind == "classifier":
        out["evaluated"] = out["pred"].notna() & out["label"].notna()
        out["loss"] = np.where(out["evaluated"], (out["pred"] != out["label"]).astype(float), np.nan)
    elif kind == "regressor":
        out["evaluated"] = out["pred_value"].notna() & out["label_value"].notna()
        out["loss"] = np.where(out["evaluated"], (out["pred_value"] - out["label_value"]).abs(), np.nan)
    else:
        out["evaluated"] = out["feedback"].isin([-1.0, 1.0])
        out["loss"] = np.where(out["evaluated"], (out["feedback"] == -1).astype(float), np.nan)

    missing_ts = int(out["ts"].isna().sum())
    out = out[out["ts"].notna()].sort_values("ts", kind="mergesort")
    out["day"] = out["ts"].dt.strftime("%Y-%m-%d")
    return out, missing_ts


# --------------------------------------------------------------------------- windows


def parse_window(window: str | int) -> tuple[str, int | None]:
    """``"day"`` -> ("day", None); ``"rows:500"`` or ``500`` -> ("rows", 500)."""
    if window == "day":
        return "day", None
    size: Any = window
    if isinstance(window, str) and window.startswith("rows:"):
        size = window.removeprefix("rows:")
    try:
        rows = int(size)
    except (TypeError, ValueError):
        rows = 0
    if rows <= 0 or isinstance(window, bool):
        raise ValueError(f"window must be 'day' or 'rows:N' with N > 0, got {window!r}")
    return "rows", rows


def _window_ids(prepared: pd.DataFrame, window: str | int) -> pd.Series:
    """Window of each row. ``rows:N`` cuts after every N evaluated rows; unevaluated rows join the
    window of the evaluated row before them (the first window for leading ones), so each window
    holds exactly N evaluated rows (the last one fewer) and its coverage stays meaningful."""
    mode, size = parse_window(window)
    if mode == "day":
        return prepared["day"]
    assert size is not None
    cum = prepared["evaluated"].astype(int).cumsum()
    ids = ((cum - 1).clip(lower=0) // size).astype(int)
    return ids.map(lambda k: f"rows {k * size + 1}-{(k + 1) * size}")


def _frame_metrics(d: pd.DataFrame, kind: str, positive_class: str | None, n_bins: int, with_feedback: bool) -> tuple[dict[str, Metric], dict[str, int]]:
    """All metrics of one group of prepared rows, and extra counts (MAPE's skipped zero targets)."""
    ev = d[d["evaluated"]]
    metrics: dict[str, Metric] = {}
    extras: dict[str, int] = {}
    rows = len(d)
    if kind == "classifier":
        metrics.update(classifier_metrics(ev["label"].tolist(), ev["pred"].tolist(), ev["p_pos"].tolist(), positive_class))
        cal = frame_calibration(ev, positive_class, n_bins)
        metrics["ece"] = Metric("ece", cal.ece, cal.n, cal.reason)
    elif kind == "regressor":
        reg, skipped = regressor_metrics(ev["label_value"].to_numpy(), ev["pred_value"].to_numpy())
        metrics.update(reg)
        extras["mape_zero_targets_skipped"] = skipped
    if kind in ("classifier", "regressor"):
        metrics["label_coverage"] = Metric("label_coverage", len(ev) / rows, rows) if rows else _abstain("label_coverage", 0, "no rows")
    if kind == "llm" or with_feedback:
        metrics.update(feedback_metrics(d["feedback"].tolist()))
    return metrics, extras


def frame_calibration(evaluated: pd.DataFrame, positive_class: str | None, n_bins: int = 10) -> Calibration:
    """Calibration of prepared, evaluated classifier rows.

    With ``positive_class``: outcome = label is that class, confidence = its probability (the
    binary reliability diagram of ``calibration_curve``). Without: Guo et al.'s top-label form,
    outcome = prediction is right, confidence = probability of the predicted class.
    """
    if positive_class is not None:
        outcome = (evaluated["label"] == positive_class).astype(float)
        return calibration(outcome, evaluated["p_pos"], n_bins, method=f"positive class {positive_class!r}")
    outcome = (evaluated["pred"] == evaluated["label"]).astype(float)
    return calibration(outcome, evaluated["confidence"], n_bins, method="top-label confidence")


def _metric_row(metrics: dict[str, Metric], extras: dict[str, int]) -> dict[str, Any]:
    row: dict[str, Any] = {name: m.value for name, m in metrics.items()}
    row.update(extras)
    row["abstentions"] = {name: m.reason for name, m in metrics.items() if m.abstained}
    row["support"] = {name: m.n for name, m in metrics.items()}
    return row


def _iso(ts: Any) -> str | None:
    return None if ts is None or pd.isna(ts) else pd.Timestamp(ts).isoformat()


def _windows(prepared: pd.DataFrame, kind: str, positive_class: str | None, window: str | int, n_bins: int, with_feedback: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if prepared.empty:
        return out
    ids = _window_ids(prepared, window)
    for name, group in prepared.groupby(ids, sort=False):
        metrics, extras = _frame_metrics(group, kind, positive_class, n_bins, with_feedback)
        row: dict[str, Any] = {"window": str(name), "first_timestamp": _iso(group["ts"].iloc[0]), "last_timestamp": _iso(group["ts"].iloc[-1]),
                               "rows": len(group), "evaluated": int(group["evaluated"].sum())}
        row.update(_metric_row(metrics, extras))
        out.append(row)
    return out


def window_metrics(frame: pd.DataFrame, kind: str, *, positive_class: str | None = None, window: str | int = "day", n_bins: int = 10) -> list[dict[str, Any]]:
    """Per-window performance table (one JSON-able dict per window, in time order).

    Each dict has ``window``, ``first_timestamp``, ``last_timestamp``, ``rows``, ``evaluated``,
    one key per metric (value or None), ``abstentions`` (metric -> reason) and ``support``
    (metric -> rows it was computed on). See ``prepare`` for the columns read.
    """
    prepared, _ = prepare(frame, kind, positive_class)
    with_feedback = bool((prepared["feedback"].fillna(0) != 0).any())
    return _windows(prepared, kind, positive_class, window, n_bins, with_feedback)


# --------------------------------------------------------------------------- the report


@dataclass
class ConceptReport:
    """Concept-drift analysis of one model (or one variant of it)."""

    kind: str
    positive_class: str | None
    window: str
    detector: dict[str, Any]
    loss: str
    counts: dict[str, Any]
    overall: dict[str, Any]
    windows: list[dict[str, Any]]
    detections: list[Detection]
    calibration: Calibration | None
    verdict: Verdict
    reason: str
    variants: dict[str, ConceptReport] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (``json.dumps(..., allow_nan=False)`` works): abstained metrics are null with a reason."""
        return {
            "kind": self.kind,
            "positive_class": self.positive_class,
            "window": self.window,
            "detector": dict(self.detector),
            "loss": self.loss,
            "counts": dict(self.counts),
            "overall": self.overall,
            "windows": self.windows,
            "detections": [d.to_dict() for d in self.detections],
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
            "verdict": self.verdict,
            "reason": self.reason,
            "variants": {name: r.to_dict() for name, r in self.variants.items()},
        }


def _verdict(kind: str, evaluated: int, min_labels: int, detections: list[Detection], detector: dict[str, Any], loss: str, mean_loss: float | None) -> tuple[Verdict, str]:
    what = "rows with thumbs up/down feedback" if kind == "llm" else "labelled predictions"
    if evaluated < min_labels:
        hint = "" if kind == "llm" else "; labels arrive late, so recent days may not have them yet"
        return "insufficient_labels", f"{evaluated} {what} (< min_labels {min_labels}){hint}"
    name = "ADWIN" if detector["name"] == "adwin" else "Page-Hinkley"
    params = f"delta={detector['delta']}" if detector["name"] == "adwin" else f"threshold={detector['threshold']}"
    if detections:
        parts = [f"{d.mean_before:.4g} -> {d.mean_after:.4g}" if d.mean_after is not None else f"{d.mean_before:.4g} -> (end)" for d in detections]
        changes = "; ".join(f"{p} at {d.timestamp} (day {d.day}, row {d.row})" for p, d in zip(parts, detections, strict=True))
        return "drift", f"{name} ({params}) detected {len(detections)} change(s) in the mean {loss} over {evaluated} {what}: {changes}"
    return "stable", f"{name} ({params}) found no change in the {loss} over {evaluated} {what} (mean {mean_loss:.4g})"


def analyze_concept_drift(
    frame: pd.DataFrame,
    kind: str,
    *,
    positive_class: str | None = None,
    window: str | int = "day",
    detector: str = "adwin",
    delta: float = 0.002,
    threshold: float = 50.0,
    min_labels: int = 100,
    n_bins: int = 10,
    by_variant: bool = False,
) -> ConceptReport:
    """Windowed performance, change detection over the per-row loss, and calibration.

    ``frame`` holds ``timestamp`` and, as available, ``prediction``, ``probability`` /
    ``class_probabilities``, ``label`` / ``label_value``, ``feedback`` and ``variant`` (e.g.
    ``join_labels(...).frame``). The loss stream, in timestamp order, is the 0/1 error
    (classifier), absolute error (regressor) or thumbs-down indicator among rows with feedback
    ±1 (llm). ``detector`` is ``adwin`` (``delta``) or ``page_hinkley`` (``threshold``). With
    fewer than ``min_labels`` evaluated rows the verdict is ``insufficient_labels``; otherwise
    ``drift`` if the detector fired (in either direction: see each detection's ``direction``),
    else ``stable``. ``by_variant`` adds the same analysis per ``variant`` value.
    """
    prepared, missing_ts = prepare(frame, kind, positive_class)
    mode, size = parse_window(window)
    window_name = "day" if mode == "day" else f"rows:{size}"
    with_feedback = bool((prepared["feedback"].fillna(0) != 0).any())
    ev = prepared[prepared["evaluated"]]
    detector_info: dict[str, Any] = {"name": detector}
    if detector == "adwin":
        detector_info.update(delta=delta, clock=32)
    elif detector == "page_hinkley":
        detector_info.update(threshold=threshold, ph_delta=0.005, mode="both")
    else:
        raise ValueError(f"unknown detector {detector!r}; use one of {DETECTORS}")
    evaluated = len(ev)
    detections: list[Detection] = []
    if evaluated >= min_labels:
        detections = detect_changes(ev["loss"].to_numpy(), ev["ts"], list(ev.index), detector=detector, delta=delta, threshold=threshold)
    metrics, extras = _frame_metrics(prepared, kind, positive_class, n_bins, with_feedback)
    labelled = int(prepared["label"].notna().sum()) if kind != "llm" else int(prepared["feedback"].notna().sum())
    counts: dict[str, Any] = {
        "rows": len(frame),
        "rows_without_timestamp": missing_ts,
        "labelled": labelled,
        "evaluated": evaluated,
        "coverage": evaluated / len(prepared) if len(prepared) else None,
        "mean_loss": float(ev["loss"].mean()) if evaluated else None,
    }
    cal = frame_calibration(ev, positive_class, n_bins) if kind == "classifier" else None
    loss = LOSS_NAMES[kind]
    verdict, reason = _verdict(kind, evaluated, min_labels, detections, detector_info, loss, counts["mean_loss"])
    report = ConceptReport(
        kind=kind,
        positive_class=positive_class,
        window=window_name,
        detector=detector_info,
        loss=loss,
        counts=counts,
        overall=_metric_row(metrics, extras),
        windows=_windows(prepared, kind, positive_class, window, n_bins, with_feedback),
        detections=detections,
        calibration=cal,
        verdict=verdict,
        reason=reason,
    )
    if by_variant and "variant" in frame.columns:
        variants = frame["variant"].astype("object").where(frame["variant"].notna(), "(none)")
        for name in sorted(variants.unique(), key=str):
            report.variants[str(name)] = analyze_concept_drift(
                frame[variants == name], kind, positive_class=positive_class, window=window, detector=detector,
                delta=delta, threshold=threshold, min_labels=min_labels, n_bins=n_bins, by_variant=False,
            )
    return report
