"""What every benchmark suite shares: a progress line with elapsed seconds, the record shape ``bench/run.py`` tabulates, and one-core pinning."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

Record = dict[str, Any]


def suite_helpers(suite: str) -> tuple[Callable[[str], None], Callable[..., Record]]:
    """``(log, record)`` for one suite: ``log(message)`` prints a progress line, ``record(case, metric, value, unit, ...)`` builds a result."""
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"  [{suite} {time.perf_counter() - started:6.1f}s] {message}", flush=True)

    def record(case: str, metric: str, value: float | int | None, unit: str, alternative: str | None = None,
               alternative_value: float | int | None = None, target: str | None = None) -> Record:
        return {"suite": suite, "case": case, "metric": metric, "value": value, "unit": unit,
                "alternative": alternative, "alternative_value": alternative_value, "target": target}

    return log, record


def pin_to_one_core() -> None:
    """Run this process on one CPU (the lowest it may use), so a per-core figure is one core's where the OS allows pinning."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
