"""The int8 backend: the exported encoder on ONNX Runtime, tokenized by ``tokenizers``, pooled in numpy. No torch.

Tokenization is the bundled ``tokenizer.json`` (the same fast tokenizer sentence-transformers uses),
truncated at the ``max_seq_length`` of ``sentence_bert_config.json`` (256 word pieces) and padded to the
longest text of the batch. Pooling is what ``1_Pooling/config.json`` and ``modules.json`` say: the mean
of the token vectors under the attention mask, then L2 normalisation (sentence-transformers' ``Pooling``
and ``Normalize`` modules).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelwatch.embeddings.model import MODEL_NAME, model_path, sentence_config

_LOCK = threading.Lock()
_SESSION: Any = None
_TOKENIZER: Any = None

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
            _SESSION = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
            _TOKENIZER = bundled_tokenizer()
            log.info("%s int8 (ONNX Runtime) loaded from %s in %.1f s", MODEL_NAME, file, time.perf_counter() - start)
        return _SESSION, _TOKENIZER


def bundled_tokenizer():
    """The bundled fast tokenizer, truncating and padding as sentence-transformers does for this model."""
    from tokenizers import Tokenizer

    path = model_path()
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=sentence_config(path).max_seq_length)
    pad_id = tokenizer.token_to_id("[PAD]")
    if pad_id is None:
        raise ValueError(f"{path / 'tokenizer.json'} has no [PAD] token")
    tokenizer.enable_padding(pad_id=pad_id, pad_token="[PAD]")  # to the longest text of the batch
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
    """One batch through an encoder ``session`` (inputs ``onnx_export.INPUTS``, output last_hidden_state), pooled and normalised."""
    encodings = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    types = np.array([e.type_ids for e in encodings], dtype=np.int64)
    (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    return mean_pool_normalize(hidden, mask)


def runtime_version() -> str:
    from importlib.metadata import version

    return f"onnxruntime {version('onnxruntime')}, tokenizers {version('tokenizers')}"
