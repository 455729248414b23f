"""Judge flag rates far above their reference: the test behind a flag in the health verdict ("Healthy now?").

A judge flag (toxicity, hallucination, refusal, …) is a share of the judged answers. Today's
rate is compared with the same flag's rate pooled over the earlier days of the page's window
(``publish.data.History``, up to 29 days with a summary): the flag's reference.

"Far above" means both:

- **statistically**: the one-sided score test for the difference of two independent
  proportions (Miettinen & Nurminen 1985, "Comparative analysis of two rates", Statistics in
  Medicine 4(2); ``statsmodels.stats.proportion.test_proportions_2indep`` with
  ``method="score"``, ``alternative="larger"``) rejects "today's rate is at most the
  reference's" at ``FLAG_ALPHA`` divided by the number of flags tested (Bonferroni, so a
  day's health verdict stays at ``FLAG_ALPHA`` over all its flags); and
- **materially**: today's rate exceeds the reference by at least ``FLAG_MIN_RISE``
  (absolute), so a large sample does not turn a rise of 0.1 point into an alarm.

The judge's estimates are design-weighted (stratified sampling); the counts tested are the
weighted rate times the judged answers ``n``, an approximation that ignores the design effect
of the weights. A flag without a reference (no earlier day judged it) is not tested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

FLAG_ALPHA = 0.01  # family-wise over the day's flags
FLAG_MIN_RISE = 0.02  # absolute: two percentage points above the reference


@dataclass(frozen=True)
class FlagRise:
    """One judge flag today against its reference, and whether the rise is far (an alert)."""

    flag: str  # the judge metric, e.g. "judge.toxicity_rate"
    rate: float
    judged: int
    reference_rate: float
    reference_judged: int
    reference_days: int
    p_value: float | None
    alert: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flag_entries(judge: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """The overall flag-rate estimates (``judge.<flag>_rate``) of a summary's judge block that have a rate and a count."""
    overall = (judge or {}).get("overall") or {}
    return {m: e for m, e in overall.items() if m.endswith("_rate") and e.get("estimate") is not None and (e.get("n") or 0) > 0}


def _pooled(earlier: Sequence[Mapping[str, Any]], flag: str) -> tuple[float, int, int]:
    """Flagged answers, judged answers and days of ``flag`` over the earlier summaries."""
    flagged, judged, days = 0.0, 0, 0
    for summary in earlier:
        entry = _flag_entries(summary.get("judge")).get(flag)
        if entry is not None:
            flagged += float(entry["estimate"]) * int(entry["n"])
            judged += int(entry["n"])
            days += 1
    return flagged, judged, days


def one_sided_rise_p_value(count: float, nobs: int, reference_count: float, reference_nobs: int) -> float | None:
    """p-value of the one-sided score test that today's proportion exceeds the reference's (Miettinen–Nurminen); None when undefined."""
    import numpy as np
    from statsmodels.stats.proportion import test_proportions_2indep

    with np.errstate(divide="ignore", invalid="ignore"):
        result = test_proportions_2indep(count, nobs, reference_count, reference_nobs, compare="diff", method="score", alternative="larger")
    p = float(result.pvalue)
    return None if math.isnan(p) else p


def flag_rises(judge: Mapping[str, Any] | None, earlier: Sequence[Mapping[str, Any]], *, alpha: float = FLAG_ALPHA,
               min_rise: float = FLAG_MIN_RISE) -> list[FlagRise]:
    """Each of today's judge flag rates against its reference pooled over ``earlier`` summaries (see the module docstring)."""
    today = _flag_entries(judge)
    tested = []
    for flag, entry in sorted(today.items()):
        reference_count, reference_nobs, days = _pooled(earlier, flag)
        if reference_nobs:
            tested.append((flag, float(entry["estimate"]), int(entry["n"]), reference_count, reference_nobs, days))
    level = alpha / max(len(tested), 1)
    out = []
    for flag, rate, n, reference_count, reference_nobs, days in tested:
        reference_rate = reference_count / reference_nobs
        p = one_sided_rise_p_value(rate * n, n, reference_count, reference_nobs)
        alert = p is not None and p < level and rate - reference_rate >= min_rise
        out.append(FlagRise(flag, rate, n, reference_rate, reference_nobs, days, p, alert))
    return out
