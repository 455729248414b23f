"""Class probabilities read columnar: Arrow's JSON reader over the canonical ``class_probabilities`` text equals ``json.loads`` row by row,
for the text JSON-lines and Parquet logs become, and text the contract did not write goes back to the row-by-row path."""

from __future__ import annotations

import json
import random
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from modelwatch.core.contract import coerce_probability
from modelwatch.estimation.reference import _class_maps_row_by_row, class_map_scores, class_scores, estimation_frame
from modelwatch.ingest.columnar import coerce_batch, read_class_maps
from modelwatch.ingest.columnar_arrow import coerce_arrow
from modelwatch.runtime.generate import Scenario, classifier_day

CLASSES = ("cancel", "downgrade", "stay", "upgrade")


def _canonical_texts(seed: int, n: int) -> list[str | None]:
    """Class maps as the contract stores them (``coerce_probability``): random class subsets, ints and floats, some rows without a map."""
    rng = random.Random(seed)
    out: list[str | None] = []
    for _ in range(n):
        if rng.random() < 0.1:
            out.append(None)
            continue
        keys = rng.sample(CLASSES, rng.randint(1, len(CLASSES)))
        value = {k: rng.choice([rng.random(), rng.randint(0, 1), rng.random() * 1e-9, 1 - rng.random()]) for k in keys}
        out.append(coerce_probability(value, rng.choice(keys))[1])
    return out


def _row_by_row(texts: list[str | None], classes: tuple[str, ...]) -> np.ndarray:
    """The reference: json.loads each text; a class the map omits is 0, a row without a map NaN."""
    out = np.full((len(texts), len(classes)), np.nan)
    for i, text in enumerate(texts):
        if text is not None:
            value = json.loads(text)
            out[i] = [float(value.get(c, 0.0)) for c in classes]
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_arrow_reader_equals_json_loads_row_by_row(seed):
    texts = _canonical_texts(seed, 3000)
    column = pd.Series(pd.arrays.ArrowExtensionArray(pa.array(texts, pa.string())))
    scores, has_map, classes = class_map_scores(column, None)
    assert classes == tuple(sorted(CLASSES))
    np.testing.assert_array_equal(scores, _row_by_row(texts, classes))
    np.testing.assert_array_equal(has_map, [t is not None for t in texts])
    wanted = ("stay", "cancel")  # a subset, in the reference's order; other keys are ignored
    np.testing.assert_array_equal(class_map_scores(pd.Series(texts, dtype=object), wanted)[0], _row_by_row(texts, wanted))


def test_text_the_contract_did_not_write_is_read_row_by_row():
    for texts in (["[0.2, 0.8]", '{"a": 1}'], ['{"a": "high"}'], ['{"a": {"b": 1}}'], ['{"a": 0.5}\n{"a": 0.1}'], ["not json", '{"a": 1}']):
        assert read_class_maps(pa.array(texts), None) is None and read_class_maps(pa.array(texts), ("a",)) is None, texts
    column = pd.Series(["not json", '{"a": 0.25, "b": "x"}', '{"b": 1}'], dtype=object)
    scores, has_map, classes = class_map_scores(column, ("a", "b"))
    assert classes == ("a", "b") and has_map.tolist() == [False, True, True]
    np.testing.assert_array_equal(scores, [[np.nan, np.nan], [0.25, 0.0], [0.0, 1.0]])
    frame, mask = _class_maps_row_by_row(column, None)
    assert list(frame.columns) == ["a", "b"] and mask.tolist() == [False, True, True]


def _classifier_rows(n: int) -> list[dict]:
    rows, _ = classifier_day("churn", date(2026, 11, 1), n, 3, Scenario(), None)
    return rows


def _model():
    from modelwatch.config import parse_config

    return parse_config({"models": [{"id": "churn", "kind": "classifier", "drift": {"positive_class": "churn"}}]}).models[0]


@pytest.mark.parametrize("source", ["json-lines", "parquet"])
def test_scores_from_either_log_format_equal_the_row_by_row_parse(source):
    rows = _classifier_rows(2000)
    if source == "json-lines":
        canonical = coerce_batch(rows)
    else:  # Parquet logs hold the class map as a struct column
        canonical = coerce_arrow(pa.Table.from_pylist(rows))
    assert canonical is not None
    frame = estimation_frame(canonical, _model())
    assert isinstance(frame["class_probabilities"].dtype, pd.ArrowDtype)  # kept as Arrow text, never as Python strings
    raw, predicted, usable = class_scores(frame, ("churn", "stay"), "churn")
    texts = canonical.column("class_probabilities").to_pylist()
    np.testing.assert_array_equal(raw, _row_by_row(texts, ("churn", "stay")))
    np.testing.assert_array_equal(raw[:, 0], [r["probability"]["churn"] for r in rows])
    assert usable.all() and (predicted == np.where(raw[:, 0] >= 0.5, 0, 1)).all()
