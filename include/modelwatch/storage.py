"""S3 access for modelwatch: partition layout, listing, atomic and conditional writes.

Functions take a boto3 S3 client. Inside Airflow that client comes from the Amazon
provider's ``S3Hook(aws_conn_id).get_conn()``; elsewhere from ``make_client``. Keeping
the client a parameter keeps this module free of Airflow and easy to point at any
S3-compatible endpoint.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TMP_PREFIX = "_tmp/"


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


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key


def make_client(endpoint_url: str | None = None, region: str = "us-east-1", access_key: str | None = None, secret_key: str | None = None):
    """A boto3 S3 client for use outside Airflow (CLI, generator, tests), with standard retries."""
    import os

    import boto3
    from botocore.config import Config

    if endpoint_url and not (access_key or os.environ.get("AWS_ACCESS_KEY_ID")):
        access_key = secret_key = "modelwatch"  # a local S3-compatible server accepts any key
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60),
    )


def list_objects(client, prefix_uri: str) -> Iterator[tuple[str, int]]:
    """Yield ``(s3 uri, size)`` of every object under a prefix, in key order."""
    bucket, prefix = split_uri(prefix_uri.rstrip("/") + "/")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield f"s3://{bucket}/{obj['Key']}", obj["Size"]


def get_bytes(client, uri: str) -> bytes:
    bucket, key = split_uri(uri)
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def exists(client, uri: str) -> bool:
    from botocore.exceptions import ClientError

    bucket, key = split_uri(uri)
    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def put_bytes(client, uri: str, data: bytes, content_type: str = "application/octet-stream") -> str:
    """Write an object so that readers see the old version or the new one, never a part.

    The body goes to a temporary key first and is then copied into place, so a task
    killed mid-upload leaves nothing under the final prefix; re-runs overwrite.
    """
    bucket, key = split_uri(uri)
    tmp_key = f"{TMP_PREFIX}{uuid.uuid4().hex}"
    client.put_object(Bucket=bucket, Key=tmp_key, Body=data, ContentType=content_type)
    try:
        client.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": tmp_key}, ContentType=content_type, MetadataDirective="REPLACE")
    finally:
        client.delete_object(Bucket=bucket, Key=tmp_key)
    return uri


def put_if_absent(client, uri: str, data: bytes, content_type: str = "application/json") -> bool:
    """Create an object only if no object exists at that key (S3 conditional write, ``If-None-Match: *``).

    Returns False when the key already exists: the basis of exactly-once records.
    """
    from botocore.exceptions import ClientError

    bucket, key = split_uri(uri)
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*")
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
            return False
        raise


def put_json(client, uri: str, obj: Any) -> str:
    return put_bytes(client, uri, json.dumps(obj, indent=2, sort_keys=True, default=str).encode(), "application/json")


def get_json(client, uri: str) -> Any:
    return json.loads(get_bytes(client, uri))


def put_table(client, uri: str, table: pa.Table) -> str:
    """Write an Arrow table as one Parquet object (zstd), atomically."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return put_bytes(client, uri, buf.getvalue(), "application/vnd.apache.parquet")


def get_table(client, uri: str) -> pa.Table:
    return pq.read_table(io.BytesIO(get_bytes(client, uri)))


def delete_prefix(client, prefix_uri: str) -> int:
    """Delete every object under a prefix; returns how many."""
    bucket, _ = split_uri(prefix_uri)
    keys = [split_uri(u)[1] for u, _ in list_objects(client, prefix_uri)]
    for i in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})
    return len(keys)


def ensure_bucket(client, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:
        client.create_bucket(Bucket=bucket)
