"""The two ways of embedding a text with the bundled model, and the identity a vector carries.

``onnx-int8`` (the default): the int8 ONNX export on ONNX Runtime, no torch in the process.
``torch-float32``: the published float32 model through sentence-transformers, for comparison.

Vectors of the two differ slightly (cosine about 0.99), so they are never mixed: the embedding
cache keeps each backend under its own prefix, and a baseline records the identity it was
embedded with (``identity``); a day is compared with its baseline only when the keys agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Literal

import numpy as np

from modelwatch.embeddings.model import MODEL_NAME, model_sha256

Backend = Literal["onnx-int8", "torch-float32"]
BACKENDS: tuple[Backend, ...] = ("onnx-int8", "torch-float32")
DEFAULT_BACKEND: Backend = "onnx-int8"


def check_backend(backend: str) -> Backend:
    if backend not in BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r}: defaults.embedding_backend must be one of {list(BACKENDS)}")
    return backend  # type: ignore[return-value]


def batch_encoder(backend: str) -> Callable[[Sequence[str]], np.ndarray]:
    """The function embedding one batch of texts with ``backend`` (its module is imported only now)."""
    if check_backend(backend) == "onnx-int8":
        from modelwatch.embeddings import onnx_backend

        return onnx_backend.encode_batch
    from modelwatch.embeddings import torch_backend

    return torch_backend.encode_batch


@lru_cache(maxsize=4)
def backend_key(backend: str) -> str:
    """``{backend}-{12 hex}``: the hash covers the model's content and, for ONNX, the export recipe and how texts are run. Names a cache prefix."""
    parts = [model_sha256()]
    if check_backend(backend) == "onnx-int8":
        from modelwatch.embeddings.onnx_backend import ENCODING
        from modelwatch.embeddings.onnx_export import OPSET, RECIPE

        parts += [RECIPE, f"opset{OPSET}", ENCODING]
    return f"{backend}-{hashlib.sha256(chr(0).join(parts).encode()).hexdigest()[:12]}"


def identity(backend: str) -> dict[str, str]:
    """What a baseline manifest records of how its vectors were made: ``key`` decides comparability, the rest is for readers."""
    if check_backend(backend) == "onnx-int8":
        from modelwatch.embeddings.onnx_backend import runtime_version
    else:
        from modelwatch.embeddings.torch_backend import runtime_version
    return {"backend": backend, "key": backend_key(backend), "model": MODEL_NAME, "model_sha256": model_sha256(), "runtime": runtime_version()}
