"""Where log batches go: the partitioned S3 layout and the names of batch files.

``{logs_uri}/model_id={model_id}/dt={YYYY-MM-DD}/hour={HH}/part-<name>.jsonl.gz``, the
layout ``core.partition.Partition`` names and the pipeline reads. A row is filed under the
hour of its own timestamp, so every row lies inside its partition's window.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from modelwatch.core.partition import Partition

PartNamer = Callable[[str], str]  # partition prefix URI -> file name of the next batch there
SUFFIX = ".jsonl.gz"


def parse_timestamp(value: str | datetime) -> datetime:
    """An aware UTC datetime from a contract timestamp (ISO-8601 with offset, ``Z`` allowed)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no UTC offset")
    return moment.astimezone(UTC)


def partition_prefix(logs_uri: str, model_id: str, moment: datetime) -> str:
    """The hour partition of ``moment``: ``{logs_uri}/model_id=M/dt=D/hour=HH`` (no trailing slash), as ``Partition.path`` names it."""
    moment = moment.astimezone(UTC)
    return Partition(model_id, moment.date(), moment.hour).path(logs_uri)


def uuid_part_name(prefix: str) -> str:
    """``part-<uuid4 hex>.jsonl.gz``: unique without coordination between processes."""
    return f"part-{uuid.uuid4().hex}{SUFFIX}"


class SequentialPartNames:
    """``part-00000.jsonl.gz``, ``part-00001.jsonl.gz``, … per partition: deterministic names for replays and backfills.

    A replay that produces the same batches writes the same keys, so running it twice
    overwrites instead of duplicating. Only one writer per partition may use it.
    """

    def __init__(self, start: int = 0):
        self._next: dict[str, int] = {}
        self._start = start
        self._lock = threading.Lock()
        self.issued: list[str] = []  # URIs of the names given out, in order

    def __call__(self, prefix: str) -> str:
        with self._lock:
            n = self._next.get(prefix, self._start)
            self._next[prefix] = n + 1
            name = f"part-{n:05d}{SUFFIX}"
            self.issued.append(f"{prefix}/{name}")
        return name
