"""Which hours of an OpenTelemetry source have landed and are closed, and claiming each hour exactly once.

The bucket's S3 event notifications (on an SQS queue, directly or through SNS) name the export files as they
land; ``modelwatch_hourly_events`` hands each run's messages here. A file is mapped to the hours that read it
through the source's partition format (``ingest.otel.export_time``): the hour it was written in and, when it was
written within ``late_minutes`` of an hour's start, the hour before (the exporter files spans by export time).

An hour is *closed*, and then processed, when either

* its read window (the hour plus ``late_minutes``) ended ``grace_minutes`` ago, or
* an export written after its read window has landed.

The second rule lets an hour run as soon as the exporter has moved on: the Collector flushes its batches in
export-time order, so a later file means the window's files were written. The first one closes an hour whose
traffic stopped, since then no later file comes. Neither rule can see a Collector that lags behind another;
what such a Collector delivers after the claim is a late arrival (below), never a second run.

State, under ``reports_uri`` (every write conditional, ``storage.s3.put_if_absent``)::

    _arrivals/model_id=M/dt=D/hour=H/<written>-<digest>.json   one record per export file landed before the claim
    _arrivals/model_id=M/dt=D/hour=H/_claimed.json             the claim: which run processes the hour
    model_id=M/dt=D/hour=H/late_arrivals/<digest>.json         a file that landed after the claim (not re-run)

A duplicate or re-delivered notification finds its arrival (or late-arrival) record and changes nothing; a
closed hour is claimed by one run only, so no hour is processed twice. Runs are serial (the DAG's
``max_active_runs=1``), so an arrival cannot slip in between a run's listing and its claim.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from modelwatch.config import MonitoringConfig
from modelwatch.config_sources import OtelEvents, OtelSource
from modelwatch.core.partition import Partition
from modelwatch.ingest.otel import export_time, is_trace_file
from modelwatch.storage.keys import report_uri
from modelwatch.storage.s3 import list_objects, put_if_absent

CLAIM = "_claimed.json"
_WRITTEN = "%Y%m%dT%H%M"
_HOUR = timedelta(hours=1)


class BadMessage(ValueError):
    """A queue message that is not an S3 event notification (nor SNS-wrapped one, nor the s3:TestEvent)."""


# -- messages ------------------------------------------------------------------------------------------------


def object_uris(body: str) -> list[str]:
    """The ``s3://bucket/key`` of every object an S3 event notification names as created; [] for ``s3:TestEvent``.

    Keys arrive URL-encoded (form encoding: a space is ``+``); an SNS notification carries the S3 one as its
    ``Message``. Raises ``BadMessage`` naming what is missing for anything else.
    """
    try:
        message = json.loads(body)
    except (TypeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"queue message is not JSON ({exc}): {str(body)[:200]!r}") from None
    if isinstance(message, dict) and message.get("Type") == "Notification" and isinstance(message.get("Message"), str):
        return object_uris(message["Message"])  # SNS -> SQS delivery
    if not isinstance(message, dict):
        raise BadMessage(f"queue message is JSON but not an object: {str(body)[:200]!r}")
    if message.get("Event") == "s3:TestEvent":
        return []
    records = message.get("Records")
    if not isinstance(records, list):
        raise BadMessage(f"queue message has no Records list (expected an S3 event notification): {str(body)[:200]!r}")
    uris = []
    for record in records:
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        try:
            uris.append(f"s3://{record['s3']['bucket']['name']}/{unquote_plus(record['s3']['object']['key'])}")
        except (KeyError, TypeError):
            raise BadMessage(f"S3 event record lacks s3.bucket.name or s3.object.key: {json.dumps(record)[:200]}") from None
    return uris


def event_bodies(events: Iterable[Any]) -> Iterator[str]:
    """The SQS message bodies of asset events that the SQS trigger emitted (``extra.payload.message_batch[].Body``)."""
    for event in events:
        extra = getattr(event, "extra", event) or {}
        for message in (extra.get("payload") or {}).get("message_batch") or ():
            yield message.get("Body", "")


# -- files and hours -----------------------------------------------------------------------------------------


def event_sources(cfg: MonitoringConfig) -> dict[str, OtelSource]:
    """model id -> its OpenTelemetry source, for the models whose hours run when their exports land."""
    return {m.id: m.source.otel for m in cfg.models if m.source is not None and m.source.otel.events is not None}


def hours_reading(source: OtelSource, written: datetime) -> list[datetime]:
    """The starts of the hours whose read window (``ingest.otel.list_exports``) holds a file written at ``written``."""
    hour = written.replace(minute=0, second=0, microsecond=0)
    late = timedelta(minutes=source.late_minutes)
    return [hour - _HOUR, hour] if written - hour < late else [hour]


def window_end(source: OtelSource, hour: datetime) -> datetime:
    """When the last file an hour reads can be written: the hour's end plus the source's ``late_minutes``."""
    return hour + _HOUR + timedelta(minutes=source.late_minutes)


def is_closed(source: OtelSource, events: OtelEvents, hour: datetime, now: datetime, latest_written: datetime | None) -> bool:
    """The closing rule of the module docstring: grace after the read window, or a file of a later window landed."""
    end = window_end(source, hour)
    return now >= end + timedelta(minutes=events.grace_minutes) or (latest_written is not None and latest_written >= end)


def _partition(model_id: str, hour: datetime) -> Partition:
    return Partition(model_id, hour.date(), hour.hour)


def _digest(uri: str) -> str:
    return hashlib.sha256(uri.encode()).hexdigest()[:32]


def arrivals_prefix(cfg: MonitoringConfig, partition: Partition) -> str:
    return partition.path(cfg.defaults.reports_uri + "/_arrivals")


def late_uri(cfg: MonitoringConfig, partition: Partition, uri: str) -> str:
    return report_uri(cfg, partition, f"late_arrivals/{_digest(uri)}.json")


# -- recording and claiming ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one run did with its messages: counted so its log says where every message and file went."""

    messages: int = 0
    test_events: int = 0
    bad: list[str] = field(default_factory=list)  # why each unreadable message was dropped
    not_exports: int = 0  # objects outside every event source, or not a traces export
    arrived: int = 0
    duplicates: int = 0
    late: list[str] = field(default_factory=list)  # "<partition> <uri>" of each new late arrival

    def as_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "test_events": self.test_events, "bad": self.bad, "not_exports": self.not_exports,
                "arrived": self.arrived, "duplicates": self.duplicates, "late": self.late}


def record_file(client, cfg: MonitoringConfig, model_id: str, source: OtelSource, uri: str, written: datetime, landed: datetime,
                tally: Tally) -> None:
    """Record one landed export for every hour that reads it: an arrival before the hour's claim, a late arrival after."""
    for hour in hours_reading(source, written):
        partition = _partition(model_id, hour)
        prefix = arrivals_prefix(cfg, partition)
        body = json.dumps({"uri": uri, "written": written.isoformat(), "landed": landed.isoformat()}).encode()
        names = {found.rsplit("/", 1)[-1] for found, _ in list_objects(client, prefix)}
        if any(name.endswith(f"-{_digest(uri)}.json") for name in names):
            tally.duplicates += 1  # a re-delivery of a file recorded before the claim
        elif CLAIM in names:
            if put_if_absent(client, late_uri(cfg, partition, uri), body):
                tally.late.append(f"{partition.label} {uri}")
            else:
                tally.duplicates += 1
        elif put_if_absent(client, f"{prefix}/{written.strftime(_WRITTEN)}-{_digest(uri)}.json", body):
            tally.arrived += 1
        else:
            tally.duplicates += 1


def record_messages(client, cfg: MonitoringConfig, bodies: Iterable[str], landed: datetime) -> Tally:
    """Record every export file the messages name, for each model whose event source holds it."""
    sources = event_sources(cfg)
    tally = Tally()
    for body in bodies:
        tally.messages += 1
        try:
            uris = object_uris(body)
        except BadMessage as exc:
            tally.bad.append(str(exc))
            continue
        tally.test_events += not uris
        for uri in uris:
            owners = [(m, s) for m, s in sources.items() if uri.startswith(s.uri + "/") and is_trace_file(s, uri)]
            written = [(m, s, export_time(s, uri)) for m, s in owners]
            written = [(m, s, w) for m, s, w in written if w is not None]
            tally.not_exports += not written
            for model_id, source, at in written:
                record_file(client, cfg, model_id, source, uri, at, landed, tally)
    return tally


def _landed_hours(client, cfg: MonitoringConfig, model_id: str, now: datetime, lookback_hours: int) -> dict[datetime, tuple[bool, datetime | None]]:
    """Hour start -> (claimed, latest file written in it) for every hour with records in the lookback window."""
    first = (now - timedelta(hours=lookback_hours)).date()
    days = [first + timedelta(days=d) for d in range((now.date() - first).days + 1)]
    hours: dict[datetime, tuple[bool, datetime | None]] = {}
    for day in days:
        for uri, _ in list_objects(client, f"{cfg.defaults.reports_uri}/_arrivals/model_id={model_id}/dt={day.isoformat()}"):
            hour_part, name = uri.rsplit("/", 2)[-2:]
            hour = datetime(day.year, day.month, day.day, int(hour_part.removeprefix("hour=")), tzinfo=UTC)
            claimed, latest = hours.get(hour, (False, None))
            if name == CLAIM:
                hours[hour] = (True, latest)
                continue
            written = datetime.strptime(name.split("-", 1)[0], _WRITTEN).replace(tzinfo=UTC)
            hours[hour] = (claimed, written if latest is None else max(latest, written))
    return hours


def claim_closed_hours(client, cfg: MonitoringConfig, now: datetime, claimant: str) -> list[Partition]:
    """Claim every landed, unclaimed, closed hour of every event source (a conditional write each); the claimed partitions.

    An hour another run claimed first is left to it. Hours older than ``lookback_hours`` are not looked at.
    """
    claimed: list[Partition] = []
    for model_id, source in event_sources(cfg).items():
        events = source.events
        assert events is not None  # event_sources keeps only sources with events
        hours = _landed_hours(client, cfg, model_id, now, events.lookback_hours)
        latest = max((w for _, w in hours.values() if w is not None), default=None)
        for hour in sorted(hours):
            if hours[hour][0] or hour < now - timedelta(hours=events.lookback_hours) or not is_closed(source, events, hour, now, latest):
                continue
            partition = _partition(model_id, hour)
            body = json.dumps({"claimed_by": claimant, "at": now.isoformat()}).encode()
            if put_if_absent(client, f"{arrivals_prefix(cfg, partition)}/{CLAIM}", body):
                claimed.append(partition)
    return claimed
