"""GenAI spans made with the OpenTelemetry Python SDK, serialized as the Collector's awss3exporter writes them.

``otlp_json``: the pdata JSON marshaler's form (lowerCamelCase keys, trace and span ids in hex, 64-bit integers
as strings, enums as numbers); ``otlp_proto``: the OTLP protobuf encoding (the SDK's own OTLP encoder). Keys follow
the exporter's layout: ``{prefix}/year=%Y/month=%m/day=%d/hour=%H/minute=%M/traces_<n>.json[.gz]``.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

PARTITION_FORMAT = "year=%Y/month=%m/day=%d/hour=%H/minute=%M"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns(at: datetime) -> int:
    """Nanoseconds since the epoch, exactly (a float timestamp would lose microseconds)."""
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


class SpanMaker:
    """A tracer provider whose finished spans collect in memory (one provider per service resource)."""

    def __init__(self, service: str = "support-bot", **resource: Any):
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service, **resource}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("modelwatch-tests", "1.0")

    def span(self, name: str, start: datetime, latency_ms: float, attributes: dict[str, Any], events: Iterable[tuple[str, dict[str, Any]]] = (),
             error: bool = False) -> None:
        span = self.tracer.start_span(name, start_time=ns(start), attributes=attributes)
        for event, attrs in events:
            span.add_event(event, attrs, timestamp=ns(start))
        if error:
            span.set_status(Status(StatusCode.ERROR, "failed"))
        span.end(end_time=ns(start) + round(latency_ms * 1_000_000))

    def finished(self):
        spans = self.exporter.get_finished_spans()
        self.exporter.clear()
        return spans


def chat_attributes(model: str, prompt: str, response: str | None, tokens_in: int, tokens_out: int, current: bool = True) -> dict[str, Any]:
    """A chat span's GenAI attributes in the current conventions (v1.37+) or the older ones (gen_ai.system, prompt/completion tokens)."""
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model, "gen_ai.response.model": model}
    if current:
        attrs |= {"gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": tokens_in, "gen_ai.usage.output_tokens": tokens_out,
                  "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": prompt}]}])}
        if response is not None:
            attrs["gen_ai.output.messages"] = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": response}], "finish_reason": "stop"}])
    else:
        attrs |= {"gen_ai.system": "openai", "gen_ai.usage.prompt_tokens": tokens_in, "gen_ai.usage.completion_tokens": tokens_out,
                  "gen_ai.prompt": prompt}
        if response is not None:
            attrs["gen_ai.completion"] = response
    return attrs


def export_request(spans):
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return encode_spans(spans)


def _ids_to_hex(document: dict[str, Any]) -> dict[str, Any]:
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for holder in (span, *span.get("links", [])):
                    for name in ("traceId", "spanId", "parentSpanId"):
                        if holder.get(name):
                            holder[name] = base64.b64decode(holder[name]).hex()
    return document


def otlp_json(spans) -> bytes:
    """The spans as the Collector's otlp_json marshaler writes one export: hex ids, int64 as strings, enums as numbers."""
    from google.protobuf import json_format

    document = json_format.MessageToDict(export_request(spans), use_integers_for_enums=True)
    return json.dumps(_ids_to_hex(document), separators=(",", ":")).encode()


def otlp_proto(spans) -> bytes:
    return export_request(spans).SerializeToString()


def export_key(prefix: str, written: datetime, n: int, marshaler: str = "otlp_json", gzipped: bool = False) -> str:
    """Where the exporter puts an export written at ``written``: its partition directories, then ``traces_<n>.<format>[.gz]``."""
    suffix = (".json" if marshaler == "otlp_json" else ".binpb") + (".gz" if gzipped else "")
    return f"{prefix.rstrip('/')}/{written.astimezone(UTC).strftime(PARTITION_FORMAT)}/traces_{n:09d}{suffix}"


def export_bytes(spans, marshaler: str = "otlp_json", gzipped: bool = False) -> bytes:
    data = otlp_json(spans) if marshaler == "otlp_json" else otlp_proto(spans)
    return gzip.compress(data) if gzipped else data
