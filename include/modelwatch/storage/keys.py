"""Where modelwatch keeps what under ``reports_uri``: every output key is a function of model and partition.

Layout::

    _work/model_id=M/dt=D[/hour=H]/        shards/{valid,quarantine,ids}-*.parquet, valid.json (the valid parts' manifest)
    _quarantine/model_id=M/dt=D[/hour=H]/  quarantine.parquet (every rejected row, its reasons and raw text)
    model_id=M/dt=D[/hour=H]/              metrics.parquet, summary.json, index.html, drift.json, report.html,
                                           concept.json, estimation.json, experiments.json, judge.json, judge.parquet
    _baselines/model_id=M/version=V/       manifest.json (last), reference.parquet, profiles.json, embeddings.parquet
    _audit/rollbacks/...                   one audit record per rollback decision
    _experiments/model_id=M/experiment=E/dt=D/  stats.json, latency.parquet (experiments), feedback.json (concept: arms' feedback moments)

"""

from __future__ import annotations

from modelwatch.config import MonitoringConfig
from modelwatch.core.partition import Partition


def baseline_prefix(reports_uri: str, model_id: str, version: str) -> str:
    return f"{reports_uri}/_baselines/model_id={model_id}/version={version}"


def audit_prefix(reports_uri: str, model_id: str, experiment_id: str) -> str:
    return f"{reports_uri.rstrip('/')}/_audit/rollbacks/model_id={model_id}/experiment={experiment_id}"


def promotion_audit_prefix(reports_uri: str, model_id: str, experiment_id: str) -> str:
    return f"{reports_uri.rstrip('/')}/_audit/promotions/model_id={model_id}/experiment={experiment_id}"


def experiment_feedback_uri(reports_uri: str, model_id: str, experiment_id: str, day: str) -> str:
    """The arms' feedback-signal moments of one experiment day, written by concept and merged by experiments."""
    return f"{reports_uri}/_experiments/model_id={model_id}/experiment={experiment_id}/dt={day}/feedback.json"


def work_uri(cfg: MonitoringConfig, partition: Partition, name: str) -> str:
    return f"{partition.path(cfg.defaults.reports_uri + '/_work')}/{name}"


def quarantine_uri(cfg: MonitoringConfig, partition: Partition) -> str:
    return f"{partition.path(cfg.defaults.reports_uri + '/_quarantine')}/quarantine.parquet"


def report_uri(cfg: MonitoringConfig, partition: Partition, name: str) -> str:
    return f"{partition.path(cfg.defaults.reports_uri)}/{name}"


def shard_uri(cfg: MonitoringConfig, partition: Partition, kind: str, shard: int, shards: int) -> str:
    """Where shard ``shard`` of ``shards`` keeps its ``valid``, ``quarantine`` or ``ids`` part."""
    return work_uri(cfg, partition, f"shards/{kind}-{shard:05d}-of-{shards:05d}.parquet")


def summary_uri(cfg: MonitoringConfig, partition: Partition, stage: str, shard: int, shards: int, variant: str = "") -> str:
    """Where shard ``shard`` of ``shards`` keeps stage ``stage``'s summary (``modelwatch.summaries``); ``variant`` names a rebuilt one."""
    suffix = f"-{variant}" if variant else ""
    return work_uri(cfg, partition, f"summaries/{stage}-{shard:05d}-of-{shards:05d}{suffix}.bin")


def valid_manifest_uri(cfg: MonitoringConfig, partition: Partition) -> str:
    return work_uri(cfg, partition, "valid.json")
