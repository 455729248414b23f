"""Pairwise outcomes (both orders, position-consistency controlled) and their statistics: win rate, interval, sign test."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy.stats import binomtest

from modelwatch.judge.pairwise import A_BETTER, B_BETTER, CI_METHODS, FIRST, INCONSISTENT, SECOND, TIE, PairItem, PairVerdict, pair_result
from modelwatch.judge.runner import FAILED, JUDGED, SKIPPED_BUDGET

# -- outcomes and statistics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairOutcome:
    """What happened to one pair. ``result`` (judged pairs only) is answer_a, answer_b, tie or inconsistent; ``ab``/``ba`` are the verdicts."""

    item_id: str
    status: str
    label_a: str = "control"
    label_b: str = "treatment"
    result: str | None = None
    ab: PairVerdict | None = None
    ba: PairVerdict | None = None
    failure_kind: str | None = None
    reason: str | None = None
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0

    @property
    def consistent(self) -> bool:
        return self.result in (A_BETTER, B_BETTER, TIE)

    @property
    def winner(self) -> str | None:
        """The label of the consistently preferred answer; None for ties, inconsistent, failed and skipped pairs."""
        return {A_BETTER: self.label_a, B_BETTER: self.label_b}.get(self.result or "")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ab"] = self.ab.model_dump() if self.ab else None
        out["ba"] = self.ba.model_dump() if self.ba else None
        return out


def judged_outcome(pair: PairItem, ab: PairVerdict, ba: PairVerdict, **fields: Any) -> PairOutcome:
    """The outcome of a pair judged in both orders: its ``pair_result`` and both verdicts."""
    return PairOutcome(pair.item_id, JUDGED, pair.label_a, pair.label_b, pair_result(ab.preference, ba.preference), ab, ba, **fields)


@dataclass(frozen=True)
class PairwiseStats:
    """Position consistency and the win rate of answer_b (``label_b``) over answer_a (``label_a``); see the module docstring."""

    label_a: str
    label_b: str
    pairs: int
    judged: int
    failed: int
    skipped: int
    consistent: int
    inconsistent: int
    consistency_rate: float | None
    first_position_verdicts: int  # inconsistent pairs' verdicts choosing the answer shown first
    second_position_verdicts: int
    first_position_rate: float | None
    wins: int  # consistent pairs won by answer_b
    losses: int  # consistent pairs won by answer_a
    ties: int
    win_rate: float | None  # wins / (wins + losses)
    win_rate_ci: tuple[float, float] | None
    win_rate_ties_split: float | None  # (wins + ties / 2) / consistent, no interval
    sign_test_p: float | None
    confidence: float
    ci_method: str


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def pair_labels(outcomes: Sequence[PairOutcome] | Sequence[PairItem]) -> tuple[str, str]:
    """The one (label_a, label_b) of all pairs; a win rate over mixed comparisons would mean nothing."""
    found = {(o.label_a, o.label_b) for o in outcomes}
    if len(found) > 1:
        raise ValueError(f"pairs compare different labels {sorted(found)}: compare one (label_a, label_b) at a time")
    return found.pop() if found else ("control", "treatment")


def pairwise_stats(outcomes: Sequence[PairOutcome], *, confidence: float = 0.95, ci_method: str = "exact") -> PairwiseStats:
    """Consistency, first-position preference, win/tie/loss, win rate with ``scipy.stats.binomtest`` interval and sign-test p-value."""
    if ci_method not in CI_METHODS:
        raise ValueError(f"ci_method must be one of {CI_METHODS}, got {ci_method!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    label_a, label_b = pair_labels(outcomes)
    judged = [o for o in outcomes if o.status == JUDGED]
    results = Counter(o.result for o in judged)
    consistent = sum(results[r] for r in (A_BETTER, B_BETTER, TIE))
    positions = Counter(v.preference for o in judged if o.result == INCONSISTENT for v in (o.ab, o.ba) if v is not None)
    wins, losses, ties = results[B_BETTER], results[A_BETTER], results[TIE]
    decisive = wins + losses
    ci = p_value = None
    if decisive:
        test = binomtest(wins, decisive, 0.5, alternative="two-sided")
        interval = test.proportion_ci(confidence_level=confidence, method=ci_method)
        ci, p_value = (float(interval.low), float(interval.high)), float(test.pvalue)
    return PairwiseStats(
        label_a=label_a, label_b=label_b, pairs=len(outcomes), judged=len(judged), failed=sum(o.status == FAILED for o in outcomes),
        skipped=sum(o.status == SKIPPED_BUDGET for o in outcomes), consistent=consistent, inconsistent=results[INCONSISTENT],
        consistency_rate=_rate(consistent, len(judged)), first_position_verdicts=positions[FIRST], second_position_verdicts=positions[SECOND],
        first_position_rate=_rate(positions[FIRST], positions[FIRST] + positions[SECOND]), wins=wins, losses=losses, ties=ties,
        win_rate=_rate(wins, decisive), win_rate_ci=ci, win_rate_ties_split=_rate(wins + ties / 2, consistent) if consistent else None,
        sign_test_p=p_value, confidence=confidence, ci_method=ci_method)
