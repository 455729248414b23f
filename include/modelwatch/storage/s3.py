"""S3 access for modelwatch: listing, whole-object and conditional writes, whole and ranged reads.

Functions take a boto3 S3 client. Inside Airflow that client comes from the Amazon
provider's ``S3Hook(aws_conn_id).get_conn()``; elsewhere from ``make_client``. Keeping
the client a parameter keeps this module free of Airflow and easy to point at any
S3-compatible endpoint.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError, IncompleteReadError, ResponseStreamingError

from modelwatch.core.uris import split_uri

# botocore retry policy: "adaptive" is "standard" (exponential backoff with full jitter on throttling,
# 5xx, timeouts and connection errors) plus a client-side rate limiter that slows down on throttling.
RETRY_MODE = "adaptive"
MAX_RETRIES = 7  # botocore's retries.max_attempts: retries after the first request
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
BODY_READ_ATTEMPTS = 3  # a download cut off mid-body is not retried by botocore: get_bytes retries it
_log = logging.getLogger(__name__)


NOT_FOUND_CODES = ("404", "NoSuchKey", "NotFound")
ACCESS_DENIED_CODES = ("AccessDenied", "403", "Forbidden")
IAM_POLICY_HINT = "the minimal IAM policy is in README.md, 'Privacy and permissions'"
# the IAM action each operation needs (HeadObject is authorised as s3:GetObject, HeadBucket as s3:ListBucket)
_ACTIONS = {"GetObject": "s3:GetObject", "HeadObject": "s3:GetObject", "PutObject": "s3:PutObject",
            "ListObjectsV2": "s3:ListBucket", "HeadBucket": "s3:ListBucket", "DeleteObjects": "s3:DeleteObject",
            "CreateBucket": "s3:CreateBucket"}


def error_code(exc: ClientError) -> str:
    """The S3 error code of a failed request (``NoSuchKey``; a HEAD request, which has no body, gives its status: ``404``)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Error(ClientError):
    """An S3 request that failed after the client's retries; the message names the object and what to do.

    A ``ClientError`` subclass with the same ``response``, so code that inspects the error
    code (``NoSuchKey``, ``PreconditionFailed``) keeps working.
    """

    def __init__(self, error_response: dict[str, Any], operation_name: str, uri: str):
        super().__init__(error_response, operation_name)
        self.uri = uri
        code = str(error_response.get("Error", {}).get("Code", ""))
        attempts = int(error_response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1
        self.args = (f"S3 {operation_name} of {uri} failed after {attempts} attempt(s): {self.args[0].rstrip('.')}. "
                     f"{_advice(code, error_response, operation_name, uri)}",)

    def __reduce__(self):
        return self.__class__, (self.response, self.operation_name, self.uri)


class S3Unreachable(ConnectionError):
    """The S3 endpoint did not answer (connection refused or reset, timeouts) through every retry."""

    def __init__(self, operation: str, uri: str, cause: Exception):
        self.uri = uri
        super().__init__(f"S3 {operation} of {uri} failed: {str(cause).rstrip('.')}. The endpoint did not answer through the client's retries "
                         f"with backoff (retries.max_attempts in the aws connection's config_kwargs); check its endpoint_url and the network, "
                         f"the task's own retries will try again")


def _missing_permission(operation: str, uri: str) -> str:
    """Which IAM action on which resource ``operation`` on ``uri`` needs, as the advice of an AccessDenied."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    action = _ACTIONS.get(operation, f"s3:{operation}")
    if action in ("s3:ListBucket", "s3:CreateBucket"):
        where = f"arn:aws:s3:::{bucket}" + (f" for the prefix {key}" if key else "")
    else:
        where = f"arn:aws:s3:::{bucket}/{key}"
    advice = f"the credentials of the aws connection lack {action} on {where}: grant it ({IAM_POLICY_HINT})"
    if operation in ("GetObject", "HeadObject"):
        advice += f"; without s3:ListBucket on arn:aws:s3:::{bucket} S3 also answers 403 for an object that does not exist"
    return advice


def _advice(code: str, response: dict[str, Any], operation: str, uri: str) -> str:
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in ("SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded") or status == 503:
        return ("S3 kept throttling through every retry: lower the concurrency of the tasks hitting this prefix (pools, max_active_runs) "
                "or raise retries.max_attempts in the aws connection's config_kwargs")
    if status >= 500:
        return "the S3 service kept failing through every retry; it may answer later (a failed task's own retries try again)"
    if code in ACCESS_DENIED_CODES:
        return _missing_permission(operation, uri)
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
        return "S3 does not accept the credentials of the aws connection: check its access key, secret and session token"
    if code == "NoSuchBucket" or (operation == "HeadBucket" and code in NOT_FOUND_CODES):
        return "the bucket does not exist: create it or fix the *_uri in the config"
    if code in NOT_FOUND_CODES:
        return "the object does not exist: check that the stage producing it ran for this partition"
    return "see the S3 error code above"


@contextmanager
def _naming(operation: str, uri: str) -> Iterator[None]:
    """Re-raise S3 failures as errors that name the object (S3Error keeps the ClientError interface)."""
    try:
        yield
    except S3Error:
        raise
    except ClientError as exc:
        raise S3Error(exc.response, exc.operation_name, uri) from exc
    except BotoCoreError as exc:
        raise S3Unreachable(operation, uri, exc) from exc


def config_kwargs(max_attempts: int = MAX_RETRIES, mode: str = RETRY_MODE, connect_timeout: float = CONNECT_TIMEOUT_S,
                  read_timeout: float = READ_TIMEOUT_S) -> dict[str, Any]:
    """botocore ``Config`` arguments: retries with backoff and bounded timeouts.

    The same dict goes into an Airflow aws connection's extra as ``config_kwargs``, or to
    ``S3Hook(config=botocore.config.Config(**config_kwargs()))``, so the DAGs' clients retry
    like this one.
    """
    return {"retries": {"max_attempts": max_attempts, "mode": mode}, "connect_timeout": connect_timeout, "read_timeout": read_timeout}


def make_client(endpoint_url: str | None = None, region: str = "us-east-1", access_key: str | None = None, secret_key: str | None = None,
                **config: Any):
    """A boto3 S3 client for use outside Airflow (CLI, generator, tests); ``config`` overrides ``config_kwargs``."""
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
        config=Config(**config_kwargs(**config)),
    )


def list_objects(client, prefix_uri: str) -> Iterator[tuple[str, int]]:
    """Yield ``(s3 uri, size)`` of every object under a prefix, in key order."""
    bucket, prefix = split_uri(prefix_uri.rstrip("/") + "/")
    with _naming("ListObjectsV2", f"s3://{bucket}/{prefix}"):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield f"s3://{bucket}/{obj['Key']}", obj["Size"]


def get_bytes(client, uri: str) -> bytes:
    """An object's bytes; a body cut off mid-download (which botocore does not retry) is fetched again."""
    bucket, key = split_uri(uri)
    for attempt in range(1, BODY_READ_ATTEMPTS + 1):
        with _naming("GetObject", uri):
            response = client.get_object(Bucket=bucket, Key=key)
        try:
            return response["Body"].read()
        except (IncompleteReadError, ResponseStreamingError) as exc:
            if attempt == BODY_READ_ATTEMPTS:
                raise S3Unreachable("GetObject", uri, exc) from exc
            _log.warning("download of %s cut off (%s); attempt %d of %d", uri, exc, attempt + 1, BODY_READ_ATTEMPTS)
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def exists(client, uri: str) -> bool:
    bucket, key = split_uri(uri)
    try:
        with _naming("HeadObject", uri):
            client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND_CODES:
            return False
        raise


def put_bytes(client, uri: str, data: bytes, content_type: str = "application/octet-stream") -> str:
    """Write an object in one PUT; readers see the old version or the new one, never a part.

    S3 makes a PUT visible only once its whole body has arrived (and checks it against the
    request's checksum), so a task killed mid-upload leaves the old version, or nothing; re-runs
    overwrite.
    """
    bucket, key = split_uri(uri)
    with _naming("PutObject", uri):
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    return uri


def put_file(client, uri: str, path: str, content_type: str = "application/octet-stream") -> str:
    """``put_bytes`` for a local file, streamed from disk in one PUT (up to S3's 5 GiB per PUT).

    One PUT rather than a multipart upload: one request, and the object keeps a whole-object
    checksum, which clients validate on download.
    """
    bucket, key = split_uri(uri)
    with _naming("PutObject", uri), open(path, "rb") as body:
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
    return uri


class ParquetSink:
    """Arrow tables appended to one Parquet object (zstd) as they come, in bounded memory.

    Row groups go to a local spool file; ``close`` uploads it in one PUT (``put_file``), so
    readers see the whole object or none. Use as a context manager: an exception discards it.
    """

    def __init__(self, client, uri: str, schema: pa.Schema):
        import tempfile

        self.client, self.uri, self.rows = client, uri, 0
        self._spool = tempfile.NamedTemporaryFile(prefix="modelwatch-", suffix=".parquet")
        self._writer = pq.ParquetWriter(self._spool.name, schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def close(self) -> str:
        self._writer.close()
        try:
            return put_file(self.client, self.uri, self._spool.name, "application/vnd.apache.parquet")
        finally:
            self._spool.close()

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._writer.close()
            self._spool.close()


def put_if_absent(client, uri: str, data: bytes, content_type: str = "application/json") -> bool:
    """Create an object only if no object exists at that key (S3 conditional write, ``If-None-Match: *``).

    Returns False when the key already exists: the basis of exactly-once records. A retried
    request whose first attempt did create the object also answers 412, so a caller that
    needs to know whether its own body landed compares the stored object with ``data``.
    """
    bucket, key = split_uri(uri)
    try:
        with _naming("PutObject", uri):
            client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*")
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
            return False
        raise


def get_versioned(client, uri: str) -> tuple[bytes | None, str | None]:
    """``(body, ETag)`` of an object, ``(None, None)`` when it does not exist: the read half of a compare-and-swap."""
    bucket, key = split_uri(uri)
    try:
        with _naming("GetObject", uri):
            response = client.get_object(Bucket=bucket, Key=key)
            return response["Body"].read(), response["ETag"]
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND_CODES:
            return None, None
        raise


def put_if_unchanged(client, uri: str, data: bytes, etag: str | None, content_type: str = "application/json") -> bool:
    """Replace an object only if it still has ``etag`` (``If-Match``), or create it only if absent when ``etag`` is None.

    Returns False when another writer got there first: re-read and decide again.
    """
    if etag is None:
        return put_if_absent(client, uri, data, content_type)
    bucket, key = split_uri(uri)
    try:
        with _naming("PutObject", uri):
            client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, IfMatch=etag)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict", "412", "NoSuchKey", "404"):
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


def get_table(client, uri: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet object as an Arrow table: the whole object in one GET, or only ``columns`` through range reads.

    With ``columns``, only the footer and those columns' chunks are fetched
    (``storage.ranged.read_columns``); a small object still arrives in one request.
    """
    if columns is None:
        return pq.read_table(io.BytesIO(get_bytes(client, uri)))
    from modelwatch.storage.ranged import read_columns

    return read_columns(client, uri, list(columns))


def delete_prefix(client, prefix_uri: str) -> int:
    """Delete every object under a prefix; returns how many."""
    bucket, _ = split_uri(prefix_uri)
    keys = [split_uri(u)[1] for u, _ in list_objects(client, prefix_uri)]
    for i in range(0, len(keys), 1000):
        with _naming("DeleteObjects", prefix_uri):
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]]})
    return len(keys)


def ensure_bucket(client, bucket: str) -> None:
    """Create ``bucket`` when S3 says it does not exist (404); any other answer to the check raises S3Error.

    A 403 is not read as "missing": the error names the permission lacking (s3:ListBucket on the
    bucket) and nothing is created; other errors carry their own advice.
    """
    uri = f"s3://{bucket}"
    try:
        with _naming("HeadBucket", uri):
            client.head_bucket(Bucket=bucket)
        return
    except S3Error as exc:
        if error_code(exc) not in ("NoSuchBucket", *NOT_FOUND_CODES):
            raise
    with _naming("CreateBucket", uri):
        client.create_bucket(Bucket=bucket)
