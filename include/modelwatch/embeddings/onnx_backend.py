"""The int8 backend: the exported encoder on ONNX Runtime, tokenized by ``tokenizers``, pooled in numpy. No torch.

Tokenization is the bundled ``tokenizer.json`` (the same fast tokenizer sentence-transformers uses),
truncated at the ``max_seq_length`` of ``sentence_bert_config.json`` (256 word pieces). Pooling is
what ``1_Pooling/config.json`` and ``modules.json`` say: the mean of the token vectors under the attention mask, then L2 normalisation (sentence-transformers' ``Pooling``
and ``Normalize`` modules).

Each text runs through the session on its own. Dynamic int8 quantization scales a layer's activations
by the whole input tensor, so in a padded batch a text's vector depends on its neighbours (the same
text moved by up to 4e-3 in cosine between two batches); alone and unpadded, a text always gets the
same vector, which the embedding cache and the reference metrics rely on. Texts are spread over one
single-threaded run per core instead of one run using every core: on 1,200 of the scale bench's
prompts (82 characters on average, this 2-core machine idle) 627 texts/s, against 414 texts/s one
text at a time on a 2-thread session, 565 texts/s in padded length-sorted batches of 64, and 345
texts/s for the torch float32 backend in the same batches.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from modelwatch.embeddings.model import EMBEDDING_DIM, MODEL_NAME, model_path, sentence_config

ENCODING = "one-unpadded-text-per-run"  # part of the backend key: vectors made another way are not mixed with these
_LOCK = threading.Lock()
_SESSION: Any = None
_TOKENIZER: Any = None
_POOL: ThreadPoolExecutor | None = None
RUNNERS = max(1, min(len(os.sched_getaffinity(0)), 8))  # concurrent single-threaded runs: one per core this process may use

log = logging.getLogger("modelwatch.embeddings")


def load_session():
    """(ONNX Runtime session, tokenizer), loaded once per process; the int8 file is exported first if missing."""
    global _SESSION, _TOKENIZER
    with _LOCK:
        if _SESSION is None:
            import onnxruntime as ort

            from modelwatch.embeddings.onnx_export import ensure_exported

            start = time.perf_counter()
            file = ensure_exported()
            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only: ORT's warnings would go to stderr
            options.intra_op_num_threads = options.inter_op_num_threads = 1  # parallel across texts instead (RUNNERS)
            _SESSION = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
            _TOKENIZER = bundled_tokenizer()
            log.info("%s int8 (ONNX Runtime) loaded from %s in %.1f s", MODEL_NAME, file, time.perf_counter() - start)
        return _SESSION, _TOKENIZER


def bundled_tokenizer():
    """The bundled fast tokenizer, truncating as sentence-transformers does for this model (no padding: one text per run)."""
    from tokenizers import Tokenizer

    path = model_path()
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=sentence_config(path).max_seq_length)
    tokenizer.no_padding()
    return tokenizer


def mean_pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Masked mean of ``hidden`` (batch, tokens, dim) over tokens, L2-normalised, as sentence-transformers' Pooling + Normalize."""
    weights = mask[..., None].astype(np.float32)
    summed = (hidden * weights).sum(axis=1)
    pooled = summed / np.clip(weights.sum(axis=1), 1e-9, None)
    return (pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)


def encode_batch(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm float32 embeddings of one batch."""
    session, tokenizer = load_session()
    return encode_with(session, tokenizer, texts)


def encode_with(session, tokenizer, texts: Sequence[str]) -> np.ndarray:
    """Texts through an encoder ``session`` (inputs ``onnx_export.INPUTS``, output last_hidden_state), each alone and unpadded,
    ``RUNNERS`` at a time (ONNX Runtime releases the GIL while it runs), pooled and normalised."""
    encodings = tokenizer.encode_batch(list(texts))
    out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)

    def run(rows: range) -> None:
        for row in rows:
            encoding = encodings[row]
            ids = np.array([encoding.ids], dtype=np.int64)
            mask = np.array([encoding.attention_mask], dtype=np.int64)
            types = np.array([encoding.type_ids], dtype=np.int64)
            (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
            out[row] = mean_pool_normalize(hidden, mask)[0]

    shares = [range(start, len(texts), RUNNERS) for start in range(min(RUNNERS, len(texts)))]
    if len(shares) <= 1:
        for share in shares:
            run(share)
        return out
    list(_pool().map(run, shares))  # waits for every share; re-raises a run's error
    return out


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(RUNNERS, thread_name_prefix="modelwatch-embed")
        return _POOL


def runtime_version() -> str:
    from importlib.metadata import version

    return f"onnxruntime {version('onnxruntime')}, tokenizers {version('tokenizers')}"
