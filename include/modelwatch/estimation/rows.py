"""The rows estimation reads, and a classifier's scores from them: ``estimation_frame``, ``class_scores``, ``label_index``.

``class_probabilities`` stays Arrow text until ``class_map_scores`` reads it with Arrow's JSON
reader (``ingest.probabilities.read_class_maps``); row by row only for text the contract did not write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

LABEL = "_label"  # the joined label's column in an estimation frame


def estimation_frame(valid, model, variants: Iterable[str] | None = None) -> pd.DataFrame:
    """The rows estimation reads from a partition's valid rows (an Arrow table).

    Columns: ``request_id``, ``timestamp``, ``variant``, ``prediction`` (text as logged),
    ``probability``, ``class_probabilities`` (JSON text), the configured features and the
    segment keys (as the drift stage reads them). Only ``variants`` (default: all) are kept.
    """
    from modelwatch.baseline.columns import drift_frame

    frame, _ = drift_frame(valid, model.kind, model.drift.features, model.segments)
    raw = valid.select(["prediction", "probability"]).to_pandas()
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("prediction.")])
    frame["prediction"] = raw["prediction"].to_numpy()
    frame["probability"] = raw["probability"].to_numpy()
    # the class maps stay Arrow text: class_scores parses the column in C++ (ingest.probabilities.read_class_maps)
    frame["class_probabilities"] = pd.Series(pd.arrays.ArrowExtensionArray(valid.column("class_probabilities")), index=frame.index)
    if variants is not None:
        frame = frame[frame["variant"].isin(set(variants))]
    return frame.reset_index(drop=True)


def _class_map(text: Any) -> dict[str, float] | None:
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _arrow_texts(column: pd.Series) -> pa.Array | None:
    """The class-map column as Arrow text (zero-copy when the frame kept it Arrow-backed); None when it holds other objects."""
    try:
        array = pa.array(column.array) if isinstance(column.dtype, pd.ArrowDtype) else pa.array(column.to_numpy(dtype=object), pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _class_maps_row_by_row(column: pd.Series, classes: tuple[str, ...] | None) -> tuple[pd.DataFrame, np.ndarray]:
    """What ``read_class_maps`` gives, by ``json.loads`` row by row: for text the contract did not write (unreadable text is no map)."""
    maps = column.map(_class_map)
    has_map = maps.notna().to_numpy()
    names = list(classes) if classes is not None else sorted({str(k) for m in maps[has_map] for k in m})
    table = pd.DataFrame.from_records(maps[has_map].tolist(), columns=names) if has_map.any() else pd.DataFrame(columns=names)
    return table.apply(pd.to_numeric, errors="coerce"), has_map


def class_map_scores(column: pd.Series, classes: tuple[str, ...] | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(scores n x K, has-a-map mask, classes) of a ``class_probabilities`` column; ``classes`` None: every class the maps name.

    Read columnar by ``ingest.probabilities.read_class_maps`` (the canonical text of JSON-lines and
    Parquet logs alike), row by row only for text the contract did not write. A class a map
    omits, or whose value is not a number, scores 0; rows without a map are NaN.
    """
    from modelwatch.ingest.probabilities import read_class_maps

    texts = _arrow_texts(column)
    parsed = read_class_maps(texts, classes) if texts is not None else None
    if parsed is not None:
        table, has_map = parsed
        names = tuple(table.column_names)
        values = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in names]) if names else np.zeros((len(column), 0))
        values = values[has_map]
    else:
        frame, has_map = _class_maps_row_by_row(column, classes)
        names, values = tuple(frame.columns), frame.to_numpy(dtype=float)
    scores = np.full((len(column), len(names)), np.nan)
    scores[has_map] = np.nan_to_num(values, nan=0.0)
    return scores, has_map, names


def class_scores(frame: pd.DataFrame, classes: tuple[str, ...], positive_class: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw scores n x K, predicted class index, usable mask) of classifier rows.

    A class map gives every class's score (a class it omits scores 0). A bare probability is
    the confidence in the predicted class, usable for a binary model only: the other class
    gets ``1 - p``. Rows without a score or whose prediction is not a reference class are unusable.
    """
    n, k = len(frame), len(classes)
    index = {c: j for j, c in enumerate(classes)}
    predicted = frame["prediction"].map(lambda v: index.get(v, -1) if isinstance(v, str) else -1).to_numpy(dtype=int)
    if "class_probabilities" in frame:
        scores, has_map, _ = class_map_scores(frame["class_probabilities"], classes)
    else:
        scores, has_map = np.full((n, k), np.nan), np.zeros(n, dtype=bool)
    bare = ~has_map & (predicted >= 0)
    if k == 2 and bare.any() and "probability" in frame:
        p = pd.to_numeric(frame["probability"], errors="coerce").to_numpy(dtype=float)
        rows = np.flatnonzero(bare)
        scores[rows, predicted[rows]] = p[rows]
        scores[rows, 1 - predicted[rows]] = 1.0 - p[rows]
    usable = (predicted >= 0) & ~np.isnan(scores).any(axis=1)
    return scores, predicted, usable


def label_index(labels: pd.Series, classes: tuple[str, ...]) -> np.ndarray:
    """Class index of each label (-1: no label, or a class the reference does not know)."""
    index = {c: j for j, c in enumerate(classes)}
    return labels.map(lambda v: index.get(v, -1) if isinstance(v, str) else -1).to_numpy(dtype=int)
