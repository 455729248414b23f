"""Where a model's traffic comes from when it is not modelwatch's own log lines: the ``source:`` section of a model.

``source: {otel: {...}}`` reads the GenAI spans that the OpenTelemetry Collector's ``awss3exporter``
archives to S3 (``ingest.otel`` maps them to the log contract). The keys mirror the exporter's
own settings (``s3_bucket``/``s3_prefix`` as ``uri``, ``s3_partition_format``, ``marshaler``,
``compression``) so a Collector config can be copied across.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_PARTITION_FORMAT = "year=%Y/month=%m/day=%d/hour=%H/minute=%M"  # awss3exporter's s3_partition_format default
PARTITION_DIRECTIVES = frozenset("YmdHMjy")  # strftime directives a partition format may use (the listing parses keys with them)
_ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_METADATA_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenPrice(_Strict):
    """USD per million tokens of one model name (OpenTelemetry carries token counts, never prices)."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


def _attribute_name(value: str) -> str:
    if not _ATTRIBUTE.match(value):
        raise ValueError(f"expected an OpenTelemetry attribute name such as app.request_id, got {value!r}")
    return value


class OtelEvents(_Strict):
    """Run the model's hours when their exports land (``modelwatch_hourly_events``) instead of on the hourly timer.

    ``queue_url``: the SQS queue the bucket's S3 event notifications (``s3:ObjectCreated:*``, directly or through
    SNS) are delivered to. An hour is processed once it is closed: ``grace_minutes`` after its read window ends
    (the hour plus the source's ``late_minutes``), or as soon as an export of a later window has landed.
    ``lookback_hours``: how far back the timer pass looks for hours whose files landed but that are not closed yet.
    ``poll_seconds``: how often the triggerer asks the queue when it was empty.
    """

    queue_url: str
    grace_minutes: int = Field(10, ge=0, le=24 * 60)
    lookback_hours: int = Field(48, ge=1, le=24 * 31)
    poll_seconds: int = Field(30, ge=1, le=3600)

    @field_validator("queue_url")
    @classmethod
    def _queue(cls, value: str) -> str:
        if not re.match(r"^https?://[^/]+/[0-9]+/[A-Za-z0-9_-]{1,80}(\.fifo)?$", value):
            raise ValueError(f"expected an SQS queue URL such as https://sqs.eu-west-1.amazonaws.com/123456789012/otel-exports, got {value!r}")
        return value


class OtelSource(_Strict):
    """A model's traffic read from OpenTelemetry Collector exports (awss3exporter) instead of log lines.

    ``uri``: s3://bucket/prefix the exporter writes under. ``models``: the model names the spans carry
    (``gen_ai.response.model``, ``gen_ai.request.model``, then the resource's ``service.name``) that are
    this model; empty: every GenAI span under ``uri``. ``prices``: model name -> USD per million input and
    output tokens, for ``cost_usd``. ``request_id_attribute``: the attribute holding the request id (default:
    the span id). ``variant_attribute``: the attribute naming the experiment arm (default: the feature-flag
    conventions, ``feature_flag.key`` and ``feature_flag.result.variant``). ``metadata``: metadata key -> the span
    or resource attribute it comes from (segments and the experiment's assignment unit). ``late_minutes``:
    minutes of exports after a partition's end still read for its spans (the exporter files spans by export time).
    ``events``: run each hour when its exports land (``OtelEvents``).
    """

    uri: str
    partition_format: str = DEFAULT_PARTITION_FORMAT
    marshaler: Literal["otlp_json", "otlp_proto"] = "otlp_json"
    compression: Literal["none", "gzip"] = "none"
    models: list[str] = []
    prices: dict[str, TokenPrice] = {}
    request_id_attribute: str | None = None
    variant_attribute: str | None = None
    metadata: dict[str, str] = {}
    late_minutes: int = Field(5, ge=0, le=60)
    events: OtelEvents | None = None  # None: the hours run on modelwatch_hourly's timer (when the model has the hourly cadence)

    @field_validator("uri")
    @classmethod
    def _s3_uri(cls, value: str) -> str:
        if not value.startswith("s3://") or len(value.rstrip("/")) <= len("s3://"):
            raise ValueError(f"expected the exporter's s3://s3_bucket/s3_prefix, got {value!r}")
        return value.rstrip("/")

    @field_validator("partition_format")
    @classmethod
    def _partition_format(cls, value: str) -> str:
        used = set(re.findall(r"%(.)", value))
        unknown = sorted(used - PARTITION_DIRECTIVES)
        if unknown:
            raise ValueError(f"partition_format may use %Y %m %d %H %M %j %y, got %{', %'.join(unknown)} in {value!r}")
        if not ({"d", "j"} & used and {"Y", "y"} & used):
            raise ValueError(f"partition_format must name the day (%Y with %m/%d or %j), got {value!r}")
        return value.strip("/")

    @field_validator("request_id_attribute", "variant_attribute")
    @classmethod
    def _attribute(cls, value: str | None) -> str | None:
        return None if value is None else _attribute_name(value)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not _METADATA_KEY.match(k)]
        if bad:
            raise ValueError(f"metadata keys are plain names (letters, digits, '_' or '-'), got {bad}")
        for attribute in value.values():
            _attribute_name(attribute)
        return value

    @property
    def file_suffix(self) -> str:
        """How the exporter ends its file names: ``.json`` or ``.binpb``, then ``.gz`` when gzipped."""
        return (".json" if self.marshaler == "otlp_json" else ".binpb") + (".gz" if self.compression == "gzip" else "")


class Source(_Strict):
    """A model's ``source:`` section: today one kind, ``otel``."""

    otel: OtelSource
