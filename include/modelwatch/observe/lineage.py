"""The OpenLineage datasets of what a modelwatch task read and wrote on S3 (the DAGs report them through Airflow's hook lineage).

A task's S3 requests are many objects (hour files, shard parts, report files); lineage wants the
datasets a data-platform team recognises. ``dataset`` maps an object to one, following the
OpenLineage naming of S3 datasets (namespace ``s3://bucket``, name the key or key prefix):

- a log or OpenTelemetry export file: its day partition (``.../model_id=M/dt=D``, or the export
  layout's ``year=/month=/day=`` prefix), the unit a run reads;
- a baseline file: the baseline version (``_baselines/model_id=M/version=V``);
- a label file, a report file (``model_id=M/dt=D/summary.json``, ``drift.json``, ``index.html``, ...),
  the quarantine, an audit record, a routing document: the object itself;
- modelwatch's own intermediate data (``_work/``, ``_tmp/``, the embedding cache ``_cache/``, the
  experiments' daily statistics ``_experiments/``): no dataset, since no one outside reads it.

``TaskLineage`` collects the datasets of one task from its S3 client's requests (botocore events),
so every stage is covered without a line in any stage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from modelwatch.config import MonitoringConfig

READS = frozenset({"GetObject", "SelectObjectContent"})
WRITES = frozenset({"PutObject", "CopyObject", "CompleteMultipartUpload"})
INTERNAL = ("_work/", "_tmp/", "_cache/", "_experiments/")
_DAY_PARTITION = re.compile(r"^(.*?/model_id=[^/]+/dt=\d{4}-\d{2}-\d{2})(?:/|$)")
_EXPORT_DAY = re.compile(r"^(.*?year=\d{4}/month=\d{2}/day=\d{2})(?:/|$)")
_BASELINE = re.compile(r"^(_baselines/model_id=[^/]+/version=[^/]+)(?:/|$)")


def _under(uri: str, prefix: str) -> str | None:
    """``uri``'s path below ``prefix`` (an s3:// URI), or None when it is not below it."""
    prefix = prefix.rstrip("/") + "/"
    return uri[len(prefix) :] if uri.startswith(prefix) else None


def dataset(cfg: MonitoringConfig, uri: str) -> str | None:
    """The dataset (an s3:// URI) the object ``uri`` belongs to, or None for modelwatch's intermediate data."""
    reports = _under(uri, cfg.defaults.reports_uri)
    if reports is not None:
        if reports.startswith(INTERNAL):
            return None
        baseline = _BASELINE.match(reports)
        return f"{cfg.defaults.reports_uri}/{baseline.group(1)}" if baseline else uri
    for logs in (cfg.defaults.logs_uri, *(m.source.otel.uri for m in cfg.models if m.source is not None)):
        below = _under(uri, logs)
        if below is not None:
            day = _DAY_PARTITION.match(f"/{below}") or _EXPORT_DAY.match(below)
            if day:
                return f"{logs.rstrip('/')}/{day.group(1).lstrip('/')}"
    return uri


@dataclass
class TaskLineage:
    """The datasets one task read and wrote, in first-seen order."""

    cfg: MonitoringConfig
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def observe(self, operation: str, bucket: str | None, key: str | None) -> tuple[str, str] | None:
        """Record one S3 request; returns ("input" | "output", dataset) when it is a new dataset of the task."""
        if not bucket or not key or (operation not in READS and operation not in WRITES):
            return None
        found = dataset(self.cfg, f"s3://{bucket}/{key}")
        if found is None:
            return None
        side, seen = ("input", self.inputs) if operation in READS else ("output", self.outputs)
        if found in seen:
            return None
        seen.append(found)
        return side, found

    def watch(self, client, on_new=None) -> None:
        """Observe every request ``client`` makes from now on (botocore's ``before-parameter-build`` events, which see the
        API parameters); ``on_new(side, dataset)`` for each new dataset."""

        def before_parameter_build(params, model, **_):
            new = self.observe(model.name, params.get("Bucket"), params.get("Key"))
            if new is not None and on_new is not None:
                on_new(*new)

        client.meta.events.register("before-parameter-build.s3", before_parameter_build)
