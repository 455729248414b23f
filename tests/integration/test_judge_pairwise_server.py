"""Pairwise judging against the fake judge server (tests/judge_server.py) through the real anthropic and openai SDKs.

The server answers a pairwise prompt from hidden per-answer qualities (order-independent), or, with
``position_bias=p``, prefers the answer shown first for a share p of requests. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

from collections import Counter

import pytest
from judge_server import FakeJudgeServer
from modelwatch.judge.calls import JudgeBackend
from modelwatch.judge.llm import AnthropicJudge, OpenAICompatibleJudge
from modelwatch.judge.pairwise import (
    A_BETTER,
    AB,
    B_BETTER,
    BA,
    INCONSISTENT,
    ORDERS,
    PAIR_SCHEMA,
    TIE,
    PairItem,
    pair_judge_for,
    pair_result,
    pairwise_messages,
)
from modelwatch.judge.pairwise_runner import PairwiseRunner
from modelwatch.judge.rubric import load_rubric
from modelwatch.judge.runner import FAILED, JUDGED, SKIPPED_BUDGET
from scipy.stats import binomtest

KEY = "sk-pairwise-secret-7d21"
PRICE_IN, PRICE_OUT = 0.003, 0.015  # USD per 1k tokens
CONTROL = ["Open the login page, choose Forgot password and follow the emailed link.",
           "Refunds go back to the original card within 5 business days.",
           "You can change the delivery address until the parcel ships."]
TREATMENT = ["Click Forgot password on the sign-in page; we email you a reset link.",
             "We refund to the card you paid with; allow up to 5 business days.",
             "Edit the address under Orders > Details before the parcel is dispatched."]


@pytest.fixture(scope="module")
def rubric():
    return load_rubric("support-v2")


def make_backend(kind: str, server: FakeJudgeServer, key: str = KEY, **options) -> JudgeBackend:
    if kind == "anthropic":
        return AnthropicJudge(key, "claude-judge-test", base_url=server.anthropic_url, timeout_s=5.0, price_in=PRICE_IN, price_out=PRICE_OUT,
                              **options)
    return OpenAICompatibleJudge(key, "gpt-judge-test", base_url=server.openai_url, timeout_s=5.0, price_in=PRICE_IN, price_out=PRICE_OUT,
                                 **options)


def make_pairs(n: int) -> list[PairItem]:
    """Pairs whose prompt carries their id (for fault targeting); distinct answer texts, so the server's hidden qualities vary."""
    return [PairItem(f"pair-{i:02d}", f"[pair-{i:02d}] Customer question {i}: how do I sort out my account?",
                     f"{CONTROL[i % 3]} (ticket {i})", f"{TREATMENT[i % 3]} (ticket {i})") for i in range(n)]


def truth(server: FakeJudgeServer, pair: PairItem) -> str:
    """The server's unbiased, order-independent verdict on a pair, as a result."""
    return {"A": A_BETTER, "B": B_BETTER, "tie": TIE}[server.pair_preference(pair.answer_a, pair.answer_b)]


def served_result(server: FakeJudgeServer, rubric, pair: PairItem) -> str:
    """What the runner must conclude from the two answers this server gives for the pair's two prompts."""
    ab, ba = (server.preference_for(pairwise_messages(rubric, pair, order)[1])["preference"] for order in ORDERS)
    return pair_result(ab, ba)


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_an_unbiased_judge_is_consistent_and_its_verdicts_are_mapped_back_to_the_answers(kind, rubric):
    pairs = make_pairs(24)
    with FakeJudgeServer.for_rubric(rubric, api_key=KEY) as server:
        result = PairwiseRunner(make_backend(kind, server), rubric, concurrency=4, seed=1).run(pairs)
        records = server.records()
        expected = {p.item_id: truth(server, p) for p in pairs}

    assert result.counts == {JUDGED: 24, FAILED: 0, SKIPPED_BUDGET: 0} and result.calls == len(records) == 48
    assert Counter(r.wire for r in records) == {kind: 48}
    # both orders of every pair were sent, exactly as rendered
    assert sorted(r.user for r in records) == sorted(pairwise_messages(rubric, p, order)[1] for p in pairs for order in ORDERS)
    assert {o.item_id: o.result for o in result.outcomes} == expected
    assert len(set(expected.values())) == 3  # the data has wins, losses and ties

    stats = result.stats()
    assert stats.consistency_rate == 1.0 and stats.inconsistent == 0 and stats.first_position_rate is None
    wins, losses, ties = (sum(r == v for r in expected.values()) for v in (B_BETTER, A_BETTER, TIE))
    assert (stats.wins, stats.losses, stats.ties) == (wins, losses, ties)
    reference = binomtest(wins, wins + losses)
    assert stats.sign_test_p == pytest.approx(reference.pvalue)
    assert stats.win_rate_ci == pytest.approx(tuple(reference.proportion_ci(0.95, method="exact")))
    assert result.cost_usd > 0 and result.cost_usd == pytest.approx(result.input_tokens * PRICE_IN / 1000 + result.output_tokens * PRICE_OUT / 1000)


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_position_bias_lowers_consistency_and_inconsistent_pairs_are_never_counted(kind, rubric):
    pairs = make_pairs(40)
    with FakeJudgeServer.for_rubric(rubric, api_key=KEY, position_bias=0.5) as server:
        result = PairwiseRunner(make_backend(kind, server), rubric, concurrency=4, seed=2).run(pairs)
        served = {p.item_id: served_result(server, rubric, p) for p in pairs}
        truths = {p.item_id: truth(server, p) for p in pairs}
        biased_requests = sum(server.position_biased(r.user) for r in server.records())

    assert biased_requests > 0 and result.counts[JUDGED] == 40
    assert {o.item_id: o.result for o in result.outcomes} == served
    stats = result.stats()
    # an unbiased server gives 1.0 on the same pairs (test above); here about half the pairs flip with the order
    assert stats.inconsistent == sum(r == INCONSISTENT for r in served.values()) >= 10 and stats.consistency_rate <= 0.75
    # the injected bias always picks the first slot: every position-decided verdict of an inconsistent pair does
    assert stats.first_position_rate == 1.0 and stats.second_position_verdicts == 0
    # a pair counts only when both orders agree, and then it agrees with the unbiased verdict: no win comes from the bias
    for o in result.outcomes:
        assert o.result in (truths[o.item_id], INCONSISTENT)
        assert (o.winner is not None) == (o.result in (A_BETTER, B_BETTER))
    assert stats.wins + stats.losses + stats.ties == stats.consistent
    assert stats.wins <= sum(t == B_BETTER for t in truths.values()) and stats.losses <= sum(t == A_BETTER for t in truths.values())


@pytest.mark.parametrize(("kind", "concurrency"), [("openai", 1), ("anthropic", 4)])
def test_the_budget_holds_and_no_pair_is_half_judged(kind, concurrency, rubric):
    pairs = make_pairs(20)
    with FakeJudgeServer.for_rubric(rubric, api_key=KEY) as server:
        judge = pair_judge_for(make_backend(kind, server))
        bound = {p.item_id: sum(judge.max_cost_usd(p, order, rubric) for order in ORDERS) for p in pairs}
        budget = 2.5 * bound["pair-00"]  # both orders of several pairs at their real cost, not of 20
        result = PairwiseRunner(judge, rubric, budget_usd=budget, concurrency=concurrency).run(pairs)
        per_pair = Counter(next(p.item_id for p in pairs if f"[{p.item_id}]" in r.user) for r in server.records())

    assert result.spent_usd <= budget
    skipped = result.by_status(SKIPPED_BUDGET)
    assert skipped and result.counts[JUDGED] >= 2 and result.counts[JUDGED] + len(skipped) == 20
    assert all("budget" in o.reason for o in skipped)
    assert set(per_pair.values()) == {2} and len(per_pair) == result.counts[JUDGED] == result.calls // 2
    assert result.spent_usd + max(bound[o.item_id] for o in skipped) > budget  # stopping was necessary
    assert all(o.cost_usd <= bound[o.item_id] for o in result.by_status(JUDGED))


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_a_malformed_verdict_is_retried_once_then_the_pair_fails(kind, rubric):
    pairs = make_pairs(5)
    with FakeJudgeServer.for_rubric(rubric, api_key=KEY) as server:
        forward = {p.item_id: pairwise_messages(rubric, p, AB)[1] for p in pairs}
        reverse = {p.item_id: pairwise_messages(rubric, p, BA)[1] for p in pairs}
        server.add_faults(["malformed"], match=forward["pair-01"])  # retried, then judged
        server.add_faults(["malformed", "invalid"], match=forward["pair-02"])  # still bad after one retry: failed
        server.add_faults(["prose"], match=reverse["pair-03"])  # a fenced verdict inside prose parses
        server.add_faults(["429"], match=reverse["pair-04"])  # transient: retried
        result = PairwiseRunner(make_backend(kind, server), rubric, concurrency=2, backoff_s=0.0, max_backoff_s=0.0).run(pairs)
        requests = {p.item_id: len(server.requests_matching(f"[{p.item_id}]")) for p in pairs}
        expected = {p.item_id: truth(server, p) for p in pairs}

    by_id = {o.item_id: o for o in result.outcomes}
    assert requests == {"pair-00": 2, "pair-01": 3, "pair-02": 2, "pair-03": 2, "pair-04": 3}  # pair-02's second order never sent
    failed = by_id["pair-02"]
    assert failed.status == FAILED and failed.failure_kind == "malformed" and "also after one retry" in failed.reason
    assert failed.result is None and failed.cost_usd > 0
    assert all(by_id[i].status == JUDGED and by_id[i].result == expected[i] for i in ("pair-00", "pair-01", "pair-03", "pair-04"))
    assert result.errors_by_kind == {"malformed": 3, "rate_limited": 1} and result.failures_by_kind == {"malformed": 1}
    assert result.stats().judged == 4 and result.calls == sum(requests.values())


def test_anthropic_structured_output_sends_the_pairwise_schema_and_budgets_for_it(rubric):
    pair = make_pairs(1)[0]
    with FakeJudgeServer.for_rubric(rubric, api_key=KEY) as server:
        structured = make_backend("anthropic", server, structured_output=True)
        result = PairwiseRunner(structured, rubric, concurrency=1).run([pair])
        sent = [r.request["output_config"]["format"]["schema"] for r in server.records()]
        plain = pair_judge_for(make_backend("anthropic", server))

    assert result.counts[JUDGED] == 1 and sent == [PAIR_SCHEMA, PAIR_SCHEMA]
    assert pair_judge_for(structured).max_cost_usd(pair, AB, rubric) > plain.max_cost_usd(pair, AB, rubric)


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_a_rejected_key_aborts_the_run_and_never_reaches_the_results(kind, rubric):
    with FakeJudgeServer.for_rubric(rubric, api_key=KEY) as server:
        backend = make_backend(kind, server, key=KEY + "-wrong")  # the server echoes a refused key back in its error
        result = PairwiseRunner(backend, rubric, concurrency=1).run(make_pairs(3))
        requests = len(server.records())

    assert requests == 1 and result.failures_by_kind == {"auth": 1, "aborted": 2} and "auth" in result.stop_reason
    dumped = repr(result.summary()) + repr([o.to_dict() for o in result.outcomes])
    assert KEY not in dumped and "invalid API key '***'" in result.outcomes[0].reason
