"""The embedded runtime restarts a component that exits, as a deployment's restart policy would."""

import sys

from modelwatch.runtime.localstack import LocalAirflow


def test_a_component_that_exits_is_restarted_and_recorded(tmp_path):
    airflow = LocalAirflow(tmp_path / "airflow")
    airflow._run([sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path / "quits.log")
    airflow._run([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "stays.log")
    first, steady = airflow.procs[0].pid, airflow.procs[1].pid
    airflow.procs[0].wait(10)
    try:
        airflow.keep_running()
        assert len(airflow.restarts) == 1 and "exited with 3; restarted" in airflow.restarts[0]
        assert airflow.procs[0].pid != first and airflow.procs[1].pid == steady  # the running one is left alone
        running = list(airflow.procs)
    finally:
        airflow.stop()
    assert all(p.poll() is not None for p in running)  # stop() ends the restarted process too
