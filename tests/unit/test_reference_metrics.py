"""Reference metrics equal rouge_score's and sacrebleu's own outputs, identical texts score 1.0 / 100, only rows with a
reference are scored, and semantic similarity is the cosine of the bundled model's embeddings."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import sacrebleu
from modelwatch.judge.reference_metrics import corpus_bleu, reference_scores, reference_summary, rouge_scores, semantic_similarity, sentence_bleu
from rouge_score import rouge_scorer

PAIRS = [
    ("Order #A1043 left our warehouse yesterday and should arrive within two business days.",
     "Order #A1043 shipped yesterday; expect delivery within two business days."),
    ("Use 'Forgot password' on the sign-in page; the reset link is valid for one hour.",
     "Click 'Forgot password' on the sign-in page; the reset link expires after one hour."),
    ("I'm sorry, but I can't help with that request.",
     "You can return the headphones within 30 days: start the return from Orders and print the prepaid label."),
    ("Returns are accepted for 30 days, starting from Orders.", "Returns are accepted within 30 days: start from Orders."),
]


def fake_embed(texts):
    """Deterministic bag-of-words vectors (hashing trick), so the frame tests do not load the model."""
    out = np.zeros((len(texts), 64))
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1
    return out


def test_rouge_equals_rouge_score_with_the_stemmer():
    predictions, references = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    scores = rouge_scores(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for i, (prediction, reference) in enumerate(PAIRS):
        expected = scorer.score(reference, prediction)
        for name in ("rouge1", "rouge2", "rougeL"):
            assert scores.loc[i, name] == pytest.approx(expected[name].fmeasure)
    assert 0 < scores.loc[0, "rouge1"] < 1 and scores.loc[2, "rouge2"] == 0


def test_bleu_equals_sacrebleu_sentence_and_corpus():
    for prediction, reference in PAIRS:
        assert sentence_bleu(prediction, reference) == pytest.approx(sacrebleu.sentence_bleu(prediction, [reference]).score)
    predictions, references = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    expected = sacrebleu.corpus_bleu(predictions, [references]).score
    assert corpus_bleu(predictions, references) == pytest.approx(expected)
    assert corpus_bleu(predictions, references) != pytest.approx(np.mean([sentence_bleu(p, r) for p, r in PAIRS]))
    with pytest.raises(ValueError):
        corpus_bleu(predictions, references[:-1])


def test_identical_texts_score_one_and_one_hundred():
    text = PAIRS[0][0]
    scores = rouge_scores([text], [text])
    assert scores.iloc[0].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert sentence_bleu(text, text) == pytest.approx(100.0)
    assert corpus_bleu([text, PAIRS[1][1]], [text, PAIRS[1][1]]) == pytest.approx(100.0)
    assert semantic_similarity([text], [text], fake_embed)[0] == pytest.approx(1.0)


def test_reference_scores_only_rows_with_a_reference_and_a_response():
    frame = pd.DataFrame({
        "request_id": ["a", "b", "c", "d", "e"],
        "variant": ["control", "treatment", "control", "control", "treatment"],
        "response": [PAIRS[0][0], PAIRS[1][0], None, PAIRS[3][0], PAIRS[2][0]],
        "reference": [PAIRS[0][1], PAIRS[1][1], "a reference without a response", None, "  "],
    })
    scores = reference_scores(frame, embed=fake_embed)
    assert scores["request_id"].tolist() == ["a", "b"]
    assert list(scores.columns) == ["request_id", "variant", "response", "reference", "rouge1", "rouge2", "rougeL", "bleu", "semantic_similarity"]
    assert scores.loc[1, "bleu"] == pytest.approx(sentence_bleu(PAIRS[1][0], PAIRS[1][1]))
    assert reference_scores(frame.drop(columns="reference")).empty
    assert "semantic_similarity" not in reference_scores(frame, semantic=False)


def test_summary_means_per_variant_and_corpus_bleu_per_variant():
    frame = pd.DataFrame({
        "request_id": list("abcd"),
        "variant": ["control", "control", "treatment", "treatment"],
        "response": [p for p, _ in PAIRS],
        "reference": [r for _, r in PAIRS],
    })
    scores = reference_scores(frame, embed=fake_embed)
    summary = reference_summary(scores).set_index("variant")
    for variant, group in scores.groupby("variant"):
        assert summary.loc[variant, "rows"] == 2
        for metric in ("rouge1", "rouge2", "rougeL", "bleu", "semantic_similarity"):
            assert summary.loc[variant, f"{metric}_mean"] == pytest.approx(group[metric].mean())
        expected = sacrebleu.corpus_bleu(group["response"].tolist(), [group["reference"].tolist()]).score
        assert summary.loc[variant, "corpus_bleu"] == pytest.approx(expected)
    assert reference_summary(scores.drop(columns="variant"))["variant"].tolist() == ["all"]


def test_semantic_similarity_with_the_bundled_model():
    from modelwatch.embeddings import embed_texts

    paraphrase, unrelated = PAIRS[1], (PAIRS[1][0], "Error E-503 means the export timed out; try a smaller date range.")
    sims = semantic_similarity([PAIRS[1][0], paraphrase[0], unrelated[0]], [PAIRS[1][0], paraphrase[1], unrelated[1]])
    vectors = embed_texts([paraphrase[0], paraphrase[1]])
    assert sims[0] == pytest.approx(1.0, abs=1e-5)
    assert sims[1] == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-5)
    assert sims[1] > sims[2] + 0.2
