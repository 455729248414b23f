"""The stage registry and the runner: one contract for every stage, and no traffic, a missing baseline and a skipped stage handled once."""

from __future__ import annotations

import importlib
import sys
import types
from datetime import date
from pathlib import Path
from typing import NotRequired

import pytest
from modelwatch import runner, stages
from modelwatch.core.partition import Partition
from modelwatch.results import PartitionRecord, SkippedRecord
from modelwatch.runner import RecordMismatch, check_record
from modelwatch.stages import STAGES, Stage, StageContext, StageResult, for_cadence
from pydantic import TypeAdapter
from typing_extensions import TypedDict

DAGS = Path(__file__).resolve().parents[2] / "dags"
PARTITION = Partition("m", date(2026, 11, 5))


def test_every_stage_module_declares_what_the_registry_says():
    for spec in STAGES:
        module = importlib.import_module(spec.module)
        assert (module.NAME, tuple(module.NEEDS)) == (spec.name, spec.needs), spec.module
        assert callable(module.run)


def test_a_stage_needs_only_stages_before_it_and_daily_and_hourly_are_the_dag_branches():
    seen: set[str] = set()
    for spec in STAGES:
        assert set(spec.needs) <= seen, f"{spec.name} needs a later stage"
        seen.add(spec.name)
    assert [s.name for s in for_cadence("daily")] == ["extract", "validate", "profile", "drift", "concept", "judge", "experiments", "publish"]
    assert [s.name for s in for_cadence("hourly")] == ["extract", "validate", "profile", "publish"]


def test_the_registry_is_light_enough_for_dag_parsing():
    import subprocess

    code = "import sys, modelwatch.stages; print(','.join(m for m in ('pandas', 'pyarrow', 'numpy', 'pydantic') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == ""


class FakeRecord(TypedDict):
    partition: PartitionRecord
    outcome: str
    seen: NotRequired[int]
    severity: NotRequired[str]
    reason: NotRequired[str]
    fake_uri: NotRequired[str]


FakeRecord.__pydantic_config__ = {"extra": "forbid"}


@pytest.fixture
def fake_stage(monkeypatch):
    """A stage 'fake' (needs validate) whose module records its calls; raises what ``raises`` holds."""
    module = types.ModuleType("fake_stage")
    module.NAME, module.NEEDS, module.calls, module.raises, module.more = "fake", ("validate",), [], None, {}

    def run(ctx, upstream):
        module.calls.append(upstream)
        if module.raises:
            raise module.raises
        return StageResult("fake", {"partition": ctx.partition.to_dict(), "outcome": "ok", "seen": upstream["validate"].record["rows"],
                                    **module.more})

    module.run = run
    monkeypatch.setitem(sys.modules, "fake_stage", module)
    monkeypatch.setattr(stages, "_BY_NAME", {**stages._BY_NAME, "fake": Stage("fake", "fake_stage", FakeRecord, needs=("validate",), baseline="fake.json",
                                                                                 no_baseline={"severity": "none"})})
    return module


def test_no_traffic_is_passed_on_without_running_the_stage(fake_stage):
    ctx = StageContext(None, None, PARTITION)
    result = runner.run_stage("fake", ctx, {"validate": {"partition": PARTITION.to_dict(), "outcome": "no_traffic"}})
    assert result.to_xcom() == {"partition": PARTITION.to_dict(), "outcome": "no_traffic"} and fake_stage.calls == []
    TypeAdapter(SkippedRecord).validate_python(result.to_xcom())


def test_the_stage_gets_typed_upstream_results_and_returns_its_record(fake_stage):
    result = runner.run_stage("fake", StageContext(None, None, PARTITION), {"validate": {"partition": PARTITION.to_dict(), "rows": 3}})
    assert isinstance(fake_stage.calls[0]["validate"], StageResult) and result.outcome == "ok" and result.record["seen"] == 3


def test_a_missing_baseline_becomes_the_stages_no_baseline_record(fake_stage, monkeypatch):
    from modelwatch.baseline.store import BaselineMissing

    written = {}
    monkeypatch.setattr("modelwatch.storage.s3.put_json", lambda client, uri, obj: written.setdefault(uri, obj) and uri)
    cfg = types.SimpleNamespace(defaults=types.SimpleNamespace(reports_uri="s3://r"))
    fake_stage.raises = BaselineMissing("build it first")
    result = runner.run_stage("fake", StageContext(None, cfg, PARTITION), {"validate": {"partition": PARTITION.to_dict(), "rows": 3}})
    uri = "s3://r/model_id=m/dt=2026-11-05/fake.json"
    assert result.record == {"partition": PARTITION.to_dict(), "outcome": "no_baseline", "severity": "none", "reason": "build it first", "fake_uri": uri}
    assert written[uri]["outcome"] == "no_baseline"


def test_a_stage_that_does_not_apply_to_the_model_is_not_configured():
    model = types.SimpleNamespace(judge=None, kind="classifier")
    cfg = types.SimpleNamespace(model=lambda model_id: model)
    result = runner.run_stage("judge", StageContext(None, cfg, PARTITION), {"validate": {"partition": PARTITION.to_dict()}})
    assert result.to_xcom() == {"partition": PARTITION.to_dict(), "outcome": "not_configured"}


def test_a_stage_that_returns_an_undeclared_field_fails_where_it_returns(fake_stage):
    fake_stage.more = {"surprise": 1}
    with pytest.raises(RecordMismatch, match=r"stage 'fake' returned a record that is not a FakeRecord .*surprise: Extra inputs are not permitted"):
        runner.run_stage("fake", StageContext(None, None, PARTITION), {"validate": {"partition": PARTITION.to_dict(), "rows": 3}})


VALIDATED = {"partition": PARTITION.to_dict(), "rows_read": 3, "rows_valid": 2, "rows_quarantined": 1, "invalid_share": 1 / 3,
             "failures": {"latency_ms >= 0": 1}, "examples": {"latency_ms >= 0": ["s3://l/a.jsonl line 2: -4"]},
             "quarantine_uri": "s3://r/q.parquet", "valid_uri": "s3://r/valid.json"}


def test_a_record_is_checked_field_by_field_against_its_declared_type():
    check_record("validate", VALIDATED)
    broken = [
        ({k: v for k, v in VALIDATED.items() if k != "valid_uri"}, "valid_uri: Field required"),
        ({**VALIDATED, "rows_valid": "two"}, "rows_valid: Input should be a valid integer"),
        ({**VALIDATED, "partition": {**PARTITION.to_dict(), "region": "eu"}}, "partition.region: Extra inputs are not permitted"),
        ({**VALIDATED, "failures": {"rule": [1]}}, "failures.rule: Input should be a valid integer"),
    ]
    for rec, problem in broken:
        with pytest.raises(RecordMismatch, match=problem.replace(".", r"\.")):
            check_record("validate", rec)


def test_every_stage_declares_a_record_type_of_modelwatch_results():
    from modelwatch import results
    from typing_extensions import is_typeddict

    for spec in STAGES:
        assert is_typeddict(spec.record) and getattr(results, spec.record.__name__) is spec.record, spec.name
        assert spec.record.__pydantic_config__ == {"extra": "forbid"}
