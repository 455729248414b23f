"""Synthetic LLM traffic at scale for the "scale" benchmark: hour files built column-wise, written as JSONL.gz and Parquet.

``modelwatch.runtime.generate.llm_day`` builds one Python dict per request (~80 µs a row here) and
its templates repeat: a 50,000-row day has 73 distinct prompts, which compresses and caches
far better than real traffic. This module keeps the generator's model of a day — its topic
mix, prompt and answer templates, locales, user tiers, status and refusal rates, the
word-piece token approximation, latency growing with output length, the price table, the
golden-set share, the diurnal shape and the sticky SHA-256 experiment assignment — but:

- builds each hour as Arrow arrays with NumPy and ``pyarrow.compute`` (template filling is
  an element-wise string join per template), so a million rows take seconds;
- draws the template slots from wide pools (order ids, amounts, ticket numbers, dozens of
  items and devices) and appends an optional context sentence to prompts and a closing
  sentence to answers, so that nearly every prompt and answer is distinct, as in real
  support traffic (a realistic gzip ratio and embedding-cache miss rate);
- writes each hour as one JSONL.gz and one Parquet file on local disk, hours in parallel
  processes (``generate_day``; a finished day is kept and reused, its ``day.json`` naming the
  spec and generator version), then uploads them as one ``part-00000.jsonl.gz`` and one
  ``part-00000.parquet`` per hour partition, the layout of ``modelwatch.serving``'s emitter
  (``upload_day``).

The JSON lines are encoded column-wise too (the values are plain ASCII/UTF-8 text without
control characters; quotes and backslashes are escaped). Parquet keeps ``metadata`` as a
struct, as a serving layer writing Parquet would.
"""

from __future__ import annotations

import gzip
import io
import json
import string
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from modelwatch.core.assignment import BUCKETS, bucket
from modelwatch.runtime.generate import HOURLY_SHAPE, LLM_PRICE_PER_1K, LOCALES, REFUSAL, TIERS, TOPICS

TOPIC_MIX = {"billing": 0.3, "shipping": 0.25, "returns": 0.2, "account": 0.15, "technical": 0.1}  # generate.llm_day's usual mix
STATUS_RATES = {"error": 0.005, "timeout": 0.003, "refused_by_filter": 0.01}  # generate.llm_day's clean-day rates
ANSWER_REFUSAL_RATE = 0.02
GOLDEN_SHARE = 0.05
FEEDBACK = ([-1, 0, 1], [0.04, 0.86, 0.10])
CONTEXT_SHARE = 0.6  # prompts that carry a context sentence
CLOSING_SHARE = 0.7  # answers that end with a closing sentence

POOLS: dict[str, list[str]] = {
    "card": ["Visa", "Mastercard", "Amex", "Discover", "debit", "PayPal-linked"],
    "plan": ["Basic", "Pro", "Enterprise", "Family", "Student", "Team"],
    "day": ["yesterday", "on Monday", "on Tuesday", "on Friday", "last week", "two days ago", "this morning", "before the weekend"],
    "item": ["headphones", "coffee grinder", "running shoes", "desk lamp", "blender", "office chair", "phone case", "backpack", "smart watch",
             "air fryer", "monitor stand", "yoga mat", "rain jacket", "water bottle", "keyboard", "webcam", "hair dryer", "toaster",
             "suitcase", "bike helmet", "wireless charger", "throw blanket", "kitchen scale", "espresso cups"],
    "feature": ["the dashboard", "reports", "the calendar view", "notifications", "the search page", "settings", "the export wizard",
                "shared folders", "the billing page", "two-step login"],
    "device": ["iPhone", "Android phone", "iPad", "Pixel tablet", "Windows laptop", "MacBook", "Chromebook", "Galaxy phone"],
    "coin": ["ETH", "SOL", "USDC"],
    "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
}
CONTEXT = [
    "I have been on the {plan} plan since {year}.",
    "This is the {nth} time I am writing about this.",
    "My account email ends in {digits}@example.com.",
    "I already tried logging out and back in on my {device}.",
    "The same thing happened with my {item} order in {month}.",
    "Please answer quickly, I need this sorted before {weekday}.",
    "Reference from your last reply: case {ticket}.",
    "I paid {amount} with my {card} card.",
]
CLOSING = [
    "Your case number is {ticket}.",
    "Is there anything else I can help you with today?",
    "I've added a note to case {ticket} so the team can follow up.",
    "You'll get an email confirmation at the address ending in {digits}.",
    "If it hasn't arrived by {weekday}, reply to this message and we'll escalate it.",
]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
NTH = ["second", "third", "fourth", "fifth"]


@dataclass(frozen=True)
class DaySpec:
    """One synthetic day of one model: ``requests`` rows spread over 24 hour partitions by the diurnal shape."""

    model_id: str
    day: date
    requests: int
    seed: int
    experiment_id: str
    weights: dict[str, float]

    def hour_counts(self) -> list[int]:
        """Rows per hour: a multinomial draw over ``generate.HOURLY_SHAPE``."""
        shape = np.asarray(HOURLY_SHAPE, dtype=float)
        rng = np.random.default_rng([self.seed, self.day.toordinal(), 24])
        return [int(c) for c in rng.multinomial(self.requests, shape / shape.sum())]

    def hour_starts(self) -> list[int]:
        """Index of each hour's first request within the day."""
        return [0, *np.cumsum(self.hour_counts())[:-1].tolist()]


# -- filling templates column-wise -------------------------------------------------------------------------


def _choice(rng: np.random.Generator, values: Sequence[str], n: int, p: Sequence[float] | None = None) -> pa.Array:
    weights = None if p is None else np.asarray(p, dtype=float) / np.sum(p)
    return pc.take(pa.array(list(values), pa.string()), pa.array(rng.choice(len(values), size=n, p=weights)))


def _digits(rng: np.random.Generator, n: int, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 10**width, n)), pa.string()), width=width, padding="0")


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _slot(rng: np.random.Generator, name: str, n: int) -> pa.Array:
    """``n`` values of one template slot."""
    if name == "amount":
        currency = _choice(rng, ["$", "$", "$", "€", "£"], n)
        return _join(currency, pc.cast(pa.array(rng.integers(1, 500, n)), pa.string()), ".", _digits(rng, n, 2))
    if name == "order":
        return _join("#", _choice(rng, list("ABCDEFGH"), n), _digits(rng, n, 5))
    if name == "code":
        return _join(_choice(rng, ["E-", "X-", "ERR-"], n), pc.cast(pa.array(rng.integers(100, 999, n)), pa.string()))
    if name == "ticket":
        return _join("CS-", _digits(rng, n, 7))
    if name == "digits":
        return _digits(rng, n, 3)
    if name == "year":
        return pc.cast(pa.array(rng.integers(2015, 2027, n)), pa.string())
    if name == "month":
        return _choice(rng, MONTHS, n)
    if name == "nth":
        return _choice(rng, NTH, n)
    return _choice(rng, POOLS[name], n)


def fill(rng: np.random.Generator, template: str, n: int) -> pa.Array:
    """``n`` fillings of a ``str.format``-style template, each slot drawn independently per row."""
    parts: list[pa.Array | str] = []
    for literal, name, _, _ in string.Formatter().parse(template):
        if literal:
            parts.append(literal)
        if name is not None:
            parts.append(_slot(rng, name, n))
    if not any(isinstance(p, pa.Array) for p in parts):
        return pa.array([template] * n, pa.string())
    return _join(*parts)


def fill_by(rng: np.random.Generator, keys: np.ndarray, templates: Sequence[str]) -> pa.Array:
    """Row i gets ``templates[keys[i]]`` filled: one element-wise join per template, put back in row order."""
    chunks, order = [], []
    for index, template in enumerate(templates):
        rows = np.flatnonzero(keys == index)
        if len(rows):
            chunks.append(fill(rng, template, len(rows)))
            order.append(rows)
    if not chunks:
        return pa.array([], pa.string())
    positions = np.concatenate(order)
    inverse = np.empty_like(positions)
    inverse[positions] = np.arange(len(positions))
    return pc.take(pa.concat_arrays(chunks), pa.array(inverse))


def texts_by_topic(rng: np.random.Generator, topics: np.ndarray, which: int) -> pa.Array:
    """Prompts (``which`` 0) or answers (1) from ``generate.TOPICS`` for each row's topic index."""
    names = list(TOPIC_MIX)
    flat = [t for name in names for t in TOPICS[name][which]]
    offsets = np.cumsum([0, *[len(TOPICS[name][which]) for name in names]])
    sizes = np.diff(offsets)
    keys = offsets[topics] + (rng.random(len(topics)) * sizes[topics]).astype(np.int64)
    return fill_by(rng, keys, flat)


def _append_optional(rng: np.random.Generator, base: pa.Array, sentences: Sequence[str], share: float) -> pa.Array:
    n = len(base)
    extra = fill_by(rng, rng.integers(0, len(sentences), n), sentences)
    keep = pa.array(rng.random(n) < share)
    return pc.if_else(keep, _join(base, " ", extra), base)


def _tokens(text: pa.Array) -> np.ndarray:
    """generate._tokens column-wise: ceil(1.3 x words), at least 1."""
    words = pc.list_value_length(pc.utf8_split_whitespace(text)).to_numpy(zero_copy_only=False)
    return np.maximum(1, np.ceil(words * 1.3)).astype(np.int64)


def _variants(request_ids: list[str], experiment_id: str, weights: dict[str, float]) -> pa.Array:
    """``assignment.assign`` per request: its SHA-256 bucket cut by the arms' weights."""
    edges = np.round(np.cumsum(list(weights.values())) * BUCKETS)
    buckets = np.fromiter((bucket(r, experiment_id) for r in request_ids), dtype=np.int64, count=len(request_ids))
    arm = np.minimum(np.searchsorted(edges, buckets, side="right"), len(weights) - 1)
    return pc.take(pa.array(list(weights), pa.string()), pa.array(arm))


def hour_table(spec: DaySpec, hour: int, n: int, first: int) -> pa.Table:
    """The ``n`` requests of one hour (request indices ``first``..``first + n - 1`` of the day) as an Arrow table."""
    rng = np.random.default_rng([spec.seed, spec.day.toordinal(), hour])
    start = np.datetime64(datetime(spec.day.year, spec.day.month, spec.day.day, hour), "ms")
    stamps = start + np.sort(rng.integers(0, 3_600_000, n)).astype("timedelta64[ms]")
    timestamp = pc.binary_join_element_wise(pa.array(np.datetime_as_string(stamps, unit="ms")), "Z", "")
    prefix = f"{spec.model_id}-{spec.day:%Y%m%d}-"
    request_id = _join(prefix, pc.utf8_lpad(pc.cast(pa.array(np.arange(first, first + n)), pa.string()), width=8, padding="0"))
    ids = request_id.to_pylist()

    topics = rng.choice(len(TOPIC_MIX), size=n, p=np.asarray(list(TOPIC_MIX.values())))
    topic = pc.take(pa.array(list(TOPIC_MIX)), pa.array(topics))
    locale = _choice(rng, list(LOCALES), n, list(LOCALES.values()))
    tier = _choice(rng, list(TIERS), n, list(TIERS.values()))
    prompt = _append_optional(rng, texts_by_topic(rng, topics, 0), CONTEXT, CONTEXT_SHARE)
    answer = _append_optional(rng, texts_by_topic(rng, topics, 1), CLOSING, CLOSING_SHARE)

    u = rng.random(n)
    cut = np.cumsum(list(STATUS_RATES.values()))
    status_index = np.searchsorted(cut, u, side="right")  # 0 error, 1 timeout, 2 refused, 3 ok
    status = pc.take(pa.array([*STATUS_RATES, "ok"]), pa.array(status_index))
    refusal = pa.array([REFUSAL] * n, pa.string())
    answered = status_index == 3
    response = pc.if_else(pa.array(status_index == 2), refusal, answer)
    response = pc.if_else(pa.array(answered & (rng.random(n) < ANSWER_REFUSAL_RATE)), refusal, response)
    response = pc.if_else(pa.array(status_index <= 1), pa.scalar(None, pa.string()), response)

    prompt_tokens = _tokens(prompt)
    completion_tokens = np.where(pc.is_null(response).to_numpy(zero_copy_only=False), 0, _tokens(pc.fill_null(response, "")))
    latency = rng.lognormal(np.log(650), 0.35, n) + 18.0 * completion_tokens
    latency = np.where(status_index == 1, 30_000.0 + rng.uniform(0, 50, n), latency).round(2)
    cost = (prompt_tokens / 1000 * LLM_PRICE_PER_1K["prompt"] + completion_tokens / 1000 * LLM_PRICE_PER_1K["completion"]).round(8)
    feedback = np.asarray(FEEDBACK[0], dtype=np.int64)[rng.choice(3, size=n, p=FEEDBACK[1])]
    golden = pa.array(rng.random(n) < GOLDEN_SHARE)
    reference = pc.if_else(golden, texts_by_topic(rng, topics, 1), pa.scalar(None, pa.string()))
    return pa.table({
        "request_id": request_id, "timestamp": timestamp, "model_id": pa.array([spec.model_id] * n, pa.string()),
        "variant": _variants(ids, spec.experiment_id, spec.weights), "status": status, "latency_ms": pa.array(latency),
        "prompt": prompt, "response": response, "prompt_tokens": pa.array(prompt_tokens), "completion_tokens": pa.array(completion_tokens),
        "cost_usd": pa.array(cost), "feedback": pa.array(feedback),
        "metadata": pa.StructArray.from_arrays([topic, locale, tier], names=["topic", "locale", "user_tier"]),
        "experiment_id": pa.array([spec.experiment_id] * n, pa.string()), "reference": reference,
    })


# -- encoding ----------------------------------------------------------------------------------------------


def _json_string(values: pa.Array) -> pa.Array:
    """Quoted JSON strings (quotes and backslashes escaped; the generated text has no control characters)."""
    escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
    return _join('"', escaped, '"')


def _json_number(values: pa.Array) -> pa.Array:
    return pc.cast(values, pa.string())


def jsonl_gz(table: pa.Table, level: int = 6) -> bytes:
    """The table as gzipped JSON lines, one object per row, encoded column-wise."""
    meta = table["metadata"].combine_chunks()
    null = pa.scalar("null", pa.string())
    response = table["response"].combine_chunks()
    reference = table["reference"].combine_chunks()
    lines = _join(
        '{"request_id":', _json_string(table["request_id"]), ',"timestamp":', _json_string(table["timestamp"]),
        ',"model_id":', _json_string(table["model_id"]), ',"variant":', _json_string(table["variant"]),
        ',"status":', _json_string(table["status"]), ',"latency_ms":', _json_number(table["latency_ms"]),
        ',"prompt":', _json_string(table["prompt"]), ',"response":', pc.if_else(pc.is_null(response), null, _json_string(pc.fill_null(response, ""))),
        ',"prompt_tokens":', _json_number(table["prompt_tokens"]), ',"completion_tokens":', _json_number(table["completion_tokens"]),
        ',"cost_usd":', _json_number(table["cost_usd"]), ',"feedback":', _json_number(table["feedback"]),
        ',"metadata":{"topic":', _json_string(meta.field("topic")), ',"locale":', _json_string(meta.field("locale")),
        ',"user_tier":', _json_string(meta.field("user_tier")), '},"experiment_id":', _json_string(table["experiment_id"]),
        pc.if_else(pc.is_null(reference), pa.scalar("", pa.string()), _join(',"reference":', _json_string(pc.fill_null(reference, "")))),
        "}\n",
    )
    body = "".join(lines.to_pylist()).encode()
    return gzip.compress(body, compresslevel=level, mtime=0)


def parquet(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


# -- writing a day: hour files on local disk (kept as a cache), then uploaded ----------------------------

GENERATOR_VERSION = 1  # bump when the generated rows change: a cached day of another version is generated again
SUFFIXES = {"jsonl.gz": "jsonl.gz", "parquet": "parquet"}


def hour_uri(logs_uri: str, spec: DaySpec, hour: int, suffix: str) -> str:
    from modelwatch.core.partition import Partition

    return f"{Partition(spec.model_id, spec.day, hour).path(logs_uri)}/part-00000.{suffix}"


def hour_path(directory: Path, fmt: str, hour: int) -> Path:
    return directory / fmt / f"hour-{hour:02d}.{SUFFIXES[fmt]}"


def write_hour(directory: Path, formats: Sequence[str], spec: DaySpec, hour: int, n: int, first: int) -> dict[str, Any]:
    """Build one hour and write it in each of ``formats`` under ``directory``; returns rows and bytes per format."""
    table = hour_table(spec, hour, n, first)
    encoders = {"jsonl.gz": jsonl_gz, "parquet": parquet}
    sizes = {}
    for fmt in formats:
        path = hour_path(directory, fmt, hour)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = encoders[fmt](table)
        partial = path.with_suffix(path.suffix + ".partial")
        partial.write_bytes(data)
        partial.replace(path)
        sizes[fmt] = len(data)
    return {"hour": hour, "rows": n, "bytes": sizes}


def day_manifest(spec: DaySpec, formats: Sequence[str]) -> dict[str, Any]:
    """What identifies a generated day: the generator's version and every field of its spec."""
    return {"generator_version": GENERATOR_VERSION, "model_id": spec.model_id, "day": spec.day.isoformat(), "requests": spec.requests,
            "seed": spec.seed, "experiment_id": spec.experiment_id, "weights": spec.weights, "formats": sorted(formats)}


def generate_day(directory: Path, spec: DaySpec, formats: Sequence[str], workers: int = 2) -> dict[str, Any]:
    """The 24 hour files of ``spec`` in each format under ``directory``, generated unless a finished copy is there.

    ``directory/day.json`` is written last and names the spec and generator version, so a copy cut
    off midway, of another spec or of an older generator is generated again. Returns
    ``{"rows", "bytes": {format: bytes}, "generated": bool}``.
    """
    manifest_path = directory / "day.json"
    wanted = day_manifest(spec, formats)
    if manifest_path.exists():
        found = json.loads(manifest_path.read_text())
        if found.get("spec") == wanted and all(hour_path(directory, fmt, h).exists() for fmt in formats for h in range(24)):
            return {"rows": found["rows"], "bytes": found["bytes"], "generated": False}
        manifest_path.unlink()
    counts, starts = spec.hour_counts(), spec.hour_starts()
    hours = sorted(range(24), key=lambda h: -counts[h])  # largest first: better packing across workers
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(write_hour, *zip(*[(directory, list(formats), spec, h, counts[h], starts[h]) for h in hours])))
    totals = {"rows": sum(d["rows"] for d in done), "bytes": {fmt: sum(d["bytes"][fmt] for d in done) for fmt in formats}}
    manifest_path.write_text(json.dumps({"spec": wanted, **totals}, indent=2))
    return {**totals, "generated": True}


def upload_day(endpoint: str, directory: Path, targets: dict[str, str], spec: DaySpec, workers: int = 2) -> int:
    """Put every hour file of a generated day under its partition of each format's logs URI (``targets``: format -> logs_uri); bytes sent."""
    from concurrent.futures import ThreadPoolExecutor

    from modelwatch.storage.s3 import make_client, put_bytes

    client = make_client(endpoint_url=endpoint)

    def one(job: tuple[str, int]) -> int:
        fmt, hour = job
        data = hour_path(directory, fmt, hour).read_bytes()
        put_bytes(client, hour_uri(targets[fmt], spec, hour, SUFFIXES[fmt]), data)
        return len(data)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(one, [(fmt, hour) for fmt in targets for hour in range(24)]))
