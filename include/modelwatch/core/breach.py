"""The identity of a breach: the same breach re-detected by a re-run has the same id."""

from __future__ import annotations

import hashlib


def breach_id(model_id: str, experiment_id: str, partition_label: str, metric: str) -> str:
    """Stable id of one breach: the same breach re-detected by a re-run has the same id."""
    return hashlib.sha256(f"{model_id}|{experiment_id}|{partition_label}|{metric}".encode()).hexdigest()[:20]
