"""A partition (one model's day or hour of traffic) and which one a run processes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any


@dataclass(frozen=True)
class Partition:
    """One closed partition of one model's traffic: a day, or an hour of a day."""

    model_id: str
    dt: date
    hour: int | None = None

    @property
    def label(self) -> str:
        return f"model_id={self.model_id}/dt={self.dt.isoformat()}" + ("" if self.hour is None else f"/hour={self.hour:02d}")

    def path(self, base_uri: str) -> str:
        """``{base}/model_id=M/dt=D[/hour=HH]`` (no trailing slash)."""
        return f"{base_uri.rstrip('/')}/{self.label}"

    def to_dict(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "dt": self.dt.isoformat(), "hour": self.hour}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Partition:
        return cls(d["model_id"], date.fromisoformat(d["dt"]), d.get("hour"))


def resolve_partition(model_id: str, cadence: str, interval_start: datetime | None, target_date: str | None, target_hour: int | None) -> Partition:
    """The closed partition a run processes: the ``target_date`` Param if given, else the data interval's start."""
    if target_date:
        day = date.fromisoformat(target_date)
        hour = None if cadence == "daily" else (target_hour if target_hour is not None else 0)
        return Partition(model_id, day, hour)
    if interval_start is None:
        raise ValueError("a manual run needs the target_date param (YYYY-MM-DD): Airflow 3 manual runs have no data interval")
    start = interval_start.astimezone(UTC)
    return Partition(model_id, start.date(), None if cadence == "daily" else start.hour)
