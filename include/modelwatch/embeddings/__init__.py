"""Sentence embeddings with the bundled all-MiniLM-L6-v2, offline, and a content-addressed S3 cache.

Two backends (``backends``): ``onnx-int8`` (default; ``onnx_export`` writes the int8 ONNX file once,
``onnx_backend`` runs it on ONNX Runtime with no torch in the process) and ``torch-float32``
(``torch_backend``: the published float32 model through sentence-transformers), chosen by
``defaults.embedding_backend``. ``cache.EmbeddingCache`` keeps each backend's vectors apart.
Importing this package (e.g. while Airflow parses a DAG file) imports neither torch nor ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from modelwatch.embeddings.backends import BACKENDS, DEFAULT_BACKEND, Backend, backend_key, batch_encoder, check_backend, identity
from modelwatch.embeddings.cache import EmbeddingCache, cache_prefix, check_texts, table_vectors, text_hash, vectors_table
from modelwatch.embeddings.model import EMBEDDING_DIM, MODEL_NAME, model_path, model_sha256
from modelwatch.embeddings.torch_backend import load_model

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "EMBEDDING_DIM", "MODEL_NAME", "Backend", "EmbeddingCache", "backend_key", "cache_prefix", "check_backend",
    "embed_texts", "identity", "load_model", "model_path", "model_sha256", "table_vectors", "text_hash", "vectors_table",
]


def embed_texts(texts: Sequence[str], batch_size: int = 64, progress: Callable[[int, int], None] | None = None,
                backend: str = DEFAULT_BACKEND) -> np.ndarray:
    """Embed ``texts`` with all-MiniLM-L6-v2 on ``backend``: float32 array (len(texts), 384) of unit-norm rows, in input order.

    Texts are encoded in order of length so that each batch pads to similar lengths
    (fewer wasted tokens); ``progress(done, total)`` is called after every batch.
    Filtering empty or missing texts is the caller's job; a non-string raises TypeError.
    Texts longer than the model's 256 word pieces are truncated.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    check_texts(texts)
    total = len(texts)
    out = np.empty((total, EMBEDDING_DIM), dtype=np.float32)
    if total == 0:
        return out
    encode = batch_encoder(backend)
    order = sorted(range(total), key=lambda i: len(texts[i]))
    for start in range(0, total, batch_size):
        idx = order[start : start + batch_size]
        out[idx] = encode([texts[i] for i in idx])
        if progress is not None:
            progress(min(start + batch_size, total), total)
    return out
