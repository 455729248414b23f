"""The content-addressed S3 cache of embeddings: each text embedded at most once per backend.

Cache layout, under ``{reports_uri}/_cache/embeddings/model=all-MiniLM-L6-v2/backend={key}/``
(``key``: ``backends.backend_key``, so float32 and int8 vectors never share a shard)::

    shard=0.parquet ... shard=f.parquet     columns: hash string, vector fixed_size_list<float>[384]

A vector is keyed by ``text_hash`` (sha256 of model name and text) and lives in the
shard named by the first hex character(s) of that hash, so looking up a day's texts
costs at most 16 GETs (``shard_chars=1``) however many texts there are.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from modelwatch.embeddings.backends import DEFAULT_BACKEND, backend_key, check_backend, identity
from modelwatch.embeddings.model import EMBEDDING_DIM, MODEL_NAME
from modelwatch.storage.s3 import get_table, put_table


def check_texts(texts: Sequence[str]) -> None:
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts[{bad}] is {type(texts[bad]).__name__}, not str")


def text_hash(text: str, model_name: str = MODEL_NAME) -> str:
    """Cache key: hex sha256 of ``model_name``, a NUL separator and the UTF-8 text."""
    return hashlib.sha256(f"{model_name}\0{text}".encode()).hexdigest()


def cache_prefix(reports_uri: str, backend: str = DEFAULT_BACKEND, model_name: str = MODEL_NAME) -> str:
    """``{reports_uri}/_cache/embeddings/model={model_name}/backend={backend_key(backend)}/``."""
    return f"{reports_uri.rstrip('/')}/_cache/embeddings/model={model_name}/backend={backend_key(backend)}/"


def vectors_table(hashes: list[str], vectors: np.ndarray) -> pa.Table:
    """Arrow table ``hash: string, vector: fixed_size_list<float32>[dim]``."""
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.table({"hash": pa.array(hashes, type=pa.string()), "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})


def table_vectors(table: pa.Table, dim: int = EMBEDDING_DIM) -> tuple[list[str], np.ndarray]:
    """Inverse of ``vectors_table``: (hashes, float32 array (rows, dim))."""
    column = table.column("vector").combine_chunks()
    if column.type.list_size != dim:
        raise ValueError(f"cached vectors have dimension {column.type.list_size}, expected {dim}")
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return table.column("hash").to_pylist(), values.reshape(-1, dim)


class EmbeddingCache:
    """Embeddings of texts, each text embedded at most once, cached in S3 by content hash.

    ``get_or_embed`` reads only the shards its texts hash into, embeds the misses
    (deduplicated, one call to ``embed``) and rewrites the shards that gained rows. Each
    shard is written atomically (``storage.s3.put_table``: temporary key, then copy), so a
    reader sees the old or the new shard, never a partial one. Writes are
    read-modify-write without a lock: if two runs update the same shard concurrently the
    last writer wins and the other's new rows are lost. That costs only a later
    re-embedding of those texts, never a wrong vector, so no locking is attempted.

    Shards grow with the number of distinct texts ever seen (about 1.6 KB per text); with
    ``shard_chars=1`` a million texts make 16 shards of ~100 MB each, read and rewritten
    when touched. Use ``shard_chars=2`` (256 shards) for caches that large.
    """

    def __init__(
        self,
        client,
        reports_uri: str,
        *,
        backend: str = DEFAULT_BACKEND,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        shard_chars: int = 1,
        model_name: str = MODEL_NAME,
        dim: int = EMBEDDING_DIM,
    ):
        if not 1 <= shard_chars <= 4:
            raise ValueError(f"shard_chars must be between 1 and 4, got {shard_chars}")
        from modelwatch.embeddings import embed_texts

        self.client = client
        self.backend = check_backend(backend)
        self.prefix = cache_prefix(reports_uri, backend, model_name)
        self.embed = embed or functools.partial(embed_texts, backend=backend)
        self.shard_chars = shard_chars
        self.model_name = model_name
        self.dim = dim

    @property
    def identity(self) -> dict[str, str]:
        """How this cache's vectors are made (``backends.identity``): a baseline built through it records this."""
        return identity(self.backend)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """The vectors alone: ``get_or_embed(texts)[0]``."""
        return self.get_or_embed(texts)[0]

    def shard_uri(self, shard: str) -> str:
        return f"{self.prefix}shard={shard}.parquet"

    def read_shard(self, shard: str) -> tuple[list[str], np.ndarray]:
        """The cached (hashes, vectors) of one shard; empty when the shard does not exist yet."""
        from botocore.exceptions import ClientError

        try:
            table = get_table(self.client, self.shard_uri(shard))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return [], np.empty((0, self.dim), dtype=np.float32)
            raise
        return table_vectors(table, self.dim)

    def write_shard(self, shard: str, hashes: list[str], vectors: np.ndarray) -> None:
        put_table(self.client, self.shard_uri(shard), vectors_table(hashes, vectors))

    def get_or_embed(self, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, int]]:
        """Vectors for ``texts`` (float32, (len(texts), dim), input order) and counts.

        Stats: ``requested`` texts, ``unique`` distinct texts, ``cache_hits`` distinct
        texts found in the cache, ``embedded`` distinct texts embedded now
        (``cache_hits + embedded == unique``).
        """
        check_texts(texts)
        keys = [text_hash(t, self.model_name) for t in texts]
        first_text = dict(zip(keys, texts, strict=True))  # hash -> text, deduplicated
        by_shard: dict[str, list[str]] = {}
        for key in first_text:
            by_shard.setdefault(key[: self.shard_chars], []).append(key)

        found: dict[str, np.ndarray] = {}
        shard_contents: dict[str, tuple[list[str], np.ndarray]] = {}
        for shard, wanted in sorted(by_shard.items()):
            hashes, vectors = self.read_shard(shard)
            shard_contents[shard] = (hashes, vectors)
            position = {h: i for i, h in enumerate(hashes)}
            found.update((h, vectors[position[h]]) for h in wanted if h in position)

        missing = [h for h in first_text if h not in found]
        if missing:
            fresh = np.asarray(self.embed([first_text[h] for h in missing]), dtype=np.float32)
            if fresh.shape != (len(missing), self.dim):
                raise ValueError(f"embed returned shape {fresh.shape} for {len(missing)} texts, expected ({len(missing)}, {self.dim})")
            found.update(zip(missing, fresh, strict=True))
            new_by_shard: dict[str, list[str]] = {}
            for h in missing:
                new_by_shard.setdefault(h[: self.shard_chars], []).append(h)
            for shard, new in sorted(new_by_shard.items()):
                hashes, vectors = shard_contents[shard]
                self.write_shard(shard, hashes + new, np.concatenate([vectors, np.stack([found[h] for h in new])]))

        out = np.stack([found[k] for k in keys]) if keys else np.empty((0, self.dim), dtype=np.float32)
        stats = {"requested": len(keys), "unique": len(first_text), "cache_hits": len(first_text) - len(missing), "embedded": len(missing)}
        return out.astype(np.float32, copy=False), stats
