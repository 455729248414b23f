"""Bundled all-MiniLM-L6-v2 embeddings (offline) and the S3 embedding cache against a real moto server over HTTP."""

from __future__ import annotations

import hashlib
import os
import re
import uuid

import numpy as np
import pyarrow as pa
import pytest
from modelwatch import embeddings
from modelwatch.embeddings import (
    BACKENDS,
    EMBEDDING_DIM,
    MODEL_NAME,
    EmbeddingCache,
    embed_texts,
    model_path,
    table_vectors,
    text_hash,
    vectors_table,
)
from modelwatch.storage.s3 import ensure_bucket, get_table, list_objects

SUPPORT_TEXTS = [
    "How do I reset my password?",
    "My order arrived damaged and I want a refund.",
    "The app crashes every time I open the settings page.",
    "Can I change the delivery address after checkout?",
    "I was charged twice for the same subscription this month.",
    "Where can I download last year's invoices?",
    "The verification code never arrives by SMS.",
    "Please cancel my account and delete my data.",
]


class CountingEmbed:
    """Wraps ``embed_texts`` and records every batch of texts it is asked to embed."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return embed_texts(texts)

    @property
    def texts_embedded(self) -> int:
        return sum(len(c) for c in self.calls)


@pytest.fixture()
def reports_uri(s3) -> str:
    bucket = f"emb-{uuid.uuid4().hex[:12]}"
    ensure_bucket(s3, bucket)
    return f"s3://{bucket}/reports"


def is_vector_type(t: pa.DataType) -> bool:
    return pa.types.is_fixed_size_list(t) and t.list_size == EMBEDDING_DIM and t.value_type == pa.float32()


def test_model_path_is_the_bundled_model():
    path = model_path()
    assert (path / "model.safetensors").is_file() and (path / "modules.json").is_file()
    assert "site-packages" in str(path) and path.name == "model"


@pytest.mark.parametrize("backend", BACKENDS)
def test_embed_texts_gives_unit_norm_384_dim_float32_rows_in_input_order(backend):
    vectors = embed_texts(SUPPORT_TEXTS, batch_size=3, backend=backend)
    assert vectors.shape == (len(SUPPORT_TEXTS), EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # A text's vector does not depend on the batch it was embedded in (torch pads a batch, up to float error;
    # int8 runs each text alone, since its activation scales would otherwise span the batch): exactly equal there.
    one_by_one = np.stack([embed_texts([t], backend=backend)[0] for t in SUPPORT_TEXTS])
    if backend == "torch-float32":
        np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)
    else:
        np.testing.assert_array_equal(vectors, one_by_one)
        np.testing.assert_array_equal(embed_texts(SUPPORT_TEXTS[::-1], batch_size=64, backend=backend)[::-1], vectors)
    assert np.all(np.argmax(vectors @ one_by_one.T, axis=1) == np.arange(len(SUPPORT_TEXTS)))


def test_torch_model_loads_once_with_the_hub_offline():
    assert embeddings.load_model() is embeddings.load_model()  # loaded once per process
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"


@pytest.mark.parametrize("backend", BACKENDS)
def test_paraphrases_are_closer_than_unrelated_texts(backend):
    anchor, paraphrase, unrelated_a, unrelated_b = embed_texts(
        [
            "How do I reset my password?",
            "I forgot my password, how can I change it?",
            "The delivery truck arrived late this morning.",
            "What is the capital city of Australia?",
        ],
        backend=backend,
    )
    assert anchor @ paraphrase > 0.6
    assert anchor @ paraphrase > max(anchor @ unrelated_a, anchor @ unrelated_b) + 0.3


def test_empty_input_progress_and_type_errors():
    assert embed_texts([]).shape == (0, EMBEDDING_DIM)
    seen: list[tuple[int, int]] = []
    embed_texts(SUPPORT_TEXTS[:5], batch_size=2, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 5), (4, 5), (5, 5)]
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        embed_texts(["fine", None])


def test_text_hash_is_sha256_of_model_name_and_text():
    assert text_hash("hello") == hashlib.sha256(f"{MODEL_NAME}\0hello".encode()).hexdigest()
    assert len(text_hash("hello")) == 64 and text_hash("hello") != text_hash("hello ")
    assert text_hash("hello", model_name="other-model") != text_hash("hello")


def test_vector_table_round_trip_is_lossless():
    vectors = np.random.default_rng(0).standard_normal((5, EMBEDDING_DIM)).astype(np.float32)
    table = vectors_table([f"h{i}" for i in range(5)], vectors)
    assert is_vector_type(table.schema.field("vector").type)
    hashes, back = table_vectors(table.slice(1, 3))
    assert hashes == ["h1", "h2", "h3"] and np.array_equal(back, vectors[1:4])


def _same_texts(a: np.ndarray, b: np.ndarray) -> bool:
    """Row by row the same texts' vectors: cosine >= 0.99 (the int8 model quantizes activations per batch, so a text's
    vector moves slightly with its batch partners; float32 agrees to ~1e-6)."""
    return a.shape == b.shape and bool(np.min(np.sum(a * b, axis=1)) >= 0.99)


def test_cache_embeds_each_text_once_and_matches_direct_embedding(s3, reports_uri):
    embed = CountingEmbed()
    cache = EmbeddingCache(s3, reports_uri, embed=embed)
    texts = SUPPORT_TEXTS[:5] + SUPPORT_TEXTS[:2]  # two duplicates

    first, stats = cache.get_or_embed(texts)
    assert stats == {"requested": 7, "unique": 5, "cache_hits": 0, "embedded": 5}
    assert embed.calls == [SUPPORT_TEXTS[:5]]  # one call, deduplicated
    assert first.shape == (7, EMBEDDING_DIM) and first.dtype == np.float32
    assert _same_texts(first, embed_texts(texts))
    assert np.array_equal(first[5:], first[:2])

    again, stats = cache.get_or_embed(texts)
    assert stats == {"requested": 7, "unique": 5, "cache_hits": 5, "embedded": 0}
    assert embed.texts_embedded == 5
    assert np.array_equal(again, first)  # vectors come back bit-for-bit

    mixed = SUPPORT_TEXTS[3:] + ["A brand new question about shipping to Canada."]
    vectors, stats = cache.get_or_embed(mixed)
    assert stats == {"requested": 6, "unique": 6, "cache_hits": 2, "embedded": 4}
    assert embed.calls[-1] == SUPPORT_TEXTS[5:] + ["A brand new question about shipping to Canada."]
    assert _same_texts(vectors, embed_texts(mixed))
    assert np.array_equal(vectors[:2], first[3:5])

    # Rewriting a shard kept the rows it already had; a fresh cache object reads everything from S3.
    _, stats = EmbeddingCache(s3, reports_uri, embed=embed).get_or_embed(SUPPORT_TEXTS + mixed)
    assert stats["embedded"] == 0 and stats["cache_hits"] == len(SUPPORT_TEXTS) + 1


def test_cache_layout_is_a_few_sharded_parquet_objects(s3, reports_uri):
    texts = [f"ticket {i}: the checkout page shows error {i * 7 % 13}" for i in range(120)]
    cache = EmbeddingCache(s3, reports_uri, embed=CountingEmbed())
    cache.get_or_embed(texts)

    objects = [uri for uri, _ in list_objects(s3, reports_uri.split("/reports")[0])]
    prefix = f"{reports_uri}/_cache/embeddings/model={MODEL_NAME}/backend={embeddings.backend_key(embeddings.DEFAULT_BACKEND)}/"
    assert cache.prefix == prefix
    assert objects and all(uri.startswith(prefix) for uri in objects)  # nothing left under _tmp/
    shards = {uri[len(prefix) :] for uri in objects}
    assert shards <= {f"shard={c}.parquet" for c in "0123456789abcdef"} and len(shards) > 1
    table = get_table(s3, objects[0])
    assert table.schema.names == ["hash", "vector"] and str(table.schema.field("hash").type) == "string"
    assert is_vector_type(table.schema.field("vector").type)
    shard_char = objects[0][len(prefix) + len("shard=")]
    assert all(h.startswith(shard_char) for h in table.column("hash").to_pylist())

    gets: list[str] = []

    def count_get(params, **_):
        gets.append(params["Key"])

    s3.meta.events.register("before-parameter-build.s3.GetObject", count_get)
    try:
        _, stats = cache.get_or_embed(texts)
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.GetObject", count_get)
    assert stats["embedded"] == 0 and stats["cache_hits"] == 120
    assert len(gets) == len(shards) <= 16  # one GET per shard, not one per text


def test_cache_rejects_wrong_embedding_shape(s3, reports_uri):
    cache = EmbeddingCache(s3, reports_uri, embed=lambda texts: np.zeros((len(texts), 3), dtype=np.float32))
    with pytest.raises(ValueError, match="expected"):
        cache.get_or_embed(["one text"])
    assert list(list_objects(s3, reports_uri)) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_loading_the_model_writes_nothing_to_stderr_and_logs_one_info_line(backend):
    """A deployed task's supervisor logs every stderr line at error level, so loading must not print progress there.

    The int8 backend loads without torch in the process (its file was exported beforehand, as ``make install`` does)."""
    import subprocess
    import sys

    script = (  # logging as in a task: records to stdout, warnings through logging
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(levelname)s %(name)s %(message)s')\n"
        "logging.captureWarnings(True)\n"
        "from modelwatch import embeddings\n"
        f"embeddings.embed_texts(['one text'], backend={backend!r})\n"
        f"assert ('torch' in sys.modules) == {backend == 'torch-float32'}, 'torch imported: ' + str('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    [loaded] = done.stdout.splitlines()  # nothing else: no library's progress or chatter
    what = MODEL_NAME if backend == "torch-float32" else rf"{MODEL_NAME} int8 \(ONNX Runtime\)"
    assert re.fullmatch(rf"INFO modelwatch\.embeddings {what} loaded from \S+ in \d+\.\d+ s", loaded)
