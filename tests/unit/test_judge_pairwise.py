"""Pairwise judging: consistency logic, statistics against scipy and closed forms, the heuristic pair judge, and the runner's budget and retries."""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter

import pytest
from modelwatch.judge.calls import AUTH, RATE_LIMITED, SERVER_ERROR, JudgeCallError
from modelwatch.judge.heuristic import HeuristicJudge
from modelwatch.judge.pairwise import (
    A_BETTER,
    AB,
    B_BETTER,
    BA,
    FIRST,
    INCONSISTENT,
    ORDERS,
    PAIR_SCHEMA,
    PREFERENCES,
    SECOND,
    TIE,
    HeuristicPairJudge,
    PairCall,
    PairItem,
    PairJudge,
    PairVerdict,
    pair_judge_for,
    pair_result,
    pairwise_messages,
    parse_pair_verdict,
    preferred_answer,
    shown_preference,
)
from modelwatch.judge.pairwise_runner import PairwiseRunner
from modelwatch.judge.pairwise_stats import PairOutcome, judged_outcome, pairwise_stats
from modelwatch.judge.rubric import Judgment, JudgmentParseError, load_rubric
from modelwatch.judge.runner import ABORTED, FAILED, JUDGED, SKIPPED_BUDGET
from scipy.stats import beta, binomtest, norm

PROMPT = "How do I reset my password? I can't log in."
RELEVANT = "Go to the login page, click Forgot password and follow the reset link we email you."
UNRELATED = "Our bakery opens at 9am on Saturdays and sells fresh sourdough."


@pytest.fixture(scope="module")
def rubric():
    return load_rubric("support-v2")


def verdict(preference: str) -> PairVerdict:
    return PairVerdict(preference=preference, reasoning="r")


def outcome(item_id: str, ab: str, ba: str) -> PairOutcome:
    return judged_outcome(PairItem(item_id, PROMPT, "a", "b"), verdict(ab), verdict(ba))


# -- consistency logic -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ab", "ba", "expected"), [
    ("A", "B", A_BETTER),  # answer_a first and preferred, then shown second and still preferred
    ("B", "A", B_BETTER),
    ("tie", "tie", TIE),
    ("A", "A", INCONSISTENT),  # the first slot wins whatever is in it: position bias
    ("B", "B", INCONSISTENT),  # the second slot wins: recency bias
    ("A", "tie", INCONSISTENT),
    ("tie", "B", INCONSISTENT),
])
def test_pair_result_counts_only_preferences_that_survive_the_swap(ab, ba, expected):
    assert pair_result(ab, ba) == expected
    item = PairItem("p", PROMPT, "a", "b", label_a="production", label_b="shadow")
    judged = judged_outcome(item, verdict(ab), verdict(ba))
    assert judged.consistent == (expected != INCONSISTENT)
    assert judged.winner == {A_BETTER: "production", B_BETTER: "shadow"}.get(expected)


def test_preferences_map_to_answers_and_back_in_both_orders():
    assert preferred_answer(FIRST, AB) == A_BETTER and preferred_answer(FIRST, BA) == B_BETTER
    assert preferred_answer(SECOND, AB) == B_BETTER and preferred_answer(SECOND, BA) == A_BETTER
    for order in ORDERS:
        for preference in PREFERENCES:
            assert shown_preference(preferred_answer(preference, order), order) == preference
    with pytest.raises(ValueError, match="preference"):
        preferred_answer("C", AB)
    with pytest.raises(ValueError, match="order"):
        preferred_answer(FIRST, "ba-ab")
    with pytest.raises(ValueError, match="different names"):
        PairItem("p", PROMPT, "a", "b", label_a="x", label_b="x")


# -- statistics --------------------------------------------------------------------------------------------


def constructed_outcomes() -> list[PairOutcome]:
    """7 treatment wins, 3 control wins, 2 ties, 4 inconsistent (3 first-slot, 1 second-slot), 1 failed, 1 skipped."""
    rows = [("B", "A")] * 7 + [("A", "B")] * 3 + [("tie", "tie")] * 2 + [("A", "A")] * 3 + [("B", "B")]
    out = [outcome(f"p{i}", ab, ba) for i, (ab, ba) in enumerate(rows)]
    out.append(PairOutcome("failed", FAILED, failure_kind="malformed"))
    out.append(PairOutcome("skipped", SKIPPED_BUDGET))
    return out


def test_stats_count_only_consistent_pairs_and_exclude_ties_from_the_win_rate():
    stats = pairwise_stats(constructed_outcomes())
    assert (stats.pairs, stats.judged, stats.failed, stats.skipped) == (18, 16, 1, 1)
    assert (stats.consistent, stats.inconsistent) == (12, 4) and stats.consistency_rate == 12 / 16
    assert (stats.wins, stats.losses, stats.ties) == (7, 3, 2)  # the 4 inconsistent pairs are in none of them
    assert (stats.first_position_verdicts, stats.second_position_verdicts) == (6, 2) and stats.first_position_rate == 0.75
    assert stats.win_rate == 0.7 and stats.win_rate_ties_split == (7 + 1) / 12
    assert (stats.label_a, stats.label_b) == ("control", "treatment")


@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_the_win_rate_interval_and_sign_test_equal_scipy_and_their_closed_forms(confidence):
    outcomes = constructed_outcomes()
    exact = pairwise_stats(outcomes, confidence=confidence)
    reference = binomtest(7, 10, 0.5)
    interval = reference.proportion_ci(confidence_level=confidence, method="exact")
    assert exact.win_rate_ci == pytest.approx((interval.low, interval.high), abs=1e-12)
    alpha = 1 - confidence  # Clopper-Pearson from beta quantiles
    assert exact.win_rate_ci == pytest.approx((beta.ppf(alpha / 2, 7, 4), beta.ppf(1 - alpha / 2, 8, 3)), abs=1e-9)
    assert exact.sign_test_p == pytest.approx(reference.pvalue, abs=1e-15)
    assert exact.sign_test_p == pytest.approx(2 * sum(math.comb(10, k) for k in range(7, 11)) / 2**10, abs=1e-15)

    wilson = pairwise_stats(outcomes, confidence=confidence, ci_method="wilson")
    interval = reference.proportion_ci(confidence_level=confidence, method="wilson")
    assert wilson.win_rate_ci == pytest.approx((interval.low, interval.high), abs=1e-12)
    z, n, p = norm.ppf(1 - alpha / 2), 10, 0.7
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson.win_rate_ci == pytest.approx((centre - half, centre + half), abs=1e-9)


def test_stats_without_decisive_pairs_have_no_win_rate_and_mixed_labels_are_refused():
    stats = pairwise_stats([outcome("t", "tie", "tie"), outcome("i", "A", "A")])
    assert stats.win_rate is None and stats.win_rate_ci is None and stats.sign_test_p is None
    assert stats.consistency_rate == 0.5 and stats.win_rate_ties_split == 0.5
    empty = pairwise_stats([])
    assert empty.consistency_rate is None and empty.first_position_rate is None
    other = judged_outcome(PairItem("x", PROMPT, "a", "b", label_a="v1", label_b="v2"), verdict("A"), verdict("B"))
    with pytest.raises(ValueError, match="different labels"):
        pairwise_stats([outcome("t", "tie", "tie"), other])
    with pytest.raises(ValueError, match="ci_method"):
        pairwise_stats([], ci_method="normal")


# -- prompt and parsing ------------------------------------------------------------------------------------


def test_the_pairwise_prompt_shows_the_answers_in_the_given_order(rubric):
    pair = PairItem("p", "Costs $5?", "ANSWER-ONE costs $5", "ANSWER-TWO", reference="It costs $5.")
    system, forward = pairwise_messages(rubric, pair, AB)
    _, reverse = pairwise_messages(rubric, pair, BA)
    assert json.dumps(PAIR_SCHEMA) in system and all(f"- {dim}:" in system for dim in rubric.dimensions)
    assert "scores" not in system  # not the single-answer schema
    assert forward.index("ANSWER-ONE") < forward.index("ANSWER-TWO") and reverse.index("ANSWER-TWO") < reverse.index("ANSWER-ONE")
    assert "<answer_a>\nANSWER-ONE costs $5\n</answer_a>" in forward and "<answer_a>\nANSWER-TWO\n</answer_a>" in reverse
    assert "<reference_answer>\nIt costs $5.\n</reference_answer>" in forward  # the rubric's reference block, $ kept literally
    _, unreferenced = pairwise_messages(rubric, PairItem("q", "hi", "x", "y"), AB)
    assert rubric.no_reference in unreferenced


@pytest.mark.parametrize("text", [
    '{"preference": "B", "reasoning": "clearer"}',
    'Verdict:\n```json\n{"preference": "b", "reasoning": "clearer"}\n```',
    'I prefer the second. {"preference": " B ", "reasoning": "clearer"} Thanks.',
])
def test_verdicts_parse_from_json_fences_and_prose(text):
    assert parse_pair_verdict(text) == PairVerdict(preference="B", reasoning="clearer")


@pytest.mark.parametrize(("text", "problem"), [
    ('{"preference": "C", "reasoning": "x"}', "preference: Input should be 'A', 'B' or 'tie'"),
    ('{"preference": "A"}', "reasoning: Field required"),
    ('{"preference": "A", "reasoning": "cut', "no JSON object found"),
    ("", "the answer is empty"),
])
def test_invalid_verdicts_are_rejected_saying_why(text, problem):
    with pytest.raises(JudgmentParseError) as info:
        parse_pair_verdict(text)
    assert any(problem in p for p in info.value.problems)


# -- the heuristic pair judge ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heuristic_pairs():
    return HeuristicPairJudge(HeuristicJudge())


def test_heuristic_pairwise_prefers_the_relevant_answer_in_either_slot_and_order(heuristic_pairs, rubric):
    pairs = [PairItem("relevant-first", PROMPT, RELEVANT, UNRELATED), PairItem("relevant-second", PROMPT, UNRELATED, RELEVANT),
             PairItem("same", PROMPT, RELEVANT, RELEVANT)]
    result = PairwiseRunner(heuristic_pairs, rubric).run(pairs)
    by_id = {o.item_id: o for o in result.outcomes}
    assert by_id["relevant-first"].result == A_BETTER and by_id["relevant-second"].result == B_BETTER
    assert by_id["same"].result == TIE
    assert by_id["relevant-first"].ab.preference == FIRST and by_id["relevant-first"].ba.preference == SECOND
    stats = result.stats()
    assert stats.consistency_rate == 1.0 and stats.inconsistent == 0 and result.cost_usd == 0 and result.calls == 6
    for pair in pairs:  # one order at a time gives the same verdicts as the batch
        assert {order: heuristic_pairs.judge_pair(pair, order, rubric).verdict.preference for order in ORDERS} == {
            AB: by_id[pair.item_id].ab.preference, BA: by_id[pair.item_id].ba.preference}
    assert "heuristic comparison (not an LLM)" in by_id["relevant-first"].ab.reasoning


def test_heuristic_compare_sums_commonly_assessed_dimensions_with_a_tie_tolerance(rubric):
    def judgment(helpfulness: int, accuracy: int, not_assessed: tuple[str, ...] = ()) -> Judgment:
        scores = {"helpfulness": helpfulness, "factual_accuracy": accuracy, "coherence": 4, "instruction_following": 4}
        return Judgment(scores=scores, flags=dict.fromkeys(rubric.flags, False), reasoning="", not_assessed=list(not_assessed))

    lenient, strict = HeuristicPairJudge(HeuristicJudge(), tie_tolerance=1), HeuristicPairJudge(HeuristicJudge(), tie_tolerance=0)
    assert lenient.compare(judgment(4, 3), judgment(5, 3), rubric)[0] == TIE
    assert strict.compare(judgment(4, 3), judgment(5, 3), rubric)[0] == B_BETTER
    assert lenient.compare(judgment(5, 3), judgment(3, 3), rubric)[0] == A_BETTER
    # factual_accuracy not assessed for one answer is left out for both: 4 vs 4 on helpfulness, a tie
    result, reasoning = strict.compare(judgment(4, 5), judgment(4, 1, ("factual_accuracy",)), rubric)
    assert result == TIE and "not compared: ['factual_accuracy']" in reasoning


def test_pair_judge_for_wraps_backends_and_refuses_others():
    heuristic = HeuristicJudge()
    assert isinstance(pair_judge_for(heuristic), HeuristicPairJudge) and pair_judge_for(heuristic).judge is heuristic
    scripted = ScriptedPairJudge()
    assert pair_judge_for(scripted) is scripted
    with pytest.raises(TypeError, match="cannot compare pairs"):
        pair_judge_for(object())  # type: ignore[arg-type]


# -- the runner, with a scripted judge ---------------------------------------------------------------------


class ScriptedPairJudge(PairJudge):
    """Every request costs exactly ``cost`` (its bound) and takes ``delay_s``; ``script[(item_id, order)]`` lists answers to give first.

    A scripted answer is raw text (parsed) or an exception to raise; unscripted requests prefer answer_b in both orders.
    """

    name = "scripted"

    def __init__(self, cost: float = 0.25, script: dict[tuple[str, str], list] | None = None, delay_s: float = 0.0):
        super().__init__("scripted-1")
        self.cost = cost
        self.script = {key: list(value) for key, value in (script or {}).items()}
        self.delay_s = delay_s
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def max_cost_usd(self, pair, order, rubric) -> float:
        return self.cost

    def judge_pair(self, pair, order, rubric, *, timeout_s=None) -> PairCall:
        with self._lock:
            self.requests.append((pair.item_id, order))
            queued = self.script.get((pair.item_id, order))
            answer = queued.pop(0) if queued else json.dumps({"preference": shown_preference(B_BETTER, order), "reasoning": "b"})
        time.sleep(self.delay_s)
        if isinstance(answer, Exception):
            raise answer
        try:
            parsed, problem = parse_pair_verdict(answer), None
        except JudgmentParseError as exc:
            parsed, problem = None, str(exc)
        return PairCall(order, answer, parsed, problem, 10, 10, self.cost, self.delay_s)


def make_pairs(n: int) -> list[PairItem]:
    return [PairItem(f"pair-{i:02d}", f"{PROMPT} ({i})", f"control answer {i}", f"treatment answer {i}") for i in range(n)]


@pytest.mark.parametrize("concurrency", [1, 3])
def test_the_budget_holds_and_a_pair_of_which_only_one_order_fits_is_skipped(concurrency, rubric):
    judge = ScriptedPairJudge(cost=0.25, delay_s=0.02)
    # two pairs cost 1.0; the 0.25 left would pay for one order of a third pair, not both
    result = PairwiseRunner(judge, rubric, budget_usd=1.25, concurrency=concurrency).run(make_pairs(6))
    assert result.counts == {JUDGED: 2, FAILED: 0, SKIPPED_BUDGET: 4}
    assert result.cost_usd == 1.0 and result.spent_usd <= 1.25 and result.calls == 4
    per_pair = Counter(item for item, _ in judge.requests)
    assert sorted(per_pair.values()) == [2, 2]  # never half-judged
    assert all("budget" in o.reason for o in result.by_status(SKIPPED_BUDGET)) and "budget" in result.stop_reason
    assert result.stats().wins == 2 and result.stats().judged == 2


def test_a_malformed_verdict_is_retried_once_then_the_pair_fails_without_its_second_order(rubric):
    script = {("pair-00", AB): ["not json at all"], ("pair-01", AB): ['{"preference": "C", "reasoning": "?"}', '{"preference": "A"}']}
    judge = ScriptedPairJudge(cost=0.0, script=script)
    result = PairwiseRunner(judge, rubric, concurrency=1).run(make_pairs(3))
    by_id = {o.item_id: o for o in result.outcomes}
    assert by_id["pair-00"].status == JUDGED and by_id["pair-00"].attempts == 3 and by_id["pair-00"].result == B_BETTER
    failed = by_id["pair-01"]
    assert failed.status == FAILED and failed.failure_kind == "malformed" and "also after one retry" in failed.reason
    assert "order ab" in failed.reason and failed.result is None and failed.attempts == 2
    assert judge.requests.count(("pair-01", BA)) == 0  # the other order is not paid for once the pair cannot count
    assert result.errors_by_kind == {"malformed": 3} and result.failures_by_kind == {"malformed": 1}
    assert result.stats().judged == 2 and result.stats().wins == 2


def test_transient_errors_are_retried_and_fatal_ones_abort_the_run(rubric):
    script = {("pair-00", BA): [JudgeCallError(RATE_LIMITED, "429", retryable=True), JudgeCallError(SERVER_ERROR, "503", retryable=True)],
              ("pair-01", AB): [JudgeCallError(SERVER_ERROR, "500", retryable=True)] * 3}
    judge = ScriptedPairJudge(cost=0.0, script=script)
    sleeps: list[float] = []
    result = PairwiseRunner(judge, rubric, concurrency=1, retries=2, backoff_s=0.01, max_backoff_s=0.02, sleep=sleeps.append).run(make_pairs(2))
    assert [o.status for o in result.outcomes] == [JUDGED, FAILED]
    assert result.outcomes[0].attempts == 4 and "after 2 retries" in result.outcomes[1].reason and len(sleeps) == 4

    fatal = ScriptedPairJudge(cost=0.0, script={("pair-01", AB): [JudgeCallError(AUTH, "401 bad key", fatal=True)]})
    result = PairwiseRunner(fatal, rubric, concurrency=1).run(make_pairs(4))
    assert [o.status for o in result.outcomes] == [JUDGED, FAILED, FAILED, FAILED]
    assert result.failures_by_kind == {"auth": 1, ABORTED: 2} and len(fatal.requests) == 3


def test_retries_under_a_tight_budget_cannot_deadlock_the_workers(rubric):
    """Both pairs' first answers are malformed while their second orders are reserved: the retries must not wait on each other."""
    bad = ["garbage"]
    script = {(f"pair-0{i}", order): list(bad) for i in range(2) for order in ORDERS}
    judge = ScriptedPairJudge(cost=0.25, script=script, delay_s=0.05)
    done: list = []
    worker = threading.Thread(target=lambda: done.append(PairwiseRunner(judge, rubric, budget_usd=1.0, concurrency=2).run(make_pairs(2))),
                              daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert done, "the runner deadlocked"
    result = done[0]
    assert result.spent_usd <= 1.0 and result.calls == len(judge.requests) and result.cost_usd == 0.25 * len(judge.requests)
    assert all(o.status in (JUDGED, SKIPPED_BUDGET) for o in result.outcomes)
    for o in result.by_status(JUDGED):  # a counted pair has both verdicts
        assert o.ab is not None and o.ba is not None
