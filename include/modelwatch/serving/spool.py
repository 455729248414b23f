"""The local spill directory: batches that could not reach S3, kept on disk under their final key until re-sent.

A batch is stored at ``{directory}/{bucket}/{key}``, written to a temporary file and
renamed into place (atomic on POSIX), so a crash leaves either the whole batch or
nothing. The path is the batch's S3 URI, so a re-send writes the very key the first
attempt meant to write: a batch that did reach S3 before its acknowledgement was lost is
overwritten by identical bytes, never duplicated.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from modelwatch.core.uris import split_uri

TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class Spilled:
    uri: str
    path: Path


class Spool:
    """Batches waiting on local disk; safe to share between emitters and processes (writes are atomic, removal tolerant)."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)

    def path_for(self, uri: str) -> Path:
        bucket, key = split_uri(uri)
        if not key or ".." in Path(key).parts:
            raise ValueError(f"cannot spill {uri!r}: the key must be a plain relative path")
        return self.directory / bucket / key

    def put(self, uri: str, body: bytes) -> Path:
        """Store ``body`` for ``uri`` atomically; returns its path."""
        path = self.path_for(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")
        with open(tmp, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return path

    def pending(self, prefix_uri: str) -> list[Spilled]:
        """Spilled batches whose URI starts with ``prefix_uri``, oldest first."""
        bucket, key_prefix = split_uri(prefix_uri.rstrip("/") + "/")
        root = self.directory / bucket
        if not root.is_dir():
            return []
        found = []
        for path in root.rglob("*"):
            if path.is_file() and not path.name.endswith(TMP_SUFFIX):
                key = path.relative_to(root).as_posix()
                if key.startswith(key_prefix):
                    found.append((path.stat().st_mtime, Spilled(f"s3://{bucket}/{key}", path)))
        return [s for _, s in sorted(found, key=lambda t: (t[0], t[1].uri))]

    @staticmethod
    def read(spilled: Spilled) -> bytes:
        return spilled.path.read_bytes()

    @staticmethod
    def remove(spilled: Spilled) -> None:
        """Delete a re-sent batch; another process may have removed it already."""
        try:
            spilled.path.unlink()
        except FileNotFoundError:
            pass
