"""Running pairwise judgments within a budget, concurrently, with retries."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from modelwatch.judge.budget import BudgetLedger, RunTotals
from modelwatch.judge.calls import ERROR, MALFORMED, TIMEOUT, JudgeBackend, JudgeCallError
from modelwatch.judge.pairwise import AB, BA, ORDERS, PairItem, PairJudge, PairVerdict, log, pair_judge_for
from modelwatch.judge.pairwise_stats import PairOutcome, PairwiseStats, judged_outcome, pair_labels, pairwise_stats
from modelwatch.judge.rubric import Rubric
from modelwatch.judge.runner import ABORTED, BATCH_SIZE, FAILED, JUDGED, SKIPPED_BUDGET

# -- accounting --------------------------------------------------------------------------------------------


@dataclass
class _Tally:
    """One pair's requests, tokens and cost (assumed costs of timeouts included)."""

    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0

    def fields(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Stop:
    """Why one order ended without a verdict."""

    status: str
    failure_kind: str | None
    reason: str


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
    ``sleep`` and ``seed`` exist for tests. See the module docstring for the budget rules.
    """

    def __init__(self, backend: JudgeBackend | PairJudge, rubric: Rubric, budget_usd: float | None = None, concurrency: int = 4, retries: int = 3,
                 timeout_s: float | None = None, *, backoff_s: float = 0.5, max_backoff_s: float = 30.0, seed: int | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if retries < 0 or (budget_usd is not None and budget_usd < 0):
            raise ValueError(f"retries and budget_usd must not be negative, got {retries} and {budget_usd}")
        if (timeout_s is not None and timeout_s <= 0) or backoff_s < 0 or max_backoff_s < backoff_s:
            raise ValueError(f"need timeout_s > 0 and 0 <= backoff_s <= max_backoff_s, got {timeout_s}, {backoff_s}, {max_backoff_s}")
        self.judge = pair_judge_for(backend)
        self.rubric = rubric
        self.budget_usd = budget_usd
        self.concurrency = concurrency
        self.retries = retries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

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

    def backoff(self, retry: int, retry_after_s: float | None = None) -> float:
        """Seconds before retry number ``retry`` (1-based): ``backoff_s * 2**(retry-1)`` capped, times jitter in [0.5, 1), at least retry-after."""
        with self._rng_lock:
            jitter = 0.5 + 0.5 * self._rng.random()
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (retry - 1)) * jitter
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_backoff_s))
        return delay

    # -- one pair ----------------------------------------------------------------------------------------

    def _judge_one(self, pair: PairItem, ledger: BudgetLedger) -> PairOutcome:
        """Reserve both orders' worst case at once, then judge order ab and order ba (each with its retries)."""
        tally = _Tally()
        estimates = {order: self.judge.max_cost_usd(pair, order, self.rubric) for order in ORDERS}
        denied = ledger.reserve([estimates[AB], estimates[BA]])
        if denied:
            return self._stopped(pair, tally, self._denied(ledger, denied, judged_one=False))
        verdicts: dict[str, PairVerdict] = {}
        for order, later in ((AB, [estimates[BA]]), (BA, [])):
            verdict = self._judge_order(pair, order, estimates[order], later, ledger, tally)
            if isinstance(verdict, _Stop):
                return self._stopped(pair, tally, verdict)
            verdicts[order] = verdict
        return judged_outcome(pair, verdicts[AB], verdicts[BA], **tally.fields())

    def _judge_order(self, pair: PairItem, order: str, estimate: float, later: list[float], ledger: BudgetLedger,
                     tally: _Tally) -> PairVerdict | _Stop:
        """One order, with retries (transient: ``retries``; malformed: once).

        The first request uses the pair's reservation. ``later`` are the reservations held
        for the pair's later order: a retry gives them back and reserves itself and them
        together again (so no worker waits while holding a reservation, and a pair whose
        retry fits but whose later order would not is still not half-judged). They are
        given back too when this order ends without a verdict.
        """
        transient = malformed = 0
        reserved = holding_later = True
        where = f"order {order} ({'answer_a' if order == AB else 'answer_b'} shown first)"

        def stop(status: str, kind: str | None, reason: str) -> _Stop:
            if holding_later:
                for held in later:
                    ledger.release(held)
            return _Stop(status, kind, reason)

        while True:
            if not reserved:
                if holding_later:
                    for held in later:
                        ledger.release(held)
                    holding_later = False
                denied = ledger.reserve([estimate, *later])
                if denied:
                    return self._denied(ledger, denied, judged_one=order == BA)
                holding_later = True
            reserved = False
            tally.attempts += 1
            try:
                call = self.judge.judge_pair(pair, order, self.rubric, timeout_s=self.timeout_s)
            except JudgeCallError as err:
                assumed = estimate if err.kind == TIMEOUT else 0.0
                ledger.settle(estimate, 0.0, assumed, error_kind=err.kind)
                tally.cost_usd += assumed
                if err.fatal:
                    ledger.abort(f"{err.kind}: {err}")
                    return stop(FAILED, err.kind, f"{where}: {err}")
                if err.retryable and transient < self.retries:
                    transient += 1
                    self._sleep(self.backoff(transient, err.retry_after_s))
                    continue
                retried = f" after {transient} retries" if err.retryable else " (not retryable)"
                return stop(FAILED, err.kind, f"{where}: {err}{retried}")
            except Exception as exc:  # a judge bug or an SDK error it does not know: recorded, never counted
                ledger.settle(estimate, 0.0, error_kind=ERROR)
                log.exception("pairwise judge %s raised on pair %s", self.judge.name, pair.item_id)
                return stop(FAILED, ERROR, f"{where}: {type(exc).__name__}: {exc}")
            ledger.settle(estimate, call.cost_usd, tokens=(call.input_tokens, call.output_tokens), error_kind=None if call.ok else MALFORMED)
            tally.input_tokens += call.input_tokens
            tally.output_tokens += call.output_tokens
            tally.cost_usd += call.cost_usd
            tally.latency_s += call.latency_s
            if call.verdict is not None:
                return call.verdict  # ``later`` stays reserved for the next order
            if malformed < 1:
                malformed += 1
                continue
            return stop(FAILED, MALFORMED, f"{where}: {call.parse_error} (also after one retry)")

    @staticmethod
    def _denied(ledger: BudgetLedger, reason: str, *, judged_one: bool) -> _Stop:
        if ledger.abort_reason:
            return _Stop(FAILED, ABORTED, f"not judged: the run was aborted ({ledger.abort_reason})")
        note = "; order ab was judged but the pair is not counted" if judged_one else ""
        return _Stop(SKIPPED_BUDGET, None, reason + note)

    @staticmethod
    def _stopped(pair: PairItem, tally: _Tally, stop: _Stop) -> PairOutcome:
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
