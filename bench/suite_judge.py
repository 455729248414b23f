"""Benchmark suite "judge": LLM-judge throughput against the fake server, and the heuristic judge's throughput.

``run(size)`` returns records ``{"suite", "case", "metric", "value", "unit", "alternative",
"alternative_value", "target"}``; ``size`` is "small" (a quick check) or "full".

* LLM judges: ``JudgeRunner`` with ``AnthropicJudge`` (the alternative column: the
  ``OpenAICompatibleJudge``) against ``tests/judge_server.py`` on 127.0.0.1, which waits
  200 ms per request like a model would, at concurrency 1, 4 and 8. The ideal rate is
  concurrency / 0.2 s; the target is 80% of it (what is lost is SDK, HTTP and
  parsing time; the server runs in this process, so it competes for the GIL too).
  No cache, no faults: every item is one request.
* Heuristic judge: ``HeuristicJudge`` through ``JudgeRunner`` (one batched embedding and
  toxicity pass) on ~300 support-like prompt/response pairs; the model load is timed
  separately and excluded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import suite_helpers

SUITE = "judge"
log, record = suite_helpers(SUITE)
LATENCY_S = 0.2
CONCURRENCY = (1, 4, 8)
SIZES: dict[str, dict[str, int]] = {
    "small": {"llm_items": 16, "heuristic_items": 100},
    "full": {"llm_items": 64, "heuristic_items": 300},
}
ROOT = Path(__file__).resolve().parents[1]

TOPICS = [
    ("reset my password", "Open the login page, choose 'Forgot password' and follow the link we email you; it is valid for 30 minutes."),
    ("get a refund for order {k}", "Refunds go back to the original payment method within 5 business days of us receiving the return."),
    ("change the delivery address of order {k}", "You can change the address under Orders > {k} > Edit until the parcel ships."),
    ("download the invoice for order {k}", "Invoices are under Account > Billing; click the PDF icon next to order {k}."),
    ("cancel subscription {k}", "Go to Settings > Subscription and choose Cancel; you keep access until the end of the paid period."),
    ("fix the app crashing on the {page} page", "Please update to the latest version and clear the app cache; if it still crashes, send us the log."),
    ("use discount code {k}", "Enter the code at checkout in the 'Promo code' field; codes cannot be combined with sale prices."),
    ("track parcel {k}", "Use the tracking link in your shipping email, or Orders > {k} > Track."),
]
OFF_TOPIC = ["Our stores open at 9am on weekdays.", "I'm sorry, but I can't help with that.", "Thanks for your message!"]
PAGES = ["settings", "billing", "profile", "checkout"]


def judge_server_module():
    """``tests/judge_server.py``, imported by path (``tests`` is not a package)."""
    spec = importlib.util.spec_from_file_location("judge_server", ROOT / "tests" / "judge_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def support_items(n: int, seed: int = 0):
    """``n`` distinct support-style (prompt, response) pairs: mostly on-topic answers, some off-topic or refusals."""
    from modelwatch.judge.calls import JudgeItem

    rng = np.random.default_rng(seed)
    items, seen = [], set()
    while len(items) < n:
        topic, answer = TOPICS[rng.integers(len(TOPICS))]
        k, page = int(rng.integers(10_000, 99_999)), PAGES[rng.integers(len(PAGES))]
        prompt = f"Hi, how do I {topic.format(k=k, page=page)}? {['Thanks.', 'Please help!', ''][rng.integers(3)]}".strip()
        response = answer.format(k=k) if rng.random() > 0.15 else OFF_TOPIC[rng.integers(len(OFF_TOPIC))]
        if prompt not in seen:
            seen.add(prompt)
            items.append(JudgeItem(f"b-{len(items):04d}", prompt, response))
    return items


def llm_throughput(n: int) -> list[dict[str, Any]]:
    from modelwatch.judge.llm import AnthropicJudge, OpenAICompatibleJudge
    from modelwatch.judge.rubric import load_rubric
    from modelwatch.judge.runner import JUDGED, JudgeRunner

    rubric = load_rubric("support-v2")
    items = support_items(n, seed=1)
    out = []
    with judge_server_module().FakeJudgeServer.for_rubric(rubric, latency_s=LATENCY_S) as server:
        backends = {
            "anthropic": AnthropicJudge("bench-key", "claude-bench", base_url=server.anthropic_url, timeout_s=10, price_in=0.003, price_out=0.015),
            "openai": OpenAICompatibleJudge("bench-key", "gpt-bench", base_url=server.openai_url, timeout_s=10, price_in=0.003, price_out=0.015),
        }
        for backend in backends.values():  # warm-up: SDK import, client, connection pool
            JudgeRunner(backend, rubric, concurrency=2).run(items[:2])
        for concurrency in CONCURRENCY:
            rates = {}
            for name, backend in backends.items():
                server.reset()
                result = JudgeRunner(backend, rubric, concurrency=concurrency).run(items)
                if result.counts[JUDGED] != n:
                    raise RuntimeError(f"{name} at concurrency {concurrency}: {result.counts}, errors {result.errors_by_kind}")
                rates[name] = n / result.wall_time_s
                log(f"{name}, concurrency {concurrency}: {rates[name]:.1f} judgments/s, max in flight {server.stats()['max_in_flight']}")
            ideal = concurrency / LATENCY_S
            out.append(record(f"AnthropicJudge via JudgeRunner, {n} items, fake server {LATENCY_S * 1000:.0f} ms/request, concurrency "
                              f"{concurrency} (ideal {ideal:g}/s)", "throughput", rates["anthropic"], "judgments/s",
                              alternative="OpenAICompatibleJudge, same runs", alternative_value=rates["openai"], target=f">= {0.8 * ideal:g}"))
    return out


def heuristic_throughput(n: int) -> list[dict[str, Any]]:
    from modelwatch.embeddings import load_model
    from modelwatch.judge.heuristic import HeuristicJudge
    from modelwatch.judge.rubric import load_rubric
    from modelwatch.judge.runner import JUDGED, JudgeRunner

    rubric = load_rubric("support-v2")
    items = support_items(n, seed=2)
    start = time.perf_counter()
    load_model()
    load_seconds = time.perf_counter() - start
    judge = HeuristicJudge()
    JudgeRunner(judge, rubric).run(items[:8])  # warm-up: profanity-check model, first-batch allocations
    result = JudgeRunner(judge, rubric).run(items)
    if result.counts[JUDGED] != n:
        raise RuntimeError(f"heuristic judge: {result.counts}")
    rate = n / result.wall_time_s
    flagged = sum(o.judgment.flags["refusal"] for o in result.outcomes)
    log(f"heuristic: {rate:.0f} items/s over {n} items ({flagged} refusals flagged); model load {load_seconds:.1f} s")
    return [
        record(f"HeuristicJudge via JudgeRunner, {n} support prompt/response pairs (one batched embedding + toxicity pass)",
               "throughput", rate, "items/s"),
        record("load all-MiniLM-L6-v2 for the heuristic judge (first load in process; excluded above)", "wall_time", load_seconds, "s"),
    ]


def run(size: str) -> list[dict[str, Any]]:
    """All records of the suite; ``size`` is "small" or "full"."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    cfg = SIZES[size]
    return llm_throughput(cfg["llm_items"]) + heuristic_throughput(cfg["heuristic_items"])


if __name__ == "__main__":
    for rec in run(sys.argv[1] if len(sys.argv) > 1 else "small"):
        print(json.dumps(rec, ensure_ascii=False))
