"""Running pairwise judgments within a budget, concurrently, with retries (``modelwatch.judge.attempts``, shared with
the single-answer runner)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from modelwatch.judge.attempts import FAILED, JUDGED, SKIPPED_BUDGET, JudgeRequests, Stop, Tally, check_run_settings, denial
from modelwatch.judge.budget import BudgetLedger, RunTotals
from modelwatch.judge.calls import MALFORMED, JudgeBackend
from modelwatch.judge.pairwise import AB, BA, ORDERS, PairItem, PairJudge, PairVerdict, log, pair_judge_for
from modelwatch.judge.pairwise_stats import PairOutcome, PairwiseStats, judged_outcome, pair_labels, pairwise_stats
from modelwatch.judge.rubric import Rubric
from modelwatch.judge.runner import BATCH_SIZE
from modelwatch.retry import RetryPolicy

# -- the runner --------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class PairwiseResult(RunTotals):
    """Per-pair outcomes (input order) and run totals; ``stats()`` computes consistency and the win rate."""

    outcomes: list[PairOutcome]

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(o.status for o in self.outcomes)
        return {status: found.get(status, 0) for status in (JUDGED, FAILED, SKIPPED_BUDGET)}

    def by_status(self, status: str) -> list[PairOutcome]:
        return [o for o in self.outcomes if o.status == status]

    def stats(self, *, confidence: float = 0.95, ci_method: str = "exact") -> PairwiseStats:
        return pairwise_stats(self.outcomes, confidence=confidence, ci_method=ci_method)

    def summary(self, *, confidence: float = 0.95, ci_method: str = "exact") -> dict[str, Any]:
        """Totals and statistics as a JSON-ready dict (no per-pair outcomes)."""
        return {**self.totals(), **self.counts, **asdict(self.stats(confidence=confidence, ci_method=ci_method))}


class PairwiseRunner:
    """Judge pairs in both orders with ``backend`` against ``rubric``, under a budget, a concurrency limit and retries.

    ``backend``: a ``JudgeBackend`` (wrapped by ``pair_judge_for``) or a ``PairJudge``.
    ``budget_usd`` None means unlimited; ``concurrency`` pairs are judged at once, each pair's
    two orders one after the other, so at most ``concurrency`` requests are in flight.
    ``deadline_s`` bounds one order's retries in time (None: ``retries`` alone).
    ``sleep`` and ``seed`` exist for tests. See ``JudgeRunner`` for the budget rules.
    """

    def __init__(self, backend: JudgeBackend | PairJudge, rubric: Rubric, budget_usd: float | None = None, concurrency: int = 4, retries: int = 3,
                 timeout_s: float | None = None, *, backoff_s: float = 0.5, max_backoff_s: float = 30.0, deadline_s: float | None = None,
                 seed: int | None = None, sleep: Callable[[float], None] = time.sleep):
        check_run_settings(concurrency, budget_usd, timeout_s)
        self.judge = pair_judge_for(backend)
        self.rubric = rubric
        self.budget_usd = budget_usd
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retry_policy = RetryPolicy(retries=retries, backoff_s=backoff_s, max_backoff_s=max_backoff_s, deadline_s=deadline_s)
        self._requests = JudgeRequests(self.retry_policy, seed=seed, sleep=sleep)

    def __repr__(self) -> str:
        return (f"PairwiseRunner(judge={self.judge!r}, rubric={self.rubric.name}@{self.rubric.version}, budget_usd={self.budget_usd}, "
                f"concurrency={self.concurrency})")

    def run(self, pairs: Sequence[PairItem]) -> PairwiseResult:
        """Judge every pair in both orders; outcomes in input order. All pairs must share one (label_a, label_b)."""
        pair_labels(pairs)
        start = time.perf_counter()
        ledger = BudgetLedger(self.budget_usd)
        free = self.judge.batched and all(self.judge.max_cost_usd(p, order, self.rubric) == 0 for p in pairs for order in ORDERS)
        if not pairs:
            outcomes: list[PairOutcome] = []
        elif free:
            outcomes = self._judge_batched(pairs, ledger)
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(pairs)), thread_name_prefix="judge-pair") as pool:
                outcomes = list(pool.map(lambda pair: self._judge_one(pair, ledger), pairs))
        result = PairwiseResult(
            **RunTotals.from_ledger(ledger), outcomes=outcomes, backend=self.judge.describe(), rubric=self.rubric.name,
            rubric_version=self.rubric.version, wall_time_s=time.perf_counter() - start,
            failures_by_kind=dict(Counter(o.failure_kind for o in outcomes if o.status == FAILED)))
        log.info("pairwise judge run %s@%s with %s: %s", self.rubric.name, self.rubric.version, self.judge.model,
                 {k: v for k, v in result.summary().items() if k not in ("backend", "rubric", "rubric_version")})
        return result

    # -- one pair ----------------------------------------------------------------------------------------

    def _judge_one(self, pair: PairItem, ledger: BudgetLedger) -> PairOutcome:
        """Reserve both orders' worst case at once, then judge order ab and order ba (each with its retries)."""
        tally = Tally()
        estimates = {order: self.judge.max_cost_usd(pair, order, self.rubric) for order in ORDERS}
        denied = ledger.reserve([estimates[AB], estimates[BA]])
        if denied:
            return self._stopped(pair, tally, denial(ledger, denied))
        verdicts: dict[str, PairVerdict] = {}
        for order, later in ((AB, [estimates[BA]]), (BA, [])):
            verdict = self._judge_order(pair, order, estimates[order], later, ledger, tally)
            if isinstance(verdict, Stop):
                return self._stopped(pair, tally, verdict)
            verdicts[order] = verdict
        return judged_outcome(pair, verdicts[AB], verdicts[BA], **tally.fields())

    def _judge_order(self, pair: PairItem, order: str, estimate: float, later: list[float], ledger: BudgetLedger, tally: Tally) -> PairVerdict | Stop:
        """One order, with the shared retries (transient: ``retries``; malformed: once).

        The first request uses the pair's reservation. ``later`` are the reservations held
        for the pair's later order: a retry gives them back and reserves itself and them
        together again (so no worker waits while holding a reservation, and a pair whose
        retry fits but whose later order would not is still not half-judged). They are
        given back too when this order ends without a verdict.
        """
        held = {"first": True, "later": True}

        def reserve() -> str | None:
            if held["first"]:
                held["first"] = False
                return None
            if held["later"]:
                for estimate_later in later:
                    ledger.release(estimate_later)
                held["later"] = False
            denied = ledger.reserve([estimate, *later])
            held["later"] = denied is None
            return denied

        where = f"order {order} ({'answer_a' if order == AB else 'answer_b'} shown first): "
        answer = self._requests.run(lambda: self.judge.judge_pair(pair, order, self.rubric, timeout_s=self.timeout_s), estimate=estimate,
                                    reserve=reserve, ledger=ledger, tally=tally, where=where, name=f"pair {pair.item_id}")
        if not isinstance(answer, Stop):
            return answer.verdict  # ``later`` stays reserved for the next order
        if held["later"]:
            for estimate_later in later:
                ledger.release(estimate_later)
        if answer.status == SKIPPED_BUDGET:
            note = "; order ab was judged but the pair is not counted" if order == BA else ""
            return Stop(SKIPPED_BUDGET, None, answer.reason.removeprefix(where) + note)
        return answer

    @staticmethod
    def _stopped(pair: PairItem, tally: Tally, stop: Stop) -> PairOutcome:
        return PairOutcome(pair.item_id, stop.status, pair.label_a, pair.label_b, failure_kind=stop.failure_kind, reason=stop.reason,
                           **tally.fields())

    # -- a free local judge ------------------------------------------------------------------------------

    def _judge_batched(self, pairs: Sequence[PairItem], ledger: BudgetLedger) -> list[PairOutcome]:
        """A free batched judge (the heuristic): ``judge_pairs`` in batches, no budget needed."""
        outcomes: list[PairOutcome] = []
        size = max(1, BATCH_SIZE // 2)  # two answers per pair
        for start in range(0, len(pairs), size):
            batch = pairs[start : start + size]
            for pair, calls in zip(batch, self.judge.judge_pairs(batch, self.rubric), strict=True):
                for order in ORDERS:
                    ledger.count_free(None if calls[order].ok else MALFORMED)
                latency = sum(c.latency_s for c in calls.values())
                ab, ba = calls[AB].verdict, calls[BA].verdict
                if ab is None or ba is None:
                    problem = calls[AB].parse_error or calls[BA].parse_error
                    outcomes.append(PairOutcome(pair.item_id, FAILED, pair.label_a, pair.label_b, failure_kind=MALFORMED, reason=problem,
                                                attempts=2, latency_s=latency))
                else:
                    outcomes.append(judged_outcome(pair, ab, ba, attempts=2, latency_s=latency))
        return outcomes
