"""The emitter's and router's counters for Prometheus, through a ``prometheus_client`` custom collector.

``prometheus_client`` is optional: ``register`` returns None (and says so in the log)
when it is not installed; nothing else in ``modelwatch.serving`` imports it.

Series (label ``model_id``):

- ``modelwatch_emitter_rows_total{outcome}``: ``emitted``, ``invalid``, ``flushed``, ``spilled``, ``resent``, ``dropped``;
- ``modelwatch_emitter_buffered_rows``, ``modelwatch_emitter_spill_pending_batches`` (gauges);
- ``modelwatch_router_requests_total{variant}`` and ``modelwatch_router_shadow_total{outcome}`` for a router.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from modelwatch.serving.emitter import COUNTERS, LogEmitter

log = logging.getLogger("modelwatch.serving")


class ServingCollector:
    """Reads the counters at scrape time (no double bookkeeping)."""

    def __init__(self, emitter: LogEmitter, router: Any = None):
        self.emitter, self.router = emitter, router

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        stats = self.emitter.stats()
        model = self.emitter.model_id
        rows = CounterMetricFamily("modelwatch_emitter_rows", "Rows by outcome at the serving-side log emitter", labels=["model_id", "outcome"])
        for name in COUNTERS:
            rows.add_metric([model, name], stats[name])
        yield rows
        yield _gauge("modelwatch_emitter_buffered_rows", "Rows buffered, not yet flushed", model, stats["buffered"])
        yield _gauge("modelwatch_emitter_spill_pending_batches", "Batches in the spill directory waiting to be re-sent", model, stats["spill_pending"])
        if self.router is not None:
            counts = self.router.stats()
            requests = CounterMetricFamily("modelwatch_router_requests", "Requests served per variant", labels=["model_id", "variant"])
            for arm in self.router.arms:
                requests.add_metric([model, arm], counts.get(arm, 0))
            yield requests
            shadow = CounterMetricFamily("modelwatch_router_shadow", "Shadow calls by outcome", labels=["model_id", "outcome"])
            for outcome in ("started", "ok", "failed", "skipped"):
                shadow.add_metric([model, outcome], counts.get(f"shadow_{outcome}", 0))
            yield shadow


def _gauge(name: str, documentation: str, model: str, value: float) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    gauge = GaugeMetricFamily(name, documentation, labels=["model_id"])
    gauge.add_metric([model], value)
    return gauge


def register(emitter: LogEmitter, router: Any = None, registry: Any = None) -> ServingCollector | None:
    """Register the counters with ``registry`` (default: prometheus_client's global one); None if prometheus_client is missing."""
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        log.warning("modelwatch: prometheus_client is not installed; the emitter's counters stay available through stats()")
        return None
    collector = ServingCollector(emitter, router)
    (registry if registry is not None else REGISTRY).register(collector)
    return collector
