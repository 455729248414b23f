"""The columns drift looks at, pulled out of a partition's valid rows.

Nested fields are first-class columns: ``features.tenure_months`` and ``metadata.topic``
are read out of the contract's JSON objects. Derived columns describe what the model
produced (``prediction.*``) and how long its input was (``input.prompt_tokens``):

| model kind | prediction columns | input-length column |
|---|---|---|
| llm | ``prediction.response_tokens`` (numerical), ``prediction.refusal`` and ``prediction.status`` (categorical) | ``input.prompt_tokens`` |
| classifier | ``prediction.class`` (categorical), ``prediction.probability`` (numerical, when logged) | – |
| regressor | ``prediction.value`` (numerical) | – |

A column is numerical when every non-missing value is a number (booleans are
categories); otherwise it is categorical and its values are compared as strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from modelwatch.core.contract import flatten
from modelwatch.core.redaction import TEXT_FIELDS

# Phrases with which assistants decline; a response that opens with one counts as a refusal.
REFUSAL_PATTERN = re.compile(
    r"^\s*(i'?m sorry,? but i (can'?t|cannot)|i (can'?t|cannot|won'?t) (help|assist|do) (with )?that|sorry,? i (can'?t|cannot)|as an ai\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class DriftColumns:
    """Which frame columns belong to which drift family, and the kind of each."""

    features: list[str]
    prediction: list[str]
    input_length: list[str]
    segments: list[str]
    text: list[str]
    kinds: dict[str, str]

    def tested(self) -> list[str]:
        return list(dict.fromkeys(self.features + self.prediction + self.input_length))


def is_refusal(response: str | None, status: str | None) -> bool:
    """A filter refusal, or an answer that opens with a refusal phrase."""
    if status == "refused_by_filter":
        return True
    return bool(response) and REFUSAL_PATTERN.match(response) is not None


def _nested(frame: pd.DataFrame, source: str, keys: list[str]) -> dict[str, pd.Series]:
    values = flatten(frame[source].tolist(), keys) if source in frame else {k: [None] * len(frame) for k in keys}
    return {f"{source}.{k}": pd.Series(v, index=frame.index, dtype="object") for k, v in values.items()}


def infer_kind(values: pd.Series) -> str:
    """``numerical`` when every non-missing value is a number (not a bool), else ``categorical``."""
    if pd.api.types.is_bool_dtype(values):
        return "categorical"
    if pd.api.types.is_numeric_dtype(values):
        return "numerical"
    present = values.dropna()
    numeric = present.map(lambda v: isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)))
    return "numerical" if len(present) and bool(numeric.all()) else "categorical"


def as_kind(values: pd.Series, kind: str) -> pd.Series:
    if kind == "numerical":
        return pd.to_numeric(values, errors="coerce").astype(float)
    return values.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)).astype("object")


def _prediction_columns(frame: pd.DataFrame, kind: str, probability: bool | None) -> dict[str, pd.Series]:
    if kind == "llm":
        responses = pa.array(frame["response"], pa.string()).to_pylist()  # None, not pd.NA, for a missing (Arrow-backed) answer
        refusal = [is_refusal(r, s) for r, s in zip(responses, frame["status"])]
        return {
            "prediction.response_tokens": frame["completion_tokens"].astype(float),
            "prediction.refusal": pd.Series(refusal, index=frame.index).map({True: "refusal", False: "answer"}).astype("object"),
            "prediction.status": frame["status"].astype("object"),
        }
    if kind == "classifier":
        out = {"prediction.class": frame["prediction"].astype("object")}
        if probability if probability is not None else frame["probability"].notna().any():
            out["prediction.probability"] = frame["probability"].astype(float)
        return out
    return {"prediction.value": pd.to_numeric(frame["prediction"], errors="coerce").astype(float)}


@dataclass(frozen=True)
class _Unconverted:
    """``drift_frame``'s columns before their kinds are applied, and which of them are the prediction and input-length columns."""

    frame: pd.DataFrame
    prediction: list[str]
    input_length: list[str]


def _unconverted(valid: pa.Table, model_kind: str, features: list[str], segments: list[str], text: list[str], probability: bool | None) -> _Unconverted:
    texts = [c for c in TEXT_FIELDS if c in valid.column_names]
    base = valid.drop_columns(texts).to_pandas()
    for name in texts:
        base[name] = pd.Series(pd.arrays.ArrowExtensionArray(valid.column(name)), index=base.index)
    out: dict[str, pd.Series] = {"request_id": base["request_id"], "variant": base["variant"], "timestamp": base["timestamp"]}
    nested_keys = {"features": [], "metadata": []}
    for name in dict.fromkeys(features + segments):
        source, _, key = name.partition(".")
        if source in nested_keys and key:
            nested_keys[source].append(key)
        elif name in base and name not in out:
            out[name] = base[name]
        elif name not in base:
            raise KeyError(f"drift column {name!r} is neither a log contract field nor features.<name> / metadata.<key>")
    for source, keys in nested_keys.items():
        if keys:
            out.update(_nested(base, source, keys))
    prediction = _prediction_columns(base, model_kind, probability)
    out.update(prediction)
    input_length = ["input.prompt_tokens"] if model_kind == "llm" else []
    if input_length:
        out["input.prompt_tokens"] = base["prompt_tokens"].astype(float)
    for name in text:
        out[name] = base[name]
    return _Unconverted(pd.DataFrame(out), list(prediction), input_length)


def drift_frame(valid: pa.Table, model_kind: str, features: list[str], segments: list[str], text: list[str] = (), *,
                kinds: dict[str, str] | None = None, probability: bool | None = None) -> tuple[pd.DataFrame, DriftColumns]:
    """The drift columns of a partition's valid rows, plus ``request_id``, ``variant`` and ``timestamp``.

    Free-text columns stay in Arrow (``pd.ArrowDtype(pa.string())``): a day's prompts and
    answers as Python strings would take several times their size in memory.

    Each column's kind is inferred from ``valid`` (``infer_kind``), and a classifier's
    ``prediction.probability`` is a column when ``valid`` holds a probability. A partition
    read batch by batch passes what the whole partition showed (``PartitionColumns``):
    ``kinds`` and ``probability``, so each batch comes out as its rows of the whole partition's frame.
    """
    raw = _unconverted(valid, model_kind, list(features), list(segments), list(text), probability)
    frame = raw.frame
    tested = list(dict.fromkeys(list(features) + raw.prediction + raw.input_length))
    kinds = {name: kinds[name] for name in tested} if kinds is not None else {name: infer_kind(frame[name]) for name in tested}
    for name in tested:
        frame[name] = as_kind(frame[name], kinds[name])
    for name in segments:
        frame[name] = as_kind(frame[name], "categorical")
    columns = DriftColumns(features=list(features), prediction=raw.prediction, input_length=raw.input_length, segments=list(segments),
                           text=list(text), kinds=kinds)
    return frame, columns


def _kind_evidence(values: pd.Series) -> str | None:
    """What ``infer_kind`` would say of ``values``; None for an object column with no value present (no evidence either way)."""
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values) or values.notna().any():
        return infer_kind(values)
    return None


class PartitionColumns:
    """The kinds and prediction columns ``drift_frame`` infers from a whole partition, gathered from its batches one at a time.

    ``infer_kind`` calls a column numerical when every present value of the partition is a
    number: a single batch with a text value makes it categorical, a batch with no value
    present says nothing, and a column with no value anywhere is categorical. A classifier's
    ``prediction.probability`` is a column when any batch holds a probability. Memory is a
    few flags per column, whatever the partition's size.
    """

    def __init__(self, model_kind: str, features: list[str], segments: list[str], text: list[str] = ()):
        self.model_kind, self.features, self.segments, self.text = model_kind, list(features), list(segments), list(text)
        self.probability = False
        self._prediction: dict[str, None] = {}  # the prediction columns, in drift_frame's order
        self._evidence: dict[str, set[str]] = {}  # column -> kinds its batches showed, in order of first appearance

    def update(self, valid: pa.Table) -> None:
        """Take one batch of the partition's valid rows into account."""
        raw = _unconverted(valid, self.model_kind, self.features, self.segments, self.text, None)
        self.probability = self.probability or "prediction.probability" in raw.prediction
        self._prediction.update(dict.fromkeys(raw.prediction))
        for name in dict.fromkeys(self.features + raw.prediction + raw.input_length):
            seen = self._evidence.setdefault(name, set())
            evidence = _kind_evidence(raw.frame[name])
            if evidence is not None:
                seen.add(evidence)

    @property
    def kinds(self) -> dict[str, str]:
        return {name: "numerical" if seen == {"numerical"} else "categorical" for name, seen in self._evidence.items()}

    def frame(self, valid: pa.Table) -> pd.DataFrame:
        """One batch's drift frame, converted as the whole partition's would be."""
        frame, _ = drift_frame(valid, self.model_kind, self.features, self.segments, self.text, kinds=self.kinds, probability=self.probability)
        return frame

    def columns(self) -> DriftColumns:
        """The partition's drift columns, as ``drift_frame`` of the whole partition returns them."""
        input_length = ["input.prompt_tokens"] if self.model_kind == "llm" else []
        return DriftColumns(features=self.features, prediction=list(self._prediction), input_length=input_length, segments=self.segments,
                            text=self.text, kinds=self.kinds)
