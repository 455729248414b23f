"""Deterministic, sticky experiment assignment: the function a serving router and the log checks share.

A unit (user or request id) is hashed with the experiment id as salt into one of
10,000 buckets (SHA-256, first 8 bytes), and the buckets are cut by the arms' weights
in the order given. The same unit always lands in the same arm of the same
experiment, and different experiments are independent of each other.
"""

from __future__ import annotations

import hashlib

BUCKETS = 10_000


def bucket(unit_id: str, salt: str) -> int:
    """The unit's bucket in [0, BUCKETS) for this salt."""
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign(unit_id: str, salt: str, weights: dict[str, float]) -> str:
    """The arm for ``unit_id``; ``weights`` are shares that sum to 1 (checked)."""
    total = sum(weights.values())
    if not weights or abs(total - 1.0) > 1e-6 or any(w < 0 for w in weights.values()):
        raise ValueError(f"arm weights must be non-negative and sum to 1, got {weights}")
    point = bucket(unit_id, salt)
    edge = 0.0
    arms = list(weights.items())
    for arm, weight in arms:
        edge += weight * BUCKETS
        if point < round(edge):
            return arm
    return arms[-1][0]
