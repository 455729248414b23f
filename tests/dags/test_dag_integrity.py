"""Every DAG parses, carries its operational settings, and keeps heavy imports out of parse time."""

import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(DAGS.glob("modelwatch_*.py"))
HEAVY = ("pandas", "numpy", "pyarrow", "scipy", "sklearn", "torch", "great_expectations", "evidently", "sentence_transformers")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS))


def test_no_import_errors_and_expected_dags(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"modelwatch_daily", "modelwatch_hourly", "modelwatch_rollback", "modelwatch_baseline", "modelwatch_promotion", "modelwatch_fire_drill"}


def test_operational_settings(dagbag):
    for dag in dagbag.dags.values():
        assert "modelwatch" in dag.tags, dag.dag_id
        assert dag.doc_md and len(dag.doc_md) > 80, dag.dag_id
        assert not dag.catchup and dag.max_active_runs <= 2
        for t in dag.tasks:
            assert t.owner == "ml-platform"
            if t.task_id.split(".")[-1] in ("plan_partitions", "signal_breach", "signal_promotion", "approve", "check_links"):
                assert t.retries == 0  # config errors, event emission, a person's answer and a drill's verdict are not retried blindly
            else:
                assert t.retries >= 2, t.task_id


def test_monitoring_dags_map_one_branch_per_model(dagbag):
    for dag_id in ("modelwatch_daily", "modelwatch_hourly"):
        dag = dagbag.dags[dag_id]
        ids = {t.task_id for t in dag.tasks}
        stages = {"plan_partitions", "plan_shards", "check_shard", "monitor.extract", "monitor.validate", "monitor.profile", "monitor.publish", "monitor.signal_breach",
                  "monitor.notify"}
        assert ids == (stages | {"monitor.drift", "monitor.concept", "monitor.judge", "monitor.experiments", "monitor.signal_promotion"} if dag_id == "modelwatch_daily" else stages)  # drift is a daily check
        assert set(dag.params) >= {"target_date", "target_hour", "models"}
        assert [o.name for o in dag.get_task("monitor.signal_breach").outlets] == ["guardrail_breach"]
        assert dag.get_task("monitor.notify").upstream_task_ids == {"monitor.publish"}  # told even when no asset event is emitted
        # the fan-out: every shard of every partition is checked before the partition's reduce step (monitor.extract)
        assert dag.get_task("check_shard").upstream_task_ids == {"plan_shards"}
        assert dag.get_task("monitor.extract").upstream_task_ids == {"plan_partitions", "check_shard"}


def test_every_dag_reports_its_failures(dagbag):
    from modelwatch_notifier import RunFailureNotifier

    for dag in dagbag.dags.values():
        callbacks = dag.on_failure_callback if isinstance(dag.on_failure_callback, list) else [dag.on_failure_callback]
        assert any(isinstance(c, RunFailureNotifier) for c in callbacks), dag.dag_id


def test_baseline_is_manual_with_its_params(dagbag):
    dag = dagbag.dags["modelwatch_baseline"]
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["model_promoted"]  # and manual runs
    assert set(dag.params) == {"model_id", "start", "end", "version"}


def test_rollback_is_scheduled_on_the_breach_asset(dagbag):
    dag = dagbag.dags["modelwatch_rollback"]
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["guardrail_breach"]


def test_promotion_waits_for_a_person_between_plan_and_settle(dagbag):
    dag = dagbag.dags["modelwatch_promotion"]
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["model_promoted"]
    assert dag.get_task("approve").upstream_task_ids == {"forms"}
    assert dag.get_task("settle").upstream_task_ids == {"plan", "approve"}
    assert dag.get_task("approve").operator_name == "HITLOperator" and dag.get_task("approve").retries == 0


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_parsing_does_not_import_heavy_libraries(path):
    code = (
        "import runpy, sys; sys.path.insert(0, %r); runpy.run_path(%r); "
        "print(','.join(m for m in %r if m in sys.modules))" % (str(DAGS), str(path), HEAVY)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), f"{path.name} imports {out.stdout.strip()} at parse time"
