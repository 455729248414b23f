"""S3 URIs: the one place ``s3://bucket/key`` is taken apart (the pipeline's storage and the serving client both use it)."""

from __future__ import annotations


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``; ``ValueError`` for anything that is not an ``s3://`` URI with a bucket."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, key
