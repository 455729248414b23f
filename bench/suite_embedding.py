"""Benchmark suite "embedding": the MMD drift test's speed and calibration, embedding throughput, and the two embedding backends compared.

``run(size)`` returns records ``{"suite", "case", "metric", "value", "unit", "alternative",
"alternative_value", "target"}``; ``size`` is "small" (a quick check) or "full".

* MMD speed: ``modelwatch.drift.mmd.mmd_test`` on 20,000 vs 20,000 float32 rows of 384 dims
  with 1,000 permutations (small: 5,000 vs 5,000), target <= 10 s; and on 2,000 vs 2,000
  next to Evidently 0.7.23's embedding MMD (``MMDDriftMethod(bootstrap=True)``, which
  builds the full pooled kernel and a reference-only bootstrap of 100 draws).
* MMD calibration: the false-alarm rate over seeded A/A trials (two samples of one
  distribution) at alpha 0.05, and the power on a documented shift, for both methods.
* Embedding: all-MiniLM-L6-v2 texts/s on short support-style texts with the torch-float32
  backend, the machine's float32 matmul rate, and the share of that rate the model achieves.
* Backends (``bench.embedding_backends``), ``onnx-int8`` as the value and ``torch-float32`` as the
  alternative, in the same run on a generated held set unlike the support texts (1,500 texts;
  small: 450): texts/s of each and their ratio (target >= 2.5x); the cosine between the two
  vectors of each text (min, target >= 0.99; 1st percentile; mean; share below 0.99) and the
  text with the lowest; ``mmd_test`` on each backend's vectors of those texts, 200 rows a side:
  the false-alarm rate over A/A trials (two disjoint random samples of the held texts) and the
  power when a new topic (pet care) makes up 10% of the current rows, the same seeded trials
  for both, and the share of trials whose verdicts differ; and per backend a fresh Python
  process that imports it and embeds one text: import time, load-and-embed time, wall time,
  peak RSS, and how many torch modules it loaded (target 0 for int8).

The synthetic "embeddings" of the MMD speed and calibration cases are unit-norm rows of an
anisotropic Gaussian (a decaying spectrum, like real sentence embeddings), not model output:
the test's speed does not depend on the values and its calibration must hold for any
distribution. The backend comparison runs the test on the model's real vectors.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from bench.common import suite_helpers
from bench.embedding_backends import compare as compare_backends

SUITE = "embedding"
_, record = suite_helpers(SUITE)
DIM = 384
ALPHA = 0.05

SIZES: dict[str, dict[str, int]] = {
    "small": {"big_n": 5_000, "compare_n": 2_000, "aa_trials": 40, "power_trials": 16, "trial_n": 500, "texts": 100,
              "held_texts": 450, "topic_texts": 100, "backend_aa_trials": 30, "backend_power_trials": 30, "process_runs": 1},
    "full": {"big_n": 20_000, "compare_n": 2_000, "aa_trials": 400, "power_trials": 100, "trial_n": 500, "texts": 500,
             "held_texts": 1_500, "topic_texts": 300, "backend_aa_trials": 400, "backend_power_trials": 200, "process_runs": 3},
}

# Power scenario: a new topic appears in 10% of the current rows. Those rows come from the
# same distribution shifted along a random direction, before normalisation, by half the
# norm of a typical row: a distinct cluster, but only one row in ten. (Measured at 500
# rows a side: 5% of rows gives ~35% power, 10% at shift 0.4 ~85%; exact and random
# features within a few points of each other.)
NEW_TOPIC_SHARE = 0.10
NEW_TOPIC_SHIFT = 0.5

EVIDENTLY_MAX_TRIALS = 100  # Evidently is ~3x slower per trial; its rates are far from ours, so fewer trials suffice


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def spectrum(dim: int = DIM) -> np.ndarray:
    """Per-axis scales decaying like sentence-embedding spectra (a few strong directions, a long tail)."""
    return (1.0 / np.sqrt(1.0 + np.arange(dim) / 8.0)).astype(np.float32)


def embedding_like(rng: np.random.Generator, n: int, shift: np.ndarray | None = None) -> np.ndarray:
    """``n`` unit-norm float32 rows of an anisotropic Gaussian, optionally shifted before normalising."""
    x = rng.standard_normal((n, DIM), dtype=np.float32) * spectrum()
    if shift is not None:
        x += shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def new_topic_sample(rng: np.random.Generator, n: int) -> np.ndarray:
    """The power scenario: ``NEW_TOPIC_SHARE`` of the rows from a cluster shifted by ``NEW_TOPIC_SHIFT``."""
    direction = rng.standard_normal(DIM).astype(np.float32)
    direction *= NEW_TOPIC_SHIFT * np.linalg.norm(spectrum()) / np.linalg.norm(direction)
    k = round(n * NEW_TOPIC_SHARE)
    return np.concatenate([embedding_like(rng, n - k), embedding_like(rng, k, shift=direction)])


def evidently_mmd() -> Callable[[np.ndarray, np.ndarray], bool] | None:
    """Evidently 0.7.23's embedding MMD drift method as ``(reference, current) -> drift``, or None if unavailable."""
    try:
        import pandas as pd
        from evidently.legacy.metrics.data_drift.embedding_drift_methods import mmd
    except ImportError:
        return None
    method = mmd(bootstrap=True)

    def call(reference: np.ndarray, current: np.ndarray) -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, drift, _ = method(pd.DataFrame(current), pd.DataFrame(reference))
        return bool(drift)

    return call


def mmd_speed(cfg: dict[str, int]) -> list[dict[str, Any]]:
    from modelwatch.drift.mmd import mmd_test

    rng = np.random.default_rng(1)
    mmd_test(embedding_like(rng, 500), embedding_like(rng, 500), method="random_features")  # warm up BLAS threads
    n = cfg["big_n"]
    reference, current = embedding_like(rng, n), embedding_like(rng, n)
    seconds, result = timed(lambda: mmd_test(reference, current, n_permutations=1000))
    out = [record(f"mmd_test {result.method} {n}v{n}x{DIM} float32, 1000 permutations", "wall_time", seconds, "s", target="<= 10 s")]

    n = cfg["compare_n"]
    reference, current = embedding_like(rng, n), embedding_like(rng, n)
    seconds, result = timed(lambda: mmd_test(reference, current, n_permutations=1000))
    evidently = evidently_mmd()
    alt_seconds = timed(lambda: evidently(reference, current))[0] if evidently else None
    out.append(record(f"mmd_test {result.method} {n}v{n}x{DIM}, 1000 permutations vs evidently at the same n", "wall_time", seconds, "s",
                      alternative="evidently 0.7.23 MMDDriftMethod(bootstrap=True): full kernel, 100 reference-only bootstraps",
                      alternative_value=alt_seconds))
    return out


def rejection_rate(trials: int, first_seed: int, n: int, drifted: bool, test: Callable[[np.ndarray, np.ndarray, int], bool]) -> float:
    """Share of seeded trials in which ``test(reference, current, seed)`` reports drift.

    Each trial draws ``n`` reference rows and ``n`` current rows, the latter from the same
    distribution (A/A) or, when ``drifted``, from ``new_topic_sample``.
    """
    hits = 0
    for seed in range(first_seed, first_seed + trials):
        rng = np.random.default_rng(seed)
        reference = embedding_like(rng, n)
        current = new_topic_sample(rng, n) if drifted else embedding_like(rng, n)
        hits += bool(test(reference, current, seed))
    return hits / trials


def mmd_calibration(cfg: dict[str, int]) -> list[dict[str, Any]]:
    from modelwatch.drift.mmd import mmd_test

    n = cfg["trial_n"]
    evidently = evidently_mmd()
    out = []
    for method in ("random_features", "exact"):
        def ours(reference: np.ndarray, current: np.ndarray, seed: int, method: str = method) -> bool:
            return mmd_test(reference, current, n_permutations=1000, alpha=ALPHA, seed=seed, method=method).drift

        with_alt = method == "random_features" and evidently is not None
        for drifted, metric, trials, first_seed, target in (
            (False, "false_alarm_rate", cfg["aa_trials"], 0, "0.02–0.08"),
            (True, "detection_rate", cfg["power_trials"], 100_000, ">= 0.90"),
        ):
            scenario = f"new topic in {NEW_TOPIC_SHARE:.0%} of current rows (shift {NEW_TOPIC_SHIFT})" if drifted else "A/A (no drift)"
            alt_trials = min(trials, EVIDENTLY_MAX_TRIALS)
            out.append(record(
                f"mmd {scenario}, {method}, {n}v{n}x{DIM}, 1000 permutations, alpha {ALPHA}, {trials} seeded trials", metric,
                rejection_rate(trials, first_seed, n, drifted, ours), "fraction", target=target,
                alternative=f"evidently 0.7.23 MMDDriftMethod(bootstrap=True), first {alt_trials} of the same trials" if with_alt else None,
                alternative_value=rejection_rate(alt_trials, first_seed, n, drifted, lambda r, c, _: evidently(r, c)) if with_alt else None,
            ))
    return out


def support_texts(n: int, seed: int = 0) -> list[str]:
    """``n`` short, distinct customer-support style messages built from templates."""
    rng = np.random.default_rng(seed)
    openers = ["Hi,", "Hello team,", "Urgent:", "Quick question -", "", "Hey support,"]
    issues = [
        "my order #{k} arrived damaged and I'd like a replacement",
        "I was charged twice for invoice {k}",
        "the app crashes when I open the {page} page",
        "I can't log in, the reset link for account {k} has expired",
        "how do I change the delivery address for order {k}?",
        "the {page} page has been loading forever since yesterday",
        "please cancel subscription {k} and refund the last payment",
        "where can I download the receipt for order {k}?",
        "the discount code {k} is not accepted at checkout",
        "my parcel {k} shows delivered but nothing arrived",
    ]
    closers = ["Thanks.", "Please help!", "Any update?", "", "Regards, Sam", "This is the third time I ask."]
    pages = ["settings", "billing", "profile", "checkout", "orders", "notifications"]
    texts: list[str] = []
    seen: set[str] = set()
    while len(texts) < n:
        issue = issues[rng.integers(len(issues))].format(k=int(rng.integers(10_000, 99_999)), page=pages[rng.integers(len(pages))])
        text = " ".join(p for p in (openers[rng.integers(len(openers))], issue, closers[rng.integers(len(closers))]) if p)
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


def matmul_gflops(backend: str, size: int = 2048, repeats: int = 10) -> float:
    """Median float32 GEMM rate (2·size³ FLOP per product) over ``repeats`` timed products, after a warm-up."""
    if backend == "torch":
        import torch

        a, b = torch.randn(size, size), torch.randn(size, size)
        mul = partial(torch.mm, a, b)
    else:
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((size, size), dtype=np.float32), rng.standard_normal((size, size), dtype=np.float32)
        mul = partial(np.matmul, a, b)
    mul()
    times = [timed(mul)[0] for _ in range(repeats)]
    return 2 * size**3 / float(np.median(times)) / 1e9


def flops_per_text(model, texts: list[str]) -> float:
    """Forward FLOPs per text for a BERT encoder: 2 · (non-embedding params) · T + 4 · layers · T² · hidden.

    The first term is every weight matrix applied to every token (a multiply-add is
    2 FLOPs); the second is the attention scores QKᵀ and their product with V. The often
    quoted "2 × 22M × tokens" counts the 11.7M-parameter embedding tables, which are
    lookups, not multiplies, so it overstates MiniLM-L6's work by about 2×. T is the
    mean tokenised length including [CLS]/[SEP] (batches are length-sorted, so padding is small).
    """
    bert = model[0].auto_model
    params = sum(p.numel() for name, p in bert.named_parameters() if not name.startswith("embeddings."))
    tokens = np.array([len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]], dtype=float)
    layers, hidden = bert.config.num_hidden_layers, bert.config.hidden_size
    return float(np.mean(2.0 * params * tokens + 4.0 * layers * tokens**2 * hidden))


def embedding_throughput(cfg: dict[str, int]) -> list[dict[str, Any]]:
    from modelwatch.embeddings import MODEL_NAME, embed_texts, load_model

    load_seconds, model = timed(load_model)
    texts = support_texts(cfg["texts"])
    embed = partial(embed_texts, batch_size=64, backend="torch-float32")  # the FLOP accounting below is the float32 model's
    embed(texts[:16])  # warm-up: first-call allocations and thread pools
    seconds, _ = timed(lambda: embed(texts))
    int8 = partial(embed_texts, batch_size=64, backend="onnx-int8")  # the same texts on the default backend, for comparison
    int8(texts[:16])
    int8_seconds, _ = timed(lambda: int8(texts))
    rate = len(texts) / seconds
    torch_gflops, numpy_gflops = matmul_gflops("torch"), matmul_gflops("numpy")
    model_gflops = rate * flops_per_text(model, texts) / 1e9
    return [
        record(f"embed {len(texts)} support texts, {MODEL_NAME}, CPU, batch 64, torch-float32", "throughput", rate, "texts/s",
               alternative="onnx-int8, the same texts", alternative_value=len(texts) / int8_seconds),
        record(f"load {MODEL_NAME} from the bundled package (first load in process)", "wall_time", load_seconds, "s"),
        record("float32 matmul 2048x2048, torch", "matmul_rate", torch_gflops, "GFLOP/s", alternative="numpy (OpenBLAS)", alternative_value=numpy_gflops),
        record(f"{MODEL_NAME} achieved FLOP rate (2·non-embedding params·T + attention)", "model_rate", model_gflops, "GFLOP/s"),
        record(f"{MODEL_NAME} share of the torch matmul rate", "matmul_share", model_gflops / torch_gflops, "fraction"),
    ]


def run(size: str) -> list[dict[str, Any]]:
    """All records of the suite; ``size`` is "small" or "full"."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may download a model
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    cfg = SIZES[size]
    return mmd_speed(cfg) + mmd_calibration(cfg) + embedding_throughput(cfg) + compare_backends(cfg)


if __name__ == "__main__":
    import sys

    for rec in run(sys.argv[1] if len(sys.argv) > 1 else "small"):
        print(json.dumps(rec, ensure_ascii=False))
