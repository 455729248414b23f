"""What one Airflow run of modelwatch wrote, as links: the page the Airflow UI shows beside a run or task (plugins/modelwatch_ui.py).

A run of a monitoring DAG processes one partition per model (``plan_partitions``' result); for each,
the links go to its report page, Evidently drift report, ``drift.json`` and ``summary.json`` under
``defaults.reports_uri``, served by the plugin's report endpoint (``report_key``: a key relative to
``reports_uri``). Only published outputs are served: the working data (``_work/``) and the
quarantine (``_quarantine/``, raw traffic lines) never are.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition
from modelwatch.publish.templating import render
from modelwatch.storage.keys import report_uri

MONITORING_DAGS = ("modelwatch_daily", "modelwatch_hourly", "modelwatch_hourly_events")
OUTPUTS: tuple[tuple[str, str], ...] = (
    ("Report page", "index.html"),
    ("Evidently drift report", "report.html"),
    ("drift.json", "drift.json"),
    ("summary.json", "summary.json"),
)
PRIVATE_PREFIXES = ("_work/", "_quarantine/", "_tmp/")  # intermediate rows and raw quarantined lines: never served


@dataclass(frozen=True)
class Link:
    name: str
    key: str  # relative to reports_uri
    written: bool


@dataclass(frozen=True)
class PartitionLinks:
    partition: Partition
    links: list[Link]


def partition_links(cfg: MonitoringConfig, partition: Partition, exists: Callable[[str], bool]) -> PartitionLinks:
    """The partition's outputs, each with whether it is written yet (``exists``: an S3 URI -> bool)."""
    links = []
    for name, file in OUTPUTS:
        uri = report_uri(cfg, partition, file)
        links.append(Link(name, uri[len(cfg.defaults.reports_uri) + 1 :], exists(uri)))
    return PartitionLinks(partition, links)


class NotServed(ValueError):
    """A requested report key that the plugin does not serve (outside the published reports, or a path trick)."""


def report_key(key: str) -> str:
    """``key`` (the path after the report endpoint) if it names a published report file, else NotServed.

    Refuses ``..``, empty or absolute segments, backslashes, and the private prefixes.
    """
    parts = key.split("/")
    if not key or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise NotServed(f"{key!r} is not a report path")
    if any(key.startswith(p) for p in PRIVATE_PREFIXES):
        raise NotServed(f"{key!r} is working data or quarantined traffic, which the report endpoint does not serve")
    return str(PurePosixPath(key))


def content_type(key: str) -> str:
    """The media type a report file is served with (HTML pages, JSON, Parquet, SVG, CSS)."""
    if key.endswith(".parquet"):
        return "application/vnd.apache.parquet"
    guessed, _ = mimetypes.guess_type(key)
    return guessed or "application/octet-stream"


def partitions_of_run(planned: Any, map_index: int | None = None) -> list[Partition]:
    """The run's partitions from ``plan_partitions``' XCom (a list of partition dicts); one when ``map_index`` names a branch."""
    partitions = [Partition.from_dict(p) for p in (planned or [])]
    if map_index is not None and map_index >= 0:
        return partitions[map_index : map_index + 1]
    return partitions


def run_page(dag_id: str, run_id: str, entries: Sequence[PartitionLinks], reports_base: str, note: str | None = None) -> str:
    """The HTML page of a run's links; ``reports_base`` is the (relative) address of the report endpoint."""
    return render("run_links.html", dag_id=dag_id, run_id=run_id, entries=entries, reports_base=reports_base, note=note)
