"""Sequential change detection over the per-row loss stream (river's ADWIN by default, Page–Hinkley as an option)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

DETECTORS: tuple[str, ...] = ("adwin", "page_hinkley")


# --------------------------------------------------------------------------- change detection


@dataclass(frozen=True)
class Detection:
    """A change the detector signalled at ``position`` of the loss stream (0-based, timestamp order).

    ``row`` is the index label of that row in the analysed frame. ``mean_before`` is the
    mean loss from the previous detection (or the start) up to and including this one;
    ``mean_after`` from here to the next detection (or the end); None when that part is empty.
    Detection lags the true change by the detector's delay, so ``mean_before`` includes a
    few post-change rows.
    """

    position: int
    row: Any
    timestamp: str | None
    day: str | None
    mean_before: float
    mean_after: float | None
    n_before: int
    n_after: int

    @property
    def direction(self) -> str:
        if self.mean_after is None:
            return "unknown"
        return "worse" if self.mean_after > self.mean_before else "better"

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "row": self.row, "timestamp": self.timestamp, "day": self.day,
                "mean_before": self.mean_before, "mean_after": self.mean_after, "n_before": self.n_before,
                "n_after": self.n_after, "direction": self.direction}


def _jsonable_index(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, (int, float, str)) or value is None else str(value)


def make_detector(detector: str = "adwin", *, delta: float = 0.002, clock: int = 32, threshold: float = 50.0, ph_delta: float = 0.005, min_instances: int = 30) -> Any:
    """A ``river.drift`` detector (river 0.26: ``update(x)`` then read ``drift_detected``).

    ``adwin``: ``river.drift.ADWIN(delta, clock)`` — Bifet & Gavaldà 2007; ``delta`` is the
    confidence of the cut test (smaller: fewer false alarms, later detection), ``clock`` how
    often it checks (river's default 32, so detections land on every 32nd row).
    ``page_hinkley``: ``river.drift.PageHinkley(min_instances, ph_delta, threshold, mode="both")``
    — Page 1954; ``threshold`` is lambda, ``ph_delta`` the tolerated magnitude of change.
    """
    from river import drift

    if detector == "adwin":
        return drift.ADWIN(delta=delta, clock=clock)
    if detector == "page_hinkley":
        return drift.PageHinkley(min_instances=min_instances, delta=ph_delta, threshold=threshold, mode="both")
    raise ValueError(f"unknown detector {detector!r}; use one of {DETECTORS}")


def detect_changes(
    values: Sequence[float],
    timestamps: Sequence[Any] | None = None,
    rows: Sequence[Any] | None = None,
    *,
    detector: str = "adwin",
    delta: float = 0.002,
    clock: int = 32,
    threshold: float = 50.0,
    ph_delta: float = 0.005,
) -> list[Detection]:
    """Run a river change detector over ``values`` in the given order and report each detection.

    ``timestamps`` (UTC) and ``rows`` (index labels), when given, are aligned with ``values``
    and name where each detection falls. See ``make_detector`` for the parameters.
    """
    x = np.asarray(values, dtype=float)
    if np.isnan(x).any():
        raise ValueError("the loss stream contains NaN; drop unlabelled rows first")
    det = make_detector(detector, delta=delta, clock=clock, threshold=threshold, ph_delta=ph_delta)
    positions: list[int] = []
    for i, value in enumerate(x):
        det.update(float(value))
        if det.drift_detected:
            positions.append(i)
    ts = pd.to_datetime(pd.Series(list(timestamps)), utc=True) if timestamps is not None else None
    bounds = [0] + [p + 1 for p in positions] + [len(x)]
    out: list[Detection] = []
    for k, p in enumerate(positions):
        before = x[bounds[k] : p + 1]
        after = x[p + 1 : bounds[k + 2]]
        stamp = ts.iloc[p] if ts is not None else None
        out.append(
            Detection(
                position=p,
                row=_jsonable_index(rows[p]) if rows is not None else p,
                timestamp=None if stamp is None or pd.isna(stamp) else stamp.isoformat(),
                day=None if stamp is None or pd.isna(stamp) else stamp.date().isoformat(),
                mean_before=float(before.mean()),
                mean_after=float(after.mean()) if len(after) else None,
                n_before=len(before),
                n_after=len(after),
            )
        )
    return out
