"""Export the bundled model to ONNX once and quantize it to int8; the file is keyed by the model's content hash.

``python -m modelwatch.embeddings export`` (run by ``make install``) writes it ahead of time; a task that
finds it missing writes it itself the first time (torch is imported then, and only then). Nothing is
downloaded either way: the export reads the bundled safetensors.

Recipe (``RECIPE``): the BERT encoder (not pooling, which ``onnx_backend`` does in numpy) traced by
``torch.onnx.export`` (TorchScript exporter, opset 17, dynamic batch and sequence axes), then
``onnxruntime.quantization.quantize_dynamic``: int8 weights per output channel, activations quantized
per tensor at run time (Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR). The six feed-forward down-projections (``layer.N/output/dense``,
whose inputs carry BERT's outlier activations) stay float32: quantizing them too cost the most cosine
to the float32 model on short texts. The file is written to a temporary name and renamed, so a
concurrent reader sees the whole file or none.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from modelwatch.embeddings.model import MODEL_NAME, model_path, model_sha256

RECIPE = "int8-dynamic-per-channel-ffn-out-float-v1"
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ENV_DIR = "MODELWATCH_EMBEDDINGS_DIR"

log = logging.getLogger("modelwatch.embeddings")


def export_dir() -> Path:
    """``$MODELWATCH_EMBEDDINGS_DIR``, else ``share/modelwatch/embeddings`` under the Python environment (beside the bundled model)."""
    import sys

    configured = os.environ.get(ENV_DIR)
    return Path(configured) if configured else Path(sys.prefix) / "share" / "modelwatch" / "embeddings"


def onnx_file(directory: Path | None = None) -> Path:
    """Where the int8 export of the bundled model lives: its name holds the model's content hash and the recipe."""
    return (directory or export_dir()) / f"{MODEL_NAME}-{model_sha256()[:16]}-{RECIPE}.onnx"


def ensure_exported(directory: Path | None = None) -> Path:
    """The int8 ONNX file, exported now if it is not there yet."""
    target = onnx_file(directory)
    if not target.is_file():
        export(target)
    return target


def export(target: Path) -> Path:
    """Trace the float32 encoder to ONNX, quantize it, and move the result to ``target`` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".export-", dir=target.parent) as scratch:
        float_file, int8_file = Path(scratch) / "float32.onnx", Path(scratch) / "int8.onnx"
        trace_float32(float_file)
        _quantize(float_file, int8_file)
        os.replace(int8_file, target)
    log.info("%s exported to ONNX and quantized to int8 in %.1f s: %s", MODEL_NAME, time.perf_counter() - start, target)
    return target


def trace_float32(out: Path) -> None:
    """The float32 encoder as ONNX (the quantizer's input; the tests check it against sentence-transformers)."""
    import torch

    from modelwatch.embeddings.torch_backend import offline_hub, quiet_model_libraries

    offline_hub()
    from transformers import AutoModel

    quiet_model_libraries()
    bert = AutoModel.from_pretrained(str(model_path()), local_files_only=True).eval()

    class Encoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.bert = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True).last_hidden_state

    example = tuple(torch.ones((2, 16), dtype=torch.long) if name != "token_type_ids" else torch.zeros((2, 16), dtype=torch.long) for name in INPUTS)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, "last_hidden_state")}
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Python conditionals it freezes; the output is checked by the tests
        torch.onnx.export(Encoder(bert), example, str(out), input_names=list(INPUTS), output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def float_kept_nodes(float_file: Path) -> list[str]:
    """The MatMul nodes left in float32: each encoder layer's feed-forward down-projection."""
    import onnx

    graph = onnx.load(str(float_file), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and "/output/dense/" in n.name and "/attention/" not in n.name]


def _quantize(float_file: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = float_kept_nodes(float_file)
    if len(keep) != 6:
        raise RuntimeError(f"expected the 6 feed-forward output MatMuls of {MODEL_NAME} in {float_file}, found {len(keep)}: the exporter's node names changed")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic advises pre-processing through the root logger on every call
    try:
        quantize_dynamic(str(float_file), str(out), weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=keep)
    finally:
        root.setLevel(level)
