"""Synthetic inference traffic that follows the log contract, for demos, tests and benchmarks.

Two models are simulated: an LLM support assistant (prompts and answers by topic and
locale, token counts, latency that grows with output length, cost from a price table)
and a churn classifier (numerical and categorical features, a probability, delayed
labels drawn from the true churn model). Scenarios switch on the failures modelwatch
must catch: input drift from a given day (topic mix, longer prompts, new vocabulary),
a treatment arm that regresses latency p99 or error rate, a burst of toxic or refused
answers, and broken rows. Everything derives from one seed, so output is reproducible.

Token counts are a word-piece approximation (1.3 tokens per word): real serving logs
carry the real tokenizer's counts.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from modelwatch.core.assignment import assign

LLM_PRICE_PER_1K = {"prompt": 0.0005, "completion": 0.0015}
TOPICS = {
    "billing": (
        ["Why was I charged {amount} twice on my {card} card?", "Can you explain the {amount} fee on my last invoice?", "How do I update the billing address for my {plan} plan?"],
        ["I checked your account: the second {amount} charge is a pending authorisation and will drop off in 3-5 days.", "That fee is the {plan} plan's monthly charge; you can see the breakdown under Billing > Invoices."],
    ),
    "shipping": (
        ["Where is my order {order}? It was supposed to arrive {day}.", "Can I change the delivery address for order {order}?", "My package {order} shows delivered but I never got it."],
        ["Order {order} left our warehouse yesterday and should arrive within two business days.", "I've opened a trace with the carrier for {order}; you'll get an update within 24 hours."],
    ),
    "returns": (
        ["How do I return the {item} I bought last week?", "Is the {item} still within the return window?", "I want a refund for a damaged {item}."],
        ["You can return the {item} within 30 days: start the return from Orders and print the prepaid label.", "I'm sorry the {item} arrived damaged. I've issued a full refund to your original payment method."],
    ),
    "account": (
        ["I can't log in to my account, it says my password is wrong.", "How do I enable two-factor authentication?", "Please delete my account and all my data."],
        ["Use 'Forgot password' on the sign-in page; the reset link is valid for one hour.", "Go to Settings > Security and choose 'Enable two-factor authentication'."],
    ),
    "technical": (
        ["The app crashes when I open {feature} on my {device}.", "Sync between my {device} and laptop stopped working.", "Error code {code} appears when I export a report."],
        ["Please update to the latest version; the {feature} crash on {device} was fixed last week.", "Error {code} means the export timed out; try a smaller date range or export as CSV."],
    ),
}
DRIFT_TOPIC = (
    "crypto_wallet",
    ["My {coin} withdrawal of {amount} has been pending for hours, is the blockchain bridge down?", "How do I connect a hardware wallet to stake {coin} through your app?"],
    ["Withdrawals of {coin} are delayed while the bridge confirms blocks; it usually clears within 6 hours.", "Open Wallet > Connect device and follow the prompts to stake {coin}."],
)
FILLERS = {
    "amount": ["$12.99", "$49.00", "$5.00", "€20.00", "$129.95"],
    "card": ["Visa", "Mastercard", "Amex"],
    "plan": ["Basic", "Pro", "Enterprise"],
    "order": ["#A1043", "#B2291", "#C7730", "#D0912"],
    "day": ["yesterday", "on Monday", "last week"],
    "item": ["headphones", "coffee grinder", "running shoes", "desk lamp"],
    "feature": ["the dashboard", "reports", "the calendar view"],
    "device": ["iPhone", "Android phone", "iPad"],
    "code": ["E-401", "E-503", "X-17"],
    "coin": ["ETH", "SOL", "USDC"],
}
LOCALES = {"en-US": 0.55, "en-GB": 0.15, "de-DE": 0.12, "fr-FR": 0.10, "es-ES": 0.08}
TIERS = {"free": 0.6, "pro": 0.3, "enterprise": 0.1}
REFUSAL = "I'm sorry, but I can't help with that request."
TOXIC = ["Stop wasting my time with this stupid question, idiot.", "That is a dumb question and you should know better, moron."]
HOURLY_SHAPE = [0.4, 0.3, 0.25, 0.25, 0.3, 0.45, 0.7, 1.0, 1.3, 1.5, 1.6, 1.6, 1.5, 1.5, 1.55, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0, 0.85, 0.7, 0.55]


@dataclass
class Scenario:
    """Which failures to simulate; days are calendar dates of the generated window."""

    drift_from: date | None = None
    drift_locale: str | None = None  # drift only this locale's traffic (a segment-level drift); None: all traffic
    regression: Literal["latency", "errors"] | None = None
    regression_from: date | None = None
    toxic_burst_on: date | None = None
    broken_rows_on: dict[date, int] = field(default_factory=dict)
    labels: bool = True
    shadow_share: float = 0.0  # share of requests mirrored to a shadow model (logged, never served)
    # From this day a sign-up campaign brings the churn classifier new customers (tenure ~ N(8, 6) months): a covariate
    # shift towards its decision boundary that lowers accuracy (0.76 -> ~0.63) while P(churn | score) stays close to the
    # reference's, so CBPE sees the drop on the day, a week before the labels arrive.
    classic_shift_from: date | None = None


@dataclass
class ExperimentPlan:
    id: str = "exp-042"
    weights: dict[str, float] = field(default_factory=lambda: {"control": 0.9, "treatment": 0.1})


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _fill(rng: random.Random, template: str) -> str:
    out = template
    for key, options in FILLERS.items():
        token = "{" + key + "}"
        while token in out:
            out = out.replace(token, rng.choice(options), 1)
    return out


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text.split()) * 1.3))


def _timestamps(rng: random.Random, day: date, n: int) -> list[datetime]:
    """Arrival times over the day following a diurnal shape, sorted."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    hours = rng.choices(range(24), weights=HOURLY_SHAPE, k=n)
    stamps = [start + timedelta(hours=h, seconds=rng.uniform(0, 3599.999)) for h in hours]
    return sorted(stamps)


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def llm_day(model_id: str, day: date, n: int, seed: int, scenario: Scenario, plan: ExperimentPlan | None) -> list[dict[str, Any]]:
    """One day of support-assistant traffic."""
    rng = random.Random(f"{seed}:{model_id}:{day.isoformat()}")
    drifted = scenario.drift_from is not None and day >= scenario.drift_from
    regressed = scenario.regression is not None and scenario.regression_from is not None and day >= scenario.regression_from
    toxic_day = scenario.toxic_burst_on == day
    usual_mix = {"billing": 0.3, "shipping": 0.25, "returns": 0.2, "account": 0.15, "technical": 0.1}
    drifted_mix = {"billing": 0.15, "shipping": 0.15, "returns": 0.1, "account": 0.1, "technical": 0.15, DRIFT_TOPIC[0]: 0.35}
    rows = []
    for i, ts in enumerate(_timestamps(rng, day, n)):
        request_id = f"{model_id}-{day:%Y%m%d}-{i:07d}"
        locale = _pick(rng, LOCALES)
        row_drifts = drifted and scenario.drift_locale in (None, locale)
        topic = _pick(rng, drifted_mix if row_drifts else usual_mix)
        prompts, answers = (DRIFT_TOPIC[1], DRIFT_TOPIC[2]) if topic == DRIFT_TOPIC[0] else TOPICS[topic]
        prompt = _fill(rng, rng.choice(prompts))
        if row_drifts and rng.random() < 0.5:
            prompt += " " + _fill(rng, "I already tried twice and contacted support about {order} and the {amount} charge, please escalate this.") * rng.randint(1, 3)
        variant = assign(request_id, plan.id, plan.weights) if plan else "production"
        status = "ok"
        error_p = 0.005 + (0.035 if regressed and scenario.regression == "errors" and variant == "treatment" else 0.0)
        u = rng.random()
        if u < error_p:
            status = "error"
        elif u < error_p + 0.003:
            status = "timeout"
        elif u < error_p + 0.003 + 0.01:
            status = "refused_by_filter"
        response: str | None = _fill(rng, rng.choice(answers))
        if status == "refused_by_filter":
            response = REFUSAL
        elif status != "ok":
            response = None
        elif toxic_day and rng.random() < 0.08:
            response = rng.choice(TOXIC)
        elif rng.random() < 0.02:
            response = REFUSAL
        p_tok = _tokens(prompt)
        c_tok = _tokens(response) if response else 0
        latency = rng.lognormvariate(math.log(650), 0.35) + 18.0 * c_tok
        if status == "timeout":
            latency = 30_000.0 + rng.uniform(0, 50)
        if regressed and scenario.regression == "latency" and variant == "treatment" and rng.random() < 0.04:
            latency += rng.uniform(4_000, 9_000)
        row: dict[str, Any] = {
            "request_id": request_id,
            "timestamp": _iso(ts),
            "model_id": model_id,
            "variant": variant,
            "status": status,
            "latency_ms": round(latency, 2),
            "prompt": prompt,
            "response": response,
            "prompt_tokens": p_tok,
            "completion_tokens": c_tok,
            "cost_usd": round(p_tok / 1000 * LLM_PRICE_PER_1K["prompt"] + c_tok / 1000 * LLM_PRICE_PER_1K["completion"], 8),
            "feedback": rng.choices([-1, 0, 1], weights=[0.04, 0.86, 0.10])[0],
            "metadata": {"topic": topic, "locale": locale, "user_tier": _pick(rng, TIERS)},
        }
        if plan:
            row["experiment_id"] = plan.id
        if rng.random() < 0.05:  # golden-set traffic carries a reference answer
            row["reference"] = _fill(rng, rng.choice(answers))
        rows.append(row)
        if scenario.shadow_share and status == "ok" and rng.random() < scenario.shadow_share:
            rows.append(_shadow_of(row, rng, answers))
    return rows


def _shadow_of(row: dict[str, Any], rng: random.Random, answers: list[str]) -> dict[str, Any]:
    """The shadow model's answer to the same request: same prompt, its own answer, a bit slower; marked with shadow_of."""
    response = _fill(rng, rng.choice(answers))
    if rng.random() < 0.3:  # the shadow checkpoint often pads its answers
        response += " Let me know if there is anything else I can help you with today."
    c_tok = _tokens(response)
    return {**row, "request_id": f"{row['request_id']}-shadow", "variant": "shadow", "response": response, "completion_tokens": c_tok,
            "latency_ms": round(rng.lognormvariate(math.log(700), 0.35) + 18.0 * c_tok, 2), "experiment_id": None,
            "cost_usd": round(row["prompt_tokens"] / 1000 * LLM_PRICE_PER_1K["prompt"] + c_tok / 1000 * LLM_PRICE_PER_1K["completion"], 8),
            "feedback": 0, "metadata": {**row["metadata"], "shadow_of": row["request_id"]}}


def _churn_probability(tenure: float, spend: float, plan: str, calls: int) -> float:
    z = -1.2 - 0.045 * tenure + 0.012 * spend + 0.35 * calls + {"basic": 0.4, "plus": 0.0, "premium": -0.5}[plan]
    return 1 / (1 + math.exp(-z))


def classifier_day(model_id: str, day: date, n: int, seed: int, scenario: Scenario,
                   experiment: ExperimentPlan | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One day of churn-classifier traffic and its (delayed) labels."""
    rng = random.Random(f"{seed}:{model_id}:{day.isoformat()}")
    drifted = scenario.drift_from is not None and day >= scenario.drift_from
    campaign = scenario.classic_shift_from is not None and day >= scenario.classic_shift_from
    plans = {"basic": 0.5, "plus": 0.35, "premium": 0.15} if not drifted else {"basic": 0.7, "plus": 0.25, "premium": 0.05}
    rows, labels = [], []
    for i, ts in enumerate(_timestamps(rng, day, n)):
        request_id = f"{model_id}-{day:%Y%m%d}-{i:07d}"
        tenure = max(0.0, rng.gauss(8, 6) if campaign else rng.gauss(26 if not drifted else 14, 12))
        spend = max(5.0, rng.gauss(60, 25))
        plan = _pick(rng, plans)
        calls = min(12, int(rng.expovariate(1 / (1.2 if not drifted else 2.0))))
        true_p = _churn_probability(tenure, spend, plan, calls)
        # The model was fit before the shift: it under-weights support calls.
        model_p = min(0.999, max(0.001, 1 / (1 + math.exp(-(math.log(true_p / (1 - true_p)) - 0.15 * calls + rng.gauss(0, 0.3))))))
        prediction = "churn" if model_p >= 0.5 else "stay"
        rows.append(
            {
                "request_id": request_id,
                "timestamp": _iso(ts),
                "model_id": model_id,
                "variant": assign(request_id, experiment.id, experiment.weights) if experiment else "production",  # A/A: arms behave alike
                "status": "ok",
                "latency_ms": round(rng.lognormvariate(math.log(12), 0.3), 3),
                "features": {"tenure_months": round(tenure, 1), "monthly_spend": round(spend, 2), "plan": plan, "support_calls": calls},
                "prediction": prediction,
                "probability": {"churn": round(model_p, 5), "stay": round(1 - model_p, 5)},
                "metadata": {"region": rng.choice(["na", "emea", "apac"])},
            }
        )
        if experiment:
            rows[-1]["experiment_id"] = experiment.id
        if scenario.labels:
            labels.append(
                {
                    "request_id": request_id,
                    "label": "churn" if rng.random() < true_p else "stay",
                    "labelled_at": _iso(ts + timedelta(days=7)),
                }
            )
    return rows, labels


def broken_rows(model_id: str, day: date, n: int, seed: int) -> list[bytes]:
    """``n`` JSON lines that each break the contract in a known way (cycling through the kinds)."""
    rng = random.Random(f"{seed}:broken:{model_id}:{day.isoformat()}")
    noon = _iso(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
    base = {"model_id": model_id, "variant": "control", "status": "ok", "latency_ms": 500.0, "timestamp": noon,
            "prompt": "hello", "response": "hi", "prompt_tokens": 2, "completion_tokens": 1, "experiment_id": "exp-042"}
    kinds = [
        lambda r: json.dumps({**r, "latency_ms": -5.0}).encode(),
        lambda r: json.dumps({**r, "variant": "mystery-arm"}).encode(),
        lambda r: json.dumps({k: v for k, v in r.items() if k != "status"}).encode(),
        lambda r: json.dumps({**r, "latency_ms": "fast"}).encode(),
        lambda r: json.dumps(r).encode()[: len(json.dumps(r)) // 2],  # a line cut in half
        lambda r: json.dumps({**r, "timestamp": "2001-01-01T00:00:00Z"}).encode(),
        lambda r: b"\xff\xfe not utf-8 \x80",
        lambda r: json.dumps({**r, "status": "exploded"}).encode(),
    ]
    lines = []
    for i in range(n):
        row = {**base, "request_id": f"{model_id}-{day:%Y%m%d}-broken-{i:04d}-{rng.randint(0, 9999)}"}
        lines.append(kinds[i % len(kinds)](row))
    return lines


def jsonl_bytes(rows: Iterable[dict[str, Any]], gz: bool) -> bytes:
    body = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows).encode()
    return gzip.compress(body, mtime=0) if gz else body


def parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Parquet rows with nested objects kept as structs/maps, as a serving layer would write them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf, compression="zstd")
    return buf.getvalue()


def write_day(client, logs_uri: str, model_id: str, day: date, rows: list[dict[str, Any]], kind: str = "llm", extra_lines: list[bytes] = ()) -> list[str]:
    """Emit one day through the serving client and write its broken lines raw; returns the URIs written.

    The rows go through ``LogEmitter.record`` (the path a replay or backfill uses), so the
    demo's traffic is checked against the contract and laid out exactly as a serving
    fleet's: one ``model_id=/dt=/hour=/part-00000.jsonl.gz`` per hour (sequential names keep a
    re-run writing the same keys). ``extra_lines`` simulate upstream corruption: they are
    written as they are to ``hour=12/part-broken.jsonl``, bypassing the client's checks.
    """
    import tempfile

    from modelwatch.core.partition import Partition
    from modelwatch.serving import LogEmitter, SequentialPartNames
    from modelwatch.storage.s3 import put_bytes

    names = SequentialPartNames()
    with tempfile.TemporaryDirectory(prefix="modelwatch-generate-spill-") as spill:
        emitter = LogEmitter(client, logs_uri, model_id, kind, background=False, max_rows=len(rows) + 1, max_bytes=2**62,
                             spill_dir=spill, part_namer=names, retry_max_s=0.0)
        with emitter:
            for row in rows:
                emitter.record(**row)
        _check_emitted(emitter, logs_uri, day)
    uris = list(names.issued)
    if extra_lines:
        uri = f"{Partition(model_id, day, 12).path(logs_uri)}/part-broken.jsonl"
        uris.append(put_bytes(client, uri, b"\n".join(extra_lines) + b"\n"))
    return uris


def _check_emitted(emitter, logs_uri: str, day: date) -> None:
    """The generator's rows must all be valid and all reach S3; anything else is a bug or an outage, reported here."""
    stats = emitter.stats()
    if stats["invalid"]:
        raise ValueError(f"generated {emitter.model_id} rows for {day} broke the log contract: {dict(emitter.invalid_reasons)}")
    unsent = stats["emitted"] - stats["flushed"]
    if unsent:
        raise RuntimeError(f"could not write {unsent} {emitter.model_id} rows for {day} under {logs_uri}: S3 unreachable; "
                           "re-run the generator (it writes the same keys, so nothing doubles)")


def generate_traffic(
    client,
    logs_uri: str,
    labels_uri: str,
    start: date,
    days: int,
    *,
    seed: int = 7,
    scenario: Scenario | None = None,
    llm_model: str | None = "support-bot-v3",
    classic_model: str | None = "churn-classifier-v2",
    llm_rows: int = 3000,
    classic_rows: int = 1500,
    plan: ExperimentPlan | None = None,
    classic_plan: ExperimentPlan | None = None,
    progress=None,
) -> dict[str, int]:
    """Write ``days`` days of traffic from ``start`` to S3 through the serving client (``write_day``); returns rows written per model."""
    from modelwatch.storage.s3 import put_bytes

    scenario = scenario or Scenario()
    plan = plan or ExperimentPlan()
    written: dict[str, int] = {}
    for offset in range(days):
        day = start + timedelta(days=offset)
        broken = broken_rows(llm_model or classic_model, day, scenario.broken_rows_on.get(day, 0), seed) if scenario.broken_rows_on.get(day) else []
        if llm_model:
            rows = llm_day(llm_model, day, llm_rows, seed, scenario, plan)
            write_day(client, logs_uri, llm_model, day, rows, "llm", broken)
            written[llm_model] = written.get(llm_model, 0) + len(rows) + len(broken)
        if classic_model:
            rows, labels = classifier_day(classic_model, day, classic_rows, seed, scenario, classic_plan)
            write_day(client, logs_uri, classic_model, day, rows, "classifier")
            written[classic_model] = written.get(classic_model, 0) + len(rows)
            if labels:
                uri = f"{labels_uri.rstrip('/')}/model_id={classic_model}/dt={day.isoformat()}/labels.jsonl"
                put_bytes(client, uri, jsonl_bytes(labels, gz=False))
        if progress:
            progress(day, written)
    return written
