"""The kill switch: arm weights from the routing document the rollback DAG writes to S3.

The document (``rollback.actions.RoutingDocumentAction``, location ``rollback.uri`` in the
model's config) looks like::

    {"model_id": "support-bot-v3", "version": 3,
     "experiments": {"exp-042": {"state": "rolled_back", "weights": {"control": 1.0, "treatment": 0.0}, ...}}}

For each experiment the effective weights are, in order:

1. all traffic to control when the document cannot be read (network, permissions, bad
   JSON, a malformed entry) and no good copy younger than ``max_stale_s`` is cached;
2. all traffic to control when the experiment's state is ``rolled_back``;
3. the document's ``weights`` for the experiment, when it gives them (they must name
   exactly the experiment's arms and sum to 1, else rule 1 applies);
4. the experiment's configured weights, when the document has no entry for it or does
   not exist yet (the rollback DAG creates it on the first rollback).

The document is read once at start, then refreshed every ``refresh_s`` by a daemon
thread (``background=True``) or, lazily, by the first call after ``refresh_s`` has passed.
A rollback thus takes effect in serving within ``refresh_s``, without a deploy.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelwatch.core.uris import split_uri

log = logging.getLogger("modelwatch.serving")
ROLLED_BACK = "rolled_back"  # rollback.ROLLED_BACK (that module needs pyarrow through storage)


@dataclass(frozen=True)
class Experiment:
    """An experiment as the router sees it: id (the assignment salt), arm weights, and the arm that is control."""

    id: str
    weights: Mapping[str, float]
    control: str = "control"

    def __post_init__(self) -> None:
        check_weights(self.weights, f"experiment {self.id!r}")
        if self.control not in self.weights:
            raise ValueError(f"experiment {self.id!r}: control arm {self.control!r} is not among its arms {sorted(self.weights)}")
        object.__setattr__(self, "weights", dict(self.weights))

    @classmethod
    def from_config(cls, experiment: Any) -> Experiment:
        """From the config's ``Experiment`` (anything with ``id``, ``control`` and ``weights()``), without importing the config."""
        return cls(experiment.id, experiment.weights(), experiment.control)

    def all_to_control(self) -> dict[str, float]:
        return {arm: 1.0 if arm == self.control else 0.0 for arm in self.weights}


def check_weights(weights: Mapping[str, float], where: str) -> None:
    """Raise ``ValueError`` unless ``weights`` is a non-empty map of finite shares >= 0 that sum to 1."""
    if not weights:
        raise ValueError(f"{where}: no arms; give weights such as {{'control': 0.9, 'treatment': 0.1}}")
    for arm, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ValueError(f"{where}: weight of arm {arm!r} must be a finite number >= 0, got {w!r}")
    if abs(sum(weights.values()) - 1.0) > 1e-6:
        raise ValueError(f"{where}: arm weights must sum to 1, got {dict(weights)} (sum {sum(weights.values()):g})")


@dataclass(frozen=True)
class Decision:
    """Weights to route with, and why: ``configured``, ``routing_document``, ``rolled_back`` or ``unreadable``."""

    weights: dict[str, float]
    source: str


@dataclass
class _State:
    document: dict[str, Any] | None = None
    read_at: float | None = None  # monotonic time of the last good read
    attempted_at: float | None = None
    error: str | None = None
    reads: int = 0
    failures: int = 0


class KillSwitch:
    """Reads and caches the routing document; ``decide(experiment)`` gives the weights to use now."""

    def __init__(self, client, uri: str, *, refresh_s: float = 30.0, max_stale_s: float | None = None, background: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        split_uri(uri)
        if refresh_s <= 0:
            raise ValueError(f"refresh_s must be > 0, got {refresh_s}")
        self.client, self.uri, self.refresh_s = client, uri, refresh_s
        self.max_stale_s = 3 * refresh_s if max_stale_s is None else max_stale_s
        self.clock = clock
        self._state = _State()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.refresh()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="modelwatch-routing", daemon=True)
            self._thread.start()

    def _fetch(self) -> dict[str, Any]:
        """The document, ``{}`` when it does not exist yet; raises on any other failure."""
        bucket, key = split_uri(self.uri)
        try:
            body = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            response = getattr(exc, "response", None)  # botocore ClientError
            code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
            if code in ("NoSuchKey", "404"):
                return {}
            raise
        document = json.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("experiments", {}), dict):
            raise ValueError(f"{self.uri}: expected a JSON object with an 'experiments' object, got {str(document)[:80]!r}")
        return document

    def refresh(self) -> bool:
        """Read the document now; True when it was read. A failure keeps the last good copy (until it is stale)."""
        now = self.clock()
        try:
            document = self._fetch()
        except Exception as exc:  # noqa: BLE001 - any failure to read means: fall back safely
            with self._lock:
                first = self._state.error is None
                self._state.attempted_at, self._state.error = now, f"{type(exc).__name__}: {exc}"
                self._state.failures += 1
            if first:
                log.warning("modelwatch: cannot read the routing document %s (%s); routing to control once the last good copy is stale",
                            self.uri, self._state.error)
            return False
        with self._lock:
            self._state.document, self._state.read_at, self._state.attempted_at, self._state.error = document, now, now, None
            self._state.reads += 1
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh()

    def _current(self) -> dict[str, Any] | None:
        if self._thread is None:
            attempted = self._state.attempted_at
            if attempted is None or self.clock() - attempted >= self.refresh_s:
                self.refresh()
        with self._lock:
            state = self._state
            fresh = state.read_at is not None and self.clock() - state.read_at <= self.max_stale_s
            return state.document if fresh else None

    def decide(self, experiment: Experiment) -> Decision:
        """The weights for ``experiment`` right now (see the module docstring for the rules)."""
        document = self._current()
        if document is None:
            return Decision(experiment.all_to_control(), "unreadable")
        entry = document.get("experiments", {}).get(experiment.id)
        if entry is None:
            return Decision(dict(experiment.weights), "configured")
        if not isinstance(entry, dict):
            return Decision(experiment.all_to_control(), "unreadable")
        if entry.get("state") == ROLLED_BACK:
            return Decision(experiment.all_to_control(), ROLLED_BACK)
        weights = entry.get("weights")
        if weights is None:
            return Decision(dict(experiment.weights), "configured")
        try:
            if not isinstance(weights, dict) or set(weights) != set(experiment.weights):
                raise ValueError(f"arms {sorted(weights) if isinstance(weights, dict) else weights!r} != {sorted(experiment.weights)}")
            check_weights(weights, f"{self.uri} experiments.{experiment.id}.weights")
        except ValueError as exc:
            log.warning("modelwatch: routing document %s has unusable weights for %s (%s); routing to control", self.uri, experiment.id, exc)
            return Decision(experiment.all_to_control(), "unreadable")
        return Decision({arm: float(w) for arm, w in weights.items()}, "routing_document")

    def stats(self) -> dict[str, Any]:
        with self._lock:
            s = self._state
            return {"uri": self.uri, "reads": s.reads, "failures": s.failures, "last_error": s.error,
                    "version": (s.document or {}).get("version"), "age_s": None if s.read_at is None else self.clock() - s.read_at}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
