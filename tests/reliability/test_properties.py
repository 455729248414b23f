"""Property-based tests (hypothesis): the reader never crashes and conserves rows; statistics abstain instead of NaN.

Settings stay modest (100-200 examples, derandomized) so the suite stays fast and
reproducible.
"""

from __future__ import annotations

import gzip
import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modelwatch.core.contract import FIELDS
from modelwatch.ingest.readers import assemble, read_file

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
field_names = st.sampled_from([f.name for f in FIELDS]) | st.text(max_size=12)
json_objects = st.dictionaries(field_names, json_values, max_size=12)


def _counts(data: bytes, name: str) -> tuple[int, int, int]:
    read = read_file(data, name)
    rows, rejects = assemble([read])
    assert rows.num_rows + rejects.num_rows == read.rows_read
    assert sorted(rows["_row_id"].to_pylist() + rejects["_row_id"].to_pylist()) == list(range(read.rows_read))
    return read.rows_read, rows.num_rows, rejects.num_rows


@SETTINGS
@given(st.lists(json_objects, min_size=1, max_size=8))
def test_arbitrary_json_objects_never_crash_the_reader_and_every_line_is_a_row(objects):
    data = b"".join(json.dumps(o).encode() + b"\n" for o in objects)
    for name, body in (("s3://b/p.jsonl", data), ("s3://b/p.jsonl.gz", gzip.compress(data))):
        read, _, _ = _counts(body, name)
        assert read == len(objects)


@SETTINGS
@given(st.lists(json_values, min_size=1, max_size=6))
def test_arbitrary_json_lines_of_any_type_validate_or_are_rejected(values):
    data = b"".join(json.dumps(v).encode() + b"\n" for v in values)
    read, rows, _ = _counts(data, "s3://b/p.jsonl")
    assert read == len(values) and rows == sum(isinstance(v, dict) for v in values)


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from(["p.jsonl", "p.jsonl.gz", "p.parquet"]))
def test_arbitrary_bytes_never_crash_the_reader(data, name):
    read, _, _ = _counts(data, f"s3://b/{name}")
    if name == "p.jsonl" and data[:2] != b"\x1f\x8b" and not (data[:4] == b"PAR1" and data[-4:] == b"PAR1"):
        assert read == sum(1 for line in data.removeprefix(b"\xef\xbb\xbf").split(b"\n") if line.strip())


@SETTINGS
@given(st.lists(st.text(max_size=40), min_size=1, max_size=6), st.integers(min_value=1, max_value=200))
def test_gzip_cut_anywhere_keeps_what_decoded_and_conserves_rows(texts, cut):
    data = gzip.compress(b"".join(json.dumps({"request_id": t}).encode() + b"\n" for t in texts))
    read, rows, rejects = _counts(data[: max(len(data) - cut, 0)], "s3://b/p.jsonl.gz")
    assert rows <= len(texts) and read == rows + rejects


# --------------------------------------------------------------------------- statistics on degenerate input

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
degenerate_arrays = (
    st.builds(lambda v, n: np.full(n, v), finite, st.integers(min_value=0, max_value=60))  # all equal (or empty)
    | st.lists(finite, min_size=0, max_size=3).map(np.array)  # one row or a few
    | st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=40).map(lambda xs: np.array(xs, dtype=float))
)


def _no_nan_verdict(result: dict, numbers: tuple[str, ...]) -> None:
    if result.get("reason") and all(result.get(k) is None for k in numbers):
        return  # abstained with a reason
    for key in numbers:
        value = result.get(key)
        assert value is None or (isinstance(value, (int, float)) and not math.isnan(value)), (key, result)


@SETTINGS
@given(degenerate_arrays, degenerate_arrays)
def test_numerical_drift_abstains_or_gives_numbers(reference, current):
    from modelwatch.drift.univariate import DriftPolicy, decide, numerical_drift

    result = numerical_drift("x", reference, current)
    decided = decide([result], DriftPolicy())[0].to_dict()
    if result.abstained:
        assert result.reason and not decided["drift"] and decided["severity"] == "none"
    else:
        for key in ("statistic", "p_value", "effect", "psi"):
            value = getattr(result, key)
            assert value is not None and math.isfinite(value), (key, result)
    _no_nan_verdict(decided, ("p_value", "p_adjusted", "effect", "statistic", "psi"))


counts = st.dictionaries(st.sampled_from(list("abcdef")), st.integers(min_value=0, max_value=50), max_size=6)


@SETTINGS
@given(counts, counts)
def test_categorical_drift_abstains_or_gives_numbers(reference, current):
    from modelwatch.drift.univariate import DriftPolicy, categorical_drift, decide

    result = categorical_drift("c", reference, current)
    if not result.abstained:
        for key in ("statistic", "p_value", "effect", "psi"):
            assert math.isfinite(getattr(result, key)), (key, result)
    _no_nan_verdict(decide([result], DriftPolicy())[0].to_dict(), ("p_value", "p_adjusted", "effect", "statistic", "psi"))


def _stats(values: np.ndarray):
    from modelwatch.experiments.stats import SampleStats

    return SampleStats(int(values.size), float(values.sum()), float((values**2).sum()))


small_arms = st.builds(lambda v, n: np.full(n, v), st.floats(min_value=0, max_value=1e4), st.integers(min_value=0, max_value=5)) | st.lists(
    st.floats(min_value=0, max_value=1e4), min_size=0, max_size=4).map(np.array)


@SETTINGS
@given(small_arms, small_arms, st.sampled_from(["mean", "proportion"]))
def test_experiment_tests_abstain_on_empty_single_and_constant_arms(control, treatment, kind):
    from modelwatch.experiments.inference import difference_test, non_inferiority, sequential_difference

    if kind == "proportion":
        control, treatment = (control > control.mean()).astype(float) if control.size else control, (treatment > 1).astype(float)
    c, t = _stats(control), _stats(treatment)
    results = [difference_test(c, t, kind=kind), sequential_difference(c, t, tuning_n=1000),
               non_inferiority(c, t, direction="decrease", margin=0.05)]
    for result in results:
        doc = result.to_dict()
        if doc.get("abstained"):
            assert doc["reason"], doc
        _no_nan_verdict(doc, ("p_value", "effect", "ci_low", "ci_high", "estimate", "lower", "upper"))


@SETTINGS
@given(small_arms, small_arms, st.sampled_from([0.5, 0.95, 0.99]))
def test_quantile_difference_abstains_below_its_minimum(control, treatment, q):
    from modelwatch.experiments.quantiles import quantile_difference

    doc = quantile_difference(np.sort(control), np.sort(treatment), q).to_dict()
    assert doc.get("abstained") and doc["reason"], doc  # at most 5 rows per arm: never enough for a tail quantile
    _no_nan_verdict(doc, ("p_value", "effect", "ci_low", "ci_high"))


@SETTINGS
@given(st.dictionaries(st.sampled_from(["control", "treatment", "other"]), st.integers(min_value=0, max_value=30), max_size=3))
def test_srm_never_gives_a_nan_p_value(observed):
    from modelwatch.experiments.design import srm_test

    doc = srm_test(observed, {"control": 0.5, "treatment": 0.5}).to_dict()
    _no_nan_verdict({**doc, "reason": doc.get("reason") or "n/a"}, ("chi2", "p_value"))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(min_value=0, max_value=8), st.integers(min_value=0, max_value=8), st.sampled_from(["same", "constant", "random"]))
def test_mmd_abstains_on_degenerate_samples(m, n, shape):
    from modelwatch.drift.mmd import mmd_test

    rng = np.random.default_rng(m * 31 + n)
    if shape == "random":
        reference, current = rng.normal(size=(m, 4)), rng.normal(size=(n, 4))
    else:
        row = np.ones((1, 4)) if shape == "constant" else rng.normal(size=(1, 4))
        reference, current = np.repeat(row, m, axis=0), np.repeat(row, n, axis=0)
    result = mmd_test(reference, current, n_permutations=100, alpha=0.05)
    if result.reason:
        assert result.p_value is None and not result.drift
    else:
        assert math.isfinite(result.p_value) and math.isfinite(result.mmd2)
