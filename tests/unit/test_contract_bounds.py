"""The contract's row rules live once, in ``core.contract``: the GX suite is built from them and the serving client checks them.

The suite test reads each field's bounds off ``FIELDS`` and finds exactly those expectations in
the pipeline's suite, and nothing else. The boundary test walks every bound of ``FIELDS`` (each
end of a range and one step past it, NaN and infinity, each allowed value and one more, each
length limit and one past it, each required field left out, with and without status ok) and
checks that the serving client refuses exactly the rows the pipeline's GX validation quarantines.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from modelwatch.config import load_config
from modelwatch.core.contract import FIELDS, required_fields
from modelwatch.core.partition import Partition
from modelwatch.ingest.readers import batch_tables, open_file
from modelwatch.ingest.validation import StreamValidator, contract_expectations, expectations_for
from modelwatch.serving.checks import problems

CFG = load_config()
DAY = date(2026, 11, 3)
BASE: dict[str, dict[str, Any]] = {
    "llm": {"timestamp": "2026-11-03T10:00:00Z", "model_id": "support-bot-v3", "variant": "control", "status": "ok", "latency_ms": 420.0,
            "prompt": "hi", "response": "hello", "prompt_tokens": 2, "completion_tokens": 1, "cost_usd": 0.001, "feedback": 0},
    "classifier": {"timestamp": "2026-11-03T10:00:00Z", "model_id": "churn-classifier-v2", "variant": "production", "status": "ok",
                   "latency_ms": 12.0, "features": {"tenure_months": 3}, "prediction": "churn", "probability": 0.7, "feedback": 1},
}
MODEL_ID = {"llm": "support-bot-v3", "classifier": "churn-classifier-v2"}


def _expected_from_fields(kind: str) -> list[dict[str, Any]]:
    """The suite as FIELDS says it should be, written out independently of ``core.contract.row_rules``."""
    out = []
    for f in FIELDS:
        if f.name in required_fields(kind):
            kwargs = {"column": f.name, **({"row_condition": 'status == "ok"', "condition_parser": "pandas"} if f.only_when_ok else {})}
            out.append({"type": "expect_column_values_to_not_be_null", "kwargs": kwargs})
        if f.allowed is not None:
            out.append({"type": "expect_column_values_to_be_in_set", "kwargs": {"column": f.name, "value_set": list(f.allowed)}})
        if f.minimum is not None or f.maximum is not None:
            out.append({"type": "expect_column_values_to_be_between", "kwargs": {"column": f.name, "min_value": f.minimum, "max_value": f.maximum}})
        if f.length is not None:
            out.append({"type": "expect_column_value_lengths_to_be_between",
                        "kwargs": {"column": f.name, "min_value": f.length[0], "max_value": f.length[1]}})
    return out


@pytest.mark.parametrize("kind", ["llm", "classifier", "regressor"])
def test_every_rule_of_the_gx_suite_comes_from_the_contract_fields(kind):
    key = lambda e: json.dumps(e, sort_keys=True)  # noqa: E731
    assert sorted(map(key, contract_expectations(kind))) == sorted(map(key, _expected_from_fields(kind)))
    model = CFG.model(MODEL_ID.get(kind, "churn-classifier-v2")).model_copy(update={"kind": kind})
    model = model.model_copy(update={"validation": model.validation.model_copy(update={"suite": None})})
    run_rules = expectations_for(model, Partition(model.id, DAY))[len(contract_expectations(kind)):]
    assert [e["kwargs"]["column"] for e in run_rules] == ["variant", "model_id", "_epoch_s"]  # beyond the contract: only the run's own rules


def boundary_rows(kind: str) -> list[dict[str, Any]]:
    """Rows at and just past every bound of FIELDS, each differing from a valid row in one field (plus status where it matters)."""
    base, rows = BASE[kind], []

    def row(**change: Any) -> None:
        rows.append({**base, "request_id": f"r{len(rows):04d}", **change})

    for f in FIELDS:
        if f.minimum is not None or f.maximum is not None:
            step = 1 if f.kind == "integer" else 0.5
            for value in (f.minimum, f.maximum, f.minimum - step, f.maximum + step, float("nan"), float("inf"), -float("inf")):
                row(**{f.name: int(value) if f.kind == "integer" and value == value and abs(value) != float("inf") else value})
        if f.allowed is not None:
            for value in (*f.allowed, "exploded" if f.kind == "string" else 2):
                row(**{f.name: value})
        if f.length is not None:
            for n in (f.length[0], f.length[1], max(f.length[0] - 1, 0), f.length[1] + 1):
                row(**{f.name: "x" * n})
        if f.name in required_fields(kind):
            for status in ("ok", "error"):
                row(**{f.name: None, "status": status}) if f.name != "status" else row(status=None)
    ids = [r["request_id"] for r in rows if r["request_id"] is not None]
    assert len(set(ids)) == len(ids)  # no duplicate: the "x" * n ids have distinct lengths
    return rows


def _quarantined_by_gx(kind: str, rows: list[dict[str, Any]]) -> set[int]:
    """Lines of ``rows`` the pipeline quarantines: the daily path's reader and coercion, then GX without a model suite."""
    model = CFG.model(MODEL_ID[kind])
    model = model.model_copy(update={"validation": model.validation.model_copy(update={"suite": None})})
    body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    (batch,) = list(open_file(body, "s3://b/boundary.jsonl").batches)
    table, rejects = batch_tables(batch, 0)
    assert rejects.num_rows == 0
    valid, invalid = StreamValidator(model, Partition(model.id, DAY)).check(table)
    assert valid.num_rows + invalid.num_rows == len(rows)
    return set(invalid["_line"].to_pylist())


@pytest.mark.parametrize("kind", ["llm", "classifier"])
def test_the_serving_client_refuses_exactly_what_gx_quarantines(kind):
    rows = boundary_rows(kind)
    refused = {line for line, r in enumerate(rows, start=1) if problems(r, kind, variants=CFG.model(MODEL_ID[kind]).allowed_variants(),
                                                                          model_id=MODEL_ID[kind])}
    quarantined = _quarantined_by_gx(kind, rows)
    assert 0 < len(quarantined) < len(rows)  # the boundary set holds both valid and invalid rows
    differ = {line: (rows[line - 1], problems(rows[line - 1], kind)) for line in refused ^ quarantined}
    assert refused == quarantined, differ
