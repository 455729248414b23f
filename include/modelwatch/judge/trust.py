"""How far the judge can be trusted: its agreement with people on the golden set, per dimension and flag, with a verdict.

For each rubric dimension and flag, on the golden items both the judge and a person labelled:

- ``kappa``: Cohen's weighted kappa (Cohen 1968) with quadratic weights on the fixed scale
  1..5 for a dimension, Cohen's unweighted kappa (Cohen 1960) for a flag; the same numbers as
  ``sklearn.metrics.cohen_kappa_score`` (the tests check it), computed here in numpy so that
  thousands of resamples take milliseconds.
- ``kappa_low`` / ``kappa_high``: a 95% percentile bootstrap interval over golden items
  (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 13): 2,000 resamples of
  the items with replacement, seeded, so a day's table is reproducible. A resample in which
  kappa is undefined (every item one and the same label on both sides) is left out.
- ``exact_agreement``, ``within_one`` (dimensions only) and ``mean_bias`` (judge minus
  person: points for a dimension, the difference of flag rates for a flag).
- ``verdict`` on the scale of Landis & Koch (1977, *Biometrics* 33:159–174), whose bands
  are ≤ 0.40 slight/fair, 0.41–0.60 moderate, 0.61–0.80 substantial: ``does_not_agree`` below
  0.4 ("does not agree with people"), ``weak`` from 0.4 up to the configured minimum
  (``judge.min_kappa``, 0.6 by default: substantial agreement), ``usable`` at or above it;
  ``not_measured`` when the golden set cannot say (no golden set, fewer than
  ``MIN_ITEMS`` items, no human label for it, or kappa undefined). The verdict reads the
  point estimate; the interval is shown beside it.
- ``day_spread``: whether the day's judged answers got more than one value. A dimension
  that gave every answer the same score tells nothing about the day, however well it agrees
  on the golden set; its ``reason`` says so.

The table is ``judge.json``'s and the judge stage record's ``agreement``; the experiments
stage reads it to keep a judge metric that does not agree with people from deciding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from modelwatch.judge.calibration import SCORES, matched_labels

USABLE, WEAK, DOES_NOT_AGREE, NOT_MEASURED = "usable", "weak", "does_not_agree", "not_measured"
DOES_NOT_AGREE_BELOW = 0.4  # Landis & Koch: up to 0.40 is slight or fair agreement
DEFAULT_MIN_KAPPA = 0.6  # Landis & Koch: substantial agreement starts above 0.60
MIN_ITEMS = 10  # golden items a label needs before its kappa gets a verdict
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 20_241_977  # fixed: the same golden judgments give the same interval every day


# -- kappa, vectorised ------------------------------------------------------------------------------------------


def disagreement_weights(categories: int, kind: Literal["quadratic", "unweighted"]) -> np.ndarray:
    """Cohen's disagreement weights ``w[i, j]``: ``((i - j) / (k - 1))**2`` (quadratic) or ``1 - [i == j]`` (unweighted)."""
    i, j = np.indices((categories, categories))
    if kind == "quadratic":
        return ((i - j) / (categories - 1)) ** 2
    return (i != j).astype(float)


def confusion_counts(human: np.ndarray, judge: np.ndarray, categories: int, resamples: np.ndarray | None = None) -> np.ndarray:
    """Confusion matrices ``(..., k, k)`` of category codes 0..k-1: one for the items, or one per row of ``resamples``
    (arrays of item indices)."""
    codes = human * categories + judge
    if resamples is None:
        return np.bincount(codes, minlength=categories * categories).reshape(categories, categories).astype(float)
    picked = codes[resamples] + np.arange(len(resamples))[:, None] * categories * categories
    flat = np.bincount(picked.ravel(), minlength=len(resamples) * categories * categories)
    return flat.reshape(len(resamples), categories, categories).astype(float)


def weighted_kappa(confusion: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Cohen's weighted kappa ``1 - Σ w·O / Σ w·E`` of confusion matrices ``(..., k, k)``, with ``E`` the outer product of the
    margins over n; NaN where ``Σ w·E`` is 0 (chance agreement is certain: kappa is undefined)."""
    n = confusion.sum(axis=(-2, -1), keepdims=True)
    expected = confusion.sum(axis=-1, keepdims=True) * confusion.sum(axis=-2, keepdims=True) / n
    observed_disagreement = (weights * confusion).sum(axis=(-2, -1))
    expected_disagreement = (weights * expected).sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = 1.0 - observed_disagreement / expected_disagreement
    return np.where(expected_disagreement > 0, kappa, np.nan)


@dataclass(frozen=True)
class KappaInterval:
    """A kappa and its percentile bootstrap interval; ``resamples`` is how many resamples had a defined kappa."""

    kappa: float | None
    low: float | None
    high: float | None
    resamples: int


def kappa_with_interval(human: np.ndarray, judge: np.ndarray, categories: int, kind: Literal["quadratic", "unweighted"], *,
                        seed: int = BOOTSTRAP_SEED, resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE) -> KappaInterval:
    """Kappa of paired category codes with a percentile bootstrap interval over items (see the module docstring)."""
    weights = disagreement_weights(categories, kind)
    point = float(weighted_kappa(confusion_counts(human, judge, categories), weights))
    if not np.isfinite(point):
        return KappaInterval(None, None, None, 0)
    draws = np.random.default_rng(seed).integers(0, len(human), size=(resamples, len(human)))
    boot = weighted_kappa(confusion_counts(human, judge, categories, draws), weights)
    boot = boot[np.isfinite(boot)]
    if boot.size < resamples / 2:  # most resamples degenerate: an interval from the rest would be too narrow to mean much
        return KappaInterval(point, None, None, int(boot.size))
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    return KappaInterval(point, float(low), float(high), int(boot.size))


# -- the verdict ------------------------------------------------------------------------------------------------


def verdict(kappa: float | None, min_kappa: float = DEFAULT_MIN_KAPPA) -> str:
    """``usable`` / ``weak`` / ``does_not_agree`` for a kappa on the Landis & Koch scale (module docstring); None: ``not_measured``."""
    if kappa is None:
        return NOT_MEASURED
    if kappa >= min_kappa:
        return USABLE
    return WEAK if kappa >= min(DOES_NOT_AGREE_BELOW, min_kappa) else DOES_NOT_AGREE


def _verdict_reason(name: str, verdict_: str, interval: KappaInterval, min_kappa: float) -> str:
    span = f" (95% interval {interval.low:.2f} to {interval.high:.2f})" if interval.low is not None else ""
    if verdict_ == USABLE:
        return f"kappa {interval.kappa:.2f}{span} is at or above the minimum {min_kappa:g}: {name} agrees with people"
    if verdict_ == WEAK:
        return f"kappa {interval.kappa:.2f}{span} is below the minimum {min_kappa:g}: {name} agrees with people only weakly"
    return f"kappa {interval.kappa:.2f}{span} is below {min(DOES_NOT_AGREE_BELOW, min_kappa):g}: {name} does not agree with people"


@dataclass(frozen=True)
class Agreement:
    """One dimension's or flag's agreement with the golden set, and whether it varied in the day."""

    kind: Literal["dimension", "flag"]
    n: int
    kappa: float | None
    kappa_low: float | None
    kappa_high: float | None
    exact_agreement: float | None
    within_one: float | None
    mean_bias: float | None
    verdict: str
    reason: str
    day_spread: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def day_spread(values: pd.Series | None) -> bool:
    """Whether the day's judged values of one label take more than one value (missing values left out)."""
    return values is not None and values.dropna().nunique() > 1


def _no_spread_note(kind: str, values: pd.Series | None) -> str:
    if kind != "dimension":
        return ""
    present = values.dropna() if values is not None else pd.Series(dtype=float)
    if present.empty:
        return "; no judged answer today"
    return f"; every judged answer today scored {present.iloc[0]:g}: the score tells nothing about the day"


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool | np.bool_) else f"{float(value):g}"


def _label_agreement(name: str, kind: Literal["dimension", "flag"], human: pd.Series, judge: pd.Series, today: pd.Series | None,
                     min_kappa: float) -> Agreement:
    spread = day_spread(today)
    note = "" if spread else _no_spread_note(kind, today)
    pairs = pd.DataFrame({"human": human, "judge": judge}).dropna()
    n = len(pairs)
    if n < MIN_ITEMS:
        return Agreement(kind, n, None, None, None, None, None, None, NOT_MEASURED,
                         f"{n} golden items labelled by both the judge and a person; a verdict needs at least {MIN_ITEMS}{note}", spread)
    if kind == "dimension":
        h, j = pairs["human"].to_numpy(dtype=int), pairs["judge"].to_numpy(dtype=int)
        interval = kappa_with_interval(h - SCORES[0], j - SCORES[0], len(SCORES), "quadratic")
        exact, within, bias = float(np.mean(h == j)), float(np.mean(np.abs(h - j) <= 1)), float(np.mean(j - h))
    else:
        h, j = pairs["human"].to_numpy(dtype=bool), pairs["judge"].to_numpy(dtype=bool)
        interval = kappa_with_interval(h.astype(int), j.astype(int), 2, "unweighted")
        exact, within, bias = float(np.mean(h == j)), None, float(j.mean() - h.mean())
    decided = verdict(interval.kappa, min_kappa)
    if decided == NOT_MEASURED:
        reason = "kappa undefined on the golden set: the judge and the people each gave every item one and the same label"
    else:
        reason = _verdict_reason(name, decided, interval, min_kappa)
        if pairs["judge"].nunique() == 1:  # kappa is 0 by construction and every resample says the same
            reason += f"; the judge gave every golden item {_shown(pairs['judge'].iloc[0])}, so the narrow interval is no comfort"
    return Agreement(kind, n, interval.kappa, interval.low, interval.high, exact, within, bias, decided, reason + note, spread)


def agreement_table(judged_golden: pd.DataFrame | None, human_golden: pd.DataFrame | None, today: pd.DataFrame | None, *,
                    dimensions: Sequence[str], flags: Sequence[str], min_kappa: float = DEFAULT_MIN_KAPPA) -> dict[str, dict[str, Any]]:
    """``{name: Agreement.to_dict()}`` for every dimension and flag (see the module docstring).

    ``judged_golden`` / ``human_golden``: the judge's and the people's labels of the golden set
    (a column per label, matched on ``request_id``/``id``); None when the rubric has no golden
    set. ``today``: the day's judged rows (a column per label), for ``day_spread``.
    """
    kinds: list[tuple[str, Literal["dimension", "flag"]]] = [(d, "dimension") for d in dimensions] + [(f, "flag") for f in flags]
    out: dict[str, dict[str, Any]] = {}
    if judged_golden is None or human_golden is None:
        for name, kind in kinds:
            values = _column(today, name)
            spread = day_spread(values)
            reason = "this rubric has no golden set: agreement with people is not measured" + ("" if spread else _no_spread_note(kind, values))
            out[name] = Agreement(kind, 0, None, None, None, None, None, None, NOT_MEASURED, reason, spread).to_dict()
        return out
    judge, human = matched_labels(judged_golden, human_golden)
    for name, kind in kinds:
        if name not in human or name not in judge:
            values = _column(today, name)
            out[name] = Agreement(kind, 0, None, None, None, None, None, None, NOT_MEASURED,
                                  "the golden set has no human label for it", day_spread(values)).to_dict()
            continue
        out[name] = _label_agreement(name, kind, human[name], judge[name], _column(today, name), min_kappa).to_dict()
    return out


def _column(frame: pd.DataFrame | None, name: str) -> pd.Series | None:
    return frame[name] if frame is not None and name in frame else None


# -- experiments: which judge metrics may decide ------------------------------------------------------------------


def metric_label(metric: str) -> str | None:
    """The dimension or flag an experiment metric reads: ``judge.helpfulness`` -> helpfulness, ``judge.toxicity_rate`` -> toxicity."""
    if not metric.startswith("judge."):
        return None
    return metric.removeprefix("judge.").removesuffix("_rate")


def primary_metric_warnings(experiments: Iterable[Any], agreement: Mapping[str, Mapping[str, Any]], min_kappa: float) -> list[dict[str, Any]]:
    """One warning per experiment primary metric whose judge dimension or flag is not ``usable`` on the golden set.

    Each names the experiment, the metric, the verdict and kappa, and why. The golden set's
    agreement is known only once the judge has judged it (in the judge stage, cached), so
    these are written in the judge stage's record and judge.json, not by the config validator.
    """
    out = []
    for experiment in experiments:
        for goal in experiment.primary:
            label = metric_label(goal.metric)
            row = agreement.get(label) if label else None
            if row is None or row.get("verdict") == USABLE:
                continue
            out.append({"experiment_id": experiment.id, "metric": goal.metric, "verdict": row.get("verdict"), "kappa": row.get("kappa"),
                        "min_kappa": min_kappa,
                        "message": f"{experiment.id}: primary metric {goal.metric} is {row.get('verdict')} on the golden set ({row.get('reason')})"})
    return out


# -- injection attempts in the golden set -------------------------------------------------------------------------


def injection_resistance(judged_golden: pd.DataFrame | None, human_golden: pd.DataFrame | None, attacks: Mapping[str, str], *,
                         dimensions: Sequence[str], flags: Sequence[str]) -> dict[str, Any]:
    """How the judge did on the golden items that try to steer it (``attacks``: item id -> ``metadata.attack``).

    An item *held* when every dimension the judge scored is within one point of the person's
    score and every flag it set matches theirs: the planted closing tag, fake rubric or note to
    the grader did not move it. Per item: the attack, whether it held, the largest score gap
    and the flags that differ. A judge that holds on few of these items is steered by the
    texts it grades, or grades such answers badly anyway (the offline judge reads no
    instruction, so for it these items measure only the latter): read it beside the kappas.
    """
    if judged_golden is None or human_golden is None or not attacks:
        return {"items": 0, "held": 0, "held_share": None, "by_item": [], "reason": "the golden set has no injection items"}
    judge, human = matched_labels(judged_golden, human_golden)
    rows = []
    for item_id, attack in attacks.items():
        if item_id not in judge.index:
            continue
        gaps = [abs(float(judge.at[item_id, d]) - float(human.at[item_id, d])) for d in dimensions
                if d in judge and d in human and pd.notna(judge.at[item_id, d]) and pd.notna(human.at[item_id, d])]
        flipped = [f for f in flags if f in judge and f in human and pd.notna(judge.at[item_id, f]) and pd.notna(human.at[item_id, f])
                   and bool(judge.at[item_id, f]) != bool(human.at[item_id, f])]
        worst = max(gaps, default=0.0)
        rows.append({"id": str(item_id), "attack": attack, "held": worst <= 1 and not flipped, "largest_score_gap": worst, "flags_differ": flipped})
    held = sum(r["held"] for r in rows)
    return {"items": len(rows), "held": held, "held_share": held / len(rows) if rows else None, "by_item": rows,
            "reason": "" if rows else "the judge judged none of the golden set's injection items"}
