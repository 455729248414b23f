"""One judge request under the budget, with retries: the loop the single-answer and the pairwise runner share.

``JudgeRequests(policy).run(request, estimate=..., reserve=..., ledger=..., tally=...)``
makes one judge request (one item, or one order of a pair) until it has an answer or a
reason not to go on:

- before every request ``reserve()`` must hold the request's worst-case cost in the
  ``BudgetLedger`` (None: held; else the ledger's reason to stop, which ends the request as
  ``skipped_budget``, or ``failed``/``aborted`` when the run was aborted);
- the ledger is settled after every request: a timeout is charged its full reservation (the
  provider may have processed and billed it), other failures nothing, an answer its
  reported cost; ``tally`` adds up the requests, tokens, cost and latency of this item;
- a failure the backend marks ``retryable`` (429, 5xx, 408/409, timeouts, connection errors)
  is retried by :func:`modelwatch.retry.call_with_retries` under ``policy``: jittered
  exponential backoff, the server's retry-after honoured, ``policy.retries`` retries at most
  and none past ``policy.deadline_s``;
- a ``fatal`` failure (401/403, 404: every later request would fail too) aborts the run;
- an answer that does not parse or validate is asked again once (with its own retries), then
  the request fails as ``malformed``;
- any other exception (a backend bug, an SDK error it does not know) fails the request as
  ``error``: recorded, never scored.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

from modelwatch.judge.budget import BudgetLedger
from modelwatch.judge.calls import ERROR, MALFORMED, TIMEOUT, JudgeCallError
from modelwatch.retry import RetriesExhausted, RetryPolicy, call_with_retries

log = logging.getLogger(__name__)

JUDGED = "judged"
FAILED = "failed"
SKIPPED_BUDGET = "skipped_budget"
ABORTED = "aborted"


class Answer(Protocol):
    """What a judge request returns when the server answered: ``JudgeCall`` and ``PairCall`` both are one."""

    parse_error: str | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_s: float

    @property
    def ok(self) -> bool: ...


A = TypeVar("A", bound=Answer)


@dataclass
class Tally:
    """One item's (or pair's) requests, tokens and cost, assumed costs of timeouts included."""

    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0

    def add(self, answer: Answer) -> None:
        self.input_tokens += answer.input_tokens
        self.output_tokens += answer.output_tokens
        self.cost_usd += answer.cost_usd
        self.latency_s += answer.latency_s

    def fields(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Stop:
    """Why a request ended without an answer: its status (failed / skipped_budget), failure kind and reason."""

    status: str
    failure_kind: str | None
    reason: str


def denial(ledger: BudgetLedger, reason: str) -> Stop:
    """The stop of a request the ledger would not reserve: aborted when the run was aborted, else out of budget."""
    if ledger.abort_reason:
        return Stop(FAILED, ABORTED, f"not attempted: the run was aborted ({ledger.abort_reason})")
    return Stop(SKIPPED_BUDGET, None, reason)


def check_run_settings(concurrency: int, budget_usd: float | None, timeout_s: float | None, max_calls: int | None = None) -> None:
    """The settings both runners take, checked the same way (retries and backoff are checked by ``RetryPolicy``)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if (max_calls is not None and max_calls < 0) or (budget_usd is not None and budget_usd < 0):
        raise ValueError(f"max_calls and budget_usd must not be negative, got {max_calls} and {budget_usd}")
    if timeout_s is not None and timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive (or None for the backend's own), got {timeout_s}")


def _retryable(error: BaseException) -> bool:
    return isinstance(error, JudgeCallError) and error.retryable


class JudgeRequests:
    """Judge requests with retries under ``policy``; ``sleep`` and ``seed`` (the jitter) exist for tests."""

    def __init__(self, policy: RetryPolicy, *, seed: int | None = None, sleep: Callable[[float], None] = time.sleep):
        self.policy = policy
        self._sleep = sleep
        self._uniform = random.Random(seed).random  # one C call per draw: safe to share between worker threads

    def run(self, request: Callable[[], A], *, estimate: float, reserve: Callable[[], str | None], ledger: BudgetLedger, tally: Tally,
            where: str = "", name: str = "") -> A | Stop:
        """An answer that parsed, or why there is none; see the module docstring. ``where`` prefixes every reason."""
        malformed = 0
        while True:
            try:
                answer = call_with_retries(lambda: self._once(request, estimate, reserve, ledger, tally, where, name), self.policy,
                                           retryable=_retryable, sleep=self._sleep, uniform=self._uniform)
            except RetriesExhausted as exc:
                kind = exc.last.kind if isinstance(exc.last, JudgeCallError) else ERROR
                return Stop(FAILED, kind, f"{where}{exc.last} after {exc.attempts - 1} retries ({exc.reason})")
            except JudgeCallError as err:
                return Stop(FAILED, err.kind, f"{where}{err} (not retryable)")
            if isinstance(answer, Stop) or answer.ok:
                return answer
            if malformed < 1:
                malformed += 1
                continue
            return Stop(FAILED, MALFORMED, f"{where}{answer.parse_error} (also after one retry)")

    @staticmethod
    def _once(request: Callable[[], A], estimate: float, reserve: Callable[[], str | None], ledger: BudgetLedger, tally: Tally, where: str,
              name: str) -> A | Stop:
        """One request: reserve, ask, settle. Raises the retryable and the plain failures; returns a Stop for the others."""
        denied = reserve()
        if denied:
            return denial(ledger, denied)
        tally.attempts += 1
        try:
            answer = request()
        except JudgeCallError as err:
            assumed = estimate if err.kind == TIMEOUT else 0.0
            ledger.settle(estimate, 0.0, assumed, error_kind=err.kind)
            tally.cost_usd += assumed
            if err.fatal:
                ledger.abort(f"{err.kind}: {err}")
                return Stop(FAILED, err.kind, f"{where}{err}")
            raise
        except Exception as exc:  # a backend bug or an SDK error it does not know: recorded, never scored
            ledger.settle(estimate, 0.0, error_kind=ERROR)
            log.exception("judge request for %s raised", name or "an item")
            return Stop(FAILED, ERROR, f"{where}{type(exc).__name__}: {exc}")
        ledger.settle(estimate, answer.cost_usd, tokens=(answer.input_tokens, answer.output_tokens), error_kind=None if answer.ok else MALFORMED)
        tally.add(answer)
        return answer
