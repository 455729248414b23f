"""The float32 reference backend: all-MiniLM-L6-v2 through sentence-transformers and torch on the CPU.

This is the model as published, kept selectable (``defaults.embedding_backend: torch-float32``) to compare
the int8 ONNX backend against and to export it from (``embeddings.onnx_export``). torch and
sentence_transformers are imported inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelwatch.embeddings.model import MODEL_NAME, model_path

_MODEL_LOCK = threading.Lock()
_MODEL: Any = None

log = logging.getLogger("modelwatch.embeddings")


def offline_hub() -> None:
    """No network for huggingface_hub and transformers (set before they are imported: they read it then)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def load_model():
    """The SentenceTransformer on CPU, loaded once per process from ``model_path()`` with the Hugging Face hub offline."""
    global _MODEL
    with _MODEL_LOCK:
        if _MODEL is None:
            offline_hub()
            from sentence_transformers import SentenceTransformer

            quiet_model_libraries()
            path = model_path()
            start = time.perf_counter()
            _MODEL = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            log.info("%s loaded from %s in %.1f s", MODEL_NAME, path, time.perf_counter() - start)
        return _MODEL


def quiet_model_libraries() -> None:
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


def encode_batch(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm float32 embeddings of one batch (sentence-transformers truncates at the model's 256 word pieces)."""
    model = load_model()
    return model.encode(list(texts), batch_size=max(len(texts), 1), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)


def runtime_version() -> str:
    from importlib.metadata import version

    return f"torch {version('torch')}, sentence-transformers {version('sentence-transformers')}"
