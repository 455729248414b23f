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


def _prediction_columns(frame: pd.DataFrame, kind: str) -> dict[str, pd.Series]:
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
        if frame["probability"].notna().any():
            out["prediction.probability"] = frame["probability"].astype(float)
        return out
    return {"prediction.value": pd.to_numeric(frame["prediction"], errors="coerce").astype(float)}


def drift_frame(valid: pa.Table, model_kind: str, features: list[str], segments: list[str], text: list[str] = ()) -> tuple[pd.DataFrame, DriftColumns]:
    """The drift columns of a partition's valid rows, plus ``request_id``, ``variant`` and ``timestamp``.

    Free-text columns stay in Arrow (``pd.ArrowDtype(pa.string())``): a day's prompts and
    answers as Python strings would take several times their size in memory.
    """
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
    prediction = _prediction_columns(base, model_kind)
    out.update(prediction)
    input_length = ["input.prompt_tokens"] if model_kind == "llm" else []
    if input_length:
        out["input.prompt_tokens"] = base["prompt_tokens"].astype(float)
    for name in text:
        out[name] = base[name]
    frame = pd.DataFrame(out)
    kinds = {}
    for name in list(dict.fromkeys(features + list(prediction) + input_length)):
        kinds[name] = infer_kind(frame[name])
        frame[name] = as_kind(frame[name], kinds[name])
    for name in segments:
        frame[name] = as_kind(frame[name], "categorical")
    columns = DriftColumns(features=list(features), prediction=list(prediction), input_length=input_length, segments=list(segments),
                           text=list(text), kinds=kinds)
    return frame, columns
