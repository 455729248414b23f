"""The judge's budget ledger, shared by the single-answer runner and the pairwise runner.

Each request reserves its worst-case cost before it is sent; ``settle`` replaces the
reservation by what the server reported (plus the assumed cost of a timeout, which the
provider may have billed). A reservation that does not fit waits while other
reservations are outstanding (they will settle and may free budget); with none
outstanding the run stops, so the budget is never exceeded. Several requests can be
reserved at once (a pair's two orders) so that a pair is judged in both orders or not at
all. Callers never wait while holding a reservation, so waiting workers cannot block each
other.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class BudgetLedger:
    """Thread-safe budget, call cap and totals of one judge run."""

    budget_usd: float | None
    max_calls: int | None = None
    spent: float = 0.0
    assumed: float = 0.0
    reserved: float = 0.0
    outstanding: int = 0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    errors: Counter = field(default_factory=Counter)
    stop_reason: str | None = None
    abort_reason: str | None = None
    cache_write_errors: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def reserve(self, estimates: float | Sequence[float]) -> str | None:
        """Reserve every estimate (USD, one request each) or none; None on success, else why the run stopped."""
        estimates = [estimates] if isinstance(estimates, (int, float)) else list(estimates)
        total = sum(estimates)
        with self._cond:
            while True:
                if self.stop_reason or self.abort_reason:
                    return self.abort_reason or self.stop_reason
                if self.max_calls is not None and self.calls + self.outstanding + len(estimates) > self.max_calls:
                    return self._stop(f"max_calls {self.max_calls} reached")
                committed = self.spent + self.assumed
                if self.budget_usd is None or committed + self.reserved + total <= self.budget_usd:
                    self.reserved += total
                    self.outstanding += len(estimates)
                    return None
                if self.outstanding == 0:
                    what = "pair" if len(estimates) > 1 else "call"
                    return self._stop(f"budget ${self.budget_usd:.6g} reached: ${committed:.6g} spent and the next {what} may cost up to ${total:.6g}")
                self._cond.wait()

    def _stop(self, reason: str) -> str:
        self.stop_reason = reason
        self._cond.notify_all()
        return reason

    def _unreserve(self, estimate: float) -> None:
        self.outstanding -= 1
        self.reserved = 0.0 if self.outstanding == 0 else self.reserved - estimate

    def release(self, estimate: float) -> None:
        """Give back a reservation that was not used (no request made)."""
        with self._cond:
            self._unreserve(estimate)
            self._cond.notify_all()

    def settle(self, estimate: float, cost: float, assumed: float = 0.0, tokens: tuple[int, int] = (0, 0), error_kind: str | None = None) -> None:
        """A request was made: replace its reservation by its reported (``cost``) and assumed costs; count it, its tokens and error."""
        with self._cond:
            self._unreserve(estimate)
            self.calls += 1
            self.spent += cost
            self.assumed += assumed
            self.input_tokens += tokens[0]
            self.output_tokens += tokens[1]
            if error_kind:
                self.errors[error_kind] += 1
            if cost + assumed > estimate * (1 + 1e-9) + 1e-12:
                log.warning("a judge call cost $%.6g, more than its reserved upper bound $%.6g: the server reported more tokens than "
                            "the request's size suggests; the budget may be exceeded by the difference", cost + assumed, estimate)
            self._cond.notify_all()

    def count_free(self, error_kind: str | None = None) -> None:
        """A local (free, unreserved) verdict."""
        with self._cond:
            self.calls += 1
            if error_kind:
                self.errors[error_kind] += 1

    def count_cache_write_error(self) -> None:
        with self._cond:
            self.cache_write_errors += 1

    def abort(self, reason: str) -> None:
        with self._cond:
            self.abort_reason = self.abort_reason or reason
            self._cond.notify_all()


@dataclass(kw_only=True)
class RunTotals:
    """What a judge run (single-answer or pairwise) spent and met; ``cost_usd`` is what servers reported, ``cost_assumed_usd`` is
    charged for timeouts."""

    backend: dict[str, Any]
    rubric: str
    rubric_version: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    cost_assumed_usd: float
    budget_usd: float | None
    failures_by_kind: dict[str, int]  # items that ended failed, by kind
    errors_by_kind: dict[str, int]  # every failed request or malformed answer, retried or not
    wall_time_s: float
    stop_reason: str | None = None

    @staticmethod
    def from_ledger(ledger: BudgetLedger) -> dict[str, Any]:
        """The ledger's share of a run's totals, as constructor keywords."""
        return {"calls": ledger.calls, "input_tokens": ledger.input_tokens, "output_tokens": ledger.output_tokens, "cost_usd": ledger.spent,
                "cost_assumed_usd": ledger.assumed, "budget_usd": ledger.budget_usd, "errors_by_kind": dict(ledger.errors),
                "stop_reason": ledger.abort_reason or ledger.stop_reason}

    @property
    def spent_usd(self) -> float:
        return self.cost_usd + self.cost_assumed_usd

    def totals(self) -> dict[str, Any]:
        """The totals as a JSON-ready dict."""
        return {"backend": self.backend, "rubric": self.rubric, "rubric_version": self.rubric_version, "calls": self.calls,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens, "cost_usd": self.cost_usd,
                "cost_assumed_usd": self.cost_assumed_usd, "spent_usd": self.spent_usd, "budget_usd": self.budget_usd,
                "failures_by_kind": dict(self.failures_by_kind), "errors_by_kind": dict(self.errors_by_kind), "wall_time_s": self.wall_time_s,
                "stop_reason": self.stop_reason}
