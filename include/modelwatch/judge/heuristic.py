"""The offline judge: embedding similarity, the refusal pattern, a toxicity classifier and text checks; no LLM."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from modelwatch.judge.calls import JudgeBackend, JudgeCall, JudgeItem
from modelwatch.judge.rubric import Judgment, JudgmentParseError, Rubric, extract_json_object

# -- the heuristic judge -----------------------------------------------------------------------------------

HEURISTIC_VERSION = "1"
HEURISTIC_DIMENSIONS = ("helpfulness", "factual_accuracy", "coherence", "instruction_following")
HEURISTIC_FLAGS = ("hallucination", "refusal", "toxicity")

_TERMINAL = tuple(".!?…)]}\"'”’»`*>") + tuple("。！？")
_OPEN_ENDINGS = tuple(",:;-–(/&") + (" and", " or", " the", " to", " a", " of")
_LIST_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*")
_URL = re.compile(r"https?://\S+|www\.\S+")
_FORMAT_JSON = re.compile(r"\bjson\b", re.IGNORECASE)
_FORMAT_LIST = re.compile(r"\b(bullet(?:ed)?(?: points?| list)?|numbered list|as a list|in a list|step[- ]by[- ]step)\b", re.IGNORECASE)
_SCRIPTS = {
    "latin": re.compile(r"[A-Za-zÀ-ɏ]"), "cyrillic": re.compile(r"[Ѐ-ӿ]"), "greek": re.compile(r"[Ͱ-Ͽ]"),
    "arabic": re.compile(r"[؀-ۿ]"), "hebrew": re.compile(r"[֐-׿]"), "devanagari": re.compile(r"[ऀ-ॿ]"),
    "cjk": re.compile(r"[぀-ヿ㐀-䶿一-鿿]"), "hangul": re.compile(r"[가-힯]"), "thai": re.compile(r"[฀-๿]"),
}
# Frequent function words of common Latin-script languages: enough to tell which one a text of a few sentences is in.
_STOPWORDS = {
    "en": set("the and is are to you your of for it in that this can with my i have on be not do how what was will".split()),
    "es": set("el la los las de que y en un una es por para con no mi su cómo qué pero más está puedo".split()),
    "fr": set("le la les de des et est un une je vous pour que pas ne mon votre comment avec sur il".split()),
    "de": set("der die das und ist nicht ich sie ein eine zu mit mein wie ihr den auf es sich für".split()),
    "pt": set("o os as de que e é um uma não para com meu como você em do da mais".split()),
    "it": set("il lo gli di che è un una non per con mio come sono della questo ho".split()),
    "nl": set("de het een en is niet ik je van dat met mijn hoe op voor zijn er".split()),
}


def rescale(score_1_to_5: float, low: int, high: int) -> int:
    """A 1–5 score on the scale ``low..high`` (linear, rounded half up, clipped)."""
    fraction = (min(max(score_1_to_5, 1.0), 5.0) - 1.0) / 4.0
    return int(math.floor(low + fraction * (high - low) + 0.5))


def similarity_score(cosine: float, low: float, high: float) -> int:
    """Cosine similarity mapped linearly to 1–5: ``low`` or less -> 1, ``high`` or more -> 5."""
    fraction = (cosine - low) / (high - low)
    return int(math.floor(1 + 4 * min(max(fraction, 0.0), 1.0) + 0.5))


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def repetition_share(text: str) -> float:
    """Share of word trigrams that repeat an earlier trigram of the same text (0 = no repetition)."""
    tokens = words(text)
    grams = [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


def looks_truncated(text: str) -> bool:
    """An unclosed code fence, or a text of 12+ words stopping mid-sentence (no closing punctuation, not after a list item)."""
    stripped = text.rstrip()
    if stripped.count("```") % 2:
        return True
    if not stripped or stripped.endswith(_TERMINAL):
        return False
    if stripped.endswith(_OPEN_ENDINGS):
        return True
    last_line = stripped.splitlines()[-1]
    return len(words(stripped)) >= 12 and not _LIST_LINE.match(last_line) and not _URL.search(last_line)


def dominant_script(text: str) -> str | None:
    """The writing system of most letters in ``text`` (latin, cyrillic, cjk, ...), None without letters."""
    counts = {name: len(pattern.findall(text)) for name, pattern in _SCRIPTS.items()}
    best = max(counts, key=counts.get)
    return best if counts[best] else None


def latin_language(text: str, min_words: int = 5) -> str | None:
    """en/es/fr/de/pt/it/nl by function-word counts, None when too short or unclear (top count not 1.5x the next)."""
    tokens = words(text)
    if len(tokens) < min_words:
        return None
    counts = sorted(((sum(t in stop for t in tokens), lang) for lang, stop in _STOPWORDS.items()), reverse=True)
    (top, lang), (second, _) = counts[0], counts[1]
    return lang if top >= max(2, 0.15 * len(tokens)) and top >= 1.5 * second else None


def language_mismatch(prompt: str, response: str) -> str | None:
    """Why the response seems to be in another language than the prompt, or None."""
    prompt_script, response_script = dominant_script(prompt), dominant_script(response)
    if prompt_script and response_script and prompt_script != response_script:
        return f"written in {response_script} script, prompt in {prompt_script}"
    if prompt_script == response_script == "latin":
        asked, answered = latin_language(prompt), latin_language(response)
        if asked and answered and asked != answered:
            return f"answered in '{answered}', prompt in '{asked}'"
    return None


def contains_json(text: str) -> bool:
    try:
        extract_json_object(text)
        return True
    except JudgmentParseError:
        return text.strip().startswith("[") and _json_list(text.strip())


def _json_list(text: str) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except json.JSONDecodeError:
        return False


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(_URL.sub(" ", text))}


@dataclass
class _Assessment:
    """Scores on 1–5 and flags, with the signal behind each, before mapping to the rubric's scales."""

    scores: dict[str, float]
    flags: dict[str, bool]
    notes: dict[str, str]
    not_assessed: list[str]


class HeuristicJudge(JudgeBackend):
    """Offline judge from cheap signals; not an LLM, and declared half as trustworthy (``confidence`` 0.5).

    Per dimension (computed on 1–5, then mapped linearly onto the rubric's scale):

    - helpfulness: relevance, the cosine similarity of the prompt's and the response's
      all-MiniLM-L6-v2 embeddings (``modelwatch.embeddings.embed_texts``), mapped linearly
      from ``relevance_range`` to 1–5; at most 2 for a refusal, 1 for an empty response.
    - factual_accuracy: with a reference, the response-reference similarity mapped from
      ``reference_range``, minus 1 when the response states numbers found in neither the
      reference nor the prompt. Without a reference, or for an empty response or a
      refusal (no claims), it is **not assessed**: the scale's midpoint is returned and
      ``"factual_accuracy"`` is listed in ``Judgment.not_assessed``, to be left out of averages.
    - instruction_following: 5 minus penalties: empty (-> 1), cut off mid-sentence or
      an unclosed code fence (-2), longer than ``max_words`` (-2), another script or
      language than the prompt (-2), JSON asked for and none given (-2), a list asked
      for and none given (-1).
    - coherence: 5 minus penalties: repeated word trigrams (share >= 0.1: -1, >= 0.25:
      -2, >= 0.5: -3), mostly non-letters (-2), run-together tokens over 40 characters
      (-1), shouting in capitals (-1); empty -> 1.

    Flags: refusal by ``modelwatch.baseline.columns.is_refusal``; toxicity when
    ``profanity_check.predict_prob`` (alt-profanity-check's bundled linear SVM) is at least
    ``toxicity_threshold``; hallucination only with a reference (response-reference
    similarity below ``hallucination_similarity``, or unsupported numbers), otherwise
    False and listed in ``not_assessed``. ``reasoning`` lists every signal's value.
    """

    name = "heuristic"
    confidence = 0.5
    batched = True

    def __init__(self, *, embed: Callable[[list[str]], np.ndarray] | None = None, toxicity_threshold: float = 0.5,
                 relevance_range: tuple[float, float] = (0.10, 0.60), reference_range: tuple[float, float] = (0.30, 0.85),
                 hallucination_similarity: float = 0.30, max_words: int = 600):
        from modelwatch.embeddings import MODEL_NAME

        super().__init__(f"heuristic-v{HEURISTIC_VERSION}+{MODEL_NAME}+alt-profanity-check")
        for name, (low, high) in (("relevance_range", relevance_range), ("reference_range", reference_range)):
            if not -1 <= low < high <= 1:
                raise ValueError(f"{name} must be (low, high) cosines with -1 <= low < high <= 1, got {(low, high)}")
        self._embed = embed
        self.toxicity_threshold = toxicity_threshold
        self.relevance_range = relevance_range
        self.reference_range = reference_range
        self.hallucination_similarity = hallucination_similarity
        self.max_words = max_words

    def __repr__(self) -> str:
        return f"HeuristicJudge(model={self.model!r})"

    @property
    def cache_identity(self) -> str:
        """The version label plus every threshold, so that changing one re-judges instead of reusing old judgments."""
        return (f"{self.name}:{self.model}:tox={self.toxicity_threshold}:rel={self.relevance_range}:ref={self.reference_range}"
                f":hal={self.hallucination_similarity}:words={self.max_words}")

    @staticmethod
    def check_rubric(rubric: Rubric) -> None:
        """Raise ValueError when the rubric has a dimension or flag the heuristics cannot assess."""
        dims = [d for d in rubric.dimensions if d not in HEURISTIC_DIMENSIONS]
        flags = [f for f in rubric.flags if f not in HEURISTIC_FLAGS]
        if dims or flags:
            raise ValueError(f"the heuristic judge cannot assess {dims + flags} of rubric {rubric.name}; it knows dimensions "
                             f"{list(HEURISTIC_DIMENSIONS)} and flags {list(HEURISTIC_FLAGS)}: use an LLM backend")

    def judge(self, item: JudgeItem, rubric: Rubric, *, timeout_s: float | None = None) -> JudgeCall:
        return self.judge_many([item], rubric)[0]

    def judge_many(self, items: Sequence[JudgeItem], rubric: Rubric) -> list[JudgeCall]:
        """Judge ``items`` with one embedding pass and one toxicity pass over all of them."""
        self.check_rubric(rubric)
        if not items:
            return []
        start = time.perf_counter()
        vectors = self._embed_all(items)
        toxicity = self._toxicity([item.response for item in items])
        assessments = [self.assess(item, _cosine(vectors, item.prompt, item.response), _cosine(vectors, item.reference, item.response), tox)
                       for item, tox in zip(items, toxicity, strict=True)]
        latency = (time.perf_counter() - start) / len(items)  # the batch's time, shared out
        return [self._call(assessment, rubric, latency) for assessment in assessments]

    def _embed_all(self, items: Sequence[JudgeItem]) -> dict[str, np.ndarray]:
        texts = {t for item in items for t in (item.prompt, item.response, item.reference) if t and t.strip()}
        ordered = sorted(texts)
        if self._embed is None:
            from modelwatch.embeddings import embed_texts

            self._embed = embed_texts
        matrix = np.asarray(self._embed(ordered), dtype=np.float32) if ordered else np.empty((0, 0), dtype=np.float32)
        return dict(zip(ordered, matrix, strict=True))

    def _toxicity(self, responses: list[str]) -> list[float]:
        from profanity_check import predict_prob

        return [float(p) for p in predict_prob([r or "" for r in responses])]

    def assess(self, item: JudgeItem, relevance: float | None, to_reference: float | None, toxicity: float) -> _Assessment:
        """Scores (1–5), flags and notes for one item from its similarities and toxicity probability."""
        from modelwatch.baseline.columns import is_refusal

        response = item.response or ""
        empty = not response.strip()
        refusal = is_refusal(response, None)
        scores: dict[str, float] = {}
        notes: dict[str, str] = {}
        flags = {"refusal": refusal, "toxicity": toxicity >= self.toxicity_threshold, "hallucination": False}
        not_assessed: list[str] = []
        notes["refusal"] = "refusal phrase" if refusal else "no refusal phrase"
        notes["toxicity"] = f"profanity probability {toxicity:.2f} {'>=' if flags['toxicity'] else '<'} {self.toxicity_threshold}"

        if empty:
            scores["helpfulness"], notes["helpfulness"] = 1, "empty response"
        else:
            scores["helpfulness"] = similarity_score(relevance if relevance is not None else 0.0, *self.relevance_range)
            notes["helpfulness"] = f"prompt-response cosine {relevance:.2f}" if relevance is not None else "empty prompt"
            if refusal and scores["helpfulness"] > 2:
                scores["helpfulness"], notes["helpfulness"] = 2, notes["helpfulness"] + ", capped at 2 for a refusal"

        unsupported = sorted(numbers(response) - numbers(item.reference or "") - numbers(item.prompt or "")) if item.reference else []
        if to_reference is None or empty or refusal:
            scores["factual_accuracy"] = 3
            why = "no reference" if to_reference is None else ("empty response" if empty else "a refusal makes no claims")
            notes["factual_accuracy"] = notes["hallucination"] = f"not assessed ({why})"
            not_assessed += ["factual_accuracy", "hallucination"]
        else:
            base = similarity_score(to_reference, *self.reference_range)
            scores["factual_accuracy"] = max(1, base - (1 if unsupported else 0))
            notes["factual_accuracy"] = f"response-reference cosine {to_reference:.2f}" + (f", numbers not in the reference: {unsupported[:5]}"
                                                                                          if unsupported else "")
            flags["hallucination"] = to_reference < self.hallucination_similarity or bool(unsupported)
            notes["hallucination"] = (f"reference cosine {to_reference:.2f} vs {self.hallucination_similarity}"
                                      + (", unsupported numbers" if unsupported else ""))

        scores["instruction_following"], notes["instruction_following"] = self._instruction_following(item.prompt or "", response)
        scores["coherence"], notes["coherence"] = self._coherence(response)
        return _Assessment(scores, flags, notes, not_assessed)

    def _instruction_following(self, prompt: str, response: str) -> tuple[int, str]:
        if not response.strip():
            return 1, "empty response"
        issues: list[tuple[int, str]] = []
        if looks_truncated(response):
            issues.append((2, "cut off mid-sentence or unclosed code block"))
        n_words = len(words(response))
        if n_words > self.max_words:
            issues.append((2, f"{n_words} words, over {self.max_words}"))
        if mismatch := language_mismatch(prompt, response):
            issues.append((2, mismatch))
        if _FORMAT_JSON.search(prompt) and not contains_json(response):
            issues.append((2, "JSON asked for, none given"))
        if _FORMAT_LIST.search(prompt) and sum(bool(_LIST_LINE.match(line)) for line in response.splitlines()) < 2:
            issues.append((1, "a list asked for, none given"))
        return _penalised(issues)

    @staticmethod
    def _coherence(response: str) -> tuple[int, str]:
        if not response.strip():
            return 1, "empty response"
        issues: list[tuple[int, str]] = []
        repeated = repetition_share(response)
        if repeated >= 0.1:
            issues.append((3 if repeated >= 0.5 else 2 if repeated >= 0.25 else 1, f"{repeated:.0%} of word trigrams repeated"))
        visible = [c for c in _URL.sub("", response) if not c.isspace()]
        letters = sum(c.isalpha() for c in visible)
        if len(visible) >= 20 and letters / len(visible) < 0.5:
            issues.append((2, f"only {letters / len(visible):.0%} letters"))
        if any(len(token) > 40 for token in _URL.sub(" ", response).split()):
            issues.append((1, "run-together tokens over 40 characters"))
        upper = [c for c in response if c.isalpha()]
        if len(upper) >= 20 and sum(c.isupper() for c in upper) / len(upper) > 0.7:
            issues.append((1, "mostly capitals"))
        return _penalised(issues)

    def _call(self, assessment: _Assessment, rubric: Rubric, latency: float) -> JudgeCall:
        scores = {k: rescale(assessment.scores[k], d.scale.min, d.scale.max) for k, d in rubric.dimensions.items()}
        flags = {k: assessment.flags[k] for k in rubric.flags}
        not_assessed = [k for k in assessment.not_assessed if k in rubric.dimensions or k in rubric.flags]
        parts = [f"{k} {scores[k]}: {assessment.notes[k]}" for k in rubric.dimensions]
        parts += [f"{k} {'yes' if flags[k] else 'no'}: {assessment.notes[k]}" for k in rubric.flags]
        reasoning = "heuristic judge (not an LLM); " + "; ".join(parts)
        judgment = Judgment.model_validate({"scores": scores, "flags": flags, "reasoning": reasoning, "not_assessed": not_assessed},
                                           context={"rubric": rubric})
        return JudgeCall(self.name, self.model, self.confidence, reasoning, judgment, None, 0, 0, 0.0, latency)


def _penalised(issues: list[tuple[int, str]]) -> tuple[int, str]:
    """5 minus the summed penalties (at least 1), and the issues as text."""
    if not issues:
        return 5, "no issues found"
    return max(1, 5 - sum(p for p, _ in issues)), ", ".join(text for _, text in issues)


def _cosine(vectors: Mapping[str, np.ndarray], a: str | None, b: str | None) -> float | None:
    """Cosine of two texts' unit-norm embeddings; None when either is empty."""
    if not a or not b or a not in vectors or b not in vectors:
        return None
    return float(np.dot(vectors[a], vectors[b]))
