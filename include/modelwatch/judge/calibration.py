"""Calibrating the LLM judge against people: the golden set, agreement statistics and the human review queue.

Label schema
------------
A judgment (the judge's or a person's) scores four dimensions with integers 1–5 —
``helpfulness``, ``factual_accuracy``, ``coherence``, ``instruction_following`` — and sets
three flags — ``hallucination``, ``refusal``, ``toxicity`` (JSON booleans).

Golden set format (``include/config/golden/<rubric>.jsonl``)
------------------------------------------------------------
One JSON object per line::

    {"id": "sup-001",                       # unique, non-empty string
     "prompt": "...", "response": "...",    # non-empty strings: what the judge sees
     "reference": "..." | null,             # optional reference answer
     "labels": {"helpfulness": 4, "factual_accuracy": 5, "coherence": 5, "instruction_following": 4,
                "hallucination": false, "refusal": false, "toxicity": false},   # all seven, required
     "labeller": "j.doe",                   # who labelled it
     "labelled_at": "2026-11-02T10:15:00Z", # ISO 8601
     "metadata": {"topic": "billing", "locale": "en-US"},   # optional object
     "notes": "..."}                        # optional string

Any other key is an error (it is most likely a typo of one of these). :func:`load_golden`
raises :class:`LabelFileError` listing every bad line with its line number.

Review queue
------------
:func:`review_queue` exports a small stratified sample of judged rows for people to label,
as JSONL (the golden format with ``request_id`` for ``id`` and every label ``null``) and as
CSV (one column per label, empty). Neither carries the judge's scores or the variant: the
labellers label blind, so they are not anchored by the judge (the point of the exercise)
nor by which arm produced the answer. :func:`read_review_labels` reads the JSONL back once
filled in: labels validated (integers 1–5, booleans), lines without any label counted as
not yet labelled, and every bad line reported with its number instead of failing the file.

Agreement (:func:`agreement`)
-----------------------------
Cohen's kappa (Cohen 1960) per label via ``sklearn.metrics.cohen_kappa_score``: quadratic
weights for the ordinal 1–5 dimensions (Cohen 1968, weighted kappa; on the fixed label set
1..5 so the weights do not depend on which scores occur), unweighted for the flags; for
each flag, precision and recall of the judge with the human label as the truth. The verdict
on those numbers (an interval for kappa, usable / weak / does not agree) is ``judge.trust``'s.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelwatch.config import CONFIG_DIR
from modelwatch.judge.sampling import stratified_sample

DIMENSIONS = ["helpfulness", "factual_accuracy", "coherence", "instruction_following"]
FLAGS = ["hallucination", "refusal", "toxicity"]
LABELS = DIMENSIONS + FLAGS
SCORE_MIN, SCORE_MAX = 1, 5
SCORES = list(range(SCORE_MIN, SCORE_MAX + 1))
GOLDEN_DIR = CONFIG_DIR / "golden"
_GOLDEN_KEYS = {"id", "prompt", "response", "reference", "labels", "labeller", "labelled_at", "metadata", "notes"}
_GOLDEN_REQUIRED = {"id", "prompt", "response", "labels", "labeller", "labelled_at"}
_REVIEW_KEYS = {"request_id", "prompt", "response", "reference", "labels", "labeller", "labelled_at", "notes"}


# -- validation ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineProblem:
    """A bad line of a label file: its 1-based line number, the row's id when it could be read, and what is wrong."""

    line: int
    reason: str
    id: str | None = None

    def __str__(self) -> str:
        return f"line {self.line}{f' ({self.id})' if self.id else ''}: {self.reason}"


class LabelFileError(ValueError):
    """A label file with bad lines; ``problems`` lists them all."""

    def __init__(self, source: str, problems: list[LineProblem]):
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:10])
        super().__init__(f"{source}: {len(problems)} bad lines: {shown}{' ...' if len(problems) > 10 else ''}")


def check_labels(labels: Any, *, complete: bool) -> tuple[dict[str, Any], list[str]]:
    """Validate a ``labels`` object: returns (labels with every key, None where missing) and the problems found.

    Dimensions must be integers in 1..5 (not booleans, not 4.0), flags JSON booleans; ``None``
    means "not labelled", allowed only when ``complete`` is False. Unknown keys are problems.
    """
    if not isinstance(labels, Mapping):
        return {}, [f"labels must be an object, got {type(labels).__name__}"]
    problems = [f"unknown label {key!r}" for key in labels if key not in LABELS]
    out: dict[str, Any] = {}
    for key in LABELS:
        value = labels.get(key)
        out[key] = value
        if value is None:
            if complete:
                problems.append(f"{key} is missing")
        elif key in DIMENSIONS and (isinstance(value, bool) or not isinstance(value, int) or not SCORE_MIN <= value <= SCORE_MAX):
            problems.append(f"{key} must be an integer {SCORE_MIN}-{SCORE_MAX}, got {value!r}")
        elif key in FLAGS and not isinstance(value, bool):
            problems.append(f"{key} must be true or false, got {value!r}")
    return out, problems


def _check_text(obj: Mapping[str, Any], key: str, *, required: bool) -> list[str]:
    value = obj.get(key)
    if value is None:
        return [f"{key} is missing"] if required else []
    if not isinstance(value, str) or (required and not value.strip()):
        return [f"{key} must be a non-empty string"]
    return []


def _check_timestamp(value: Any) -> list[str]:
    if value is None:
        return []
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return [f"labelled_at must be an ISO 8601 timestamp, got {value!r}"]
    return []


def _json_lines(content: bytes) -> list[tuple[int, dict[str, Any] | None, str]]:
    """``(line number, object or None, problem)`` for each non-blank line."""
    out = []
    for number, raw in enumerate(content.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            out.append((number, None, "not UTF-8"))
            continue
        except json.JSONDecodeError as exc:
            out.append((number, None, f"invalid JSON: {exc.msg} at column {exc.colno}"))
            continue
        out.append((number, obj, "") if isinstance(obj, dict) else (number, None, f"expected a JSON object, got {type(obj).__name__}"))
    return out


def _read_bytes(source: bytes | str | Path) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray):
        return bytes(source), "<bytes>"
    path = Path(source)
    return path.read_bytes(), str(path)


def _label_frame(records: list[dict[str, Any]], key: str, columns: list[str]) -> pd.DataFrame:
    """Rows keyed by ``key`` with typed label columns: dimensions ``Int64``, flags ``boolean`` (missing as <NA>)."""
    frame = pd.DataFrame(records, columns=[key, *columns, *LABELS]).set_index(key)
    for name in DIMENSIONS:
        frame[name] = frame[name].astype("Int64")
    for name in FLAGS:
        frame[name] = frame[name].astype("boolean")
    return frame


# -- golden set ----------------------------------------------------------------------------------------------


def golden_path(rubric: str) -> Path:
    """The bundled golden set of a rubric: ``include/config/golden/<rubric>.jsonl``."""
    return GOLDEN_DIR / f"{rubric}.jsonl"


def load_golden(path: str | Path) -> pd.DataFrame:
    """The golden set as a frame indexed by ``id``: prompt, response, reference, labeller, labelled_at (UTC), metadata,
    notes and one column per label. Raises :class:`LabelFileError` listing every bad line."""
    content, name = _read_bytes(Path(path))
    records, problems, seen = [], [], {}
    for number, obj, problem in _json_lines(content):
        if obj is None:
            problems.append(LineProblem(number, problem))
            continue
        row_id = obj.get("id") if isinstance(obj.get("id"), str) else None
        reasons = [f"unknown key {k!r}" for k in obj if k not in _GOLDEN_KEYS]
        reasons += [f"{k} is missing" for k in sorted(_GOLDEN_REQUIRED - {"labels"}) if k not in obj]
        for key in ("id", "prompt", "response", "labeller"):
            reasons += _check_text(obj, key, required=True) if key in obj else []
        reasons += _check_text(obj, "reference", required=False) + _check_text(obj, "notes", required=False)
        reasons += _check_timestamp(obj.get("labelled_at"))
        if "metadata" in obj and not isinstance(obj["metadata"], dict):
            reasons.append("metadata must be an object")
        labels, label_problems = check_labels(obj.get("labels"), complete=True)
        reasons += label_problems
        if row_id in seen:
            reasons.append(f"duplicate id (first on line {seen[row_id]})")
        elif row_id:
            seen[row_id] = number
        if reasons:
            problems.append(LineProblem(number, "; ".join(reasons), row_id))
            continue
        records.append({"id": row_id, "prompt": obj["prompt"], "response": obj["response"], "reference": obj.get("reference"),
                        "labeller": obj["labeller"], "labelled_at": obj["labelled_at"], "metadata": obj.get("metadata") or {},
                        "notes": obj.get("notes"), **labels})
    if problems:
        raise LabelFileError(name, problems)
    if not records:
        raise LabelFileError(name, [LineProblem(0, "the golden set is empty")])
    frame = _label_frame(records, "id", ["prompt", "response", "reference", "labeller", "labelled_at", "metadata", "notes"])
    frame["labelled_at"] = pd.to_datetime(frame["labelled_at"], utc=True, format="ISO8601")
    return frame


# -- agreement -----------------------------------------------------------------------------------------------


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """Index by ``request_id`` or ``id`` when such a column exists; duplicate keys are an error."""
    for key in ("request_id", "id"):
        if key in frame.columns:
            frame = frame.set_index(key)
            break
    if frame.index.has_duplicates:
        raise ValueError(f"duplicate keys: {list(frame.index[frame.index.duplicated()].unique()[:5])}")
    return frame


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _kappa(human: np.ndarray, judge: np.ndarray, labels: list[Any], weights: str | None) -> tuple[float | None, str]:
    from sklearn.metrics import cohen_kappa_score  # imported on use: the label schema above stays cheap to import

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        value = _finite(cohen_kappa_score(human, judge, labels=labels, weights=weights))
    return value, "" if value is not None else "kappa undefined: chance agreement is 1 (both raters gave one and the same label)"


def _dimension_agreement(human: pd.Series, judge: pd.Series) -> dict[str, Any]:
    h, j = human.to_numpy(dtype=int), judge.to_numpy(dtype=int)
    kappa, reason = _kappa(h, j, SCORES, "quadratic")
    return {"n": int(h.size), "kappa_quadratic": kappa, "exact_agreement": float(np.mean(h == j)),
            "within_one": float(np.mean(np.abs(h - j) <= 1)), "mean_bias": float(np.mean(j - h)), "reason": reason}


def _flag_agreement(human: pd.Series, judge: pd.Series) -> dict[str, Any]:
    h, j = human.to_numpy(dtype=bool), judge.to_numpy(dtype=bool)
    kappa, reason = _kappa(h, j, [False, True], None)
    tp, fp, fn = int((h & j).sum()), int((~h & j).sum()), int((h & ~j).sum())
    reasons = [reason] if reason else []
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    if precision is None:
        reasons.append("precision undefined: the judge flagged no row")
    if recall is None:
        reasons.append("recall undefined: no human-flagged row")
    return {"n": int(h.size), "kappa": kappa, "precision": precision, "recall": recall, "true_positives": tp, "false_positives": fp,
            "false_negatives": fn, "true_negatives": int((~h & ~j).sum()), "judge_rate": float(j.mean()), "human_rate": float(h.mean()),
            "reason": "; ".join(reasons)}


def matched_labels(judge_labels: pd.DataFrame, human_labels: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The judge's and the people's labels of the rows both labelled, on one index in one order (matched as ``agreement`` does)."""
    judge, human = _keyed(judge_labels), _keyed(human_labels)
    common = judge.index.intersection(human.index)
    return judge.loc[common], human.loc[common]


def agreement(judge_labels: pd.DataFrame, human_labels: pd.DataFrame) -> dict[str, Any]:
    """Agreement of the judge with people on the rows both labelled, per dimension and flag (JSON-able, no NaN).

    Frames are matched on ``request_id`` / ``id`` (a column, else the index). Per dimension:
    ``n`` pairs, quadratic-weighted ``kappa_quadratic``, ``exact_agreement``, ``within_one``
    and ``mean_bias`` (judge − human). Per flag: plain ``kappa``, ``precision`` and ``recall``
    of the judge against the human label, the confusion counts and both rates. A label with
    fewer than 2 pairs has ``None`` statistics and a ``reason``.
    """
    judge, human = matched_labels(judge_labels, human_labels)
    out: dict[str, Any] = {"n_judge": len(judge_labels), "n_human": len(human_labels), "n_matched": len(judge), "dimensions": {}, "flags": {}}
    for name in LABELS:
        if name not in judge or name not in human:
            continue
        pairs = pd.DataFrame({"judge": judge[name], "human": human[name]}).dropna()
        section = "dimensions" if name in DIMENSIONS else "flags"
        if len(pairs) < 2:
            out[section][name] = {"n": len(pairs), "reason": f"{len(pairs)} rows labelled by both; need at least 2"}
        elif name in DIMENSIONS:
            out[section][name] = _dimension_agreement(pairs["human"], pairs["judge"])
        else:
            out[section][name] = _flag_agreement(pairs["human"], pairs["judge"])
    return out


# -- review queue --------------------------------------------------------------------------------------------


def review_queue(sample: pd.DataFrame, n: int, strata: list[str], seed: int, *, min_per_stratum: int = 2) -> tuple[bytes, bytes]:
    """A stratified sample of ``n`` judged rows for people to label, as (JSONL bytes, CSV bytes) with empty labels.

    Rows without a response cannot be labelled and are left out. The selection is
    :func:`modelwatch.judge.sampling.stratified_sample` with ``seed``, so it can be reproduced
    (with its inclusion probabilities) from the same inputs. Columns: ``request_id``,
    ``prompt``, ``response``, ``reference``, the seven labels, ``labeller``, ``labelled_at``
    and ``notes``; the judge's scores and the variant are deliberately not exported.
    """
    if "request_id" not in sample or "prompt" not in sample or "response" not in sample:
        raise KeyError("the sample needs request_id, prompt and response columns")
    labellable = sample[sample["response"].map(lambda r: isinstance(r, str) and bool(r.strip()))]
    chosen = stratified_sample(labellable, strata, n, min_per_stratum=min_per_stratum, seed=seed).rows
    references = chosen["reference"] if "reference" in chosen else pd.Series(None, index=chosen.index)
    records = []
    for request_id, prompt, response, reference in zip(chosen["request_id"], chosen["prompt"], chosen["response"], references):
        reference = reference if isinstance(reference, str) and reference.strip() else None
        records.append({"request_id": str(request_id), "prompt": prompt, "response": response, "reference": reference,
                        "labels": dict.fromkeys(LABELS), "labeller": None, "labelled_at": None, "notes": None})
    jsonl = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    flat = pd.DataFrame([{**{k: v for k, v in r.items() if k != "labels"}, **r["labels"]} for r in records],
                        columns=["request_id", "prompt", "response", "reference", *LABELS, "labeller", "labelled_at", "notes"])
    buffer = io.StringIO()
    flat.to_csv(buffer, index=False)
    return jsonl, buffer.getvalue().encode()


@dataclass(frozen=True)
class ReviewLabels:
    """Labels read back from a review file: a frame indexed by ``request_id``, the bad lines, and how many lines
    were not labelled yet."""

    labels: pd.DataFrame = field(compare=False, repr=False)
    problems: tuple[LineProblem, ...]
    unlabelled: int
    lines: int

    @property
    def ok(self) -> bool:
        return not self.problems


def read_review_labels(source: bytes | str | Path, *, known_ids: Collection[str] | None = None) -> ReviewLabels:
    """Parse a filled-in review JSONL (bytes, or a path) into labels keyed by ``request_id``.

    Each line is validated on its own and a bad one is reported as a :class:`LineProblem`
    (line number, request_id, reason) and skipped: invalid JSON or UTF-8, unknown keys, a
    missing ``request_id``, a ``request_id`` not in ``known_ids`` (when given) or seen on an
    earlier line, a score outside 1–5 or not an integer, a flag not a boolean, labels without
    a ``labeller``, a ``labelled_at`` that is not ISO 8601. A line whose labels are all
    ``null`` is not labelled yet: counted in ``unlabelled``, not a problem. Partially
    labelled lines are kept (missing labels are <NA>).
    """
    content, _ = _read_bytes(source)
    known = set(known_ids) if known_ids is not None else None
    records, problems, seen, unlabelled, lines = [], [], {}, 0, 0
    for number, obj, problem in _json_lines(content):
        lines += 1
        if obj is None:
            problems.append(LineProblem(number, problem))
            continue
        request_id = obj.get("request_id") if isinstance(obj.get("request_id"), str) and obj.get("request_id") else None
        reasons = [f"unknown key {k!r}" for k in obj if k not in _REVIEW_KEYS]
        if request_id is None:
            reasons.append("request_id is missing or not a string")
        elif known is not None and request_id not in known:
            reasons.append("request_id is not in the review queue")
        elif request_id in seen:
            reasons.append(f"duplicate request_id (first on line {seen[request_id]})")
        labels, label_problems = check_labels(obj.get("labels", {}), complete=False)
        reasons += label_problems
        labelled = any(v is not None for v in labels.values())
        if labelled:
            reasons += _check_text(obj, "labeller", required=True) + _check_timestamp(obj.get("labelled_at"))
        if reasons:
            problems.append(LineProblem(number, "; ".join(reasons), request_id))
            continue
        seen[request_id] = number
        if not labelled:
            unlabelled += 1
            continue
        records.append({"request_id": request_id, "labeller": obj["labeller"], "labelled_at": obj.get("labelled_at"), "notes": obj.get("notes"),
                        **labels})
    frame = _label_frame(records, "request_id", ["labeller", "labelled_at", "notes"])
    return ReviewLabels(frame, tuple(problems), unlabelled, lines)
