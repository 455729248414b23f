"""The two embedding backends side by side (suite "embedding"): speed, agreement, drift-test behaviour, process cost.

The texts are a held set unlike the demo's support traffic, generated here from a seed, word
lists and templates (nothing is downloaded): ``held_texts`` mixes categories (``CATEGORY_SHARES``)
of short replies, questions about other domains, code, fourteen other languages (Latin, Cyrillic, Greek,
CJK, Arabic and Devanagari scripts), numbers, punctuation-heavy strings (URLs, JSON, logs, emoji),
casual chat and long paragraphs (some past the model's 256 word pieces, so truncated); ``topic_texts``
is the new topic of the power scenario (pet care, a subject the held set never touches).

Both backends embed the same texts in the same run (``embed_texts``, batch 64): the held set is
timed in slices of ``SLICE`` texts, the backends taking turns, and the new-topic texts are embedded
untimed. Each pool is embedded once per backend; the MMD trials then draw from these vectors only,
the same seeded rows and test seed for both backends, so their rates differ by the vectors alone.
The process cost is measured in fresh interpreters that import one backend and embed one text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import suite_helpers

SUITE = "embedding"
log, record = suite_helpers(SUITE)
ROOT = Path(__file__).resolve().parent.parent
INT8, FLOAT32 = "onnx-int8", "torch-float32"
ALPHA = 0.05
PERMUTATIONS = 1000
SLICE = 150  # held texts per timed embed_texts call; the backends take turns

# MMD scenario on real vectors: MMD_N rows a side; A/A = two disjoint random samples of the held set;
# power = the current sample has NEW_TOPIC_SHARE of its rows from topic_texts, the rest from the held set.
# (Measured over 40 trials, 200 rows a side, on both backends alike: 5% new-topic rows gives a power of
# about 0.18, 10% about 0.65, 15% 1.0; at 150 rows a side, 10% gives about 0.4.)
MMD_N = 200
NEW_TOPIC_SHARE = 0.10
NEW_TOPIC = "pet care"


# -- texts -------------------------------------------------------------------------------------------------

DOMAINS: dict[str, tuple[list[str], list[str]]] = {
    "cooking": (["a sourdough starter", "risotto", "a cast iron pan", "béchamel sauce", "miso soup", "a pie crust"], ["bake", "reheat", "season", "freeze"]),
    "astronomy": (["a lunar eclipse", "Jupiter's moons", "a refracting telescope", "the Andromeda galaxy", "a meteor shower", "dark matter"],
                  ["observe", "photograph", "measure", "track"]),
    "gardening": (["tomato seedlings", "a compost heap", "clay soil", "rose bushes", "an olive tree", "raised beds"], ["prune", "water", "transplant", "fertilise"]),
    "law": (["a rental contract", "a non-compete clause", "a small claims case", "a power of attorney", "copyright on photos", "a last will"],
            ["contest", "draft", "terminate", "register"]),
    "medicine": (["a sprained ankle", "high blood pressure", "a vitamin D deficiency", "a migraine", "seasonal allergies", "a persistent cough"],
                 ["treat", "prevent", "diagnose", "manage"]),
    "sport": (["a marathon", "the offside rule", "a tennis serve", "interval training", "a climbing harness", "a penalty shootout"],
              ["train for", "improve", "referee", "warm up for"]),
    "history": (["the Hanseatic League", "the fall of Constantinople", "the Meiji restoration", "Roman aqueducts", "the printing press", "the Silk Road"],
                ["date", "explain", "compare", "map"]),
    "finance": (["an index fund", "a mortgage", "compound interest", "a pension plan", "inflation", "a bond ladder"], ["calculate", "refinance", "diversify", "hedge"]),
    "travel": (["a night train to Vienna", "a Schengen visa", "travel insurance", "a layover in Doha", "a hostel in Lisbon", "jet lag"], ["book", "plan", "avoid", "extend"]),
    "music": (["a minor seventh chord", "a violin bow", "the circle of fifths", "a drum fill", "a vinyl pressing", "perfect pitch"], ["play", "tune", "record", "practise"]),
    "physics": (["quantum entanglement", "a pendulum", "entropy", "the photoelectric effect", "superconductivity", "a black hole"], ["measure", "model", "explain", "simulate"]),
}
QUESTIONS = [
    "How do I {verb} {noun}?", "What is the difference between {noun} and {noun2}?", "Why is {noun} so hard to {verb}?",
    "Is it worth trying to {verb} {noun} in {month}?", "Can you explain {noun} to a {k}-year-old?",
    "What's the best way to {verb} {noun} if I only have {k} minutes a day?", "Any tips to {verb} {noun}? Asking for a friend.",
    "Where can I read more about {noun} and {noun2}?",
]
STATEMENTS = [
    "{Noun} is often misunderstood, but it is easier to {verb} once you know the basics.", "Most guides say you should {verb} {noun} before thinking about {noun2}.",
    "In {month} we tried to {verb} {noun} for the first time, and it took {k} attempts.", "Nobody told me that {noun} depends so much on {noun2}.",
    "A friend who works on {noun2} swears it helps to {verb} {noun} slowly.", "The old books describe {noun} in a way that still holds today.",
]
MONTHS = ["January", "March", "May", "July", "September", "November"]
SHORT = ["ok", "thanks!", "why?", "no", "lol", "yes please", "hmm", "not sure", "done.", "see above", "+1", "ping", "?", "help", "nvm", "cool",
         "next week?", "sounds good", "wait what", "agreed"]
CHAT = ["hey did u see {noun} lol", "idk if {noun} is worth it tbh", "brb gonna {verb} {noun}", "omg {noun} again?? cant believe it",
        "anyone else think {noun} is overrated", "ngl {noun} kinda slaps", "k so {noun} or {noun2}, pick one", "lmk when ur free to {verb} {noun}"]
CODE = [
    "def {fn}({a}, {b}):\n    return {a} {op} {b}", "SELECT {col}, COUNT(*) FROM {table} WHERE {col2} > {k} GROUP BY {col} ORDER BY 2 DESC;",
    "const {fn} = ({a}) => {a}.map(x => x {op} {k}).filter(Boolean);", "grep -rn '{word}' src/ | awk -F: '{{print $1}}' | sort | uniq -c | head -{k}",
    "for i in range({k}):\n    {a}[i] = {b}[i] {op} {k2}", 'Traceback (most recent call last):\n  File "{fn}.py", line {k}, in <module>\nKeyError: \'{col}\'',
    '<div class="{col}"><a href="/{table}/{k}">{word}</a></div>', "{table}:\n  replicas: {k}\n  image: {word}:{k2}\n  env: [DEBUG=true]",
    'if ({a} != null && {a}.length > {k}) {{ throw new Error("{word}"); }}', "import numpy as np\n{a} = np.zeros(({k}, {k2}), dtype=np.float32)",
]
IDENT = {"fn": ["parse_row", "load_config", "merge_sorted", "retry", "hash_key", "to_json", "flatten"], "a": ["items", "count", "left", "buf", "rows"],
         "b": ["right", "other", "weights", "offset", "rhs"], "col": ["user_id", "region", "created_at", "status", "price"],
         "col2": ["amount", "score", "retries", "age_days"], "table": ["orders", "events", "users", "sessions", "invoices"], "op": ["+", "*", "-", "//", "%"],
         "word": ["timeout", "fixme", "deprecated", "nginx", "worker", "alpha", "cache"]}
FOREIGN = [
    ["Wie lange dauert die Zugfahrt von Hamburg nach München?", "Ich habe gestern ein neues Fahrrad gekauft, aber die Bremsen quietschen.",
     "Kannst du mir das Rezept für Apfelstrudel schicken?", "Die Sitzung wurde auf Donnerstag um 14 Uhr verschoben.",
     "Warum ist der Himmel am Abend manchmal rot?", "Der Wetterbericht sagt für morgen starken Regen voraus."],
    ["Quel est le meilleur moment pour visiter la Bretagne ?", "J'ai oublié mon parapluie dans le métro ce matin.",
     "Pouvez-vous m'expliquer comment fonctionne la photosynthèse ?", "La réunion commence à neuf heures précises.",
     "Ma grand-mère prépare la meilleure tarte aux pommes du village.", "Il faut réserver les billets au moins deux semaines à l'avance."],
    ["¿Cuánto cuesta un billete de autobús a Sevilla?", "Mañana vamos a la playa si no llueve.", "No entiendo por qué el tren siempre llega tarde.",
     "¿Me recomiendas algún libro de historia medieval?", "El concierto de anoche fue increíble.", "Necesito cambiar la fecha de mi cita con el dentista."],
    ["Dove posso comprare i biglietti per il museo?", "Il treno per Firenze parte dal binario sette.", "Abbiamo cenato in una trattoria vicino al porto.",
     "Qual è la differenza tra un espresso e un ristretto?", "Domani devo consegnare la relazione al professore.", "La montagna era coperta di neve fino a giugno."],
    ["Qual é a melhor época para visitar Lisboa?", "O meu computador desliga sozinho depois de dez minutos.", "Ontem choveu o dia inteiro no Porto.",
     "Você sabe a que horas abre a biblioteca?", "Precisamos comprar pão e leite para o café da manhã.", "O jogo terminou empatado no último minuto."],
    ["Hoe laat vertrekt de laatste trein naar Utrecht?", "Ik fiets elke dag twintig minuten naar mijn werk.", "Het museum is op maandag gesloten.",
     "Kun je me helpen met mijn belastingaangifte?", "De tulpen in de tuin bloeien al.", "Morgen wordt het eindelijk weer zonnig."],
    ["Ile kosztuje bilet do Krakowa?", "Jutro rano mam ważne spotkanie w biurze.", "Czy możesz mi polecić dobrą książkę?",
     "W zimie często jeździmy w góry.", "Nie mogę znaleźć kluczy do mieszkania.", "Ta zupa jest za słona."],
    ["İstanbul'a en hızlı nasıl gidebilirim?", "Yarın hava çok sıcak olacakmış.", "Bu kitabı geçen hafta okudum ve çok beğendim.",
     "Toplantı saat üçte başlayacak.", "Kahvaltıda simit yiyip çay içtik.", "Bilgisayarım çok yavaş çalışıyor."],
    ["Как доехать до центра города на метро?", "Завтра обещают сильный снег.", "Я читаю интересную книгу о космосе.",
     "Сколько стоит билет на поезд до Москвы?", "Мы ужинали в маленьком ресторане у реки.", "Пожалуйста, перезвоните мне после обеда."],
    ["Πού είναι ο σταθμός του τρένου;", "Αύριο θα πάμε στη θάλασσα.", "Μου αρέσει πολύ η ελληνική μουσική.", "Πόσο κοστίζει αυτό το βιβλίο;",
     "Ο καιρός σήμερα είναι υπέροχος.", "Θέλω να μάθω να μαγειρεύω μουσακά."],
    ["请问去火车站怎么走？", "明天会下雨吗？", "我昨天买了一本关于历史的书。", "这家餐厅的饺子非常好吃。", "会议改到下午三点了。", "你周末有什么计划？"],
    ["駅までどのくらいかかりますか？", "昨日は一日中雨でした。", "この本はとても面白いです。", "明日の会議は十時からです。", "週末に京都へ行く予定です。",
     "日本語を勉強して三年になります。"],
    ["كيف أصل إلى محطة القطار؟", "الطقس جميل اليوم.", "أحب قراءة الكتب التاريخية.", "متى يبدأ الاجتماع غدا؟", "هذا المطعم مشهور بالقهوة.",
     "أريد حجز تذكرة إلى القاهرة."],
    ["रेलवे स्टेशन कैसे जाऊँ?", "आज मौसम बहुत अच्छा है।", "मुझे इतिहास की किताबें पढ़ना पसंद है।", "कल बैठक कितने बजे है?", "यह खाना बहुत स्वादिष्ट है।",
     "मैं अगले महीने दिल्ली जा रहा हूँ।"],
]
NUMBERS = [
    "{a} + {b} = {c}", "Order {k}: {q} x {p} EUR = {t} EUR, VAT {v}%", "2024-{mm}-{dd} {hh}:{mi}:{ss} UTC lat {lat}, lon {lon}",
    "+{cc} {a} {b} {k}", "{a}, {b}, {c}, {k}, {q}, {v}", "v{q}.{v}.{dd} build {k} sha {hex}", "Temperature {tc}°C, humidity {v}%, pressure {k} hPa",
    "{a} / {b} = {r}", "{a} | {b} | {c}\n{k} | {q} | {t}", "IBAN DE{dd} {a} {b} {c} {k}",
]
PUNCT = [
    "!!!!! ??? ... {word}?!?!", "https://{host}/{path}?id={k}&ref={word}#{path}", "{user}@{host} -- re: [{word}] ((urgent)) <<{k}>>",
    "**{word}** _{path}_ `{user}` > quoted ~~struck~~", '{{"{word}": {k}, "{path}": ["{user}", null, true]}}', ":-) ;-) :( :D <3 ^_^ ({word})",
    "[WARN] 12:{mi}:07 {word}: {path}={k}; retry={q}/5 ...", "-- -- -- {word} -- -- --", "#{word} #{path} @{user} !!! 🚀🔥",
    '"{word}" (sic) — [citation needed]; cf. §{k}, pp. {q}–{v}.',
]
PUNCT_WORDS = {"word": ["deadline", "ASAP", "wtf", "FYI", "release", "oops", "todo"], "path": ["api", "v2", "docs", "query", "tmp", "assets"],
               "user": ["jdoe", "m.rossi", "k_tanaka", "admin", "noreply"], "host": ["example.org", "mail.test", "intra.local", "cdn.example.net"]}
PETS = ["puppy", "kitten", "labrador", "cat", "rabbit", "hamster", "parrot", "goldfish", "guinea pig", "border collie"]
PET_TEMPLATES = [
    "My {pet} keeps {habit} at night, is that normal?", "How often should I {care} my {k}-month-old {pet}?", "What food is best for a {pet} with {condition}?",
    "Our {pet} starts {habit} whenever we leave the house.", "Is it safe to give my {pet} {food}?", "How do I introduce a new {pet} to our {pet2}?",
    "The vet says my {pet} has {condition}; what should I change?", "Tips for {habit}? Our {pet} is {k} weeks old.",
]
PET_WORDS = {"habit": ["scratching the sofa", "barking", "chewing shoes", "hiding under the bed", "meowing", "pulling on the lead", "losing fur"],
             "care": ["walk", "groom", "feed", "bathe", "trim the claws of", "deworm"], "food": ["cheese", "grapes", "raw chicken", "peanut butter", "carrots"],
             "condition": ["a sensitive stomach", "kidney problems", "allergies", "arthritis", "too much weight"]}
CATEGORY_SHARES = {"short": 0.10, "question": 0.20, "code": 0.12, "foreign": 0.16, "numbers": 0.10, "punctuation": 0.10, "chat": 0.10, "long": 0.12}


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _domain_slots(rng: np.random.Generator) -> dict[str, Any]:
    nouns, verbs = DOMAINS[_pick(rng, sorted(DOMAINS))]
    noun, noun2 = (nouns[i] for i in rng.choice(len(nouns), 2, replace=False))
    return {"noun": noun, "Noun": noun[0].upper() + noun[1:], "noun2": noun2, "verb": _pick(rng, verbs), "month": _pick(rng, MONTHS), "k": int(rng.integers(3, 60))}


def _numbers_slots(rng: np.random.Generator) -> dict[str, Any]:
    a, b = int(rng.integers(1, 99_999)), int(rng.integers(1, 9_999))
    q, p = int(rng.integers(1, 40)), round(float(rng.uniform(0.5, 900)), 2)
    return {"a": a, "b": b, "c": a + b, "k": int(rng.integers(100, 99_999)), "q": q, "p": p, "t": round(q * p, 2), "v": int(rng.integers(0, 25)),
            "mm": f"{int(rng.integers(1, 13)):02d}", "dd": f"{int(rng.integers(1, 29)):02d}", "hh": f"{int(rng.integers(0, 24)):02d}",
            "mi": f"{int(rng.integers(0, 60)):02d}", "ss": f"{int(rng.integers(0, 60)):02d}", "lat": round(float(rng.uniform(-90, 90)), 5),
            "lon": round(float(rng.uniform(-180, 180)), 5), "cc": int(rng.integers(1, 99)), "hex": f"{int(rng.integers(0, 2**32)):08x}",
            "tc": round(float(rng.uniform(-30, 45)), 1), "r": f"{a / b:.6f}"}


def _text(rng: np.random.Generator, category: str) -> str:
    if category == "short":
        return " ".join(_pick(rng, SHORT) for _ in range(int(rng.integers(1, 4))))
    if category == "question":
        return _pick(rng, QUESTIONS).format(**_domain_slots(rng))
    if category == "chat":
        return _pick(rng, CHAT).format(**_domain_slots(rng))
    if category == "code":
        return _pick(rng, CODE).format(**{k: _pick(rng, v) for k, v in IDENT.items()}, k=int(rng.integers(2, 500)), k2=int(rng.integers(2, 64)))
    if category == "foreign":
        sentences = _pick(rng, FOREIGN)
        return " ".join(sentences[i] for i in rng.choice(len(sentences), int(rng.integers(1, 4)), replace=False))
    if category == "numbers":
        return _pick(rng, NUMBERS).format(**_numbers_slots(rng))
    if category == "punctuation":
        return _pick(rng, PUNCT).format(**{k: _pick(rng, v) for k, v in PUNCT_WORDS.items()}, **_numbers_slots(rng))
    # long: a paragraph of 6 to 30 sentences on one domain (about 80 to 450 words; the longest are truncated at 256 word pieces)
    slots = _domain_slots(rng)
    return " ".join(_pick(rng, STATEMENTS + QUESTIONS).format(**{**slots, "k": int(rng.integers(2, 90))}) for _ in range(int(rng.integers(6, 31))))


def held_texts(n: int, seed: int = 7) -> tuple[list[str], list[str]]:
    """``n`` distinct held texts and their categories, drawn by ``CATEGORY_SHARES`` from a seeded generator."""
    rng = np.random.default_rng(seed)
    names, shares = list(CATEGORY_SHARES), np.array(list(CATEGORY_SHARES.values()))
    texts: list[str] = []
    categories: list[str] = []
    seen: set[str] = set()
    while len(texts) < n:
        category = names[int(rng.choice(len(names), p=shares / shares.sum()))]
        text = _text(rng, category)
        if text not in seen:
            seen.add(text)
            texts.append(text)
            categories.append(category)
    return texts, categories


def topic_texts(n: int, seed: int = 8) -> list[str]:
    """``n`` distinct questions and remarks about pet care (the power scenario's new topic)."""
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    seen: set[str] = set()
    while len(texts) < n:
        pet, pet2 = (PETS[i] for i in rng.choice(len(PETS), 2, replace=False))
        text = _pick(rng, PET_TEMPLATES).format(pet=pet, pet2=pet2, k=int(rng.integers(2, 30)), **{k: _pick(rng, v) for k, v in PET_WORDS.items()})
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


# -- measurements ------------------------------------------------------------------------------------------


def embed_both(held: list[str], topic: list[str], slice_size: int = SLICE) -> dict[str, dict[str, Any]]:
    """Per backend: the held texts' vectors and embedding seconds (after a warm-up), and the new-topic texts' vectors.

    The held texts are timed in slices of ``slice_size``, the backends taking turns slice by slice,
    so that both see the same load on the machine; each slice is one ``embed_texts`` call.
    """
    from modelwatch.embeddings import EMBEDDING_DIM, embed_texts

    out: dict[str, dict[str, Any]] = {}
    for backend in (INT8, FLOAT32):
        embed_texts(held[:16], batch_size=64, backend=backend)  # warm-up: model load, first-call allocations, thread pools
        out[backend] = {"held": np.empty((len(held), EMBEDDING_DIM), dtype=np.float32), "seconds": 0.0}
    for start in range(0, len(held), slice_size):
        part = held[start : start + slice_size]
        for backend, run in out.items():
            began = time.perf_counter()
            run["held"][start : start + len(part)] = embed_texts(part, batch_size=64, backend=backend)
            run["seconds"] += time.perf_counter() - began
    for backend, run in out.items():
        run["topic"] = embed_texts(topic, batch_size=64, backend=backend)
        log(f"{backend}: {len(held)} held texts in {run['seconds']:.1f} s ({len(held) / run['seconds']:.0f} texts/s), {len(topic)} new-topic texts")
    return out


def speed_and_agreement(held: list[str], categories: list[str], runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Throughput of both backends on the held texts, and the cosine between their vectors of each text."""
    from modelwatch.embeddings import MODEL_NAME
    from modelwatch.embeddings.onnx_backend import bundled_tokenizer

    rate, alt_rate = (len(held) / runs[b]["seconds"] for b in (INT8, FLOAT32))
    cosine = np.einsum("ij,ij->i", runs[INT8]["held"], runs[FLOAT32]["held"]).astype(float)
    low = int(np.argmin(cosine))
    pieces = len(bundled_tokenizer().encode(held[low]).ids)
    case = f"cosine between {INT8} and {FLOAT32} vectors of each of {len(held)} held texts"
    same = f"{FLOAT32} (sentence-transformers), the same texts in the same run"
    return [
        record(f"embed {len(held)} held texts ({', '.join(CATEGORY_SHARES)}), {MODEL_NAME}, CPU, batch 64, in turns of {SLICE}, {INT8}", "throughput", rate, "texts/s",
               alternative=same, alternative_value=alt_rate),
        record(f"{INT8} throughput over {FLOAT32} on the held texts", "speedup", rate / alt_rate, "x", target=">= 2.5x"),
        record(case, "cosine_min", float(cosine[low]), "cosine", target=">= 0.99"),
        record(case, "cosine_p1", float(np.percentile(cosine, 1)), "cosine"),
        record(case, "cosine_mean", float(cosine.mean()), "cosine"),
        record(case, "share_below_0.99", float(np.mean(cosine < 0.99)), "fraction"),
        record(f"held text with the lowest cosine: {categories[low]}, {pieces} word pieces, {held[low][:40]!r}", "length", len(held[low]), "chars"),
    ]


def trial_rows(seed: int, n_held: int, n_topic: int, drifted: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of one trial: reference and current held rows (disjoint), and the current sample's new-topic rows (none for A/A)."""
    rng = np.random.default_rng(seed)
    k = round(MMD_N * NEW_TOPIC_SHARE) if drifted else 0
    order = rng.permutation(n_held)
    return order[:MMD_N], order[MMD_N : 2 * MMD_N - k], rng.permutation(n_topic)[:k]


def verdicts(runs: dict[str, dict[str, Any]], trials: int, first_seed: int, drifted: bool) -> dict[str, np.ndarray]:
    """Per backend, the drift verdict of each seeded trial; both backends see the same rows and the same test seed."""
    from modelwatch.drift.mmd import mmd_test

    n_held, n_topic = len(runs[INT8]["held"]), len(runs[INT8]["topic"])
    out = {backend: np.zeros(trials, dtype=bool) for backend in runs}
    for t, seed in enumerate(range(first_seed, first_seed + trials)):
        reference, current, topic = trial_rows(seed, n_held, n_topic, drifted)
        for backend, run in runs.items():
            sample = np.concatenate([run["held"][current], run["topic"][topic]])
            out[backend][t] = mmd_test(run["held"][reference], sample, n_permutations=PERMUTATIONS, alpha=ALPHA, seed=seed).drift
    return out


def mmd_on_vectors(runs: dict[str, dict[str, Any]], aa_trials: int, power_trials: int) -> list[dict[str, Any]]:
    """False-alarm rate and power of ``mmd_test`` on each backend's vectors, and how often the two verdicts differ."""
    from modelwatch.drift.mmd import EXACT_AUTO_MAX
    from modelwatch.embeddings import MODEL_NAME

    method = "exact" if 2 * MMD_N <= EXACT_AUTO_MAX else "random_features"
    setup = f"{method}, {MMD_N}v{MMD_N}, {PERMUTATIONS} permutations, alpha {ALPHA}"
    alternative = f"{FLOAT32} vectors of the same texts, the same trials"
    out, differ, total = [], 0, 0
    for drifted, metric, trials, first_seed, target in ((False, "false_alarm_rate", aa_trials, 0, "0.02–0.08"),
                                                        (True, "detection_rate", power_trials, 100_000, None)):
        scenario = f"new topic ({NEW_TOPIC}) in {NEW_TOPIC_SHARE:.0%} of current rows" if drifted else "A/A (two disjoint random samples of the held texts)"
        found = verdicts(runs, trials, first_seed, drifted)
        differ, total = differ + int(np.sum(found[INT8] != found[FLOAT32])), total + trials
        out.append(record(f"mmd on {MODEL_NAME} vectors of real texts, {scenario}, {setup}, {trials} seeded trials, {INT8}", metric,
                          float(found[INT8].mean()), "fraction", alternative=alternative, alternative_value=float(found[FLOAT32].mean()), target=target))
        log(f"mmd {scenario}: {INT8} {found[INT8].mean():.3f}, {FLOAT32} {found[FLOAT32].mean():.3f} over {trials} trials")
    out.append(record(f"mmd on {MODEL_NAME} vectors of real texts: trials whose verdicts differ between {INT8} and {FLOAT32} "
                      f"(A/A and new topic, {total} trials)", "verdicts_differ", differ / total, "fraction"))
    return out


CHILD = """
import json, sys, time
start = time.perf_counter()
backend, out = sys.argv[1], sys.argv[2]
from modelwatch.embeddings import embed_texts
if backend == "onnx-int8":
    import onnxruntime, tokenizers
    from modelwatch.embeddings import onnx_backend
else:
    from modelwatch.embeddings import torch_backend
    torch_backend.offline_hub()
    import sentence_transformers, torch
imported = time.perf_counter()
embed_texts(["How long should a sourdough starter rest before baking?"], backend=backend)
done = time.perf_counter()
torch_modules = sum(name == "torch" or name.startswith("torch.") for name in sys.modules)
with open(out, "w") as handle:
    json.dump({"import_s": imported - start, "first_text_s": done - imported, "torch_modules": torch_modules}, handle)
"""


LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(process.pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "wall_s": time.perf_counter() - start, "peak_rss_mib": usage.ru_maxrss / 1024}))
"""


def fresh_process(backend: str) -> dict[str, float]:
    """One new interpreter that imports ``backend`` and embeds one text: its timings, wall time and peak RSS (``os.wait4``).

    A small launcher interpreter starts it and waits for it: on Linux a child's ``ru_maxrss`` starts at
    the RSS of the process it was forked from, which here would be this suite's (both models loaded).
    """
    with tempfile.TemporaryDirectory(prefix="bench-embedding-") as tmp:
        out = Path(tmp) / "out.json"
        launched = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, "-c", CHILD, backend, str(out)], cwd=ROOT,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, check=True)
        result = json.loads(launched.stdout)
        if result.pop("code") != 0:
            raise RuntimeError(f"the fresh {backend} process failed: {launched.stderr[-2000:]}")
        return {**json.loads(out.read_text()), **result}


def process_cost(runs: int) -> list[dict[str, Any]]:
    """Per backend, the median over ``runs`` fresh processes of import time, first-text time, wall time and peak RSS; torch's presence."""
    measured: dict[str, dict[str, float]] = {}
    for backend in (INT8, FLOAT32):
        samples = [fresh_process(backend) for _ in range(runs)]
        measured[backend] = {key: float(np.median([s[key] for s in samples])) for key in samples[0]}
        log(f"fresh {backend} process: " + ", ".join(f"{k} {v:.2f}" for k, v in measured[backend].items()))
    of = f"median of {runs}" if runs > 1 else "one run"

    def pair(case: str, metric: str, key: str, unit: str, target: str | None = None, alternative: str = FLOAT32) -> dict[str, Any]:
        return record(f"fresh Python process, {INT8}: {case} ({of})", metric, measured[INT8][key], unit, alternative=alternative,
                      alternative_value=measured[FLOAT32][key], target=target)

    return [
        pair("import modelwatch.embeddings and the backend's runtime (onnxruntime, tokenizers)", "wall_time", "import_s", "s",
             alternative=f"{FLOAT32}: torch, sentence-transformers"),
        pair("load the model and embed one text", "wall_time", "first_text_s", "s"),
        pair("interpreter start to exit (import, load, embed one text)", "wall_time", "wall_s", "s"),
        pair("import and embed one text", "peak_rss", "peak_rss_mib", "MiB"),
        pair("torch modules in sys.modules after embedding one text", "torch_modules", "torch_modules", "modules", target="== 0"),
    ]


def compare(cfg: dict[str, int]) -> list[dict[str, Any]]:
    """All backend-comparison records at the suite's size ``cfg``."""
    held, categories = held_texts(cfg["held_texts"])
    if len(held) < 2 * MMD_N:
        raise ValueError(f"the A/A trials need at least {2 * MMD_N} held texts, got {len(held)}")
    runs = embed_both(held, topic_texts(cfg["topic_texts"]))
    return (speed_and_agreement(held, categories, runs) + mmd_on_vectors(runs, cfg["backend_aa_trials"], cfg["backend_power_trials"])
            + process_cost(cfg["process_runs"]))
