"""Reference-based quality for the rows that carry a reference answer (golden-set traffic).

Three families of overlap with the reference, each from its standard implementation:

=========================  =============================================================================
metric                     method and source
=========================  =============================================================================
``rouge1/rouge2/rougeL``   ROUGE-N and ROUGE-L F-measure (Lin 2004, "ROUGE: A Package for Automatic
                           Evaluation of Summaries"), ``rouge_score.rouge_scorer.RougeScorer`` with the
                           Porter stemmer (Google's reimplementation of the original Perl script)
``bleu``                   sentence BLEU (Papineni et al. 2002), ``sacrebleu.sentence_bleu`` (Post 2018,
                           "A Call for Clarity in Reporting BLEU Scores"): exponential smoothing,
                           effective n-gram order, 13a tokenisation; 0–100
``corpus_bleu``            corpus BLEU per variant, ``sacrebleu.corpus_bleu``: n-gram counts pooled over
                           the variant's rows (not the mean of sentence BLEU)
``semantic_similarity``    cosine of the all-MiniLM-L6-v2 sentence embeddings of response and reference
                           (Reimers & Gurevych 2019, Sentence-BERT), via ``modelwatch.embeddings``
=========================  =============================================================================

Caveats: ``rouge_score``'s default tokenizer keeps only ASCII letters and digits, so ROUGE
of non-Latin-script answers is 0 even for identical texts (the support traffic is English;
use BLEU or semantic similarity across locales). Surface overlap punishes correct
paraphrases; semantic similarity is the more forgiving of the three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import sacrebleu
from rouge_score import rouge_scorer

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
SCORE_COLUMNS = [*ROUGE_TYPES, "bleu", "semantic_similarity"]
Embed = Callable[[Sequence[str]], np.ndarray]


def _default_embed(texts: Sequence[str]) -> np.ndarray:
    from modelwatch.embeddings import embed_texts  # torch is imported only when embeddings are asked for

    return embed_texts(list(texts))


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> pd.DataFrame:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measure per pair (``RougeScorer(use_stemmer=True).score(reference, prediction)``)."""
    _same_length(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    rows = [{name: score.fmeasure for name, score in scorer.score(ref, pred).items()} for pred, ref in zip(predictions, references)]
    return pd.DataFrame(rows, columns=list(ROUGE_TYPES), dtype=float)


def sentence_bleu(prediction: str, reference: str) -> float:
    """``sacrebleu.sentence_bleu(prediction, [reference]).score`` (0–100; 100 for identical texts)."""
    return float(sacrebleu.sentence_bleu(prediction, [reference]).score)


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """``sacrebleu.corpus_bleu(predictions, [references]).score``: one reference per prediction, counts pooled."""
    _same_length(predictions, references)
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def semantic_similarity(predictions: Sequence[str], references: Sequence[str], embed: Embed | None = None) -> np.ndarray:
    """Cosine similarity of each prediction's and reference's embeddings; each distinct text is embedded once."""
    _same_length(predictions, references)
    if not predictions:
        return np.empty(0)
    texts = list(dict.fromkeys([*predictions, *references]))
    vectors = np.asarray((embed or _default_embed)(texts), dtype=float)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.where(norms > 0, norms, 1.0)
    position = {t: i for i, t in enumerate(texts)}
    a = vectors[[position[t] for t in predictions]]
    b = vectors[[position[t] for t in references]]
    return np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0)


def _same_length(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def reference_scores(frame: pd.DataFrame, *, embed: Embed | None = None, semantic: bool = True) -> pd.DataFrame:
    """Per-row reference metrics for the rows of ``frame`` with a non-empty ``reference`` and ``response``.

    Columns: ``request_id`` and ``variant`` (when present), ``response``, ``reference``,
    ``rouge1``, ``rouge2``, ``rougeL`` (0–1), ``bleu`` (0–100) and ``semantic_similarity``
    (cosine, -1–1; omitted with ``semantic=False``, e.g. where torch is unwanted). Other
    rows are left out; an empty frame comes back when no row has a reference.
    """
    if "reference" not in frame or "response" not in frame:
        return pd.DataFrame(columns=["request_id", "variant", "response", "reference", *SCORE_COLUMNS])
    rows = frame[frame["reference"].map(_text) & frame["response"].map(_text)]
    keep = [c for c in ("request_id", "variant") if c in rows]
    out = rows[keep + ["response", "reference"]].reset_index(drop=True)
    predictions, references = out["response"].tolist(), out["reference"].tolist()
    out = pd.concat([out, rouge_scores(predictions, references)], axis=1)
    out["bleu"] = [sentence_bleu(p, r) for p, r in zip(predictions, references)]
    if semantic:
        out["semantic_similarity"] = semantic_similarity(predictions, references, embed)
    return out


def reference_summary(scores: pd.DataFrame, by: str = "variant") -> pd.DataFrame:
    """Per ``by`` value (all rows as ``all`` when the column is absent): ``rows``, the mean of every score column
    (``bleu`` is the mean sentence BLEU) and ``corpus_bleu`` over the group's rows."""
    if by not in scores:
        scores = scores.assign(**{by: "all"})
    metrics = [c for c in SCORE_COLUMNS if c in scores]
    out = []
    for value, group in scores.groupby(by, sort=True):
        row = {by: value, "rows": len(group), **{f"{m}_mean": float(group[m].mean()) for m in metrics}}
        row["corpus_bleu"] = corpus_bleu(group["response"].tolist(), group["reference"].tolist())
        out.append(row)
    return pd.DataFrame(out, columns=[by, "rows", *[f"{m}_mean" for m in metrics], "corpus_bleu"])
