"""OpenTelemetry GenAI spans, as the Collector's ``awss3exporter`` archives them, mapped to the log contract.

A model with ``source: {otel: ...}`` (``config_sources.OtelSource``) has no log lines: its traffic is the
spans its service exports through the Collector to S3, one ``ExportTraceServiceRequest`` per file under
``{uri}/{partition_format}/``, marshalled as OTLP/JSON (``otlp_json``: lowerCamelCase keys, trace and span ids
in hex, 64-bit integers as strings) or OTLP protobuf (``otlp_proto``), gzipped or not. Both are parsed into
the protobuf messages of ``opentelemetry-proto``; OTLP/JSON's hex ids (protobuf's JSON mapping expects base64)
are converted in one place, ``_hex_ids_to_base64``.

Each span that is a model request becomes one row of ``core.contract.FIELDS``, so everything downstream is
unchanged. Covered: the GenAI semantic conventions v1.26 to v1.38 (the current names), with the renames
accepted both ways:

* model: ``gen_ai.response.model``, ``gen_ai.request.model``, else the resource's ``service.name`` (the
  config's ``models`` says which names are this model); provider ``gen_ai.provider.name`` (v1.37+) or
  ``gen_ai.system`` (before);
* tokens: ``gen_ai.usage.input_tokens`` / ``output_tokens`` (v1.27+) or ``prompt_tokens`` / ``completion_tokens``;
* texts: ``gen_ai.input.messages`` / ``gen_ai.output.messages`` (v1.37+, JSON text or structured), the span
  events ``gen_ai.user.message`` / ``gen_ai.choice`` (v1.28-v1.36), ``gen_ai.content.prompt`` /
  ``gen_ai.content.completion`` (v1.26-v1.27), and the ``gen_ai.prompt`` / ``gen_ai.completion`` attributes
  (also OpenLLMetry's indexed ``gen_ai.prompt.0.content``);
* status: the span status, ``error.type`` (a timeout when it names one), a ``content_filter`` finish reason;
* arm: the feature-flag conventions (``feature_flag.key`` with ``feature_flag.result.variant``, v1.32+, or
  ``feature_flag.variant`` before; on the span or its ``feature_flag.evaluation`` event) or a configured attribute;
* cost: the config's price table (OpenTelemetry carries no price).

Spans that are not GenAI model requests (HTTP, database, tool, agent or embedding spans, other models) are
counted by reason and skipped; a span whose texts cannot be read is a read reject with its reason. A damaged
export file (gzip cut short, JSON or protobuf broken) is the file's problem, marked damaged, with the byte where
decoding stopped; the spans decoded before the damage are kept and the rest is one read reject at that position.
A row's line (``_line``) is the span's position in its file, counting every span from 1.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from modelwatch.config import Model, MonitoringConfig
from modelwatch.config_sources import OtelSource
from modelwatch.core.partition import Partition
from modelwatch.ingest.readers import BATCH_ROWS, GZIP_MAGIC, FileStream, RawBatch, gunzip_tolerant
from modelwatch.ingest.schema import RAW_LIMIT

MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})  # gen_ai.operation.name of a model request
TEXT_PART = "text"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DIRECTIVE_PATTERNS = {"Y": r"(?P<Y>\d{4})", "y": r"(?P<y>\d{2})", "m": r"(?P<m>\d{2})", "d": r"(?P<d>\d{2})", "j": r"(?P<j>\d{3})",
                       "H": r"(?P<H>\d{2})", "M": r"(?P<M>\d{2})"}
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


# -- the exporter's key layout -------------------------------------------------------------------------------


def _window(partition: Partition) -> tuple[datetime, datetime]:
    start = datetime(partition.dt.year, partition.dt.month, partition.dt.day, partition.hour or 0, tzinfo=UTC)
    return start, start + (timedelta(days=1) if partition.hour is None else timedelta(hours=1))


def _listing_prefix(source: OtelSource, at: datetime, hourly: bool) -> str:
    """The part of the partition format fixed within ``at``'s day (or hour), rendered: the S3 prefix to list."""
    fixed = set("Yymdj") | ({"H"} if hourly else set())
    cut = next((m.start() for m in re.finditer(r"%(.)", source.partition_format) if m.group(1) not in fixed), len(source.partition_format))
    directories = source.partition_format[: source.partition_format.rfind("/", 0, cut) + 1]  # whole directories: S3 lists under a folder
    return f"{source.uri}/{at.strftime(directories)}".rstrip("/")


@functools.lru_cache(maxsize=64)
def _key_pattern(uri: str, partition_format: str) -> re.Pattern[str]:
    """A regular expression matching ``{uri}/{partition_format}/`` at the start of a key, a named group per directive."""
    parts = re.split(r"%(.)", partition_format)  # literal, directive, literal, ...
    body = "".join(_DIRECTIVE_PATTERNS[p] if i % 2 else re.escape(p) for i, p in enumerate(parts))
    return re.compile(re.escape(uri + "/") + body + "/")


def export_time(source: OtelSource, uri: str) -> datetime | None:
    """When the exporter wrote the file at ``uri``, from its partition directories (None when the key does not fit the format)."""
    match = _key_pattern(source.uri, source.partition_format).match(uri)
    if match is None:
        return None
    got = match.groupdict()
    year = int(got["Y"]) if got.get("Y") else 2000 + int(got["y"])
    try:
        if got.get("j"):
            day = datetime(year, 1, 1, tzinfo=UTC) + timedelta(days=int(got["j"]) - 1)
        else:
            day = datetime(year, int(got.get("m") or 1), int(got["d"]), tzinfo=UTC)
        return day.replace(hour=int(got.get("H") or 0), minute=int(got.get("M") or 0))
    except ValueError:  # no such date or time (day=32, hour=24): not the exporter's key
        return None


def is_trace_file(source: OtelSource, uri: str) -> bool:
    """A traces export of this source: the exporter names the telemetry type in the file name (``traces_<id>.json``)."""
    name = uri.rsplit("/", 1)[-1]
    return "traces" in name and name.endswith(source.file_suffix)


def list_exports(client, source: OtelSource, partition: Partition) -> list[tuple[str, int]]:
    """The traces exports holding a partition's spans: those written in it and in the ``late_minutes`` after it, in key order."""
    from modelwatch.storage.s3 import list_objects

    start, end = _window(partition)
    until = end + timedelta(minutes=source.late_minutes)
    late_hours = [end + timedelta(hours=h) for h in range(math.ceil(source.late_minutes / 60))]  # listed an hour at a time
    prefixes = dict.fromkeys([_listing_prefix(source, start, partition.hour is not None)] + [_listing_prefix(source, at, True) for at in late_hours])
    files = []
    for prefix in prefixes:
        for uri, size in list_objects(client, prefix):
            written = export_time(source, uri)
            if written is not None and start <= written < until and is_trace_file(source, uri):
                files.append((uri, size))
    return sorted(dict.fromkeys(files))


# -- decoding an export file ---------------------------------------------------------------------------------


def _hex_ids_to_base64(request: dict[str, Any]) -> None:
    """OTLP/JSON writes trace and span ids in hex; protobuf's JSON mapping reads bytes as base64: convert them, in place."""
    for resource_spans in request.get("resourceSpans") or ():
        for scope_spans in resource_spans.get("scopeSpans") or ():
            for span in scope_spans.get("spans") or ():
                for holder in (span, *(span.get("links") or ())):
                    for name in _ID_FIELDS:
                        if holder.get(name):
                            holder[name] = base64.b64encode(bytes.fromhex(holder[name])).decode("ascii")


def _strip_other_spans(request: dict[str, Any]) -> None:
    """Empty the spans with no ``gen_ai.*`` attribute, in place, before protobuf parses them: they are only counted
    (``skip_reason``), and most spans of a service are HTTP or database spans."""
    for resource_spans in request.get("resourceSpans") or ():
        for scope_spans in resource_spans.get("scopeSpans") or ():
            spans = scope_spans.get("spans")
            for i, span in enumerate(spans if isinstance(spans, list) else ()):
                if isinstance(span, dict) and not any(str(kv.get("key", "")).startswith("gen_ai.") for kv in span.get("attributes") or ()
                                                      if isinstance(kv, dict)):
                    spans[i] = {}


@dataclass
class Decoded:
    """An export file's resource spans (protobuf messages), and where decoding stopped if it did."""

    resource_spans: list[Any]
    damage: str | None = None  # what stopped decoding, with the byte offset


def decode_json(data: bytes) -> Decoded:
    """An OTLP/JSON export (one ``ExportTraceServiceRequest``) as protobuf messages."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    try:
        document = json.loads(data)
    except UnicodeDecodeError as exc:
        return Decoded([], f"OTLP/JSON is not UTF-8 (bad byte at offset {exc.start})")
    except json.JSONDecodeError as exc:
        return Decoded([], f"not valid OTLP/JSON ({exc.msg} at byte {exc.pos}, line {exc.lineno} column {exc.colno})")
    if not isinstance(document, dict):
        return Decoded([], f"an OTLP/JSON export is an object with resourceSpans, got {type(document).__name__}")
    try:
        _strip_other_spans(document)
        _hex_ids_to_base64(document)
        message = json_format.ParseDict(document, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (ValueError, TypeError, AttributeError, json_format.ParseError) as exc:
        return Decoded([], f"not an OTLP/JSON trace export ({' '.join(str(exc).split())[:300]})")
    return Decoded(list(message.resource_spans))


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("varint cut off")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7


def decode_proto(data: bytes) -> Decoded:
    """An OTLP protobuf export, one ``ResourceSpans`` (field 1 of ``ExportTraceServiceRequest``) at a time.

    Walking the request's top-level fields keeps every resource's spans that decode before a damage.
    """
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans

    found, at = [], 0
    while at < len(data):
        start = at
        try:
            tag, at = _varint(data, at)
            if tag & 7 != 2:
                raise ValueError(f"field {tag >> 3} has wire type {tag & 7}, expected a length-delimited field")
            size, at = _varint(data, at)
            if at + size > len(data):
                raise ValueError(f"a field of {size} bytes runs past the end of the file")
            if tag >> 3 == 1:
                found.append(ResourceSpans.FromString(data[at : at + size]))
            at += size
        except (ValueError, DecodeError) as exc:
            return Decoded(found, f"OTLP protobuf damaged at byte {start} ({exc})")
    return Decoded(found)


# -- one span as a log row -----------------------------------------------------------------------------------


def _value(any_value) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    return getattr(any_value, kind)


def attributes(key_values) -> dict[str, Any]:
    """OTLP ``KeyValue`` list -> {key: Python value} (arrays as lists, key-value lists as dicts)."""
    return {kv.key: _value(kv.value) for kv in key_values}


class SpanProblem(ValueError):
    """A GenAI span whose content cannot be read as the contract's fields: a read reject with this reason."""


def _messages(value: Any, name: str, role: str = "user") -> list[dict[str, Any]]:
    """Messages of ``gen_ai.input.messages`` / ``output.messages`` (JSON text or structured) or an older event's content."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            parsed = None
        if not isinstance(parsed, (list, dict)):
            return [{"role": role, "content": value}]  # plain text, as the older attributes carry it ("42" too)
        value = parsed
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise SpanProblem(f"{name} must be a list of messages (role and parts), got {type(value).__name__}")
    return value


def _text_of(message: dict[str, Any]) -> str:
    parts = message.get("parts")
    if isinstance(parts, list):
        return "\n".join(str(p.get("content") or "") for p in parts if isinstance(p, dict) and p.get("type", TEXT_PART) == TEXT_PART)
    content = message.get("content", message.get("message", {}).get("content") if isinstance(message.get("message"), dict) else None)
    return "" if content is None else content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def messages_text(messages: list[dict[str, Any]], role: str) -> str | None:
    """The text parts of the ``role`` messages (of all messages when none has that role), one message per line; None when empty."""
    chosen = [m for m in messages if m.get("role") == role] or messages
    texts = [t for t in (_text_of(m) for m in chosen) if t]
    return "\n".join(texts) if texts else None


def _indexed(attrs: dict[str, Any], prefix: str, role: str) -> list[dict[str, Any]]:
    """OpenLLMetry's flattened messages: ``gen_ai.prompt.0.role`` / ``gen_ai.prompt.0.content``, ..."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        match = re.fullmatch(re.escape(prefix) + r"\.(\d+)\.(role|content)", key)
        if match:
            found.setdefault(int(match.group(1)), {"role": role})[match.group(2)] = value
    return [found[i] for i in sorted(found)]


_INPUT_EVENTS = {"gen_ai.system.message": "system", "gen_ai.user.message": "user", "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool"}


def _event_messages(events: list[tuple[str, dict[str, Any]]], output: bool) -> list[dict[str, Any]]:
    found = []
    for name, attrs in events:
        if output and name == "gen_ai.content.completion" and "gen_ai.completion" in attrs:
            found += _messages(attrs["gen_ai.completion"], name, "assistant")
        elif not output and name == "gen_ai.content.prompt" and "gen_ai.prompt" in attrs:
            found += _messages(attrs["gen_ai.prompt"], name)
        elif output and name == "gen_ai.choice":
            message = attrs.get("message", attrs.get("content"))
            found += [] if message is None else [{"role": "assistant", **m} for m in _messages(message, name, "assistant")]
        elif not output and name in _INPUT_EVENTS:
            found.append({"role": _INPUT_EVENTS[name], "content": attrs.get("content", "")})
    return found


def _texts(attrs: dict[str, Any], events: list[tuple[str, dict[str, Any]]]) -> tuple[str | None, str | None]:
    """(prompt, response) from the newest convention the span carries (see the module docstring)."""
    texts = []
    for current, older, indexed, output in (("gen_ai.input.messages", "gen_ai.prompt", "gen_ai.prompt", False),
                                            ("gen_ai.output.messages", "gen_ai.completion", "gen_ai.completion", True)):
        role = "assistant" if output else "user"
        if current in attrs:
            messages = _messages(attrs[current], current, role)
        elif older in attrs:
            messages = _messages(attrs[older], older, role)
        else:
            messages = _indexed(attrs, indexed, role) or _event_messages(events, output)
        texts.append(messages_text(messages, role))
    return texts[0], texts[1]


def _status(span, attrs: dict[str, Any]) -> str:
    finish = attrs.get("gen_ai.response.finish_reasons") or ()
    if "content_filter" in (finish if isinstance(finish, list) else [finish]):
        return "refused_by_filter"
    error_type = str(attrs.get("error.type") or "")
    if span.status.code == 2 or error_type:
        return "timeout" if "timeout" in error_type.lower() else "error"
    return "ok"


def _flag(attrs: dict[str, Any], events: list[tuple[str, dict[str, Any]]]) -> tuple[str | None, str | None]:
    """(flag key, variant) from the span's feature-flag attributes or its ``feature_flag.evaluation`` event."""
    for holder in (attrs, *(a for name, a in events if name in ("feature_flag.evaluation", "feature_flag"))):
        key = holder.get("feature_flag.key")
        variant = holder.get("feature_flag.result.variant", holder.get("feature_flag.variant"))
        if key is not None or variant is not None:
            return key, variant
    return None, None


def _arm(model: Model, source: OtelSource, attrs: dict[str, Any], events: list[tuple[str, dict[str, Any]]]) -> tuple[str | None, str | None]:
    """(variant, experiment id): the configured attribute or the feature flag; ``production`` outside any experiment.

    An experiment's flag without a variant gives no variant (None), so the validator quarantines the row as missing one."""
    key, variant = _flag(attrs, events)
    if source.variant_attribute is not None:
        variant = attrs.get(source.variant_attribute)
    experiments = {e.id: e for e in model.experiments}
    if key in experiments:
        return (None if variant is None else str(variant)), key
    if variant is not None:
        owner = next((e.id for e in model.experiments if variant in (e.control, e.treatment)), None)
        return str(variant), owner
    return "production", None


def _cost(source: OtelSource, names: list[str], tokens_in: Any, tokens_out: Any) -> float | None:
    price = next((source.prices[n] for n in names if n in source.prices), None)
    if price is None or not isinstance(tokens_in, int) or not isinstance(tokens_out, int):
        return None
    return (tokens_in * price.input + tokens_out * price.output) / 1e6


def _iso(nanos: int) -> str:
    return (_EPOCH + timedelta(microseconds=nanos // 1000)).isoformat()


def skip_reason(source: OtelSource, attrs: dict[str, Any], resource: dict[str, Any]) -> str | None:
    """Why a span is not one of this model's requests (None when it is one)."""
    if not any(k.startswith("gen_ai.") for k in attrs):
        return "not a GenAI span"
    operation = attrs.get("gen_ai.operation.name")
    if operation is not None and operation not in MODEL_OPERATIONS:
        return f"GenAI operation {operation!r} is not a model request"
    if source.models and not {attrs.get("gen_ai.response.model"), attrs.get("gen_ai.request.model"), resource.get("service.name")} & set(source.models):
        return "another model's span"
    return None


def span_record(model: Model, source: OtelSource, span, attrs: dict[str, Any], resource: dict[str, Any]) -> dict[str, Any]:
    """One GenAI model-request span (its ``attributes`` as ``attrs``) as a log record of ``core.contract.FIELDS``; absent values are
    left out for the validator."""
    events = [(e.name, attributes(e.attributes)) for e in span.events]
    prompt, response = _texts(attrs, events)
    variant, experiment_id = _arm(model, source, attrs, events)
    tokens_in = attrs.get("gen_ai.usage.input_tokens", attrs.get("gen_ai.usage.prompt_tokens"))
    tokens_out = attrs.get("gen_ai.usage.output_tokens", attrs.get("gen_ai.usage.completion_tokens"))
    names = [n for n in (attrs.get("gen_ai.response.model"), attrs.get("gen_ai.request.model"), resource.get("service.name")) if n]
    request_id = attrs.get(source.request_id_attribute) if source.request_id_attribute else span.span_id.hex()
    record: dict[str, Any] = {
        "request_id": request_id, "timestamp": _iso(span.start_time_unix_nano), "model_id": model.id, "variant": variant,
        "experiment_id": experiment_id, "status": _status(span, attrs), "latency_ms": (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6,
        "prompt": prompt, "response": response, "prompt_tokens": tokens_in, "completion_tokens": tokens_out,
        "cost_usd": _cost(source, names, tokens_in, tokens_out),
    }
    metadata = {key: attrs.get(attr, resource.get(attr)) for key, attr in source.metadata.items()}
    if any(v is not None for v in metadata.values()):
        record["metadata"] = {k: v for k, v in metadata.items() if v is not None}
    return {k: v for k, v in record.items() if v is not None}


# -- an export file as batches -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpanPlacement:
    """Which partition a file's spans belong to: the partition's window, the exporter's lateness allowance, when the file was written.

    The exporter files spans by export time, so a partition's first ``late`` minutes of files may hold the previous
    partition's last spans, and the files after its end its own: each is read by the partition its start time is in.
    """

    start: datetime
    end: datetime
    late: timedelta
    written: datetime | None

    def elsewhere(self, at: datetime) -> str | None:
        """Why a span starting at ``at`` is read with another partition; None when it is this one's (or too late for any: quarantined)."""
        if self.written is None or self.start <= at < self.end:
            return None
        if at >= self.end and self.written >= self.end:
            return "span of the next partition (read with it)"
        if at < self.start and self.written < self.start + self.late:
            return "span of the previous partition (read with it)"
        return None


def _reject(source: str, position: int, reason: str, raw: str) -> dict[str, Any]:
    return {"_source": source, "_line": position, "stage": "read", "reasons": reason, "raw": raw[:RAW_LIMIT]}


def _span_raw(span) -> str:
    from google.protobuf import json_format

    return json.dumps(json_format.MessageToDict(span), ensure_ascii=False, default=str)


def _batches(stream: FileStream, decoded: Decoded, lost: str | None, model: Model, source: OtelSource, placement: SpanPlacement,
             batch_rows: int) -> Iterator[RawBatch]:
    """Rows (mapped spans) and read rejects in span order; the spans skipped are counted in ``stream.skipped``; ``lost`` says what
    a damage took (one reject after the last span decoded)."""
    batch = RawBatch(stream.source)
    position = 0
    for resource_spans in decoded.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                position += 1
                attrs = attributes(span.attributes)
                reason = skip_reason(source, attrs, resource) or placement.elsewhere(_EPOCH + timedelta(microseconds=span.start_time_unix_nano // 1000))
                if reason:
                    stream.skipped[reason] = stream.skipped.get(reason, 0) + 1
                    continue
                try:
                    batch.records.append(span_record(model, source, span, attrs, resource))
                    batch.lines.append(position)
                except SpanProblem as exc:
                    batch.rejects.append(_reject(stream.source, position, str(exc), _span_raw(span)))
                if len(batch.records) >= batch_rows:
                    yield batch
                    batch = RawBatch(stream.source)
    if lost:
        batch.rejects.append(_reject(stream.source, position + 1, "spans lost to the damaged export file", lost))
    if batch.records or batch.rejects:
        yield batch


def open_export(data: bytes, uri: str, model: Model, source: OtelSource, partition: Partition, batch_rows: int = BATCH_ROWS) -> FileStream:
    """One export file of ``source`` as batches of log records for ``partition`` (gzip read by its magic bytes, whatever the name)."""
    gzipped = data[:2] == GZIP_MAGIC
    stream = FileStream(uri, source.marshaler + (".gz" if gzipped else ""), None, iter(()))
    lost = None
    if gzipped:
        data, damage = gunzip_tolerant(data)
        if damage is not None:
            lost = f"{damage.what}, after {len(data)} decompressed bytes"
            stream.add_problem(f"{damage.what}; the spans after the {damage.point} are lost at the source; re-send the file from the Collector",
                               damaged=True)
    elif source.compression == "gzip":
        stream.add_problem("not gzipped although the source says compression: gzip; read as is, check the exporter's compression")
    decoded = decode_json(data) if source.marshaler == "otlp_json" else decode_proto(data)
    if decoded.damage is not None:
        lost = decoded.damage if lost is None else f"{lost}; {decoded.damage}"
        stream.add_problem(f"{decoded.damage}; {len(decoded.resource_spans)} resource spans decoded before it, the rest is lost at the source",
                           damaged=True)
    start, end = _window(partition)
    placement = SpanPlacement(start, end, timedelta(minutes=source.late_minutes), export_time(source, uri))
    stream.batches = _batches(stream, decoded, lost, model, source, placement, batch_rows)
    return stream


def otel_source(cfg: MonitoringConfig, model_id: str) -> OtelSource | None:
    """The model's OpenTelemetry source, None when its traffic is log lines under ``defaults.logs_uri``."""
    source = cfg.model(model_id).source
    return None if source is None else source.otel
