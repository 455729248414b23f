"""publish.run_links: the run page the Airflow UI shows escapes what a run id carries, and the report endpoint serves only published files."""

from datetime import date

import pytest
from modelwatch.core.partition import Partition
from modelwatch.publish.run_links import NotServed, content_type, partition_links, partitions_of_run, report_key, run_page


def test_run_page_links_written_outputs_and_escapes_the_run_id(isolated_config):
    cfg = isolated_config
    partition = Partition("support-bot-v3", date(2026, 11, 5))
    written = {f"{partition.path(cfg.defaults.reports_uri)}/index.html", f"{partition.path(cfg.defaults.reports_uri)}/summary.json"}
    entry = partition_links(cfg, partition, written.__contains__)
    page = run_page("modelwatch_daily", 'manual__<script>alert(1)</script>"', [entry], "../../reports")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count(">open</a>") == 2 and page.count("not written yet") == 2
    assert 'href="../../reports/model_id%3Dsupport-bot-v3/dt%3D2026-11-05/index.html"' in page


def test_partitions_of_a_branch_are_its_map_index():
    planned = [{"model_id": "a", "dt": "2026-11-05", "hour": None}, {"model_id": "b", "dt": "2026-11-05", "hour": None}]
    assert [p.model_id for p in partitions_of_run(planned)] == ["a", "b"]
    assert [p.model_id for p in partitions_of_run(planned, 1)] == ["b"]
    assert partitions_of_run(None) == [] and partitions_of_run(planned, 7) == []


@pytest.mark.parametrize("key", ["", "../secret", "a/../../b", "a//b", "/etc/passwd", "a\\b", "_work/model_id=m/dt=d/valid.json",
                                 "_quarantine/model_id=m/dt=d/quarantine.parquet", "./index.html"])
def test_report_key_refuses_what_is_not_a_published_report(key):
    with pytest.raises(NotServed):
        report_key(key)


def test_report_key_and_content_type_of_published_files():
    assert report_key("model_id=m/dt=2026-11-05/index.html") == "model_id=m/dt=2026-11-05/index.html"
    assert content_type("a/index.html") == "text/html" and content_type("a/drift.json") == "application/json"
    assert content_type("a/metrics.parquet") == "application/vnd.apache.parquet"
