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
from modelwatch.estimation.rows import _class_maps_row_by_row, class_map_scores, class_scores, estimation_frame
from modelwatch.ingest.columnar_arrow import coerce_arrow
from modelwatch.ingest.columnar_json import coerce_batch
from modelwatch.ingest.probabilities import read_class_maps
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


# --------------------------------------------------------------------------- Parquet logs: a struct probability column by Arrow kernels


def _per_row(table: pa.Table) -> pa.Table:
    from modelwatch.core.contract import coerce_record
    from modelwatch.ingest.columnar import SCHEMA

    return pa.Table.from_pylist([coerce_record(r) for r in table.to_pylist()], schema=SCHEMA)


def _assert_same_probabilities(table: pa.Table) -> None:
    got, want = coerce_arrow(table), _per_row(table)
    assert got is not None
    g, w = got.column("probability").to_numpy(zero_copy_only=False), want.column("probability").to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(np.signbit(g), np.signbit(w))  # the sign of zero too
    np.testing.assert_array_equal(g, w)
    for name in ("class_probabilities", "_type_errors"):
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name


def test_struct_probabilities_equal_the_per_row_contract_on_every_edge():
    nan = float("nan")
    probability = pa.array([
        {"churn": 0.7, "stay": 0.3}, None, {"churn": None, "stay": 0.4}, {"churn": nan, "stay": 0.2}, {"churn": 0.0, "stay": -0.0},
        {"churn": -0.0, "stay": 0.0}, {"churn": 1e-300, "stay": 5e-324}, {"churn": float("inf"), "stay": 0.1}, {"churn": 0.25, "stay": 0.75},
        {"churn": 0.1, "stay": nan},
    ], pa.struct([("stay", pa.float64()), ("churn", pa.float64())]))  # field order is not key order: the text sorts its keys
    prediction = pa.array(["churn", "stay", "stay", "churn", "other", "other", None, "stay", "None", "other"])
    _assert_same_probabilities(pa.table({"request_id": [str(i) for i in range(10)], "prediction": prediction, "probability": probability}))
    ints = pa.array([{"a": 1, "b": 0}, {"a": 2**53 + 1, "b": -3}], pa.struct([("a", pa.int64()), ("b", pa.int32())]))
    _assert_same_probabilities(pa.table({"prediction": pa.array(["b", None]), "probability": ints}))
    small = pa.array([{"x": 0.1, "y": 0.9}], pa.struct([("x", pa.float32()), ("y", pa.float32())]))
    _assert_same_probabilities(pa.table({"prediction": pa.array(["y"]), "probability": small}))


def test_struct_probabilities_of_other_shapes_keep_the_per_row_path():
    from modelwatch.ingest.columnar_arrow import _struct_probabilities

    flags = pa.array([{"a": True}], pa.struct([("a", pa.bool_())]))
    assert _struct_probabilities(flags, pa.array(["a"])) is None
    _assert_same_probabilities(pa.table({"prediction": pa.array(["a"]), "probability": flags}))  # a problem row, as per row
    numbered = pa.array([{"a": 0.5}], pa.struct([("a", pa.float64())]))
    assert _struct_probabilities(numbered, pa.array([1])) is None  # a prediction that is not text
    _assert_same_probabilities(pa.table({"prediction": pa.array([1]), "probability": numbered}))


def test_generator_parquet_classifier_logs_read_their_class_maps_by_arrow_kernels(monkeypatch):
    import modelwatch.ingest.columnar_arrow as columnar_arrow

    table = pa.Table.from_pylist(_classifier_rows(3000))
    assert pa.types.is_struct(table.schema.field("probability").type)
    calls = []
    real = columnar_arrow.coerce_probabilities
    monkeypatch.setattr(columnar_arrow, "coerce_probabilities", lambda values, predictions: calls.append(len(values)) or real(values, predictions))
    _assert_same_probabilities(table)
    assert calls == []  # no row went through Python's per-value rules
